"""Per-contract state keys with a rotation policy (RaceTEE's "rotate every N executions").

A contract's admin (the EOA that deployed it with a top-level creation) sets its policy with a
transaction to the reserved system address ``KEY_POLICY_ADDRESS`` (0x...57d1)::

    calldata = contract (20) || every_n (uint64 BE, >= 1) || keep_history (1 byte: 0 or 1)
               || deploy_nonce (uint64 BE: the admin's nonce when it created the contract)

The executor checks ``create_address(sender, deploy_nonce) == contract`` and that the contract
has code, so the admin needs no extra state. Calling it again changes the policy (switching
``keep_history`` off erases the history keys at once).

From then on the contract has a key chain: ``key_0`` is drawn at the end of the batch that set
the policy, and after every ``every_n`` *executions* -- transactions (signed or L1 inbox calls)
whose top-level target is the contract -- a new key ``key_{r+1}`` is drawn at the end of the
batch. In a sealed snapshot the contract's storage is a section encrypted under its current key
(``seal_section``), not part of the plain storage list. With ``keep_history`` the older keys stay
in the chain (sealed with it), so older sections stay readable; without it they are erased.

Where the randomness comes from. Every member must draw the same key, so it cannot be
``os.urandom``. The program passes ``draw(address, rotation)``, which is
``HKDF(ikm = epoch state subkey "contract-key-v1", salt = previous header hash || height,
info = domain || address || rotation)``. The epoch state key is shared by the committee and
unknown to outsiders, so the output is unpredictable; the header context makes each draw fresh
per rotation (two rotations never share their inputs), and no input is a previous contract key,
so ``key_r`` says nothing about ``key_{r+1}`` (backward secrecy) and an erased ``key_r`` cannot be
recomputed from the chain the enclave keeps (forward secrecy; recomputing it needs the epoch key
of its epoch, itself erased after the epoch grace window).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..crypto.hashing import keccak256
from .errors import EnclaveRefusal

KEY_POLICY_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d1")
POLICY_CALLDATA_LEN = 20 + 8 + 1 + 8
MAX_KEPT_KEYS = 4096  # keep_history: a bound on the chain (older keys are erased beyond it)
CONTRACT_KEY_INFO = b"EnclaveNet.ContractKey.v1"
SECTION_INFO = b"EnclaveNet.ContractSection.v1"

KeyDraw = Callable[[bytes, int], bytes]


class ContractKeyError(EnclaveRefusal):
    """A contract key operation failed (no secret in the message)."""


def derive_contract_key(secret: bytes, context: bytes, address: bytes, rotation: int) -> bytes:
    """HKDF-SHA256(ikm=secret, salt=context, info=domain || address || rotation(8))."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=context, info=CONTRACT_KEY_INFO + address + rotation.to_bytes(8, "big")
    ).derive(secret)


def _rlp_create_address(sender: bytes, nonce: int) -> bytes:
    if nonce == 0:
        n = b"\x80"
    elif nonce < 0x80:
        n = bytes([nonce])
    else:
        nb = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
        n = bytes([0x80 + len(nb)]) + nb
    payload = b"\x94" + sender + n
    return keccak256(bytes([0xC0 + len(payload)]) + payload)[12:]


@dataclass(frozen=True)
class PolicyCall:
    contract: bytes
    every_n: int
    keep_history: bool
    deploy_nonce: int

    @classmethod
    def parse(cls, data: bytes) -> PolicyCall:
        if len(data) != POLICY_CALLDATA_LEN:
            raise ContractKeyError(
                f"key policy calldata must be {POLICY_CALLDATA_LEN} bytes: contract (20) || every_n (8) || "
                f"keep_history (1) || deploy_nonce (8); got {len(data)}"
            )
        every_n = int.from_bytes(data[20:28], "big")
        if every_n < 1:
            raise ContractKeyError("key policy every_n must be at least 1")
        if data[28] not in (0, 1):
            raise ContractKeyError("key policy keep_history must be 0 or 1")
        return cls(data[:20], every_n, data[28] == 1, int.from_bytes(data[29:37], "big"))

    def admin_ok(self, sender: bytes) -> bool:
        return _rlp_create_address(sender, self.deploy_nonce) == self.contract


