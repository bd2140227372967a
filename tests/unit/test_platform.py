"""Platform calls (docs/ENCLAVE_EVM.md, "Platform calls"): the PLATFORM answer cache, the executor's
re-run loop, per-tx PREVRANDAO, and the Solidity library, on real pyrevm with solc-compiled code."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

import cbor2
import coincurve
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account

from enclavenet.compiler import compile_solidity
from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.enclave.executor import BlockInfo, Executor, Receipt
from enclavenet.enclave.platform import (
    FN_TX_GAS_LIMIT,
    MAX_PLATFORM_ROUNDS,
    PLATFORM_ADDRESS,
    PLATFORM_MAGIC,
    compute_answer,
    tx_seed,
)
from enclavenet.enclave.tx import decode_tx, sign_tx

CHAIN = 4242
LIB = files("enclavenet.contracts").joinpath("lib/EnclaveNet.sol").read_text()

USER = """
contract PlatformUser {
    uint256 public counter;
    bytes32 public lastDraw;
    error Drawn(bytes32 value);

    function draw(uint256 k) external returns (bytes32[] memory out) {
        counter += 1; // written before the first miss: a re-run must not count it twice
        out = new bytes32[](k);
        for (uint256 i; i < k; i++) out[i] = bytes32(EnclaveNet.randomBytes(32, "lottery"));
        lastDraw = out[k - 1];
    }

    function drawAndRevert() external view {
        revert Drawn(bytes32(EnclaveNet.randomBytes(32, "")));
    }

    /// a, c drawn here; b drawn in a frame that reverts (its miss is bubbled, its value caught)
    function drawAroundRevertedFrame() external view returns (bytes32 a, bytes32 b, bytes32 c) {
        a = bytes32(EnclaveNet.randomBytes(32, ""));
        (bool ok, bytes memory r) = address(this).staticcall(abi.encodeCall(this.drawAndRevert, ()));
        require(!ok);
        EnclaveNet.bubbleMiss(r);
        assembly { b := mload(add(r, 36)) }
        c = bytes32(EnclaveNet.randomBytes(32, ""));
    }

    function swallowMiss() external view returns (bool ok) {
        try this.drawAndRevert() {} catch (bytes memory r) { ok = bytes4(r) == Drawn.selector; }
    }

    function keygenSign(bytes32 digest) external view returns (address addr, address recovered, bytes memory pub, bytes memory sig) {
        bytes memory sk;
        (pub, sk, addr) = EnclaveNet.generateSecp256k1Key(EnclaveNet.randomBytes(32, "key"));
        sig = EnclaveNet.sign(EnclaveNet.SECP256K1, sk, digest);
        bytes32 r; bytes32 s; uint8 v;
        assembly { r := mload(add(sig, 32)) s := mload(add(sig, 64)) v := byte(0, mload(add(sig, 96))) }
        recovered = ecrecover(digest, v, r, s);
    }

    function _keys() private view returns (bytes32 ka, bytes32 kb) {
        (bytes memory pa, bytes memory sa) = EnclaveNet.generateKeyPair(EnclaveNet.X25519, EnclaveNet.randomBytes(32, "a"));
        (bytes memory pb, bytes memory sb) = EnclaveNet.generateKeyPair(EnclaveNet.X25519, EnclaveNet.randomBytes(32, "b"));
        ka = EnclaveNet.deriveSymmetricKey(pb, sa);
        kb = EnclaveNet.deriveSymmetricKey(pa, sb);
    }

    function aead(bytes calldata plaintext, bytes calldata ad, bool tamper) external view
        returns (bool sameKey, bytes memory ct, bytes memory pt)
    {
        (bytes32 ka, bytes32 kb) = _keys();
        sameKey = ka == kb;
        bytes32 nonce = bytes32(bytes12(EnclaveNet.randomBytes(12, "nonce")));
        ct = EnclaveNet.encrypt(ka, nonce, plaintext, ad);
        if (tamper) ct[0] ^= 0x01;
        pt = EnclaveNet.decrypt(kb, nonce, ct, ad);
    }

    function branch(bool heavy, uint256 target) external {
        uint256 acc = 1;
        if (heavy) {
            for (uint256 i; i < 200; i++) acc = uint256(keccak256(abi.encode(acc, i)));
        }
        counter = acc;
        EnclaveNet.padGas(target); // the code after it is the same for both branches
    }

    function gasInfo() external view returns (uint256 limit, uint256 used, bytes32 seed) {
        limit = EnclaveNet.txGasLimit();
        used = EnclaveNet.gasUsed();
        seed = bytes32(block.prevrandao);
    }

    function many(uint256 k) external view returns (uint256 n) {
        for (uint256 i; i < k; i++) n += EnclaveNet.randomBytes(1, "").length;
    }
}

