"""Enclave keys: the enclave's identity and the committee's per-epoch keys.

``EnclaveIdentity``
    A secp256k1 signing key (its address is what the L1 Registry knows and what QCs recover)
    and an X25519 encryption key (its hash ``enc_key_hash`` goes into the quote), generated
    inside the enclave.

``EpochKeyManager``
    Per epoch: a transaction key pair (X25519; its public key is the header's ``epoch_key``
    and what users seal envelopes to) and a 32-byte state key. Each epoch's keys are FRESH
    randomness (``os.urandom``), never derived from the previous epoch's, so a later breach
    cannot read earlier epochs (forward secrecy) and a revoked member cannot read later ones
    (backward secrecy: it is simply not sent the new epoch). Every derivation from an epoch
    key takes the epoch as input (``state_subkey(epoch, purpose)``).

    A new epoch's keys travel only to a member's attested X25519 key:
    ``export_epoch(epoch, member_address, member_enc_pub) -> bundle`` (encrypted, bound to the
    epoch and member address, signed by the exporter's identity key) and
    ``import_epoch(bundle, allowed_exporters)`` (checks the signer is in the allowed set,
    the bundle is addressed to this enclave, and decrypts).

    Old epochs' private keys are erased after a grace window, in epochs (``grace_epochs``)
    and/or seconds (``grace_seconds``) after they were superseded, or explicitly with
    ``erase_before(epoch)``. Asking for an erased or unknown epoch raises ``EpochKeyError``
    ("epoch 3 keys were erased" / "unknown epoch 7").

Nothing here ever puts a key into a ``repr``, a log line or an exception message.
Python cannot guarantee memory is wiped; erasure drops every reference and overwrites the
state key's buffer (best effort, documented in docs/TEE.md).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..crypto.envelope import Envelope, OpenedEnvelope, open_envelope
from ..crypto.hashing import address_bytes, domain_tag, keccak256, to_checksum
from ..crypto.quote import enc_key_hash
from ..crypto.secp256k1 import SignatureError, SigningKey, recover_address

__all__ = ["EnclaveIdentity", "EpochKeyError", "EpochKeyManager", "EpochKeys"]

EXPORT_DOMAIN = b"EnclaveNet.EpochExport.v1"
EXPORT_SIG_DOMAIN = domain_tag("EnclaveNet.EpochExport.v1")
STATE_SUBKEY_INFO = b"EnclaveNet.StateSubkey.v1"
MAX_BUNDLE_BYTES = 4096


class EpochKeyError(ValueError):
    """An epoch key is unknown, erased, or a bundle is refused. Never carries a secret."""


def _x25519_raw(priv: X25519PrivateKey) -> bytes:
    return priv.private_bytes_raw()


# --------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class EnclaveIdentity:
    """An enclave's long-term keys (generated inside the enclave; sealed to survive restarts)."""

    signing_key: SigningKey = field(repr=False)
    enc_key: X25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls) -> EnclaveIdentity:
        return cls(SigningKey.generate(), X25519PrivateKey.generate())

    @property
    def address(self) -> str:
        """Checksummed secp256k1 address (Registry, QC signer)."""
        return self.signing_key.address

    @property
    def enc_pub(self) -> bytes:
        """The X25519 public key (32 bytes) others encrypt to."""
        return self.enc_key.public_key().public_bytes_raw()

    @property
    def enc_key_hash(self) -> bytes:
        """``crypto.quote.enc_key_hash(enc_pub)``: what the quote binds."""
        return enc_key_hash(self.enc_pub)

    def sign(self, digest: bytes) -> bytes:
        """65-byte r||s||v signature over a 32-byte digest."""
        return self.signing_key.sign(digest)

    def decrypt_from(self, peer_pub: bytes) -> bytes:
        """X25519 shared secret with ``peer_pub`` (raises ValueError on an invalid point)."""
        return self.enc_key.exchange(X25519PublicKey.from_public_bytes(peer_pub))

    def to_secret_bytes(self) -> bytes:
        """SECRET: both private keys as CBOR, to be SEALED (``platform.seal``) and nothing else."""
        return cbor2.dumps({"v": 1, "sign": self.signing_key.secret, "enc": _x25519_raw(self.enc_key)})

    @classmethod
    def from_secret_bytes(cls, data: bytes) -> EnclaveIdentity:
        try:
            m = cbor2.loads(data)
            return cls(SigningKey(bytes(m["sign"])), X25519PrivateKey.from_private_bytes(bytes(m["enc"])))
        except Exception:
            raise ValueError("not a valid serialized enclave identity") from None

    def __repr__(self) -> str:
        return f"EnclaveIdentity(address={self.address})"


