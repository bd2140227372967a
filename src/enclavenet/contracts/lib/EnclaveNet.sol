// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title EnclaveNet platform calls (docs/ENCLAVE_EVM.md, "Platform calls").
/// @notice Randomness, key generation, signing, X25519 key agreement, ChaCha20-Poly1305 and gas
/// padding, answered by the enclave executor through the PLATFORM answer cache at 0x..57D2.
/// @dev Every call bubbles PLATFORM's revert data verbatim: on a cache miss PLATFORM reverts
/// with PLATFORM_MAGIC || material, the miss must reach the top level, and the executor then
/// stores the answer and runs the transaction again. A contract that try/catches (or
/// low-level-calls and ignores) a platform call sees a *failure* on a miss, never a wrong
/// answer; if it swallows the miss, the executor never learns the request and the call never
/// succeeds. Call the functions directly (not inside try/catch).
library EnclaveNet {
    address internal constant PLATFORM = 0x00000000000000000000000000000000000057d2;
    uint8 internal constant SECP256K1 = 0;
    uint8 internal constant X25519 = 1;

    /// First 4 bytes of PLATFORM's revert data on a cache miss.
    bytes4 internal constant PLATFORM_MAGIC = 0xe9c1a7f0;

    uint8 private constant FN_RANDOM_BYTES = 1;
    uint8 private constant FN_GENERATE_KEY_PAIR = 2;
    uint8 private constant FN_SIGN = 3;
    uint8 private constant FN_DERIVE_SYMMETRIC_KEY = 4;
    uint8 private constant FN_ENCRYPT = 5;
    uint8 private constant FN_DECRYPT = 6;
    uint8 private constant FN_TX_GAS_LIMIT = 7;

    function _call(uint8 fn, bytes memory args) private view returns (bytes memory ret) {
        bool ok;
        (ok, ret) = PLATFORM.staticcall(abi.encodePacked(fn, args));
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    /// @notice For contracts that catch failures of their own sub-calls: re-revert with
    /// `revertData` if it is a platform miss, so the miss still reaches the top level.
    function bubbleMiss(bytes memory revertData) internal pure {
        if (revertData.length >= 4 && bytes4(revertData) == PLATFORM_MAGIC) {
            assembly ("memory-safe") {
                revert(add(revertData, 32), mload(revertData))
            }
        }
    }

    /// @notice n (<= 4096) private random bytes; a fresh value on every call (see the docs for
    /// the one exception: a frame entered twice with the same explicit gas, same request).
    function randomBytes(uint256 n, bytes memory pers) internal view returns (bytes memory) {
        return abi.decode(_call(FN_RANDOM_BYTES, abi.encode(n, pers)), (bytes));
    }

    /// @notice A key pair derived from seed (>= 32 bytes, e.g. randomBytes(32, "")).
    /// secp256k1: 33-byte compressed public key, 32-byte secret; X25519: 32 and 32 bytes.
    function generateKeyPair(uint8 alg, bytes memory seed)
        internal view returns (bytes memory publicKey, bytes memory secretKey)
    {
        (publicKey, secretKey,) = abi.decode(
            _call(FN_GENERATE_KEY_PAIR, abi.encode(alg, seed)), (bytes, bytes, address)
        );
    }

    /// @notice A secp256k1 key pair from seed, with the Ethereum address of its public key.
    function generateSecp256k1Key(bytes memory seed)
        internal view returns (bytes memory publicKey, bytes memory secretKey, address addr)
    {
        return abi.decode(
            _call(FN_GENERATE_KEY_PAIR, abi.encode(SECP256K1, seed)), (bytes, bytes, address)
        );
    }

    /// @notice A 65-byte recoverable signature r || s || v (v = 27 or 28) of digest (no hashing):
    /// ecrecover(digest, v, r, s) gives the key's address.
    function sign(uint8 alg, bytes memory secretKey, bytes32 digest) internal view returns (bytes memory) {
        return abi.decode(_call(FN_SIGN, abi.encode(alg, secretKey, digest)), (bytes));
    }

    /// @notice HKDF-SHA256(X25519(secretKey, peerPublicKey), info "EnclaveNet.Platform.SymmetricKey.v1").
    function deriveSymmetricKey(bytes memory peerPublicKey, bytes memory secretKey) internal view returns (bytes32) {
        return abi.decode(_call(FN_DERIVE_SYMMETRIC_KEY, abi.encode(peerPublicKey, secretKey)), (bytes32));
    }

    /// @notice ChaCha20-Poly1305; the nonce is bytes 0..11 of `nonce` (the other 20 must be 0).
    function encrypt(bytes32 key, bytes32 nonce, bytes memory plaintext, bytes memory ad)
        internal view returns (bytes memory)
    {
        return abi.decode(_call(FN_ENCRYPT, abi.encode(key, nonce, plaintext, ad)), (bytes));
    }

    /// @notice The inverse of encrypt; reverts (Error "EnclaveNet platform: decrypt: ...") when
    /// the ciphertext or ad is not authentic.
    function decrypt(bytes32 key, bytes32 nonce, bytes memory ciphertext, bytes memory ad)
        internal view returns (bytes memory)
    {
        return abi.decode(_call(FN_DECRYPT, abi.encode(key, nonce, ciphertext, ad)), (bytes));
    }

    /// @notice The gas limit of the running transaction (or view call).
    function txGasLimit() internal view returns (uint256) {
        return abi.decode(_call(FN_TX_GAS_LIMIT, ""), (uint256));
    }

    /// @notice Gas used by the transaction so far: exact in the top-level frame; in a nested
    /// frame it leaves out the 1/64 the callers kept (an underestimate).
    function gasUsed() internal view returns (uint256) {
        uint256 limit = txGasLimit();
        return limit - gasleft();
    }

    /// @notice Burn gas until the transaction has used `target` gas (top-level frame; in a nested
    /// frame, up to the callers' kept 1/64): two branches that both call padGas(target) at the
    /// same depth end with exactly equal gas used. Does nothing if `target` was already passed.
    /// Refunds (storage cleared) are applied after the transaction and are not padded.
    function padGas(uint256 target) internal view {
        uint256 limit = txGasLimit();
        require(target < limit, "EnclaveNet: padGas target above the transaction gas limit");
        uint256 until = limit - target; // gasleft() when the transaction has used `target`
        assembly ("memory-safe") {
            // coarse: loop until at most ~2,900 gas are left to burn
            for {} gt(gas(), add(until, 2900)) {} {}
            // exact: a call to the ecrecover precompile (always warm) with d < 3,000 gas runs
            // out of gas and consumes exactly d; the constant 160 covers the opcodes around it
            let g := gas()
            if gt(g, add(until, 160)) {
                pop(staticcall(sub(sub(g, until), 160), 1, 0, 0, 0, 0))
            }
        }
    }
    /// The outbox (docs/BRIDGE.md): a call with `target (20 bytes) || data` sends an L2 -> L1
    /// message, relayed to `target` on L1 by the Bridge once the header carrying this batch is
    /// accepted; `Bridge.xDomainMessageSender()` is this contract during that call.
    address internal constant OUTBOX = 0x00000000000000000000000000000000000057d5;

    /// @notice Send `data` (<= 4096 bytes) to the L1 contract `target`. The message exists only if
    /// the transaction succeeds; it is public once relayed (it is an L1 call).
    function sendToL1(address target, bytes memory data) internal {
        (bool ok,) = OUTBOX.call(abi.encodePacked(target, data));
        require(ok, "EnclaveNet: outbox refused the message (data above 4096 bytes?)");
    }

    /// @notice The EnclaveNet address an L1 account's Bridge.sendMessage calls come from.
    function l1Alias(address l1Sender) internal pure returns (address) {
        unchecked {
            return address(uint160(l1Sender) + uint160(0x1111000000000000000000000000000000001111));
        }
    }
}
