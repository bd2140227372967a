"""Signed view calls and gas estimates: EIP-712 typed data, so ``msg.sender`` is real.

A user signs, with their ordinary Ethereum key (any EIP-712 wallet, e.g. eth-account's
``sign_typed_data``), the typed data::

    domain  EIP712Domain(string name, string version, uint256 chainId)
            = {name: "EnclaveNet", version: "1", chainId: <EnclaveNet chain id>}
    message ViewCall(address from, address to, bytes data, uint256 value, uint256 gas, uint256 epoch)

puts ``{from, to, data, value, gas, epoch, sig}`` (CBOR map; addresses 20 bytes, ``sig`` the
65-byte r||s||v signature) in an envelope sealed to the epoch key ``epoch`` and hands the
envelope to a node. ``to`` = the zero address with ``data`` = init code estimates a contract
creation. The enclave answers with the result sealed under the envelope's receipt key, so
only the requester reads it.

**Viewing sessions** (the gateway, docs/GATEWAY.md): a user who does not want to sign every view
authorises a *session key* once, by signing in the same domain::

    message ViewingSession(address account, address sessionKey, uint256 expiry)

and whoever holds the session key (the user's own gateway) then signs ``ViewCall`` with it. The
request carries ``session = {key, expiry, sig}``; the enclave accepts it when ``sig`` recovers
to ``from`` (so only ``from`` can authorise a key to speak for ``from``), ``expiry`` (unix
seconds, the platform clock) has not passed, and the request's own ``sig`` recovers to ``key``.
The chain id is bound by the domain; the epoch by the ViewCall.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.hashing import ZERO32, addr_word, keccak256, u256
from ..crypto.secp256k1 import SignatureError, recover_address
from .codec import U64_MAX, Request, decode_map
from .errors import EnclaveRefusal

EIP712_DOMAIN_TYPEHASH = keccak256(b"EIP712Domain(string name,string version,uint256 chainId)")
VIEW_CALL_TYPEHASH = keccak256(
    b"ViewCall(address from,address to,bytes data,uint256 value,uint256 gas,uint256 epoch)"
)
DOMAIN_NAME = "EnclaveNet"
DOMAIN_VERSION = "1"
ZERO_ADDRESS = "0x" + "00" * 20
MAX_VIEW_GAS = 30_000_000
MAX_VIEW_DATA = 128 * 1024
VIEWING_SESSION_TYPEHASH = keccak256(b"ViewingSession(address account,address sessionKey,uint256 expiry)")


def domain_separator(chain_id: int) -> bytes:
    return keccak256(
        EIP712_DOMAIN_TYPEHASH,
        keccak256(DOMAIN_NAME.encode()),
        keccak256(DOMAIN_VERSION.encode()),
        u256(chain_id),
    )


def view_call_digest(
    chain_id: int, sender: str, to: str, data: bytes, value: int, gas: int, epoch: int
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
    )
    return keccak256(b"\x19\x01", domain_separator(chain_id), struct_hash)


def session_digest(chain_id: int, account: str, session_key: str, expiry: int) -> bytes:
    """The EIP-712 digest of ``ViewingSession(account, sessionKey, expiry)`` in the EnclaveNet domain."""
    struct_hash = keccak256(VIEWING_SESSION_TYPEHASH, addr_word(account), addr_word(session_key), u256(expiry))
    return keccak256(b"\x19\x01", domain_separator(chain_id), struct_hash)


def session_typed_data(chain_id: int, account: str, session_key: str, expiry: int) -> dict[str, object]:
    """The viewing-session statement as JSON-able typed data (what a wallet is asked to sign)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "ViewingSession": [
                {"name": "account", "type": "address"},
                {"name": "sessionKey", "type": "address"},
                {"name": "expiry", "type": "uint256"},
            ],
        },
        "primaryType": "ViewingSession",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": {"account": account, "sessionKey": session_key, "expiry": expiry},
    }


def typed_data(chain_id: int, sender: str, to: str, data: bytes, value: int, gas: int, epoch: int) -> dict[str, object]:
    """The same typed data as a JSON-able dict (what ``eth_account`` / wallets sign)."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
            ],
            "ViewCall": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "data", "type": "bytes"},
                {"name": "value", "type": "uint256"},
                {"name": "gas", "type": "uint256"},
                {"name": "epoch", "type": "uint256"},
            ],
        },
        "primaryType": "ViewCall",
        "domain": {"name": DOMAIN_NAME, "version": DOMAIN_VERSION, "chainId": chain_id},
        "message": {"from": sender, "to": to, "data": data, "value": value, "gas": gas, "epoch": epoch},
    }


@dataclass(frozen=True)
class ViewRequest:
    sender: str
    to: str  # ZERO_ADDRESS: estimate a contract creation with ``data`` as init code
    data: bytes
    value: int
    gas: int
    epoch: int

    @property
    def is_create(self) -> bool:
        return self.to == ZERO_ADDRESS


def parse_view_request(plaintext: bytes, chain_id: int, envelope_epoch: int, now: int | None = None) -> ViewRequest:
    """Decode and authenticate the plaintext of a view-call envelope. Raises EnclaveRefusal.

    ``now`` (unix seconds) is needed to accept a request signed under a viewing session.
    """
    what = "view request"
    r = Request(decode_map(plaintext, what), what)
    sender = r.address("from")
    to = r.address("to")
    data = r.blob("data", max_len=MAX_VIEW_DATA)
    value = r.integer("value", default=0)
    gas = r.integer("gas", lo=21_000, hi=MAX_VIEW_GAS)
    epoch = r.integer("epoch", hi=U64_MAX)
    sig = r.blob("sig", length=65)
    if epoch != envelope_epoch:
        raise EnclaveRefusal(
            f"{what}: signed for epoch {epoch} but sealed to epoch {envelope_epoch}"
        )
    digest = view_call_digest(chain_id, sender, to, data, value, gas, epoch)
    try:
        signer = recover_address(digest, sig)
    except SignatureError as exc:
        raise EnclaveRefusal(f"{what}: bad signature ({exc})") from None
    if r.has("session"):
        s = r.map("session")
        key = s.address("key")
        expiry = s.integer("expiry", hi=U64_MAX)
        if now is None or expiry <= now:
            raise EnclaveRefusal(f"{what}: the viewing session expired at {expiry}; authorise a new one")
        try:
            authoriser = recover_address(session_digest(chain_id, sender, key, expiry), s.blob("sig", length=65))
        except SignatureError as exc:
            raise EnclaveRefusal(f"{what}: bad viewing-session signature ({exc})") from None
        if authoriser != sender:
            raise EnclaveRefusal(
                f"{what}: the viewing session is not signed by 'from' (it authorises a key for another account, "
                "another chain or another expiry)"
            )
        if signer != key:
            raise EnclaveRefusal(f"{what}: the request is not signed by the viewing session's key")
    elif signer != sender:
        raise EnclaveRefusal(
            f"{what}: the signature is not by 'from' (wrong key, chain id or altered fields)"
        )
    return ViewRequest(sender, to, data, value, gas, epoch)


__all__ = [
    "ZERO32",
    "ViewRequest",
    "domain_separator",
    "parse_view_request",
    "session_digest",
    "session_typed_data",
    "typed_data",
    "view_call_digest",
]
