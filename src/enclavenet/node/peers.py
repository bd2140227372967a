"""Links between nodes: CBOR over HTTP POST ``/peer/<op>`` on each node's RPC port.

The host is a courier: what crosses is enclave output (quotes, header signatures, encrypted
epoch bundles, encrypted envelopes and receipts) and public L1 data. Nothing a peer says is
believed on its word: proposals carry the proposer enclave's signature on the header and
the voter's enclave re-executes them; votes are enclave signatures checked against the
Registry; quotes are verified by the enclave; envelopes are self-authenticating.

Ops: ``identity``, ``epoch_bundle``, ``epoch_push``, ``txs``, ``propose``, ``announce`` (a QC'd
batch with the proposer enclave's sealed state diff, for a member outside the QC: kept, not
re-executed), ``batch``, ``snapshot``. A refusal is HTTP 400 with CBOR ``{"error": message}``.

**Authenticated ops** (issue 14, M4): the ops in :data:`AUTH_OPS` cost the receiver enclave time
or disk reads, and are served to committee members only. The sender's enclave signs each request
(``peer_auth`` ecall, ``crypto.peer.peer_request_digest``: receiver, op, body hash, expiry) and
the signature travels in the :data:`PEER_AUTH_HEADER` HTTP header as ``signer:expiry:sig``; the
receiver checks it recovers to an active member on L1, is for itself and has not expired.
``committee_sign`` is one of them. ``identity`` stays open (discovery), ``txs`` too (what anyone may send to the public RPC:
a ``txs`` burst signed by a member is believed to have authenticated routing hints, an unsigned one is checked envelope
by envelope, node/ingress.py), and
``propose`` carries the proposer enclave's signature on the header already.

**Hostile host (fault injection).** Every outgoing message of a node passes its ``LinkFaults``
policy: a host that drops (the request, or the answer after the peer acted on it), delays,
reorders (random extra delay, so later messages overtake earlier ones) or replays (a second
copy of the same bytes later) messages. The policy is per node, changed at runtime by the
``enclavenet_adminFaults`` JSON-RPC method, which exists only when the node runs with
``allow_faults`` (docs/FAULTS.md). It is real: the bytes really are not sent, sent late or sent
twice; the receivers see exactly what a hostile network would give them.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import cbor2

log = logging.getLogger(__name__)

MAX_PEER_BODY = 64 * 1024 * 1024
AUTH_OPS = frozenset({"snapshot", "batch", "announce", "epoch_push", "epoch_bundle", "committee_sign"})
PEER_AUTH_HEADER = "X-EnclaveNet-Peer-Auth"
PEER_AUTH_TTL = 60  # seconds a signed peer request is good for
#: signs a request for a peer: (peer, op, body) -> the PEER_AUTH_HEADER value
Authenticator = Callable[["PeerClient", str, bytes], Awaitable[str]]
_replays: set[asyncio.Task[None]] = set()  # background replays (kept referenced until done)


class PeerError(Exception):
    """A peer refused a request or could not be reached; the message says which and why."""


FAULT_KINDS = ("drop", "delay", "reorder", "replay", "cut")


@dataclass
class LinkFaults:
    """A hostile host's policy for the messages a node sends to its peers.

    ``drop``, ``reorder``, ``replay``: probabilities in [0, 1] per message (a dropped message is
    lost on the way there or its answer on the way back); ``cut``: probability that the request
    never reaches the peer (a cut link: what a host that withholds a message to some peers does);
    ``delay``: seconds
    added to every message; ``reorder_window``: the largest random extra delay of a reordered
    message; ``ops``: only these peer ops are affected (empty: all but ``identity``); ``peers``:
    only messages to these peer URLs (empty: all). ``injected`` counts what was done.
    """

    drop: float = 0.0
    cut: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    replay: float = 0.0
    reorder_window: float = 0.3
    ops: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    seed: int | None = None
    injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULT_KINDS, 0))
    _rng: random.Random = field(default_factory=random.Random, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinkFaults:
        """Parse an admin request; raises ValueError naming the bad field."""
        if not isinstance(d, dict):
            raise ValueError("a link fault policy is an object {drop, delay, reorder, replay, ...}")
        unknown = sorted(set(d) - {"drop", "cut", "delay", "reorder", "replay", "reorder_window", "ops", "peers", "seed"})
        if unknown:
            raise ValueError(f"unknown link fault field(s): {', '.join(unknown)}")
        out = cls()
        for k in ("drop", "cut", "reorder", "replay"):
            v = d.get(k, 0.0)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= 1.0:
                raise ValueError(f"link fault {k!r} must be a probability in [0, 1]")
            setattr(out, k, float(v))
        for k in ("delay", "reorder_window"):
            v = d.get(k, getattr(out, k))
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= 30.0:
                raise ValueError(f"link fault {k!r} must be a number of seconds in [0, 30]")
            setattr(out, k, float(v))
        for k in ("ops", "peers"):
            v = d.get(k, [])
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ValueError(f"link fault {k!r} must be a list of strings")
            setattr(out, k, [x.rstrip("/") for x in v])
        seed = d.get("seed")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
            raise ValueError("link fault 'seed' must be an integer")
        out.seed = seed
        out._rng = random.Random(seed)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"drop": self.drop, "cut": self.cut, "delay": self.delay, "reorder": self.reorder, "replay": self.replay,
                "reorder_window": self.reorder_window, "ops": list(self.ops), "peers": list(self.peers),
                "injected": dict(self.injected)}

    @property
    def active(self) -> bool:
        return bool(self.drop or self.cut or self.delay or self.reorder or self.replay)

    def applies(self, url: str, op: str) -> bool:
        if not self.active:
            return False
        if self.ops:
            if op not in self.ops:
                return False
        elif op == "identity":
            return False
        return not self.peers or url in self.peers

    def roll(self, p: float) -> bool:
        return p > 0 and self._rng.random() < p

    def uniform(self, hi: float) -> float:
        return self._rng.uniform(0.0, hi)


class PeerClient:
    def __init__(self, url: str, session: aiohttp.ClientSession, faults: LinkFaults | None = None) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.faults = faults  # shared by every link of the node (a hostile host)
        self.address: str | None = None
        self.tee_type: int | None = None
        self.quote: bytes | None = None
        self.failures = 0
        self.inflight_forwards = 0
        self.authenticate: Authenticator | None = None  # set by the node once its enclave runs

    def __repr__(self) -> str:
        return f"PeerClient({self.url}, {self.address})"

    async def call(self, op: str, body: dict[str, Any], *, timeout: float = 30.0) -> dict[str, Any]:
        return await self.call_raw(op, cbor2.dumps(body), timeout=timeout)

    async def call_raw(self, op: str, data: bytes, *, timeout: float = 30.0, auth: str | None = None) -> dict[str, Any]:
        """``call`` with a body already CBOR-encoded (one encoding for many peers); ``auth``: a
        PEER_AUTH_HEADER value signed already (a ``txs`` burst, signed once for every peer)."""
        headers = {"Content-Type": "application/cbor"}
        if auth is not None:
            headers[PEER_AUTH_HEADER] = auth
        elif op in AUTH_OPS and self.authenticate is not None:
            headers[PEER_AUTH_HEADER] = await self.authenticate(self, op, data)
        f = self.faults
        if f is not None and f.applies(self.url, op):
            return await self._faulty_call(f, op, data, timeout, headers)
        return await self._post(op, data, timeout, headers)

    async def _faulty_call(
        self, f: LinkFaults, op: str, data: bytes, timeout: float, headers: dict[str, str]
    ) -> dict[str, Any]:
        """The message through a hostile host: maybe late, out of order, twice, or lost."""
        if f.roll(f.cut):
            f.injected["cut"] += 1
            await asyncio.sleep(min(0.05, timeout))
            self.failures += 1
            raise PeerError(f"peer {self.url} unreachable for {op}: link cut (fault injection)")
        wait = f.delay
        if f.delay:
            f.injected["delay"] += 1
        if f.roll(f.reorder):
            f.injected["reorder"] += 1
            wait += f.uniform(f.reorder_window)
        if wait:
            await asyncio.sleep(min(wait, timeout))
        if f.roll(f.replay):
            f.injected["replay"] += 1
            task = asyncio.get_running_loop().create_task(
                self._replay(op, data, timeout, f.uniform(f.reorder_window), headers)
            )
            _replays.add(task)
            task.add_done_callback(_replays.discard)
        if f.roll(f.drop):
            f.injected["drop"] += 1
            if f.roll(0.5):  # the request is lost: the peer never sees it; the sender waits in vain
                await asyncio.sleep(min(0.2, timeout))
                self.failures += 1
                raise PeerError(f"peer {self.url} unreachable for {op}: message dropped (fault injection)")
            # the answer is lost: the peer acted on the request, the sender never hears back
            try:
                await self._post(op, data, timeout, headers)
            except PeerError:
                pass
            self.failures += 1
            raise PeerError(f"peer {self.url} unreachable for {op}: answer dropped (fault injection)")
        return await self._post(op, data, timeout, headers)

    async def _replay(self, op: str, data: bytes, timeout: float, after: float, headers: dict[str, str]) -> None:
        await asyncio.sleep(after)
        try:
            await self._post(op, data, timeout, headers)
        except PeerError as exc:  # a refused replay is what we expect
            log.debug("replayed %s to %s: %s", op, self.url, exc)

    async def _post(self, op: str, data: bytes, timeout: float, headers: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            async with self.session.post(
                f"{self.url}/peer/{op}",
                data=data,
                headers=headers or {"Content-Type": "application/cbor"},
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.failures += 1
            raise PeerError(f"peer {self.url} unreachable for {op}: {type(exc).__name__} {exc}".strip()) from None
        try:
            out = cbor2.loads(raw) if raw else {}
        except Exception:
            raise PeerError(f"peer {self.url} answered {op} with non-CBOR (HTTP {status})") from None
        if status != 200 or not isinstance(out, dict):
            msg = out.get("error") if isinstance(out, dict) else None
            raise PeerError(f"peer {self.url} refused {op}: {msg or f'HTTP {status}'}")
        self.failures = 0
        return out