# --------------------------------------------------------------------------- epoch keys


class EpochKeys:
    """One epoch's secrets. ``repr`` shows the epoch and public key only."""

    __slots__ = ("_state_key", "_tx_key", "epoch", "superseded_at", "tx_pub")

    def __init__(self, epoch: int, tx_key: X25519PrivateKey, state_key: bytes) -> None:
        if len(state_key) != 32:
            raise ValueError("a state key has 32 bytes")
        self.epoch = epoch
        self._tx_key: X25519PrivateKey | None = tx_key
        self._state_key = bytearray(state_key)
        self.tx_pub = tx_key.public_key().public_bytes_raw()
        self.superseded_at: float | None = None

    @classmethod
    def fresh(cls, epoch: int) -> EpochKeys:
        """Fresh randomness: never derived from another epoch's keys."""
        return cls(epoch, X25519PrivateKey.from_private_bytes(os.urandom(32)), os.urandom(32))

    def erase(self) -> None:
        for i in range(len(self._state_key)):
            self._state_key[i] = 0
        self._state_key = bytearray()
        self._tx_key = None

    @property
    def erased(self) -> bool:
        return self._tx_key is None

    def __repr__(self) -> str:
        return f"EpochKeys(epoch={self.epoch}, tx_pub=0x{self.tx_pub.hex()}{', erased' if self.erased else ''})"


def _u64(x: int, what: str) -> bytes:
    if not isinstance(x, int) or isinstance(x, bool) or not 0 <= x < 1 << 64:
        raise EpochKeyError(f"{what} must be an integer in 0..2^64-1")
    return struct.pack(">Q", x)


