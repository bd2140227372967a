"""Keeping the enclave's committee equal to L1's, under the enclave's rule (docs/ENCLAVE.md).

The enclave takes its first committee from its host, and after that only a stricter one (members
dropped, rule raised) on the host's word; adding a member (or lowering the rule) takes a
certificate: signatures over the new committee by a QC of the current one (ecall
``committee_sign``). This module gathers them:

* ``CommitteeSync.update(fields)``: give the enclave the committee L1 names; when it asks for a
  certificate, gather one in the background from this node's enclave and its peers (peer op
  ``committee_sign``) and apply it;
* ``CommitteeSync.on_sign(msg)`` (the peer op): sign a proposed committee only if every member in
  it is active on L1 and its rule is L1's -- or hand out the certificate this node applied for
  that same committee (a peer that is late gets the one the others used).

Untrusted glue: a bug here costs liveness (a member left out), never a weaker committee.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from ..tee.boundary import EnclaveError
from ..tee.platform import Quote
from .batch import wire_bytes
from .peers import PeerClient, PeerError

log = logging.getLogger("enclavenet.node.certify")

NEEDS_CERT = "needs a certificate"


def committee_id(fields: dict[str, Any]) -> tuple[frozenset[str], int, int]:
    """What a committee is, for comparing proposals: member addresses, quorum, min_types."""
    members = frozenset(Quote.decode(bytes(q)).enclave for q in fields["members"])
    return members, int(fields["quorum"]), int(fields["min_types"])


class CommitteeSync:
    def __init__(
        self,
        name: str,
        host: Any,
        peers: Callable[[], list[PeerClient]],
        l1_members: Callable[[], list[str]],
        l1_rule: Callable[[], tuple[int, int]],
    ) -> None:
        self.name = name
        self.host = host
        self._peers = peers
        self._l1_members = l1_members
        self._l1_rule = l1_rule
        self.cert: dict[str, Any] | None = None  # the last certificate applied here (served to peers)
        self.current: frozenset[str] = frozenset()  # members the enclave was last given
        self._task: asyncio.Task[None] | None = None

    async def update(self, fields: dict[str, Any]) -> bool:
        """Give the enclave ``fields`` = {members: [quote], quorum, min_types}. True if it took them
        (now or by a certificate gathered in the background later: False until then)."""
        try:
            await self.host.call("committee", fields)
        except EnclaveError as exc:
            if NEEDS_CERT not in str(exc):
                log.warning("%s: committee update refused: %s", self.name, exc)
                return False
            if self._task is None or self._task.done():
                self._task = asyncio.ensure_future(self._certify(fields))
            return False
        self.current = committee_id(fields)[0]
        return True

    async def _gather(self, fields: dict[str, Any]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        try:
            answers.append(await self.host.call("committee_sign", fields))
        except EnclaveError as exc:
            log.info("%s: own enclave will not sign the new committee: %s", self.name, exc)

        async def ask(p: PeerClient) -> None:
            try:
                answers.append(await p.call("committee_sign", fields, timeout=10))
            except PeerError as exc:
                log.info("%s: no committee signature from %s: %s", self.name, p.url, exc)

        await asyncio.gather(*(ask(p) for p in self._peers() if p.address in self.current or not self.current))
        return answers

    async def _certify(self, fields: dict[str, Any]) -> None:
        want = committee_id(fields)
        answers = await self._gather(fields)
        versions = {int(a["version"]) for a in answers if "signature" in a}
        if len(versions) > 1:
            # members at different versions of the same committee (they joined at different
            # times) each signed their own next version: ask again, all at the highest
            answers += await self._gather({**fields, "version": max(versions)})
        for a in answers:  # a peer already applied a certificate for this very committee: use it
            cert = a.get("cert")
            if isinstance(cert, dict) and committee_id(cert) == want and await self._apply(cert):
                return
        by_version: dict[int, dict[str, bytes]] = {}  # one signature per signer (asked twice: same one)
        for a in answers:
            if "signature" in a:
                sig = bytes(a["signature"])
                by_version.setdefault(int(a["version"]), {})[str(a.get("signer") or sig.hex())] = sig
        for version in sorted(by_version, reverse=True):
            sigs = list(by_version[version].values())
            if await self._apply({**fields, "version": version, "signatures": sigs}):
                return
        log.info("%s: no certificate for the new committee yet (%d answers); retrying later", self.name, len(answers))

    async def _apply(self, cert: dict[str, Any]) -> bool:
        try:
            await self.host.call("committee", cert)
        except EnclaveError as exc:
            log.info("%s: committee certificate refused: %s", self.name, exc)
            return False
        self.cert = cert
        self.current = committee_id(cert)[0]
        log.info("%s: committee updated by a certificate (version %s, %d members)", self.name, cert["version"],
                 len(self.current))
        return True

    async def on_sign(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Peer op ``committee_sign``: this node's enclave signs the proposed committee if L1 agrees."""
        fields = {"members": [wire_bytes(q, "member quote") for q in msg["members"]], "quorum": int(msg["quorum"]),
                  "min_types": int(msg["min_types"])}
        want = committee_id(fields)
        if self.cert is not None and committee_id(self.cert) == want:
            return {"cert": self.cert}
        active = set(self._l1_members())
        outside = sorted(want[0] - active)
        if outside:
            raise ValueError(f"{outside[0]} is not an active member on L1: not signing that committee")
        if (want[1], want[2]) != self._l1_rule():
            raise ValueError(f"the rule quorum {want[1]} / min_types {want[2]} is not L1's {self._l1_rule()}")
        at = msg.get("version")
        if isinstance(at, int) and not isinstance(at, bool):
            fields["version"] = at
        out = await self.host.call("committee_sign", fields)
        return {"version": out["version"], "signature": out["signature"], "signer": out["signer"]}


__all__ = ["CommitteeSync", "committee_id"]
