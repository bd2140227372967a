"""Platform calls: confidential-app primitives (randomness, keys, signing, AEAD, gas padding).

pyrevm 0.3.7 has no precompile hook and no inspector, so the platform is an *answer cache*: a
reserved system contract ``PLATFORM_ADDRESS`` whose genesis code (``PLATFORM_CODE``, hand
assembled below) looks the answer to a request up in its own storage and, on a miss, reverts
with ``PLATFORM_MAGIC || material``. The executor (executor.py) sees that revert at the top
level, computes the answer here (trusted Python), stores it with a system call from
``SYSTEM_CALLER`` and runs the transaction again. See docs/ENCLAVE_EVM.md, "Platform calls".

Request (the calldata ``x`` of a call to PLATFORM): ``fn (1 byte) || abi.encode(args)``.
Material PLATFORM hashes into the cache key (and puts in the miss revert data)::

    CALLER (32, left-padded) || PREVRANDAO (32) || GAS at entry, or 0 unless fn == RANDOM (32) || x

``key = keccak(material)``. PREVRANDAO is the per-transaction seed (so no answer is shared
between transactions), CALLER makes an entry readable only by the contract that asked, GAS at
entry separates successive random draws. An answer is a deterministic function of the material
alone (and of the batch's platform secret for random bytes), so revert data forged by a user
contract can only make the executor store the answer the named caller would get anyway.

Storage layout of an answer: ``slot key = (len + 1) | failed << 255``, ``key + 1 ...`` = the
answer's 32-byte words. A failed answer is ``Error(string)`` revert data: PLATFORM reverts
with it on every hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import coincurve
import sha3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

PLATFORM_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d2")
# The only caller whose calls to PLATFORM store answers. No key exists for it; the executor
# refuses transactions and inbox calls that claim it as sender.
SYSTEM_CALLER = bytes.fromhex("00000000000000000000000000000000000057d3")
PLATFORM_MAGIC = bytes.fromhex("e9c1a7f0")  # first 4 bytes of a PLATFORM miss's revert data
MAX_PLATFORM_ROUNDS = 16  # answers per transaction; one more miss and it fails
MAX_ANSWER = 16 * 1024  # bytes of one answer (its storage costs the system call gas)
MAX_RANDOM_BYTES = 4096
MATERIAL_HEAD = 96  # caller, prevrandao, gas words before x

# function ids (first byte of the request)
FN_RANDOM_BYTES = 1  # (uint256 n, bytes pers) -> (bytes)
FN_GENERATE_KEY_PAIR = 2  # (uint8 alg, bytes seed) -> (bytes publicKey, bytes secretKey, address)
FN_SIGN = 3  # (uint8 alg, bytes secretKey, bytes32 digest) -> (bytes signature65)
FN_DERIVE_SYMMETRIC_KEY = 4  # (bytes peerPublicKey, bytes secretKey) -> (bytes32)
FN_ENCRYPT = 5  # (bytes32 key, bytes32 nonce, bytes plaintext, bytes ad) -> (bytes)
FN_DECRYPT = 6  # (bytes32 key, bytes32 nonce, bytes ciphertext, bytes ad) -> (bytes)
FN_TX_GAS_LIMIT = 7  # () -> (uint256): the gas limit of the running transaction

ALG_SECP256K1 = 0
ALG_X25519 = 1

_RANDOM_INFO = b"EnclaveNet.Platform.Random.v1"
TX_SEED_INFO = b"EnclaveNet.Platform.TxSeed.v1"
_VIEW_INFO = b"EnclaveNet.Platform.ViewSeed.v1"
_KEYGEN_INFO = b"EnclaveNet.Platform.KeyGen.v1"
_SYMKEY_INFO = b"EnclaveNet.Platform.SymmetricKey.v1"
_SECP_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_ERROR_SELECTOR = bytes.fromhex("08c379a0")


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


# --- PLATFORM's bytecode ---------------------------------------------------------------------------
def _assemble(program: list[str | int | tuple[str, str]]) -> bytes:
    """A tiny two-pass assembler: mnemonics, ints (PUSH data), ("PUSH2", label), "@label"."""
    ops = {
        "STOP": 0x00, "ADD": 0x01, "MUL": 0x02, "SUB": 0x03, "LT": 0x10, "EQ": 0x14,
        "ISZERO": 0x15, "SHL": 0x1B, "SHR": 0x1C, "KECCAK256": 0x20, "CALLER": 0x33,
        "CALLVALUE": 0x34, "CALLDATALOAD": 0x35, "CALLDATASIZE": 0x36, "CALLDATACOPY": 0x37,
        "PREVRANDAO": 0x44, "POP": 0x50, "MSTORE": 0x52, "SLOAD": 0x54, "SSTORE": 0x55,
        "JUMP": 0x56, "JUMPI": 0x57, "GAS": 0x5A, "JUMPDEST": 0x5B, "PUSH0": 0x5F,
        "DUP1": 0x80, "DUP2": 0x81, "DUP3": 0x82, "DUP4": 0x83, "DUP5": 0x84,
        "SWAP1": 0x90, "RETURN": 0xF3, "REVERT": 0xFD,
    }

    def emit(labels: dict[str, int]) -> bytes:
        out = bytearray()
        it = iter(program)
        for op in it:
            if isinstance(op, tuple):  # ("PUSH2", label)
                out.append(0x61)
                out += labels.get(op[1], 0).to_bytes(2, "big")
            elif isinstance(op, str) and op.startswith("@"):
                labels[op[1:]] = len(out)
                out.append(ops["JUMPDEST"])
            elif isinstance(op, str) and op.startswith("PUSH") and op != "PUSH0":
                n = int(op[4:])
                value = next(it)
                assert isinstance(value, int)
                out.append(0x5F + n)
                out += value.to_bytes(n, "big")
            else:
                assert isinstance(op, str)
                out.append(ops[op])
        return bytes(out)

    labels: dict[str, int] = {}
    emit(labels)  # first pass: label offsets (PUSH2 placeholders have their final size)
    return emit(labels)


_PLATFORM_ASM: list[str | int | tuple[str, str]] = [
    "GAS",  # [g]: gas at entry, read first
    "CALLVALUE", ("PUSH2", "bad"), "JUMPI",  # value sent here would be lost: refuse it
    "CALLER", "PUSH20", int.from_bytes(SYSTEM_CALLER, "big"), "EQ", ("PUSH2", "store"), "JUMPI",
    # query: material at mem[32..128+cds) = caller, prevrandao, gas' (0 unless random), x
    "PUSH0", "CALLDATALOAD", "PUSH1", 248, "SHR", "PUSH1", FN_RANDOM_BYTES, "EQ", "MUL",  # [g']
    "PUSH1", 96, "MSTORE",
    "CALLER", "PUSH1", 32, "MSTORE",
    "PREVRANDAO", "PUSH1", 64, "MSTORE",
    "CALLDATASIZE", "PUSH0", "PUSH1", 128, "CALLDATACOPY",
    "CALLDATASIZE", "PUSH1", 96, "ADD",  # [total]
    "DUP1", "PUSH1", 32, "KECCAK256",  # [key, total]
    "DUP1", "SLOAD",  # [v, key, total]
    "DUP1", "ISZERO", ("PUSH2", "miss"), "JUMPI",
    # hit: copy len = (v without its top bit) - 1 bytes from slots key+1.. to mem[0..)
    "DUP1", "PUSH1", 1, "SHL", "PUSH1", 1, "SHR", "PUSH1", 1, "SWAP1", "SUB",  # [len, v, key, total]
    "PUSH0",  # [i, len, v, key, total]
    "@loop",
    "DUP2", "DUP2", "LT", "ISZERO", ("PUSH2", "done"), "JUMPI",
    "DUP1", "PUSH1", 5, "SHR", "DUP5", "ADD", "PUSH1", 1, "ADD", "SLOAD",  # [w, i, ...]
    "DUP2", "MSTORE", "PUSH1", 32, "ADD", ("PUSH2", "loop"), "JUMP",
    "@done",
    "POP", "SWAP1", "PUSH1", 255, "SHR", ("PUSH2", "fail"), "JUMPI",  # [len, key, total]
    "PUSH0", "RETURN",
    "@fail",
    "PUSH0", "REVERT",
    "@miss",  # [v=0, key, total]: revert(MAGIC || material)
    "POP", "POP", "PUSH4", int.from_bytes(PLATFORM_MAGIC, "big"), "PUSH0", "MSTORE",
    "PUSH1", 4, "ADD", "PUSH1", 28, "REVERT",
    "@store",  # [g]: calldata = key || words; sstore(key + j, word j)
    "PUSH0", "CALLDATALOAD", "PUSH1", 32,  # [o, key, g]
    "@sloop",
    "CALLDATASIZE", "DUP2", "LT", "ISZERO", ("PUSH2", "sdone"), "JUMPI",
    "DUP1", "CALLDATALOAD", "DUP3", "SSTORE",
    "SWAP1", "PUSH1", 1, "ADD", "SWAP1", "PUSH1", 32, "ADD", ("PUSH2", "sloop"), "JUMP",
    "@sdone",
    "STOP",
    "@bad",
    "PUSH0", "PUSH0", "REVERT",
]
PLATFORM_CODE = _assemble(_PLATFORM_ASM)


# --- seeds -----------------------------------------------------------------------------------------
def tx_seed(secret: bytes, index: int, tx_hash: bytes) -> bytes:
    """PREVRANDAO of the ``index``-th item of a batch (``secret``: the batch's platform secret):
    keccak(info || secret || index(8) || tx hash)."""
    return _keccak(TX_SEED_INFO + secret + index.to_bytes(8, "big") + tx_hash)


def view_seed(secret: bytes, request: bytes) -> bytes:
    """PREVRANDAO of a view call or estimate: a function of the request (never a tx's seed)."""
    return _keccak(_VIEW_INFO + secret + _keccak(request))


# --- answers ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    failed: bool
    data: bytes

    def store_calldata(self, key: bytes) -> bytes:
        """The system call that stores this answer under ``key`` in PLATFORM."""
        head = (len(self.data) + 1) | (int(self.failed) << 255)
        pad = (-len(self.data)) % 32
        return key + head.to_bytes(32, "big") + self.data + b"\x00" * pad


class _Refuse(Exception):
    pass


def _error(msg: str) -> Answer:
    return Answer(True, _ERROR_SELECTOR + abi_encode(["string"], [f"EnclaveNet platform: {msg}"]))


def _secp_secret_from_seed(seed: bytes) -> bytes:
    for ctr in range(256):
        sk = _keccak(_KEYGEN_INFO + b"secp256k1" + ctr.to_bytes(1, "big") + seed)
        if 0 < int.from_bytes(sk, "big") < _SECP_N:
            return sk
    raise _Refuse("could not derive a key")  # never (probability ~2**-32 per try)


def _aead(key: bytes, nonce: bytes) -> tuple[ChaCha20Poly1305, bytes]:
    if any(nonce[12:]):
        raise _Refuse("the nonce is the first 12 bytes of the bytes32; the other 20 must be zero")
    return ChaCha20Poly1305(key), nonce[:12]


def compute_answer(material: bytes, secret: bytes, tx_gas_limit: int) -> Answer:
    """The answer to the request in ``material`` (PLATFORM's miss revert data without MAGIC).

    A deterministic function of ``material`` (and ``secret`` for random bytes, ``tx_gas_limit``
    for FN_TX_GAS_LIMIT): the same on every member and TEE type.
    """
    x = material[MATERIAL_HEAD:]
    fn = x[0]
    args = x[1:]
    key = _keccak(material)
    try:
        if fn == FN_RANDOM_BYTES:
            n, _pers = abi_decode(["uint256", "bytes"], args)
            if n > MAX_RANDOM_BYTES:
                raise _Refuse(f"randomBytes: at most {MAX_RANDOM_BYTES} bytes per call")
            out = b"".join(
                _keccak(_RANDOM_INFO + secret + key + i.to_bytes(4, "big")) for i in range((n + 31) // 32)
            )
            return Answer(False, abi_encode(["bytes"], [out[:n]]))
        if fn == FN_GENERATE_KEY_PAIR:
            alg, seed = abi_decode(["uint8", "bytes"], args)
            if len(seed) < 32:
                raise _Refuse("generateKeyPair: the seed must be at least 32 bytes (use randomBytes)")
            if alg == ALG_SECP256K1:
                sk = _secp_secret_from_seed(seed)
                pk = coincurve.PublicKey.from_secret(sk)
                addr = _keccak(pk.format(compressed=False)[1:])[12:]
                return Answer(False, abi_encode(["bytes", "bytes", "address"], [pk.format(True), sk, addr]))
            if alg == ALG_X25519:
                xsk = X25519PrivateKey.from_private_bytes(_keccak(_KEYGEN_INFO + b"x25519" + seed))
                pub = xsk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
                raw = xsk.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
                return Answer(False, abi_encode(["bytes", "bytes", "address"], [pub, raw, b"\x00" * 20]))
            raise _Refuse(f"generateKeyPair: unknown algorithm {alg}")
        if fn == FN_SIGN:
            alg, sk, digest = abi_decode(["uint8", "bytes", "bytes32"], args)
            if alg != ALG_SECP256K1:
                raise _Refuse(f"sign: algorithm {alg} cannot sign (secp256k1 = 0 only)")
            if len(sk) != 32 or not 0 < int.from_bytes(sk, "big") < _SECP_N:
                raise _Refuse("sign: not a secp256k1 secret key")
            sig = coincurve.PrivateKey(sk).sign_recoverable(digest, hasher=None)
            return Answer(False, abi_encode(["bytes"], [sig[:64] + bytes([27 + sig[64]])]))
        if fn == FN_DERIVE_SYMMETRIC_KEY:
            peer, sk = abi_decode(["bytes", "bytes"], args)
            if len(peer) != 32 or len(sk) != 32:
                raise _Refuse("deriveSymmetricKey: X25519 keys are 32 bytes")
            try:
                shared = X25519PrivateKey.from_private_bytes(sk).exchange(X25519PublicKey.from_public_bytes(peer))
            except ValueError:
                raise _Refuse("deriveSymmetricKey: bad peer public key") from None
            k = HKDF(hashes.SHA256(), 32, salt=None, info=_SYMKEY_INFO).derive(shared)
            return Answer(False, abi_encode(["bytes32"], [k]))
        if fn in (FN_ENCRYPT, FN_DECRYPT):
            k, nonce, text, ad = abi_decode(["bytes32", "bytes32", "bytes", "bytes"], args)
            aead, n12 = _aead(k, nonce)
            if fn == FN_ENCRYPT:
                out = aead.encrypt(n12, text, ad)
            else:
                try:
                    out = aead.decrypt(n12, text, ad)
                except InvalidTag:
                    raise _Refuse("decrypt: the ciphertext or associated data is not authentic") from None
            return Answer(False, abi_encode(["bytes"], [out]))
        if fn == FN_TX_GAS_LIMIT:
            return Answer(False, abi_encode(["uint256"], [tx_gas_limit]))
        raise _Refuse(f"unknown function {fn}")
    except _Refuse as exc:
        return _error(str(exc))
    except Exception:  # malformed ABI arguments (eth_abi's decoding errors)
        return _error(f"malformed arguments for function {fn}")


def parse_miss(output: bytes) -> bytes | None:
    """The material of a PLATFORM miss reaching the top level, or None for any other revert."""
    if len(output) <= 4 + MATERIAL_HEAD or output[:4] != PLATFORM_MAGIC:
        return None
    return output[4:]


def check_answer_size(a: Answer) -> Answer:
    if len(a.data) > MAX_ANSWER:
        return _error(f"answer of {len(a.data)} bytes exceeds {MAX_ANSWER}")
    return a


__all__ = [
    "ALG_SECP256K1",
    "ALG_X25519",
    "MAX_PLATFORM_ROUNDS",
    "PLATFORM_ADDRESS",
    "PLATFORM_CODE",
    "PLATFORM_MAGIC",
    "SYSTEM_CALLER",
    "Answer",
    "compute_answer",
    "parse_miss",
    "tx_seed",
    "view_seed",
]
