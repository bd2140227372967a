# pragma version ^0.4.0
"""
@title EnclaveNet platform calls for Vyper (docs/ENCLAVE_EVM.md, "Platform calls")
@notice A stateless Vyper module: `import enclavenet_platform as platform`, then
        `platform.random_bytes32(b"pers")`. Compile with this directory on the search path.
        Like the Solidity library (EnclaveNet.sol) every call re-reverts PLATFORM's revert data
        verbatim, so a cache miss reaches the top level and the executor can answer it; do not
        call these through a frame that swallows failures.
"""

PLATFORM: constant(address) = 0x00000000000000000000000000000000000057d2
SECP256K1: constant(uint8) = 0
X25519: constant(uint8) = 1
MAX_OUT: constant(uint256) = 4096


@internal
@view
def _call(request: Bytes[2048]) -> Bytes[MAX_OUT]:
    ok: bool = False
    out: Bytes[MAX_OUT] = b""
    ok, out = raw_call(PLATFORM, request, max_outsize=MAX_OUT, is_static_call=True, revert_on_failure=False)
    if not ok:
        raw_revert(out)
    return out


@internal
@view
def random_bytes32(pers: Bytes[256]) -> bytes32:
    """32 private random bytes (randomBytes(32, pers))."""
    out: Bytes[MAX_OUT] = self._call(concat(b"\x01", abi_encode(convert(32, uint256), pers)))
    return extract32(out, 64)  # abi.encode(bytes): offset, length, data


@internal
@view
def tx_gas_limit() -> uint256:
    """The gas limit of the running transaction."""
    return convert(extract32(self._call(b"\x07"), 0), uint256)


@internal
@view
def sign_digest(secret_key: bytes32, digest: bytes32) -> Bytes[65]:
    """secp256k1 recoverable signature r || s || v (v = 27/28) of digest."""
    out: Bytes[MAX_OUT] = self._call(
        concat(b"\x03", abi_encode(SECP256K1, slice(concat(secret_key, b""), 0, 32), digest))
    )
    return slice(out, 64, 65)


OUTBOX: constant(address) = 0x00000000000000000000000000000000000057d5


@internal
def send_to_l1(target: address, data: Bytes[4096]):
    """Send an L2 -> L1 message to `target` (docs/BRIDGE.md); relayed once the header is accepted."""
    raw_call(OUTBOX, concat(convert(target, bytes20), data))