contract Forger {
    /// reverts with a miss naming `victim` as the caller: the executor may answer it, but only
    /// `victim` could ever read that answer
    function forge(address victim, bytes calldata x) external view {
        bytes memory d = abi.encodePacked(PLATFORM_MAGIC_, uint256(uint160(victim)), block.prevrandao, uint256(0), x);
        assembly { revert(add(d, 32), mload(d)) }
    }
    bytes4 constant PLATFORM_MAGIC_ = 0xe9c1a7f0;
}
"""


@cache
def artifacts() -> dict[str, Any]:
    src = LIB + USER
    return {n: compile_solidity(src, n, filename="PlatformUser.sol") for n in ("PlatformUser", "Forger")}


def sel(sig: str) -> bytes:
    return keccak256(sig.encode())[:4]


class Chain:
    def __init__(self, secret: bytes | None = None) -> None:
        self.ex = Executor(CHAIN, platform_secret_fn=(lambda: secret) if secret is not None else None)
        self.sk = keccak256(b"platform-test-user")
        self.addr = keccak256(coincurve.PublicKey.from_secret(self.sk).format(False)[1:])[12:]
        self.nonce = 0
        self.height = 0

    def begin(self) -> None:
        self.height += 1
        self.ex.begin_batch(BlockInfo(self.height, 1000 + self.height))

    def tx(self, to: bytes | None, data: bytes, gas: int = 3_000_000) -> Receipt:
        r = self.ex.execute(decode_tx(sign_tx(self.sk, CHAIN, self.nonce, to, data, 0, gas), CHAIN))
        self.nonce += 1
        return r


def deployed(secret: bytes | None = None) -> tuple[Chain, bytes, bytes]:
    c = Chain(secret)
    c.begin()
    a = artifacts()
    r1, r2 = c.tx(None, a["PlatformUser"].bytecode), c.tx(None, a["Forger"].bytecode)
    assert r1.success and r2.success and r1.contract_address and r2.contract_address
    c.ex.end_batch()
    return c, r1.contract_address, r2.contract_address


def scenario(c: Chain, user: bytes) -> list[Receipt]:
    """Every function, in one batch."""
    c.begin()
    rs = [
        c.tx(user, sel("draw(uint256)") + abi_encode(["uint256"], [3])),
        c.tx(user, sel("draw(uint256)") + abi_encode(["uint256"], [3])),
        c.tx(user, sel("drawAroundRevertedFrame()")),
        c.tx(user, sel("keygenSign(bytes32)") + keccak256(b"hello")),
        c.tx(user, sel("aead(bytes,bytes,bool)") + abi_encode(["bytes", "bytes", "bool"], [b"secret msg", b"ad", False])),
        c.tx(user, sel("gasInfo()"), gas=500_000),
    ]
    c.ex.end_batch()
    return rs


def test_platform_code_is_small_and_answers_only_the_system_caller() -> None:
    from enclavenet.enclave.platform import PLATFORM_CODE

    assert len(PLATFORM_CODE) < 256
    c, _, _ = deployed()
    assert c.ex.code_at(PLATFORM_ADDRESS) == PLATFORM_CODE
    # a query: the executor answers it (a miss, then a re-run) -- for this caller only
    res = c.ex.call(c.addr, PLATFORM_ADDRESS, bytes([FN_TX_GAS_LIMIT]), gas=100_000)
    assert res.success and abi_decode(["uint256"], res.output)[0] == 100_000
    # a user sending PLATFORM the "store answer" layout does not store anything: only
    # SYSTEM_CALLER's calls store; anyone else's is a query (fn 7: the tx gas limit)
    key = b"\x07" + bytes(31)
    c.begin()
    r = c.tx(PLATFORM_ADDRESS, key + (33).to_bytes(32, "big") + b"\x01" * 32, gas=200_000)
    assert r.success and abi_decode(["uint256"], r.output)[0] == 200_000
    assert c.ex._evm.storage("0x" + PLATFORM_ADDRESS.hex(), int.from_bytes(key, "big")) == 0
    # value sent to PLATFORM bounces (it would be lost)
    c.ex.credit(c.addr, 10**18)
    rv = c.ex.execute(decode_tx(sign_tx(c.sk, CHAIN, c.nonce, PLATFORM_ADDRESS, bytes([FN_TX_GAS_LIMIT]), 5, 100_000), CHAIN))
    c.nonce += 1
    c.ex.end_batch()
    assert rv.status == 0 and c.ex.balance(PLATFORM_ADDRESS) == 0


def test_every_function_and_determinism_across_executors() -> None:
    c1, user, _ = deployed()
    c2, user2, _ = deployed()
    assert user == user2
    r1, r2 = scenario(c1, user), scenario(c2, user)
    assert all(r.success for r in r1), [r.error for r in r1]
    assert [r.encode() for r in r1] == [r.encode() for r in r2]
    assert c1.ex.state_root == c2.ex.state_root and c1.ex.snapshot() == c2.ex.snapshot()
    # another platform secret (another epoch/chain): other random values, same everything else
    c3, _, _ = deployed(b"\x07" * 32)
    r3 = scenario(c3, user)
    assert r3[0].output != r1[0].output and all(r.success for r in r3)

    d1 = abi_decode(["bytes32[]"], r1[0].output)[0]
    d2 = abi_decode(["bytes32[]"], r1[1].output)[0]
    a, b, cc = abi_decode(["bytes32", "bytes32", "bytes32"], r1[2].output)
    draws = [*d1, *d2, a, b, cc]
    assert len(set(draws)) == len(draws) == 9  # no repeat across calls, txs, or a reverted frame
    assert c1.ex.storage_at(user, 0) == 2  # counter: each draw counted once despite the re-runs
    assert c1.ex.storage_at(user, 1) == int.from_bytes(d2[-1], "big")

    # sign -> ecrecover (in the EVM) and eth_account agree on the generated key's address
    addr, recovered, pub, sig = abi_decode(["address", "address", "bytes", "bytes"], r1[3].output)
    assert addr == recovered and len(pub) == 33 and len(sig) == 65 and sig[64] in (27, 28)
    assert Account._recover_hash(keccak256(b"hello"), signature=sig) == to_checksum(addr)
    assert to_checksum(keccak256(coincurve.PublicKey(pub).format(False)[1:])[12:]) == to_checksum(addr)

    same, ct, pt = abi_decode(["bool", "bytes", "bytes"], r1[4].output)
    assert same and pt == b"secret msg" and len(ct) == len(pt) + 16 and ct[:10] != pt

    limit, used, seed = abi_decode(["uint256", "uint256", "bytes32"], r1[5].output)
    assert limit == 500_000 and 21_000 < used < r1[5].gas_used
    assert seed != bytes(32) and seed not in draws


def test_decrypt_of_tampered_ciphertext_is_a_clean_revert() -> None:
    c, user, _ = deployed()
    c.begin()
    r = c.tx(user, sel("aead(bytes,bytes,bool)") + abi_encode(["bytes", "bytes", "bool"], [b"secret msg", b"ad", True]))
    c.ex.end_batch()
    assert r.status == 0 and r.error == "execution reverted: EnclaveNet platform: decrypt: the ciphertext or associated data is not authentic"
    assert b"secret msg" not in r.output


def test_per_tx_prevrandao_differs_and_views_get_their_own() -> None:
    c, user, _ = deployed()
    c.begin()
    r1, r2 = c.tx(user, sel("gasInfo()")), c.tx(user, sel("gasInfo()"))
    s1 = abi_decode(["uint256", "uint256", "bytes32"], r1.output)[2]
    s2 = abi_decode(["uint256", "uint256", "bytes32"], r2.output)[2]
    v = c.ex.call(c.addr, user, sel("gasInfo()"), gas=400_000)
    c.ex.end_batch()
    assert v.success
    lim, _, s3 = abi_decode(["uint256", "uint256", "bytes32"], v.output)
    assert len({s1, s2, s3}) == 3 and lim == 400_000
    # the documented formula: keccak(info || batch secret || index in batch || tx hash)
    secret = c.ex._platform_secret_fn()
    assert s1 == tx_seed(secret, 0, r1.tx_hash) and s2 == tx_seed(secret, 1, r2.tx_hash)
    # a view is deterministic in its request, and changes nothing
    v2 = c.ex.call(c.addr, user, sel("gasInfo()"), gas=400_000)
    root = c.ex.state_root
    assert c.ex.call(c.addr, user, sel("draw(uint256)") + abi_encode(["uint256"], [2])).success
    assert c.ex.state_root == root and c.ex.storage_at(user, 0) == 0
    assert v2.success
    assert c.ex.estimate_gas(c.addr, user, sel("draw(uint256)") + abi_encode(["uint256"], [2])) > 21_000


def test_platform_storage_never_reaches_state_diff_or_snapshot() -> None:
    c, user, _ = deployed()
    scenario(c, user)
    assert PLATFORM_ADDRESS not in c.ex.state.storage
    assert c.ex.last_diff is not None and PLATFORM_ADDRESS not in c.ex.last_diff.storage
    snap = cbor2.loads(c.ex.snapshot())
    assert all(a != PLATFORM_ADDRESS for a, _ in snap["storage"])
    # pyrevm's database holds none of the answers either: a fresh key misses again
    c.begin()
    r = c.tx(user, sel("gasInfo()"), gas=500_000)
    c.ex.end_batch()
    assert r.success
    # and a restored executor (same snapshot) continues identically
    other = Executor(CHAIN)
    other.restore(c.ex.snapshot(), expect_state_root=c.ex.state_root)
    assert other.state_root == c.ex.state_root


def test_forged_miss_does_not_leak_and_does_not_loop() -> None:
    c, user, forger = deployed()
    c.begin()
    x = bytes([FN_TX_GAS_LIMIT])
    r = c.tx(forger, sel("forge(address,bytes)") + abi_encode(["address", "bytes"], [user, x]))
    assert r.status == 0 and r.output == b"" and "forged" in str(r.error)
    # the answer the executor stored for that material is only under the victim's key: the
    # forger asking PLATFORM itself names itself as caller (its own, independent answer)
    r2 = c.ex.call(c.addr, forger, sel("forge(address,bytes)") + abi_encode(["address", "bytes"], [forger, x]))
    assert not r2.success and r2.output == b""
    c.ex.end_batch()


def test_a_swallowed_miss_is_a_failure_never_a_wrong_answer() -> None:
    c, user, _ = deployed()
    c.begin()
    r = c.tx(user, sel("swallowMiss()"))
    c.ex.end_batch()
    assert r.success and abi_decode(["bool"], r.output)[0] is False


def test_too_many_platform_calls() -> None:
    c, user, _ = deployed()
    c.begin()
    ok = c.tx(user, sel("many(uint256)") + abi_encode(["uint256"], [MAX_PLATFORM_ROUNDS]))
    bad = c.tx(user, sel("many(uint256)") + abi_encode(["uint256"], [MAX_PLATFORM_ROUNDS + 1]))
    c.ex.end_batch()
    assert ok.success and abi_decode(["uint256"], ok.output)[0] == MAX_PLATFORM_ROUNDS
    assert bad.status == 0 and "too many platform calls" in str(bad.error) and bad.output == b""


def test_pad_gas_makes_branches_cost_the_same() -> None:
    c, user, _ = deployed()
    c.begin()
    light = c.tx(user, sel("branch(bool,uint256)") + abi_encode(["bool", "uint256"], [False, 150_000]), gas=400_000)
    heavy = c.tx(user, sel("branch(bool,uint256)") + abi_encode(["bool", "uint256"], [True, 150_000]), gas=400_000)
    c.ex.end_batch()
    assert light.success and heavy.success
    assert light.gas_used == heavy.gas_used and 150_000 <= light.gas_used < 151_000


def test_answers_are_pure_functions_of_the_material() -> None:
    mat = bytes(12) + b"\x11" * 20 + b"\x22" * 32 + bytes(32) + bytes([FN_TX_GAS_LIMIT])
    assert compute_answer(mat, b"a" * 32, 9) == compute_answer(mat, b"b" * 32, 9)
    bad = compute_answer(mat[:-1] + b"\x63", b"a" * 32, 9)
    assert bad.failed and b"unknown function" in bad.data
    assert PLATFORM_MAGIC == bytes.fromhex("e9c1a7f0")


def test_members_of_different_tee_types_agree_on_a_platform_batch() -> None:
    from tests.unit.test_program import Net, dep, receipt_of

    net = Net()  # sgx, sev-snp, tdx members
    alice = Account.create()
    deploy = net.env(alice, None, data=artifacts()["PlatformUser"].bytecode, gas=3_000_000)
    req, out = net.run(net.members[0], 1, bytes(32), l1_block=3,
                       messages=[dep(0, alice.address, 10**18, 2)], envelopes=[deploy.envelope.encode()])
    user = receipt_of(out, deploy).contract_address
    assert user is not None
    for m in net.members[1:]:
        m.call("verify_batch", header=out["header"], **req)
    draw = net.env(alice, to_checksum(user), data=sel("draw(uint256)") + abi_encode(["uint256"], [2]), gas=1_000_000)
    signs = net.env(alice, to_checksum(user), data=sel("keygenSign(bytes32)") + keccak256(b"m"), gas=1_000_000)
    req2, out2 = net.run(net.members[0], 2, out["header_hash"], l1_block=3,
                         envelopes=[draw.envelope.encode(), signs.envelope.encode()])
    rd, rs = receipt_of(out2, draw), receipt_of(out2, signs)
    assert rd.success and rs.success
    addr, recovered, _, _ = abi_decode(["address", "address", "bytes", "bytes"], rs.output)
    assert addr == recovered
    for m in net.members[1:]:  # re-executed on other TEE types: the identical header
        v = m.call("verify_batch", header=out2["header"], **req2)
        assert v["header_hash"] == out2["header_hash"]


def test_vyper_module() -> None:
    from pathlib import Path

    import vyper
    from vyper.compiler.input_bundle import FilesystemInputBundle

    src = """
