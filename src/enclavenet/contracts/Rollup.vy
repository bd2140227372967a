# pragma version 0.4.3
# @license MIT
"""
@title EnclaveNet Rollup
@notice The L1 inbox (deposits and encrypted submissions: one hash chain of L1
        messages), QC'd batch headers, and the withdrawals they pay. The committee
        registry (registry.vy) is compiled in: its functions are this contract's too.
@dev    Formats are exactly those of `enclavenet.crypto.messages` (the message chain)
        and `enclavenet.crypto.header` (header hash, signing digest, withdrawals hash).
        Storage layout and design choices: docs/CONTRACTS.md.
"""

import state
import registry

initializes: state
initializes: registry[state := state]
exports: registry.__interface__

# enclavenet.crypto.header.HEADER_DOMAIN / enclavenet.crypto.messages.MSG_GENESIS_ACC
HEADER_DOMAIN: constant(bytes32) = keccak256("EnclaveNet.Header.v1")
MSG_GENESIS_ACC: constant(bytes32) = keccak256("EnclaveNet.L1Messages.v1")
EMPTY_PAYLOAD_HASH: constant(bytes32) = keccak256(b"")
# enclavenet.crypto.header.EMPTY_WITHDRAWALS_HASH = keccak256(abi_encode(empty array))
EMPTY_WITHDRAWALS_HASH: constant(bytes32) = 0x569e75fc77c1a856f6daaf9e69d8a9566ca34aa47f9133711ce065a571af0cfd

KIND_USER: constant(uint256) = 1  # a deposit and/or an encrypted transaction envelope

MAX_WITHDRAWALS: constant(uint256) = 16  # per header; the enclaves carry the rest over
MAX_PAYLOAD: constant(uint256) = 131072  # enclavenet.crypto.envelope.MAX_ENVELOPE_BYTES
# `submit` takes up to 8 KiB; `submitLarge` the rest. Vyper sizes memory buffers by the
# bound, and the EVM charges memory quadratically: a 128 KiB bound would cost every
# submission ~45,000 gas of memory however short its payload.
SMALL_PAYLOAD: constant(uint256) = 8192
# gas handed to a withdrawal's recipient; if it needs more, or reverts, the amount is
# owed to it instead (see `claim`), so no recipient can block a header
WITHDRAWAL_GAS: constant(uint256) = 30000


struct Header:
    height: uint256
    prev_hash: bytes32
    epoch: uint256
    epoch_key: bytes32
    l1_block: uint256
    msg_count: uint256
    msg_acc: bytes32
    tx_root: bytes32
    receipts_root: bytes32
    state_root: bytes32
    balances_root: bytes32
    withdrawals_hash: bytes32
    data_commitment: bytes32


struct Withdrawal:
    recipient: address
    amount: uint256


event L1Message:
    index: indexed(uint256)
    sender: indexed(address)
    kind: uint256
    value: uint256
    l1_block: uint256
    payload: Bytes[MAX_PAYLOAD]


event HeaderAccepted:
    height: indexed(uint256)
    header_hash: bytes32


event EpochKeySet:
    epoch: indexed(uint256)
    epoch_key: bytes32


event WithdrawalPaid:
    recipient: indexed(address)
    amount: uint256


event WithdrawalOwed:
    recipient: indexed(address)
    amount: uint256


event Claimed:
    recipient: indexed(address)
    amount: uint256


msgAcc: public(bytes32)
lastHeaderHash: public(bytes32)
epochKey: public(HashMap[uint256, bytes32])
# withdrawals whose recipient did not take the pushed payment
owed: public(HashMap[address, uint256])
owedTotal: public(uint256)


@deploy
def __init__(owner: address, quorum: uint256, min_types: uint256):
    """
    @param owner administers the registry (platform roots, measurements, revocations,
           policy); later: governance
    @param quorum signatures a QC needs (1..32)
    @param min_types distinct TEE types a QC needs (1..quorum)
    """
    registry.__init__(owner, quorum, min_types)
    self.msgAcc = MSG_GENESIS_ACC


# ---------------------------------------------------------------- L1 messages