@dataclass
class ContractKeyChain:
    """One contract's policy, execution counter and keys (``keys[rotation]``; erased = absent)."""

    every_n: int
    keep_history: bool
    count: int = 0  # executions since the last rotation
    rotation: int = -1  # index of the current key (-1: not drawn yet)
    keys: dict[int, bytes] = field(default_factory=dict)

    def __repr__(self) -> str:  # keys never in a repr
        return f"ContractKeyChain(every_n={self.every_n}, keep_history={self.keep_history}, rotation={self.rotation})"

    def copy(self) -> ContractKeyChain:
        return ContractKeyChain(self.every_n, self.keep_history, self.count, self.rotation, dict(self.keys))

    @property
    def current_key(self) -> bytes:
        return self.keys[self.rotation]

    def advance(self, address: bytes, draw: KeyDraw) -> bool:
        """Draw key_0 if none yet, then one new key per ``every_n`` counted executions."""
        changed = False
        if self.rotation < 0:
            self._draw(address, draw)
            changed = True
        while self.count >= self.every_n:
            self.count -= self.every_n
            self._draw(address, draw)
            changed = True
        return changed

    def _draw(self, address: bytes, draw: KeyDraw) -> None:
        self.rotation += 1
        self.keys[self.rotation] = draw(address, self.rotation)
        self.prune()

    def prune(self) -> None:
        """Erase the history keys (all of them without keep_history; beyond the bound with it)."""
        keep = MAX_KEPT_KEYS if self.keep_history else 1
        for r in [r for r in self.keys if r <= self.rotation - keep]:
            del self.keys[r]

    def to_cbor(self, address: bytes) -> list[object]:
        return [address, self.every_n, self.keep_history, self.count, self.rotation, [[r, k] for r, k in sorted(self.keys.items())]]

    @classmethod
    def from_cbor(cls, item: object) -> tuple[bytes, ContractKeyChain]:
        bad = ContractKeyError("snapshot contract_keys entry is malformed")
        if not isinstance(item, list) or len(item) != 6:
            raise bad
        address, every_n, keep, count, rotation, keys = item
        if not (
            isinstance(address, bytes) and len(address) == 20 and type(every_n) is int and every_n >= 1
            and isinstance(keep, bool) and type(count) is int and count >= 0
            and type(rotation) is int and rotation >= 0 and isinstance(keys, list)
        ):
            raise bad
        chain_keys: dict[int, bytes] = {}
        for kv in keys:
            if not (isinstance(kv, list) and len(kv) == 2 and type(kv[0]) is int and 0 <= kv[0] <= rotation
                    and isinstance(kv[1], bytes) and len(kv[1]) == 32):
                raise bad
            chain_keys[kv[0]] = kv[1]
        if rotation not in chain_keys:
            raise bad
        return address, cls(every_n, keep, count, rotation, chain_keys)


def _section_keys(key: bytes) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=SECTION_INFO).derive(key)
    return okm[:32], okm[32:]


def seal_section(key: bytes, address: bytes, rotation: int, plain: bytes) -> bytes:
    """Deterministic AEAD of one contract's storage (synthetic IV: equal input, equal bytes on
    every member; the IV is an HMAC of the plaintext, so a nonce repeats only with the plaintext)."""
    enc_key, mac_key = _section_keys(key)
    aad = address + rotation.to_bytes(8, "big")
    iv = hmac.new(mac_key, aad + plain, hashlib.sha256).digest()[:12]
    return iv + AESGCM(enc_key).encrypt(iv, plain, aad)


def open_section(key: bytes, address: bytes, rotation: int, blob: bytes) -> bytes:
    enc_key, _ = _section_keys(key)
    aad = address + rotation.to_bytes(8, "big")
    try:
        return AESGCM(enc_key).decrypt(blob[:12], blob[12:], aad)
    except (InvalidTag, ValueError):
        raise ContractKeyError(
            f"contract storage section (rotation {rotation}) does not decrypt under this key"
        ) from None


__all__ = [
    "KEY_POLICY_ADDRESS",
    "ContractKeyChain",
    "ContractKeyError",
    "PolicyCall",
    "derive_contract_key",
    "open_section",
    "seal_section",
]
