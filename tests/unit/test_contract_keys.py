"""Per-contract state-key rotation (enclave/contract_keys.py): policy, rotation, secrecy."""

from __future__ import annotations

import cbor2
import coincurve
import pytest

from enclavenet.crypto.hashing import keccak256
from enclavenet.enclave.contract_keys import (
    KEY_POLICY_ADDRESS,
    ContractKeyError,
    derive_contract_key,
    open_section,
)
from enclavenet.enclave.executor import BlockInfo, Executor, Receipt
from enclavenet.enclave.state import StateError
from enclavenet.enclave.tx import decode_tx, sign_tx

CHAIN_ID = 4242
# runtime: slot0 += 1 (PUSH1 0 SLOAD PUSH1 1 ADD PUSH1 0 SSTORE STOP); init code copies and returns it
RUNTIME = bytes.fromhex("600054600101600055" + "00")
INIT = bytes.fromhex("600a600c600039600a6000f3") + RUNTIME
SHARED_SECRET = keccak256(b"test committee epoch subkey")


class User:
    def __init__(self, seed: int) -> None:
        self.secret = keccak256(b"ck-user", seed.to_bytes(4, "big"))
        pub = coincurve.PrivateKey(self.secret).public_key.format(compressed=False)[1:]
        self.address = keccak256(pub)[12:]
        self.nonce = 0

    def tx(self, to: bytes | None, data: bytes = b"", gas: int = 500_000) -> bytes:
        raw = sign_tx(self.secret, CHAIN_ID, self.nonce, to, data, 0, gas)
        self.nonce += 1
        return raw


def member() -> Executor:
    ex: Executor

    def draw(address: bytes, rotation: int) -> bytes:  # what the program does, minus the header hash
        return derive_contract_key(SHARED_SECRET, ex._block.number.to_bytes(8, "big"), address, rotation)

    ex = Executor(CHAIN_ID, contract_key_fn=draw)
    return ex


def batch(ex: Executor, height: int, raws: list[bytes], credit: list[bytes] = ()) -> list[Receipt]:  # type: ignore[assignment]
    ex.begin_batch(BlockInfo(height, 1_700_000_000 + height))
    for a in credit:
        ex.credit(a, 10**18)
    out = [ex.execute(decode_tx(r, CHAIN_ID)) for r in raws]
    ex.end_batch()
    return out


def policy(contract: bytes, n: int, keep: bool, deploy_nonce: int) -> bytes:
    return contract + n.to_bytes(8, "big") + bytes([keep]) + deploy_nonce.to_bytes(8, "big")


def deploy(ex: Executor, admin: User, n: int, keep: bool) -> bytes:
    """Height 1: deploy the counter, height 2: set the policy. Returns the contract address."""
    (r,) = batch(ex, 1, [admin.tx(None, INIT)], [admin.address])
    assert r.success and r.contract_address
    (p,) = batch(ex, 2, [admin.tx(KEY_POLICY_ADDRESS, policy(r.contract_address, n, keep, 0))])
    assert p.success, p.error
    return r.contract_address


def section(ex: Executor, contract: bytes) -> tuple[int, bytes]:
    m = cbor2.loads(ex.snapshot())
    assert all(a != contract for a, _ in m["storage"])  # never in the plain storage list
    ((a, rotation, blob),) = m["sealed_storage"]
    assert a == contract
    return rotation, blob


def test_rotates_every_n_executions_with_fresh_keys() -> None:
    ex, admin = member(), User(1)
    c = deploy(ex, admin, 3, keep=True)
    chain = ex.contract_key_chain(c)
    assert chain is not None and chain.rotation == 0  # key_0 drawn when the policy is set
    h = 3
    for expect in (0, 0, 1, 1, 1, 2):
        assert batch(ex, h, [admin.tx(c)])[0].success
        h += 1
        chain = ex.contract_key_chain(c)
        assert chain is not None and chain.rotation == expect
    assert ex.storage_at(c, 0) == 6
    # three calls in one batch: exactly one rotation at its end
    batch(ex, h, [admin.tx(c), admin.tx(c), admin.tx(c)])
    chain = ex.contract_key_chain(c)
    assert chain is not None and chain.rotation == 3 and chain.count == 0
    keys = list(chain.keys.values())
    assert len(set(keys)) == 4  # each rotation a different key
    # calls that do not target the contract do not count
    other = User(2)
    batch(ex, h + 1, [other.tx(admin.address)], [other.address])
    assert ex.contract_key_chain(c).rotation == 3  # type: ignore[union-attr]


def test_leaked_key_does_not_open_the_next_rotation() -> None:
    ex, admin = member(), User(1)
    c = deploy(ex, admin, 1, keep=False)
    batch(ex, 3, [admin.tx(c)])  # rotation 1 at the end of this batch, storage = 1
    r1, sec1 = section(ex, c)
    leaked = ex.contract_key_chain(c).current_key  # type: ignore[union-attr]
    assert r1 == 1 and cbor2.loads(open_section(leaked, c, 1, sec1)) == [0, 1]
    batch(ex, 4, [admin.tx(c)])
    r2, sec2 = section(ex, c)
    assert r2 == 2
    with pytest.raises(ContractKeyError, match="does not decrypt") as e:
        open_section(leaked, c, 2, sec2)  # backward secrecy
    assert leaked.hex() not in str(e.value)
    # nor by relabelling the old key with the new rotation index
    with pytest.raises(ContractKeyError):
        open_section(leaked, c, 1, sec2)
    assert cbor2.loads(open_section(ex.contract_key_chain(c).current_key, c, 2, sec2)) == [0, 2]  # type: ignore[union-attr]