@internal
def _append(kind: uint256, amount: uint256, payload_hash: bytes32) -> uint256:
    hot: uint256 = state.hot
    assert hot & state.FROZEN_BIT == 0, "Rollup: frozen"
    index: uint256 = hot & state.W40
    assert index < state.W40, "Rollup: message index overflow"
    self.msgAcc = keccak256(
        abi_encode(self.msgAcc, kind, msg.sender, amount, block.number, payload_hash)
    )
    state.hot = unsafe_add(hot, 1)
    return index


@external
@payable
def deposit():
    """@notice Credit msg.value to msg.sender inside EnclaveNet (an L1 message, no payload)."""
    assert msg.value > 0, "Rollup: deposit needs a value"
    index: uint256 = self._append(KIND_USER, msg.value, EMPTY_PAYLOAD_HASH)
    log L1Message(
        index=index, sender=msg.sender, kind=KIND_USER, value=msg.value,
        l1_block=block.number, payload=b""
    )


@external
@payable
def submit(payload: Bytes[SMALL_PAYLOAD]):
    """
    @notice Put an opaque (encrypted) transaction envelope of up to 8 KiB in the inbox;
            any value sent is credited to msg.sender first. The committee must order it.
    """
    assert len(payload) > 0, "Rollup: empty payload (use deposit)"
    index: uint256 = self._append(KIND_USER, msg.value, keccak256(payload))
    log L1Message(
        index=index, sender=msg.sender, kind=KIND_USER, value=msg.value,
        l1_block=block.number, payload=payload
    )


@external
@payable
def submitLarge(payload: Bytes[MAX_PAYLOAD]):
    """@notice `submit` for envelopes of up to 128 KiB (costs ~45,000 gas more)."""
    assert len(payload) > 0, "Rollup: empty payload (use deposit)"
    index: uint256 = self._append(KIND_USER, msg.value, keccak256(payload))
    log L1Message(
        index=index, sender=msg.sender, kind=KIND_USER, value=msg.value,
        l1_block=block.number, payload=payload
    )


# ---------------------------------------------------------------- headers


