# pragma version 0.4.3
# @license MIT
"""
@title The Rollup's side of data availability (a module of the Rollup contract)
@notice A header is accepted only with storage receipts -- secp256k1 signatures over its
        `data_commitment` -- from at least `t` distinct *active* DAPs. This module keeps the
        threshold `t` (in the hot slot, state.DAPT_SHIFT: a header with t = 0 reads nothing
        more) and one flag slot per DAP; the receipt loop itself sits in
        Rollup.submitHeader (like the QC loop: an internal call would copy the array).
        Which DAPs are active, and `t`, are decided by the DapManager contract
        (DapManager.vy: collateral, leaving, the laziness penalty game), which alone may
        set them. The DapManager is a separate contract because
        the Rollup's code is close to the EIP-170 size limit; the header path never calls it.
@dev    Receipt digest: enclavenet.crypto.dap.dap_receipt_digest =
        keccak256(abi.encode(keccak("EnclaveNet.DapReceipt.v1"), chainid, rollup, data_commitment)).
"""

import state
import registry

uses: state
uses: registry

# enclavenet.crypto.dap.DAP_RECEIPT_DOMAIN
RECEIPT_DOMAIN: constant(bytes32) = keccak256("EnclaveNet.DapReceipt.v1")
# receipts per header (so t <= 8). Vyper reserves memory for the whole bound even when a header
# carries none, and memory costs gas: 8 adds ~140 gas to every header, 32 would add ~320.
MAX_RECEIPTS: constant(uint256) = 8


event DapManagerSet:
    manager: indexed(address)


dapManager: public(address)
# 1 = the DAP's receipts count (set by the DapManager)
_dapActive: HashMap[address, uint256]


@external
def setDapManager(manager: address):
    """@notice Owner, once: the DapManager contract (DapManager.vy) that runs the DAPs."""
    registry._only_owner()
    assert self.dapManager == empty(address), "DAP: the DapManager is already set"
    self.dapManager = manager
    log DapManagerSet(manager=manager)


@external
def dapControl(dap: address, active: bool, threshold: uint256):
    """
    @notice DapManager only: count (or stop counting) `dap`'s receipts (none if the zero
            address), and set the receipts every header needs (0..8; the DapManager keeps
            it at most the number of active DAPs and emits the events).
    """
    assert msg.sender == self.dapManager, "DAP: caller is not the DapManager"
    assert threshold <= MAX_RECEIPTS, "DAP: threshold above 8"
    if dap != empty(address):
        self._dapActive[dap] = convert(active, uint256)
    state.hot = (state.hot & ~(state.W6 << state.DAPT_SHIFT)) | (threshold << state.DAPT_SHIFT)


@external
@view
def dapThreshold() -> uint256:
    """@notice Storage receipts every header needs (0 = not checked)."""
    return (state.hot >> state.DAPT_SHIFT) & state.W6