class EpochKeyManager:
    """Holds this enclave's view of the committee's epoch keys.

    ``grace_epochs``: an epoch's private keys are kept while it is one of the newest
    ``grace_epochs + 1`` epochs held (default 1: the current and the previous epoch).
    ``grace_seconds``: additionally (when given), a superseded epoch is erased once it has
    been superseded for that long. ``None`` disables that rule.
    """

    def __init__(
        self,
        identity: EnclaveIdentity,
        *,
        grace_epochs: int | None = 1,
        grace_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if grace_epochs is not None and grace_epochs < 0:
            raise ValueError("grace_epochs must be >= 0")
        if grace_seconds is not None and grace_seconds < 0:
            raise ValueError("grace_seconds must be >= 0")
        self.identity = identity
        self.grace_epochs = grace_epochs
        self.grace_seconds = grace_seconds
        self._clock = clock
        self._epochs: dict[int, EpochKeys] = {}
        self._erased: set[int] = set()
        self._erased_below = 0  # every epoch < this is erased (or was never held)

    def __repr__(self) -> str:
        return f"EpochKeyManager(address={self.identity.address}, epochs={self.epochs()}, current={self.current_epoch})"

    # -- queries
    def epochs(self) -> list[int]:
        """Epochs whose private keys are held (ascending)."""
        return sorted(self._epochs)

    @property
    def current_epoch(self) -> int | None:
        """The newest epoch held, or None."""
        return max(self._epochs) if self._epochs else None

    def has_epoch(self, epoch: int) -> bool:
        self.prune()
        return epoch in self._epochs

    def _get(self, epoch: int) -> EpochKeys:
        self.prune()
        keys = self._epochs.get(epoch)
        if keys is not None:
            return keys
        if epoch in self._erased or epoch < self._erased_below:
            raise EpochKeyError(f"epoch {epoch} keys were erased")
        raise EpochKeyError(f"unknown epoch {epoch}")

    def tx_public_key(self, epoch: int) -> bytes:
        """The epoch's X25519 public key (32 bytes): the header's ``epoch_key``."""
        return self._get(epoch).tx_pub

    def tx_private_key(self, epoch: int) -> X25519PrivateKey:
        """The epoch's X25519 private key (for ``crypto.envelope.open_envelope``)."""
        k = self._get(epoch)._tx_key
        assert k is not None
        return k

    def open_envelope(self, envelope: Envelope | bytes, chain_id: int) -> OpenedEnvelope:
        """Decrypt a user's envelope with the key of the epoch it names (EnvelopeError / EpochKeyError)."""
        env = Envelope.decode(envelope) if isinstance(envelope, bytes | bytearray) else envelope
        return open_envelope(env, self.tx_private_key(env.epoch), chain_id)

    def state_subkey(self, epoch: int, purpose: str | bytes, length: int = 32) -> bytes:
        """HKDF-SHA256(state key, info = "EnclaveNet.StateSubkey.v1" || epoch(8) || purpose).

        Use one purpose per use (e.g. ``"storage-encryption"``, ``"escape-leaf-salt"``).
        """
        p = purpose.encode() if isinstance(purpose, str) else bytes(purpose)
        keys = self._get(epoch)
        return HKDF(
            algorithm=hashes.SHA256(), length=length, salt=None, info=STATE_SUBKEY_INFO + _u64(epoch, "epoch") + p
        ).derive(bytes(keys._state_key))

    # -- lifecycle
    def new_epoch(self, epoch: int) -> bytes:
        """Generate fresh keys for ``epoch`` (must be newer than every epoch held); returns tx_pub."""
        _u64(epoch, "epoch")
        if self._epochs and epoch <= max(self._epochs):
            raise EpochKeyError(f"epoch {epoch} is not newer than the current epoch {max(self._epochs)}")
        if epoch in self._erased or epoch < self._erased_below:
            raise EpochKeyError(f"epoch {epoch} keys were erased; pick a newer epoch")
        self._install(EpochKeys.fresh(epoch))
        return self._epochs[epoch].tx_pub

    def _install(self, keys: EpochKeys) -> None:
        now = self._clock()
        for e, k in self._epochs.items():
            if e < keys.epoch and k.superseded_at is None:
                k.superseded_at = now
        if self._epochs and keys.epoch < max(self._epochs):
            keys.superseded_at = now
        self._epochs[keys.epoch] = keys
        self.prune()

    def erase_before(self, epoch: int) -> list[int]:
        """Erase every epoch < ``epoch`` now; returns the epochs erased."""
        gone = [e for e in self._epochs if e < epoch]
        for e in gone:
            self._erase(e)
        self._erased_below = max(self._erased_below, epoch)
        return sorted(gone)

    def _erase(self, epoch: int) -> None:
        keys = self._epochs.pop(epoch)
        keys.erase()
        self._erased.add(epoch)

    def prune(self, now: float | None = None) -> list[int]:
        """Apply the grace rules (called by every access); returns the epochs erased."""
        gone: list[int] = []
        if self.grace_epochs is not None and len(self._epochs) > self.grace_epochs + 1:
            keep = set(sorted(self._epochs)[-(self.grace_epochs + 1) :])
            gone += [e for e in self._epochs if e not in keep]
        if self.grace_seconds is not None:
            t = self._clock() if now is None else now
            gone += [
                e
                for e, k in self._epochs.items()
                if k.superseded_at is not None and t - k.superseded_at >= self.grace_seconds and e not in gone
            ]
        for e in gone:
            self._erase(e)
        return sorted(gone)

    # -- sharing with committee members
    def export_epoch(self, epoch: int, member_address: str, member_enc_pub: bytes) -> bytes:
        """Encrypt ``epoch``'s keys to one member's ATTESTED X25519 key; sign with our identity.

        The bundle is bound to the epoch, the member's address and its encryption key (HKDF info
        and AEAD associated data); only that member's enclave can open it.
        """
        keys = self._get(epoch)
        member = address_bytes(member_address)
        if len(member_enc_pub) != 32:
            raise EpochKeyError("member_enc_pub must be a 32-byte X25519 public key")
        eph = X25519PrivateKey.generate()
        eph_pub = eph.public_key().public_bytes_raw()
        try:
            shared = eph.exchange(X25519PublicKey.from_public_bytes(member_enc_pub))
        except ValueError:
            raise EpochKeyError("member_enc_pub is not a valid X25519 public key") from None
        key = _bundle_key(shared, epoch, member, eph_pub, member_enc_pub)
        nonce = os.urandom(12)
        assert keys._tx_key is not None
        secret = cbor2.dumps({"tx": _x25519_raw(keys._tx_key), "state": bytes(keys._state_key)})
        aad = _bundle_aad(epoch, member, eph_pub, member_enc_pub, keys.tx_pub)
        body = cbor2.dumps(
            {
                "v": 1,
                "epoch": epoch,
                "member": member,
                "member_enc_pub": bytes(member_enc_pub),
                "tx_pub": keys.tx_pub,
                "eph_pub": eph_pub,
                "nonce": nonce,
                "ct": AESGCM(key).encrypt(nonce, secret, aad),
            },
            canonical=True,
        )
        sig = self.identity.sign(keccak256(EXPORT_SIG_DOMAIN, body))
        return cbor2.dumps({"body": body, "sig": sig}, canonical=True)

    def import_epoch(self, bundle: bytes, allowed_exporters: Iterable[str], *, replace: bool = False) -> int:
        """Verify and install a bundle from ``export_epoch``; returns its epoch.

        Refused (EpochKeyError) when: malformed; signed by someone outside ``allowed_exporters``
        (the caller passes the current committee's registered addresses); addressed to another
        member or another encryption key; does not decrypt; the epoch was erased here; or we
        already hold different keys for that epoch -- unless ``replace`` (the caller allows it
        only for an epoch no accepted header has used yet: two members rotated at once and the
        committee settles on one of their keys). Importing the same keys twice is a no-op.
        """
        allowed = {to_checksum(a) for a in allowed_exporters}
        m = _decode_bundle(bundle)
        try:
            signer = recover_address(keccak256(EXPORT_SIG_DOMAIN, m["body_bytes"]), m["sig"])
        except SignatureError as exc:
            raise EpochKeyError(f"epoch bundle signature is malformed: {exc}") from None
        if signer not in allowed:
            raise EpochKeyError(f"epoch bundle is signed by {signer}, who is not an allowed committee member")
        epoch: int = m["epoch"]
        if m["member"] != address_bytes(self.identity.address):
            raise EpochKeyError(f"epoch {epoch} bundle is addressed to another member")
        if m["member_enc_pub"] != self.identity.enc_pub:
            raise EpochKeyError(f"epoch {epoch} bundle is encrypted to another encryption key")
        if epoch in self._erased or epoch < self._erased_below:
            raise EpochKeyError(f"epoch {epoch} keys were erased; refusing to re-import them")
        try:
            shared = self.identity.decrypt_from(m["eph_pub"])
        except ValueError:
            raise EpochKeyError("epoch bundle has an invalid ephemeral key") from None
        key = _bundle_key(shared, epoch, m["member"], m["eph_pub"], m["member_enc_pub"])
        aad = _bundle_aad(epoch, m["member"], m["eph_pub"], m["member_enc_pub"], m["tx_pub"])
        try:
            secret = cbor2.loads(AESGCM(key).decrypt(m["nonce"], m["ct"], aad))
            tx_key = X25519PrivateKey.from_private_bytes(bytes(secret["tx"]))
            state_key = bytes(secret["state"])
        except InvalidTag:
            raise EpochKeyError(f"epoch {epoch} bundle does not decrypt (tampered or not for us)") from None
        except Exception:
            raise EpochKeyError(f"epoch {epoch} bundle holds malformed keys") from None
        keys = EpochKeys(epoch, tx_key, state_key)
        if keys.tx_pub != m["tx_pub"]:
            raise EpochKeyError(f"epoch {epoch} bundle's private key does not match its public key")
        held = self._epochs.get(epoch)
        if held is not None:
            if held.tx_pub != keys.tx_pub or bytes(held._state_key) != state_key:
                if not replace:
                    keys.erase()
                    raise EpochKeyError(f"already holding different keys for epoch {epoch}")
                self._epochs.pop(epoch).erase()  # a candidate nobody anchored: settle on this one
                keys.superseded_at = held.superseded_at
                self._epochs[epoch] = keys
                self.prune()
                return epoch
            keys.erase()
            return epoch
        self._install(keys)
        return epoch

    # -- persistence (to be sealed by the caller)
    def to_secret_bytes(self) -> bytes:
        """SECRET: held epochs and erasure marks as CBOR, for ``platform.seal`` only."""
        return cbor2.dumps(
            {
                "v": 1,
                "epochs": {
                    e: {"tx": _x25519_raw(k._tx_key), "state": bytes(k._state_key), "superseded_at": k.superseded_at}
                    for e, k in self._epochs.items()
                    if k._tx_key is not None
                },
                "erased": sorted(self._erased),
                "erased_below": self._erased_below,
            }
        )

    def load_secret_bytes(self, data: bytes) -> None:
        """Restore what ``to_secret_bytes`` wrote (after unsealing)."""
        try:
            m = cbor2.loads(data)
            epochs = {
                int(e): (X25519PrivateKey.from_private_bytes(bytes(v["tx"])), bytes(v["state"]), v["superseded_at"])
                for e, v in m["epochs"].items()
            }
            erased = {int(e) for e in m["erased"]}
            erased_below = int(m["erased_below"])
        except Exception:
            raise EpochKeyError("not a valid serialized epoch key state") from None
        self._epochs.clear()
        for e, (tx, st, sup) in epochs.items():
            k = EpochKeys(e, tx, st)
            k.superseded_at = sup
            self._epochs[e] = k
        self._erased = erased
        self._erased_below = erased_below
        self.prune()

    def absorb_erasures(self, other: EpochKeyManager) -> list[int]:
        """Adopt ``other``'s erasure marks (a running enclave restoring an older blob of its own):
        every epoch erased there is erased here too and never re-imported. Returns those erased now."""
        self._erased |= other._erased
        self._erased_below = max(self._erased_below, other._erased_below)
        gone = [e for e in self._epochs if e in self._erased or e < self._erased_below]
        for e in gone:
            self._erase(e)
        return sorted(gone)

    def compromised_export(self) -> dict[int, dict[str, bytes]]:
        """FAULT HOOK ONLY: every held epoch's raw keys (what a breached enclave leaks)."""
        return {
            e: {"tx_key": _x25519_raw(k._tx_key), "state_key": bytes(k._state_key)}
            for e, k in self._epochs.items()
            if k._tx_key is not None
        }


def _bundle_key(shared: bytes, epoch: int, member: bytes, eph_pub: bytes, member_enc_pub: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + member_enc_pub,
        info=EXPORT_DOMAIN + _u64(epoch, "epoch") + member,
    ).derive(shared)


def _bundle_aad(epoch: int, member: bytes, eph_pub: bytes, member_enc_pub: bytes, tx_pub: bytes) -> bytes:
    return EXPORT_DOMAIN + _u64(epoch, "epoch") + member + eph_pub + member_enc_pub + tx_pub


def _decode_bundle(bundle: bytes) -> dict[str, Any]:
    if not isinstance(bundle, bytes | bytearray) or len(bundle) > MAX_BUNDLE_BYTES:
        raise EpochKeyError(f"an epoch bundle is at most {MAX_BUNDLE_BYTES} bytes")
    try:
        outer = cbor2.loads(bytes(bundle))
        body_bytes = outer["body"]
        sig = outer["sig"]
        body = cbor2.loads(body_bytes)
    except Exception:
        raise EpochKeyError("epoch bundle is not a valid CBOR bundle") from None
    if not isinstance(body_bytes, bytes) or not isinstance(sig, bytes) or not isinstance(body, dict):
        raise EpochKeyError("epoch bundle is not a valid CBOR bundle")
    if body.get("v") != 1:
        raise EpochKeyError("unknown epoch bundle version")
    sizes = {"member": 20, "member_enc_pub": 32, "tx_pub": 32, "eph_pub": 32, "nonce": 12}
    for name, n in sizes.items():
        v = body.get(name)
        if not isinstance(v, bytes) or len(v) != n:
            raise EpochKeyError(f"epoch bundle field {name} must be {n} bytes")
    if not isinstance(body.get("ct"), bytes):
        raise EpochKeyError("epoch bundle field ct must be bytes")
    epoch = body.get("epoch")
    _u64(epoch if isinstance(epoch, int) else -1, "epoch bundle field epoch")
    return {**body, "body_bytes": body_bytes, "sig": sig}


def allowed_set(addresses: Collection[str]) -> frozenset[str]:
    """Checksum a collection of addresses (for ``import_epoch``)."""
    return frozenset(to_checksum(a) for a in addresses)