@external
def submitHeader(
    header: Header,
    withdrawals: DynArray[Withdrawal, MAX_WITHDRAWALS],
    signatures: DynArray[registry.Signature, registry.MAX_QC],
):
    """
    @notice Accept the next header when a valid QC of the committee signed it, and pay
            the withdrawals it lists. Signatures: EIP-2098 (r, vs), ordered by strictly
            increasing signer address.
    @dev    Checks, then effects, then the payments (the only external calls); a
            re-entered submitHeader would need a QC for the next height and finds the
            state already advanced.
    """
    hot: uint256 = state.hot
    assert hot & state.FROZEN_BIT == 0, "Rollup: frozen"
    assert header.height == ((hot >> state.HEIGHT_SHIFT) & state.W40) + 1, "Rollup: wrong height (not last + 1)"
    assert header.prev_hash == self.lastHeaderHash, "Rollup: prev_hash does not link to the last header"

    total: uint256 = hot & state.W40
    assert header.msg_count <= total, "Rollup: msg_count beyond the L1 messages that exist"
    assert header.msg_count >= (hot >> state.CONSUMED_SHIFT) & state.W40, "Rollup: msg_count goes backwards"
    if header.msg_count == total:
        assert header.msg_acc == self.msgAcc, "Rollup: msg_acc differs from the L1 accumulator"
    assert header.l1_block < block.number, "Rollup: l1_block is not a finished L1 block"
    assert header.l1_block >= (hot >> state.L1BLOCK_SHIFT) & state.W40, "Rollup: l1_block goes backwards"
    epoch: uint256 = (hot >> state.EPOCH_SHIFT) & state.W32
    assert header.epoch >= epoch, "Rollup: epoch goes backwards"
    assert header.epoch <= state.W32, "Rollup: epoch out of range"

    if len(withdrawals) == 0:
        assert header.withdrawals_hash == EMPTY_WITHDRAWALS_HASH, "Rollup: withdrawals do not match withdrawals_hash"
    else:
        assert header.withdrawals_hash == keccak256(abi_encode(withdrawals)), "Rollup: withdrawals do not match withdrawals_hash"

    header_hash: bytes32 = keccak256(abi_encode(header))
    digest: bytes32 = keccak256(abi_encode(HEADER_DOMAIN, chain.id, self, header_hash))
    # The QC (registry.vy has the rules, the records and the slow path; the loop is
    # here because an internal call would copy the signatures array)
    assert len(signatures) >= (hot >> state.QUORUM_SHIFT) & state.W6, "Registry: QC has too few signatures"
    gen: uint256 = (hot >> state.RGEN_SHIFT) & state.W32
    types: uint256 = 0
    prev: uint256 = 0
    for sig: registry.Signature in signatures:
        vs: uint256 = convert(sig.vs, uint256)
        signer: address = ecrecover(
            digest, unsafe_add(27, vs >> 255), convert(sig.r, uint256), vs & registry.LOW_255
        )
        rec: uint256 = registry._enclaves[signer]
        # one test on the success path (unregistered and revoked records have expiry 0)
        if (
            convert(signer, uint256) <= prev
            or (rec >> registry.EXP_SHIFT) & registry.EXP_MASK <= block.timestamp
            or rec >> registry.GEN_SHIFT != gen
        ):
            rec = registry._slow_signer(signer, prev, rec, gen)
        prev = convert(signer, uint256)
        types |= 1 << (rec & registry.TYPE_MASK)
    assert registry._popcount(types) >= (hot >> state.MINTYPES_SHIFT) & state.W6, "Registry: QC spans too few TEE types"

    state.hot = (hot & ~state.HEADER_FIELDS) | (
        (header.msg_count << state.CONSUMED_SHIFT)
        | (header.height << state.HEIGHT_SHIFT)
        | (header.l1_block << state.L1BLOCK_SHIFT)
        | (header.epoch << state.EPOCH_SHIFT)
    )
    self.lastHeaderHash = header_hash
    if header.epoch != epoch or header.height == 1:
        self.epochKey[header.epoch] = header.epoch_key
        log EpochKeySet(epoch=header.epoch, epoch_key=header.epoch_key)
    log HeaderAccepted(height=header.height, header_hash=header_hash)

    for w: Withdrawal in withdrawals:
        assert w.amount <= self.balance - self.owedTotal, "Rollup: withdrawal larger than the Rollup holds"
        ok: bool = raw_call(
            w.recipient, b"", value=w.amount, gas=WITHDRAWAL_GAS, revert_on_failure=False
        )
        if ok:
            log WithdrawalPaid(recipient=w.recipient, amount=w.amount)
        else:
            self.owed[w.recipient] += w.amount
            self.owedTotal += w.amount
            log WithdrawalOwed(recipient=w.recipient, amount=w.amount)


@external
def claim():
    """@notice Collect the withdrawals that could not be pushed to msg.sender."""
    amount: uint256 = self.owed[msg.sender]
    assert amount != 0, "Rollup: nothing owed to the caller"
    self.owed[msg.sender] = 0
    self.owedTotal -= amount
    log Claimed(recipient=msg.sender, amount=amount)
    # all gas forwarded: this recipient could not take a 30,000-gas push (state is final)
    raw_call(msg.sender, b"", value=amount)


# ---------------------------------------------------------------- views


@external
@view
def msgCount() -> uint256:
    """@notice L1 messages appended so far (deposits + submissions)."""
    return state.hot & state.W40


@external
@view
def msgConsumed() -> uint256:
    """@notice msg_count of the last accepted header."""
    return (state.hot >> state.CONSUMED_SHIFT) & state.W40


@external
@view
def lastHeight() -> uint256:
    return (state.hot >> state.HEIGHT_SHIFT) & state.W40


@external
@view
def lastL1Block() -> uint256:
    return (state.hot >> state.L1BLOCK_SHIFT) & state.W40


@external
@view
def currentEpoch() -> uint256:
    return (state.hot >> state.EPOCH_SHIFT) & state.W32


@external
@view
def frozen() -> bool:
    return state.hot & state.FROZEN_BIT != 0


@external
@view
def headerHash(header: Header) -> bytes32:
    """@notice enclavenet.crypto.header.Header.hash, for tooling and tests."""
    return keccak256(abi_encode(header))


@external
@view
def headerDigest(header_hash: bytes32) -> bytes32:
    """@notice What the committee signs: enclavenet.crypto.header.header_signing_digest."""
    return keccak256(abi_encode(HEADER_DOMAIN, chain.id, self, header_hash))
