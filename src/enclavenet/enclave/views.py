"""Signed view calls and gas estimates: EIP-712 typed data, so ``msg.sender`` is real.

A user signs, with their ordinary Ethereum key (any EIP-712 wallet, e.g. eth-account's
``sign_typed_data``), the typed data::

    domain  EIP712Domain(string name, string version, uint256 chainId, address verifyingContract, bytes32 salt)
            = {name: "EnclaveNet", version: "2", chainId: <EnclaveNet chain id>,
               verifyingContract: <the Rollup on L1>, salt: <the L1 chain id as a uint256 word>}
    message ViewCall(address from, address to, bytes data, uint256 value, uint256 gas, uint256 epoch,
                     uint256 nonce, uint256 expiry)

puts ``{from, to, data, value, gas, epoch, nonce, expiry, sig}`` (CBOR map; addresses 20 bytes,
``sig`` the 65-byte r||s||v signature) in an envelope sealed to the epoch key ``epoch`` and
hands the envelope to a node. ``to`` = the zero address with ``data`` = init code estimates a
contract creation. ``nonce`` is any number the user never used for a view before (random);
``expiry`` (unix seconds) at most ``MAX_VIEW_TTL`` ahead: the enclave answers each signed
request once, before it expires (``ViewReplayGuard``), so a host cannot replay a view to learn
when its value changes. The enclave answers with the result sealed under the envelope's
receipt key with a random nonce (``crypto.envelope.seal_result``), so only the requester reads
it and two answers never compare equal. The domain binds one deployment (the Rollup and its L1
chain): a signature for another deployment's enclaves is refused.

**Viewing sessions** (the gateway, docs/GATEWAY.md): a user who does not want to sign every view
authorises a *session key* once, by signing in the same domain::

    message ViewingSession(address account, address sessionKey, uint256 expiry)

and whoever holds the session key (the user's own gateway) then signs each ``ViewCall`` with it.
The request carries ``session = {key, expiry, sig}``; the enclave accepts it when ``sig``
recovers to ``from`` (so only ``from`` can authorise a key to speak for ``from``), the session's
``expiry`` (unix seconds) is after the enclave's time, and the request's own ``sig`` recovers to
``key``. The deployment is bound by the domain; the epoch, nonce and expiry of each request by
its ``ViewCall``, which the replay guard checks as for any view.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from ..crypto.hashing import ZERO32, addr_word, keccak256, to_checksum, u256
from ..crypto.secp256k1 import SignatureError, recover_address
from .codec import U64_MAX, Request, decode_map
from .errors import EnclaveRefusal

EIP712_DOMAIN_TYPEHASH = keccak256(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract,bytes32 salt)"
)
VIEW_CALL_TYPEHASH = keccak256(
    b"ViewCall(address from,address to,bytes data,uint256 value,uint256 gas,uint256 epoch,uint256 nonce,uint256 expiry)"
)
DOMAIN_NAME = "EnclaveNet"
DOMAIN_VERSION = "2"
MAX_VIEW_TTL = 600  # seconds: how far ahead a view request's expiry may be
MAX_LIVE_VIEWS = 100_000  # signed requests remembered until they expire (replay guard)
MAX_LIVE_VIEWS_PER_SENDER = 256
VIEWING_SESSION_TYPEHASH = keccak256(b"ViewingSession(address account,address sessionKey,uint256 expiry)")
ZERO_ADDRESS = "0x" + "00" * 20
MAX_VIEW_GAS = 30_000_000
MAX_VIEW_DATA = 128 * 1024


@dataclass(frozen=True)
class ViewDomain:
    """The deployment a view signature is for: EnclaveNet chain id, L1 chain id, Rollup address."""

    chain_id: int
    l1_chain_id: int
    rollup: str


def domain_separator(domain: ViewDomain) -> bytes:
    return keccak256(
        EIP712_DOMAIN_TYPEHASH,
        keccak256(DOMAIN_NAME.encode()),
        keccak256(DOMAIN_VERSION.encode()),
        u256(domain.chain_id),
        addr_word(domain.rollup),
        u256(domain.l1_chain_id),
    )


def view_call_digest(
    domain: ViewDomain, sender: str, to: str, data: bytes, value: int, gas: int, epoch: int, nonce: int, expiry: int
) -> bytes:
    """The EIP-712 digest ``keccak256(0x1901 || domainSeparator || hashStruct(ViewCall))``."""
    struct_hash = keccak256(
        VIEW_CALL_TYPEHASH,
        addr_word(sender),
        addr_word(to),
        keccak256(data),
        u256(value),
        u256(gas),
        u256(epoch),
        u256(nonce),
        u256(expiry),
    )
    return keccak256(b"\x19\x01", domain_separator(domain), struct_hash)


def _domain_json(domain: ViewDomain) -> tuple[list[dict[str, str]], dict[str, object]]:
    fields = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
        {"name": "salt", "type": "bytes32"},
    ]
    values: dict[str, object] = {
        "name": DOMAIN_NAME,
        "version": DOMAIN_VERSION,
        "chainId": domain.chain_id,
        "verifyingContract": to_checksum(domain.rollup),
        "salt": u256(domain.l1_chain_id),
    }
    return fields, values


def session_digest(domain: ViewDomain, account: str, session_key: str, expiry: int) -> bytes:
    """The EIP-712 digest of ``ViewingSession(account, sessionKey, expiry)`` in the view domain."""
    struct_hash = keccak256(VIEWING_SESSION_TYPEHASH, addr_word(account), addr_word(session_key), u256(expiry))
    return keccak256(b"\x19\x01", domain_separator(domain), struct_hash)


def session_typed_data(domain: ViewDomain, account: str, session_key: str, expiry: int) -> dict[str, object]:
    """The viewing-session statement as JSON-able typed data (what a wallet is asked to sign)."""
    fields, values = _domain_json(domain)
    return {
        "types": {
            "EIP712Domain": fields,
            "ViewingSession": [
                {"name": "account", "type": "address"},
                {"name": "sessionKey", "type": "address"},
                {"name": "expiry", "type": "uint256"},
            ],
        },
        "primaryType": "ViewingSession",
        "domain": values,
        "message": {"account": account, "sessionKey": session_key, "expiry": expiry},
    }


def typed_data(
    domain: ViewDomain, sender: str, to: str, data: bytes, value: int, gas: int, epoch: int, nonce: int, expiry: int
) -> dict[str, object]:
    """The same typed data as a JSON-able dict (what ``eth_account`` / wallets sign)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
                {"name": "salt", "type": "bytes32"},
            ],
            "ViewCall": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "data", "type": "bytes"},
                {"name": "value", "type": "uint256"},
                {"name": "gas", "type": "uint256"},
                {"name": "epoch", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "expiry", "type": "uint256"},
            ],
        },
        "primaryType": "ViewCall",
        "domain": {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": domain.chain_id,
            "verifyingContract": to_checksum(domain.rollup),
            "salt": u256(domain.l1_chain_id),
        },
        "message": {
            "from": sender, "to": to, "data": data, "value": value, "gas": gas, "epoch": epoch,
            "nonce": nonce, "expiry": expiry,
        },
    }


