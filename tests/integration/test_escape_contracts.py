"""Issue 14 M5: the escape hatch never pays an EnclaveNet contract's balance to whoever controls
that address on L1.

An EnclaveNet contract's address is ``keccak(rlp(deployer, nonce))``, the same formula as on
L1: its deployer (or anyone with CREATE2 and the right salt) can put code at that address on
L1. Before the fix, that L1 contract called ``Rollup.escape`` as ``msg.sender`` = the address,
proved the contract's leaf (its salt leaked by a compromised type, or known to the deployer's
enclave-side contract) and took the balance, which belonged to the contract's users.
Now only an EOA escapes (``msg.sender == tx.origin``): a contract address has no key.
"""

from __future__ import annotations

import os
from functools import cache

import pytest
from eth_account import Account

from enclavenet.chain import EmbeddedL1, TxReverted, TxSender
from enclavenet.client.formats import create_address
from enclavenet.contracts import deploy_contracts
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, sign_qc
from enclavenet.crypto.escape import EscapeLeaf
from enclavenet.crypto.hashing import ZERO32, to_checksum
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, GENESIS_PREV_HASH, Header
from enclavenet.crypto.messages import MSG_GENESIS_ACC, L1Message, accumulate
from enclavenet.crypto.smt import SparseMerkleTree, smt_key, smt_leaf

DAY = 86_400
PERIOD = 5
BOND = 10**15
ETH = 10**18


@cache
def forwarder() -> tuple[list[object], bytes]:
    """An L1 contract that calls ``target`` with ``data`` (and bubbles its revert up)."""
    import vyper

    src = """
# pragma version ^0.4.0
@external
def fwd(target: address, data: Bytes[4096]):
    raw_call(target, data)

@external
@payable
def __default__():
    pass
"""
    out = vyper.compile_code(src, output_formats=["abi", "bytecode"])
    return out["abi"], bytes.fromhex(out["bytecode"][2:])


def test_an_l1_contract_at_an_enclavenet_contracts_address_cannot_escape_its_balance(embedded_l1: EmbeddedL1) -> None:
    l1 = embedded_l1
    owner: TxSender = l1.sender(0)
    alice: TxSender = l1.sender(1)
    platforms = {t: SimPlatform(t) for t in (1, 2)}
    meas = os.urandom(32)
    dep = deploy_contracts(owner, owner.address, 2, 2, platform_roots={t: p.root_address for t, p in platforms.items()},
                           measurements={t: [meas] for t in platforms})
    f = dep.rollup.functions
    members = [SimEnclave(t) for t in (1, 2)]
    for e in members:
        owner.transact(f.register(*platforms[e.tee_type].quote(e, meas, l1.timestamp() + DAY).args()))
    owner.transact(f.setChallengeParams(PERIOD, BOND))

    # mallory deployed a contract on EnclaveNet with her nonce 0; users paid 3 ETH into it
    mallory_key = Account.create()
    enclavenet_contract = create_address(mallory_key.address, 0)
    msgs: list[L1Message] = []
    for _ in range(3):
        rc = alice.transact(f.deposit(), value=ETH)  # the value the contract holds, in the Rollup
        for ev in dep.rollup.events.L1Message().process_receipt(rc):
            a = ev.args
            msgs.append(L1Message(a.index, a.kind, to_checksum(a.sender), a.value, a.l1_block, bytes(a.payload)))
    salts = {enclavenet_contract: os.urandom(32), alice.address: os.urandom(32)}
    balances = {enclavenet_contract: 3 * ETH - 10**15, alice.address: 10**15}
    tree = SparseMerkleTree()
    tree.update({smt_key(a): smt_leaf(smt_key(a), b, salts[a]) for a, b in balances.items()})
    h = Header(height=1, prev_hash=GENESIS_PREV_HASH, epoch=0, epoch_key=b"\x11" * 32, l1_block=l1.block_number() - 1,
               msg_count=len(msgs), msg_acc=accumulate(MSG_GENESIS_ACC, msgs), tx_root=ZERO32, receipts_root=ZERO32,
               state_root=os.urandom(32), balances_root=tree.root, withdrawals_hash=EMPTY_WITHDRAWALS_HASH,
               data_commitment=ZERO32)
    owner.transact(f.submitHeader(h.as_tuple(), [], sign_qc(h, members, l1.chain_id, dep.rollup.address)))
    # the committee goes silent: a challenge passes its deadline, the Rollup freezes
    alice.transact(f.challenge(b"\x01sealed-tx"), value=BOND)
    l1.mine(PERIOD + 1)
    alice.transact(f.freeze(len(msgs)))
    assert f.frozen().call()

    # on L1 mallory deploys (nonce 0 again) a forwarder: it lands at the contract's address
    l1.sender(2).send_raw(mallory_key.address, value=ETH)
    mallory = l1.sender(mallory_key)
    abi, code = forwarder()
    fwd_address = mallory.deploy(abi, code)
    assert fwd_address == enclavenet_contract
    fwd = l1.w3.eth.contract(address=fwd_address, abi=abi)
    leaf = EscapeLeaf(enclavenet_contract, balances[enclavenet_contract], salts[enclavenet_contract],
                      tuple(tree.proof(smt_key(enclavenet_contract))), 1, h.hash(), h.balances_root)
    assert leaf.verify()  # the proof itself is valid: only the caller's kind stops it
    data = dep.rollup.encode_abi("escape", args=list(leaf.escape_args(h.as_tuple(), mallory.address)))
    before = l1.w3.eth.get_balance(dep.rollup.address)
    with pytest.raises(TxReverted) as info:
        mallory.transact(fwd.functions.fwd(dep.rollup.address, data))
    assert "not an EOA" in info.value.reason, info.value.reason
    assert l1.w3.eth.get_balance(dep.rollup.address) == before
    assert not f.escaped(enclavenet_contract).call()

    # an EOA still escapes its own balance
    a_leaf = EscapeLeaf(alice.address, balances[alice.address], salts[alice.address],
                        tuple(tree.proof(smt_key(alice.address))), 1, h.hash(), h.balances_root)
    rcpt = to_checksum(os.urandom(20))
    alice.transact(f.escape(*a_leaf.escape_args(h.as_tuple(), rcpt)))
    assert l1.w3.eth.get_balance(rcpt) == balances[alice.address]
    # and an EOA cannot use the contract's leaf either (the key is keccak(msg.sender))
    with pytest.raises(TxReverted) as info:
        mallory.transact(f.escape(*leaf.escape_args(h.as_tuple(), mallory.address)))
    assert "balance proof does not match" in info.value.reason