@pytest.mark.parametrize("keep", [False, True])
def test_history_keys_erased_or_kept(keep: bool) -> None:
    ex, admin = member(), User(1)
    c = deploy(ex, admin, 1, keep=keep)
    old_rotation, old_section = section(ex, c) if ex.storage_at(c, 0) else (None, None)
    batch(ex, 3, [admin.tx(c)])
    r1, sec1 = section(ex, c)
    batch(ex, 4, [admin.tx(c)])
    batch(ex, 5, [admin.tx(c)])
    chain = ex.contract_key_chain(c)
    assert chain is not None and chain.rotation == 3 and old_rotation is None and old_section is None
    held = cbor2.loads(ex.snapshot())["contract_keys"][0][5]  # what a sealed snapshot keeps
    if keep:
        assert sorted(chain.keys) == [0, 1, 2, 3] and [r for r, _ in held] == [0, 1, 2, 3]
        assert cbor2.loads(open_section(chain.keys[r1], c, r1, sec1)) == [0, 1]
    else:
        assert sorted(chain.keys) == [3] and [r for r, _ in held] == [3]
        for k in chain.keys.values():  # forward secrecy: nothing the enclave holds opens it
            with pytest.raises(ContractKeyError):
                open_section(k, c, r1, sec1)
    # switching keep_history off later erases the kept history at once
    if keep:
        batch(ex, 6, [admin.tx(KEY_POLICY_ADDRESS, policy(c, 1, False, 0))])
        assert sorted(ex.contract_key_chain(c).keys) == [3]  # type: ignore[union-attr]


def test_two_members_stay_byte_identical_and_restore() -> None:
    a, b = member(), member()
    admins = [User(1), User(1)]
    for ex, adm in zip((a, b), admins, strict=True):
        c = deploy(ex, adm, 2, keep=True)
        for h in range(3, 8):
            batch(ex, h, [adm.tx(c)])
    assert a.state_root == b.state_root
    snap = a.snapshot()
    assert snap == b.snapshot()
    fresh = member()
    fresh.restore(snap, expect_state_root=a.state_root)
    assert fresh.snapshot() == snap and fresh.storage_at(c, 0) == 5
    assert fresh.contract_key_chain(c).keys == a.contract_key_chain(c).keys  # type: ignore[union-attr]
    # a tampered section is refused, with no key in the message
    m = cbor2.loads(snap)
    m["sealed_storage"][0][2] = bytes([m["sealed_storage"][0][2][0] ^ 1]) + m["sealed_storage"][0][2][1:]
    with pytest.raises(StateError, match="does not decrypt"):
        member().restore(cbor2.dumps(m, canonical=True))


def test_policy_refusals_and_undo() -> None:
    ex, admin = member(), User(1)
    (r,) = batch(ex, 1, [admin.tx(None, INIT)], [admin.address])
    c = r.contract_address
    assert c is not None
    stranger = User(3)
    bad = batch(
        ex,
        2,
        [
            stranger.tx(KEY_POLICY_ADDRESS, policy(c, 1, True, 0)),
            stranger.tx(KEY_POLICY_ADDRESS, b"\x01" * 5),
            admin.tx(KEY_POLICY_ADDRESS, policy(c, 0, True, 0)),
            admin.tx(KEY_POLICY_ADDRESS, policy(admin.address, 1, True, 0)),
        ],
        [stranger.address],
    )
    assert [x.status for x in bad] == [0, 0, 0, 0]
    assert "deployer" in (bad[0].error or "") and "37 bytes" in (bad[1].error or "")
    assert "at least 1" in (bad[2].error or "")
    assert ex.contract_key_chain(c) is None
    assert all(a != c for a, _ in cbor2.loads(ex.snapshot())["storage"]) or ex.storage_at(c, 0) == 0
    # undo_batch takes the chain back with the batch
    root = ex.state_root
    batch(ex, 3, [admin.tx(KEY_POLICY_ADDRESS, policy(c, 1, False, 0))])
    assert ex.contract_key_chain(c) is not None
    ex.undo_batch()
    assert ex.contract_key_chain(c) is None and ex.state_root == root


def test_draw_depends_on_context_rotation_and_address() -> None:
    k = derive_contract_key(SHARED_SECRET, b"ctx1", b"\x01" * 20, 1)
    assert k != derive_contract_key(SHARED_SECRET, b"ctx2", b"\x01" * 20, 1)
    assert k != derive_contract_key(SHARED_SECRET, b"ctx1", b"\x01" * 20, 2)
    assert k != derive_contract_key(SHARED_SECRET, b"ctx1", b"\x02" * 20, 1)
    assert k != derive_contract_key(keccak256(b"other"), b"ctx1", b"\x01" * 20, 1)