@dataclass(frozen=True)
class ViewRequest:
    sender: str
    to: str  # ZERO_ADDRESS: estimate a contract creation with ``data`` as init code
    data: bytes
    value: int
    gas: int
    epoch: int
    nonce: int
    expiry: int
    digest: bytes  # the signed EIP-712 digest: the request's identity for the replay guard

    @property
    def is_create(self) -> bool:
        return self.to == ZERO_ADDRESS


def parse_view_request(
    plaintext: bytes, domain: ViewDomain, envelope_epoch: int, now: int | None = None
) -> ViewRequest:
    """Decode and authenticate the plaintext of a view-call envelope. Raises EnclaveRefusal.

    ``now`` (the enclave's time, unix seconds) is needed to accept a request signed under a
    viewing session.
    """
    what = "view request"
    r = Request(decode_map(plaintext, what), what)
    sender = r.address("from")
    to = r.address("to")
    data = r.blob("data", max_len=MAX_VIEW_DATA)
    value = r.integer("value", default=0)
    gas = r.integer("gas", lo=21_000, hi=MAX_VIEW_GAS)
    epoch = r.integer("epoch", hi=U64_MAX)
    if not (r.has("nonce") and r.has("expiry")):
        raise EnclaveRefusal(f"{what}: needs a nonce and an expiry (sign the ViewCall of this program version)")
    nonce = r.integer("nonce")
    expiry = r.integer("expiry", hi=U64_MAX)
    sig = r.blob("sig", length=65)
    if epoch != envelope_epoch:
        raise EnclaveRefusal(
            f"{what}: signed for epoch {epoch} but sealed to epoch {envelope_epoch}"
        )
    digest = view_call_digest(domain, sender, to, data, value, gas, epoch, nonce, expiry)
    try:
        signer = recover_address(digest, sig)
    except SignatureError as exc:
        raise EnclaveRefusal(f"{what}: bad signature ({exc})") from None
    if r.has("session"):
        s = r.map("session")
        key = s.address("key")
        session_expiry = s.integer("expiry", hi=U64_MAX)
        if now is None or session_expiry <= now:
            raise EnclaveRefusal(f"{what}: the viewing session expired at {session_expiry}; authorise a new one")
        try:
            authoriser = recover_address(session_digest(domain, sender, key, session_expiry), s.blob("sig", length=65))
        except SignatureError as exc:
            raise EnclaveRefusal(f"{what}: bad viewing-session signature ({exc})") from None
        if authoriser != sender:
            raise EnclaveRefusal(
                f"{what}: the viewing session is not signed by 'from' (it authorises a key for another account, "
                "another deployment or another expiry)"
            )
        if signer != key:
            raise EnclaveRefusal(f"{what}: the request is not signed by the viewing session's key")
    elif signer != sender:
        raise EnclaveRefusal(
            f"{what}: the signature is not by 'from' (wrong key, chain id, deployment or altered fields)"
        )
    return ViewRequest(sender, to, data, value, gas, epoch, nonce, expiry, digest)


