"""Membership and epoch keys: who is in the committee, and the keys each epoch uses.

Learns peers' identities (quotes) and tells the enclave the committee; bootstraps the first
epoch (genesis on ``members[0]``, import elsewhere); rotates on schedule or revocation, pushes
the new keys to the members and fetches the ones this enclave lacks (restart, missed rotation,
a proposal under a new epoch). The enclave checks every quote and bundle itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..crypto.hashing import to_checksum
from ..crypto.header import Header
from ..tee.boundary import EnclaveError
from .batch import (
    Refused,
    wire_bytes,
)
from .certify import CommitteeSync
from .core import NodeCore, Role
from .peers import PeerClient, PeerError

log = logging.getLogger("enclavenet.node.epochs")
COMMITTEE_WAIT = 20.0  # seconds a node's first committee waits for every peer's quote


class Epochs(Role):
    def __init__(self, node: NodeCore, poll_l1: Callable[[], Awaitable[None]]) -> None:
        super().__init__(node)
        self.poll_l1 = poll_l1  # the L1 link's poll (for a member that registered just now)
        self.committee_key: tuple[Any, ...] = ()
        self.certify: CommitteeSync | None = None
        self._born = time.monotonic()

    async def update_committee(self) -> None:
        """Tell the enclave the committee (quotes of the active members it can get). The first
        committee waits for every peer's quote (up to COMMITTEE_WAIT; a member no peer answers
        for -- e.g. this node's own previous enclave -- is not waited for): after it, adding a
        member takes a certificate of the committee, which ``certify.CommitteeSync`` gathers."""
        n = self.node
        assert n.host is not None and n.watcher is not None
        members = n.members()
        quotes = [n.quotes[a] for a in members if a in n.quotes]
        key = (tuple(a for a in members if a in n.quotes), n.watcher.quorum, n.watcher.min_types)
        if key == self.committee_key or not quotes or not n.watcher.quorum:
            return
        if not self.committee_key and time.monotonic() - self._born < COMMITTEE_WAIT:
            if len(quotes) < len(members) and not all(p.address for p in n.peers):
                return
            # bootstrap (no header yet): wait until L1 lists the members epoch genesis waits for.
            # Members whose first committees differ cannot certify each other's next one: a node
            # that set its first committee while L1 showed 8 of 10 registrations could never add
            # the other two (seen with 10 members: two nodes stuck at "not an allowed committee
            # member" for good)
            expected = self.cfg.expected_members or len(self.cfg.peers)
            if n.watcher.height == 0 and len(members) < expected:
                return
        if self.certify is None:
            self.certify = CommitteeSync(
                self.cfg.name, n.host, lambda: n.peers, n.members,
                lambda: (n.watcher.quorum, n.watcher.min_types) if n.watcher else (0, 0),
            )
        if await self.certify.update({"members": quotes, "quorum": n.watcher.quorum, "min_types": n.watcher.min_types}):
            self.committee_key = key

    async def on_committee_sign(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Peer op ``committee_sign`` (certify.CommitteeSync.on_sign)."""
        if self.certify is None:
            raise Refused("this node has not set its enclave's committee yet")
        return await self.certify.on_sign(msg)

    async def run(self) -> None:
        """Learn peers' identities (quotes), keep the committee current, get the epoch keys."""
        while not self.node.stopping.is_set():
            try:
                await self._discover_peers()
                await self.update_committee()
                if self.node.epoch is None:
                    await self._obtain_epoch()
                else:
                    await self.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: peer loop: %s: %s", self.cfg.name, type(exc).__name__, exc)
            known = all(p.address for p in self.node.peers)
            await asyncio.sleep(0.2 if (not known or self.node.epoch is None) else 2.0)

    async def _discover_peers(self) -> None:
        async def one(p: PeerClient) -> None:
            try:
                info = await p.call("identity", {}, timeout=5)
            except PeerError:
                return
            addr = to_checksum(info["address"])
            p.address = addr
            p.tee_type = int(info["tee_type"])
            p.quote = bytes(info["quote"])
            self.node.quotes[addr] = p.quote
            if isinstance(info.get("enc_pub"), bytes):
                self.node.enc_pubs[addr] = bytes(info["enc_pub"])

        await asyncio.gather(*(one(p) for p in self.node.peers if p.address is None or p.failures))

    async def _obtain_epoch(self) -> None:
        assert self.node.host is not None and self.node.watcher is not None
        members = self.node.members()
        if self.node.address not in members:
            return
        for p in self.node.peers:
            if p.address not in members:
                continue
            try:
                out = await p.call("epoch_bundle", {"quote": self.node.quote, "enc_pub": self.node.enc_pub}, timeout=10)
            except PeerError as exc:
                log.info("%s: no epoch from %s yet: %s", self.cfg.name, p.url, exc)
                continue
            async with self.node.enclave_lock:
                res = await self.node.host.call("epoch_import", {"bundle": out["bundle"]})
                await self.node.refresh_status()
            log.info("%s: imported epoch %s keys from %s", self.cfg.name, res.get("epoch"), p.address)
            self.node.due_since = time.monotonic()
            await self.node.persist()
            self.node.work.set()
            return
        expected = self.cfg.expected_members or len(self.cfg.peers)
        if (
            self.node.watcher.height == 0
            and members
            and members[0] == self.node.address
            and len(members) >= max(expected, self.node.watcher.quorum)
            and all(a in self.node.quotes for a in members)
        ):
            async with self.node.enclave_lock:
                res = await self.node.host.call("epoch_genesis")
                await self.node.refresh_status()
            log.info("%s: created epoch %s (genesis)", self.cfg.name, res.get("epoch"))
            self.node.due_since = time.monotonic()
            await self.node.persist()
            self.node.work.set()

    async def on_identity(self, msg: dict[str, Any]) -> dict[str, Any]:
        return {"address": self.node.address, "tee_type": self.node.tee_type, "quote": self.node.quote,
                "enc_pub": self.node.enc_pub, "height": self.node.finalized, "epoch": self.node.epoch}

    async def on_epoch_bundle(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.node.host is not None and self.node.watcher is not None
        if self.node.epoch is None:
            raise Refused("this node's enclave holds no epoch yet")
        epoch = int(msg.get("epoch", self.node.epoch))
        if epoch not in self.node.epochs_held:
            raise Refused(f"this node's enclave does not hold epoch {epoch} (holds {self.node.epochs_held})")
        quote, enc_pub = msg["quote"], msg["enc_pub"]
        if not isinstance(quote, bytes) or not isinstance(enc_pub, bytes):
            raise Refused("an epoch bundle request is {quote: bytes, enc_pub: bytes, epoch?}")
        from ..tee.platform import Quote

        q = Quote.decode(quote)
        if q.enclave not in self.node.members():
            # maybe it registered just now
            await self.poll_l1()
            if q.enclave not in self.node.members():
                raise Refused(f"enclave {q.enclave} is not an active committee member on L1")
        # a member that registered just now: its quote goes into the enclave's committee first
        # (else the export refuses it). A quote the enclave refuses (forged, or not the one the
        # committee holds) must not replace the one the node had: put that back.
        prev, key = self.node.quotes.get(q.enclave), self.committee_key
        self.node.quotes[q.enclave] = quote
        try:
            await self.update_committee()
            out = await self.node.host.call("epoch_export", {"epoch": epoch, "member": quote, "member_enc_pub": enc_pub})
        except BaseException:
            if self.committee_key == key:
                if prev is None:
                    self.node.quotes.pop(q.enclave, None)
                else:
                    self.node.quotes[q.enclave] = prev
            raise
        return {"bundle": out["bundle"], "epoch": epoch}

    async def prepare(self, h: int) -> bool:
        """Make the enclave's current epoch right for a batch at ``h``; rotate first when due.
        False: not now (the proposer waits for L1 to reach its head, or for keys)."""
        assert self.node.host is not None and self.node.watcher is not None
        l1_epoch = self.node.l1_epoch()
        if self.node.epoch is not None and self.node.epoch < l1_epoch:
            await self.catch_up()
            if self.node.epoch is None or self.node.epoch < l1_epoch:
                return False
        why = self.node.rotation_due()
        if why is None or (self.node.epoch is not None and self.node.epoch > l1_epoch):
            return True
        if self.node.head_height != self.node.l1_height or self.node.finalized != self.node.l1_height or h != self.node.l1_height + 1:
            return False  # rotate on the accepted head only (one pipeline bubble per rotation)
        await self.update_committee()  # the enclave exports new keys only to the members still trusted
        # a member that rotated before us (e.g. a proposer that lost the race): take its keys
        if await self._fetch_epoch(l1_epoch + 1, timeout=1.0):
            return True
        async with self.node.enclave_lock:
            if self.node.epoch is not None and self.node.epoch > l1_epoch:
                return True
            out = await self.node.host.call("epoch_rotate")
            await self.node.refresh_status()
        self.node.counters["rotations"] += 1
        new = int(out["epoch"])
        log.info("%s: rotated to epoch %d (%s); its key goes to L1 with height %d", self.cfg.name, new, why, h)
        await self.node.persist()
        self.node.spawn(self._push_epoch(new))
        return True

    async def _push_epoch(self, epoch: int) -> None:
        """Send the new epoch's keys to every ACTIVE member, each encrypted by our enclave to that
        member's attested key (the enclave refuses anyone outside its committee)."""
        assert self.node.host is not None
        members = set(self.node.members())

        async def one(p: PeerClient) -> None:
            if p.address is None or p.address not in members or p.address not in self.node.enc_pubs:
                return
            try:
                out = await self.node.host.call("epoch_export", {"epoch": epoch, "member": self.node.quotes[p.address],  # type: ignore[union-attr]
                                                            "member_enc_pub": self.node.enc_pubs[p.address]})
                await p.call("epoch_push", {"epoch": epoch, "bundle": out["bundle"]}, timeout=10)
            except (PeerError, EnclaveError, KeyError) as exc:
                log.info("%s: epoch %d not pushed to %s: %s", self.cfg.name, epoch, p.url, exc)

        await asyncio.gather(*(one(p) for p in self.node.peers))

    async def on_epoch_push(self, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.node.host is not None
        epoch = int(msg["epoch"])
        if epoch in self.node.epochs_held:
            return {"imported": False, "epoch": epoch}
        async with self.node.enclave_lock:
            await self.node.host.call("epoch_import", {"bundle": wire_bytes(msg["bundle"], "bundle")})
            await self.node.refresh_status()
        log.info("%s: imported epoch %d keys (pushed)", self.cfg.name, epoch)
        await self.node.persist()
        return {"imported": True, "epoch": epoch}

    async def _fetch_epoch(
        self, epoch: int, *, replace: bool = False, peers: list[PeerClient] | None = None, timeout: float = 5.0
    ) -> bool:
        """Ask peers (all at once) for ``epoch``'s keys and import the first bundle that works."""
        assert self.node.host is not None
        members = set(self.node.members())
        cands = [p for p in (peers if peers is not None else self.node.peers) if p.address in members]

        async def ask(p: PeerClient) -> bytes | None:
            try:
                out = await p.call("epoch_bundle", {"quote": self.node.quote, "enc_pub": self.node.enc_pub, "epoch": epoch},
                                   timeout=timeout)
                return bytes(out["bundle"])
            except (PeerError, KeyError, TypeError) as exc:
                log.debug("%s: epoch %d from %s: %s", self.cfg.name, epoch, p.url, exc)
                return None

        for bundle in await asyncio.gather(*(ask(p) for p in cands)):
            if bundle is None:
                continue
            try:
                async with self.node.enclave_lock:
                    body: dict[str, Any] = {"bundle": bundle, "replace": replace}
                    last = self.node.watcher.last_header() if self.node.watcher is not None else None
                    if last is not None:  # lets a member that missed rotations skip to L1's epochs
                        body["header"], body["signatures"] = last.header.encode(), last.signatures
                    await self.node.host.call("epoch_import", body)
                    await self.node.refresh_status()
            except EnclaveError as exc:
                log.info("%s: epoch %d bundle refused by the enclave: %s", self.cfg.name, epoch, exc)
                continue
            log.info("%s: imported epoch %d keys%s", self.cfg.name, epoch, " (replacing a candidate)" if replace else "")
            await self.node.persist()
            return True
        return False

    async def catch_up(self) -> None:
        """After a restart or a missed rotation: fetch the epochs L1 uses (and the grace window)."""
        if self.node.epoch is None or self.node.watcher is None:
            return
        target = self.node.l1_epoch()
        if self.node.epoch >= target:
            return
        grace = int(self.cfg.enclave.get("epoch_grace", 1))
        for e in range(max(self.node.epoch + 1, target - grace), target + 1):
            if e not in self.node.epochs_held:
                await self._fetch_epoch(e)

    async def ensure_proposal_epoch(self, header: Header, proposer: str) -> None:
        """A voter: hold the keys of the epoch the proposal uses (fetched from its proposer when
        it rotated; a different candidate for an unanchored epoch is replaced by the proposal's)."""
        assert self.node.host is not None
        e = header.epoch
        if e < self.node.l1_epoch():
            raise Refused(f"proposal uses epoch {e}, older than epoch {self.node.l1_epoch()} on L1")
        if e in self.node.epochs_held and e <= self.node.l1_epoch():
            return
        held = await self.node.host.call("epochs")
        pub = (held.get("held") or {}).get(e)
        if pub is not None and bytes(pub) == header.epoch_key:
            return
        p = self.node.peer_for(proposer)
        ok = await self._fetch_epoch(e, replace=pub is not None, peers=[p] if p is not None else None)
        if not ok:
            raise Refused(f"this enclave does not hold the keys of epoch {e} that the proposal uses")