# pragma version ^0.4.0
import enclavenet_platform as platform
last: public(bytes32)

@external
def draw() -> (bytes32, uint256, Bytes[65]):
    self.last = platform.random_bytes32(b"vy")
    return self.last, platform.tx_gas_limit(), platform.sign_digest(keccak256(b"k"), keccak256(b"d"))
"""
    lib_dir = Path(str(files("enclavenet.contracts").joinpath("lib")))
    out = vyper.compile_code(src, contract_path="V.vy", input_bundle=FilesystemInputBundle([lib_dir]),
                             output_formats=["bytecode"])
    c = Chain()
    c.begin()
    d = c.tx(None, bytes.fromhex(out["bytecode"][2:]))
    assert d.success and d.contract_address
    r = c.tx(d.contract_address, sel("draw()"), gas=600_000)
    c.ex.end_batch()
    assert r.success, r.error
    rnd, limit, sig = abi_decode(["bytes32", "uint256", "bytes"], r.output)
    assert rnd != bytes(32) and limit == 600_000 and c.ex.storage_at(d.contract_address, 0) == int.from_bytes(rnd, "big")
    key_addr = keccak256(coincurve.PublicKey.from_secret(keccak256(b"k")).format(False)[1:])[12:]
    assert Account._recover_hash(keccak256(b"d"), signature=sig) == to_checksum(key_addr)


def test_example_lottery_and_l1_wallet() -> None:
    from examples.platform.run import L1_CHAIN, run

    r = run()
    assert r["winner"] in r["players"]
    assert r["recovered_sender"] == r["wallet_l1_address"]  # eth_account recovers the EIP-155 tx
    assert r["eip155_v"] in (L1_CHAIN * 2 + 35, L1_CHAIN * 2 + 36)


def test_gas_estimate_of_a_creation_that_uses_platform_calls() -> None:
    """What a wallet asks first (eth_estimateGas of the deployment): a constructor drawing random
    bytes and generating a key. Each re-run after a miss must create at the same address, else
    every run misses anew (the devnet found it: 'too many platform calls')."""
    from examples.platform.run import artifacts

    ex = Executor(CHAIN)
    deployer = Account.create().address
    code = artifacts()["Wallet"].bytecode
    gas = ex.estimate_gas(deployer, None, code)
    ex.begin_batch(BlockInfo(1, 1_700_000_001))
    key = bytes(Account.create().key)
    sender = Account.from_key(key).address
    r = ex.execute(decode_tx(sign_tx(key, CHAIN, 0, None, code, 0, gas), CHAIN))
    ex.end_batch()
    assert r.success, r.error  # the estimate suffices for the real creation
    assert ex.call(sender, None, code).success and ex.next_nonce(sender) == 1