class ViewReplayGuard:
    """Each signed view request is answered once, before its expiry, and no later than
    ``MAX_VIEW_TTL`` ahead. ``now`` is the enclave's monotonic view of time (the caller passes
    the max of the platform clock and the head's timestamp; it never goes back). Remembered
    requests are dropped once expired, so memory is bounded by the requests live in a window
    (at most ``MAX_LIVE_VIEWS``, ``MAX_LIVE_VIEWS_PER_SENDER`` per sender)."""

    def __init__(self) -> None:
        self._seen: dict[bytes, str] = {}  # digest -> sender
        self._by_expiry: list[tuple[int, bytes]] = []  # heap of (expiry, digest)
        self._per_sender: dict[str, int] = {}
        self._now = 0

    def now(self, *clocks: int) -> int:
        self._now = max(self._now, *clocks)
        return self._now

    def admit(self, req: ViewRequest, now: int) -> None:
        what = "view request"
        if req.expiry < now:
            raise EnclaveRefusal(f"{what}: expired at {req.expiry} (enclave time {now}); sign a new one")
        if req.expiry > now + MAX_VIEW_TTL:
            raise EnclaveRefusal(
                f"{what}: expiry {req.expiry} is more than {MAX_VIEW_TTL} s ahead of enclave time {now}"
            )
        self._prune(now)
        if req.digest in self._seen:
            raise EnclaveRefusal(f"{what}: already answered (a replay); sign a new one with a fresh nonce")
        if len(self._seen) >= MAX_LIVE_VIEWS or self._per_sender.get(req.sender, 0) >= MAX_LIVE_VIEWS_PER_SENDER:
            raise EnclaveRefusal(f"{what}: too many live view requests; retry after some expire")
        self._seen[req.digest] = req.sender
        heapq.heappush(self._by_expiry, (req.expiry, req.digest))
        self._per_sender[req.sender] = self._per_sender.get(req.sender, 0) + 1

    def _prune(self, now: int) -> None:
        heap = self._by_expiry
        while heap and heap[0][0] < now:
            _, d = heapq.heappop(heap)
            sender = self._seen.pop(d)
            n = self._per_sender[sender] - 1
            if n:
                self._per_sender[sender] = n
            else:
                del self._per_sender[sender]


__all__ = [
    "MAX_VIEW_TTL",
    "ZERO32",
    "ViewDomain",
    "ViewReplayGuard",
    "ViewRequest",
    "domain_separator",
    "parse_view_request",
    "session_digest",
    "session_typed_data",
    "typed_data",
    "view_call_digest",
]
