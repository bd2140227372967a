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
import dap

initializes: state
initializes: registry[state := state]
exports: registry.__interface__
# data availability: the DAP receipt threshold and the active DAPs (dap.vy; their collateral
# and the laziness game live in DapManager.vy)
initializes: dap[state := state, registry := registry]
exports: dap.__interface__

# enclavenet.crypto.header.HEADER_DOMAIN / enclavenet.crypto.messages.MSG_GENESIS_ACC
HEADER_DOMAIN: constant(bytes32) = keccak256("EnclaveNet.Header.v1")
MSG_GENESIS_ACC: constant(bytes32) = keccak256("EnclaveNet.L1Messages.v1")
EMPTY_PAYLOAD_HASH: constant(bytes32) = keccak256(b"")
# enclavenet.crypto.header.EMPTY_WITHDRAWALS_HASH = keccak256(abi_encode(empty array))
EMPTY_WITHDRAWALS_HASH: constant(bytes32) = 0x569e75fc77c1a856f6daaf9e69d8a9566ca34aa47f9133711ce065a571af0cfd

KIND_USER: constant(uint256) = 1  # a deposit and/or an encrypted transaction envelope
KIND_CHALLENGE: constant(uint256) = 2  # a challenged transaction (forced inclusion, with a bond)

MAX_WITHDRAWALS: constant(uint256) = 16  # per header; the enclaves carry the rest over
MAX_PAYLOAD: constant(uint256) = 131072  # enclavenet.crypto.envelope.MAX_ENVELOPE_BYTES
# `submit` takes up to 8 KiB; `submitLarge` the rest. Vyper sizes memory buffers by the
# bound, and the EVM charges memory quadratically: a 128 KiB bound would cost every
# submission ~45,000 gas of memory however short its payload.
SMALL_PAYLOAD: constant(uint256) = 8192
# gas handed to a withdrawal's recipient; if it needs more, or reverts, the amount is
# owed to it instead (see `claim`), so no recipient can block a header
WITHDRAWAL_GAS: constant(uint256) = 30000

# Challenge / freeze / escape hatch / reclaim (enclavenet.crypto.smt, enclavenet.crypto.escape)
DEFAULT_CHALLENGE_PERIOD: constant(uint256) = 7200  # blocks (~1 day at 12 s); owner: setChallengeParams
DEFAULT_CHALLENGE_BOND: constant(uint256) = 10**16  # wei (0.01 ether)
MAX_CHALLENGE_PERIOD: constant(uint256) = 2**32
SMT_LEAF: constant(bytes1) = 0x00  # enclavenet.crypto.smt: leaf = keccak(0x00 || key || balance || salt)
SMT_NODE: constant(bytes1) = 0x01  # inner = keccak(0x01 || left || right)
MAX_PROOF: constant(uint256) = 256  # siblings of a balances proof (the tree's depth)
MAX_SEGMENT: constant(uint256) = 256  # L1 messages per reclaim / proveMessages call
# The L1 message accumulators kept on chain: msgAccRing[i & (MSG_RING - 1)] = the accumulator after
# i messages, for the newest MSG_RING values of i (msg_total - 255 .. msg_total). submitHeader
# checks a header's msg_acc against it, so a header may leave at most MSG_RING - 1 newer
# messages pending. Every slot is written nonzero by the constructor (MSG_RING x 22,100 gas, once)
# so an append is a nonzero -> nonzero SSTORE (5,000 gas). A power of two: indexed with
# `& (MSG_RING - 1)`. Trade-off (larger ring: more deploy gas, more lag tolerated under
# message spam): docs/CONTRACTS.md.
MSG_RING: constant(uint256) = 256


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


# one L1 message as it enters the chain (enclavenet.crypto.messages.L1Message, payload hashed)
struct Message:
    kind: uint256
    sender: address
    value: uint256
    l1_block: uint256
    payload_hash: bytes32


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


event ChallengeStarted:
    index: indexed(uint256)
    challenger: indexed(address)
    bond: uint256
    deadline: uint256


event ChallengeParamsSet:
    period: uint256
    bond: uint256


event Frozen:
    by: indexed(address)
    index: uint256  # the L1 message (challenge or deposit) left unconsumed past its deadline
    deadline: uint256


event Escaped:
    account: indexed(address)
    recipient: indexed(address)
    amount: uint256


event Reclaimed:
    index: indexed(uint256)
    sender: indexed(address)
    amount: uint256
    paid: bool  # False: the push failed and the amount is owed (Rollup.claim)


event MessagesProven:
    index: indexed(uint256)
    acc: bytes32


msgAccRing: bytes32[MSG_RING]
lastHeaderHash: public(bytes32)
epochKey: public(HashMap[uint256, bytes32])
# withdrawals whose recipient did not take the pushed payment
owed: public(HashMap[address, uint256])
owedTotal: public(uint256)
# challenges (message index -> deadline block; 0 = no challenge there), and their parameters
challengePeriod: public(uint256)
challengeBond: public(uint256)
challengeDeadline: public(HashMap[uint256, uint256])
# escape hatch and reclaim: who/what was paid after the freeze
escaped: public(HashMap[address, bool])
reclaimed: public(HashMap[uint256, bool])
# accumulators proven to lie on the L1 message chain (acc -> index of the next message + 1)
_provenAcc: HashMap[bytes32, uint256]
# (declared last, so the slots above keep their numbers: docs/CONTRACTS.md)
# msgBlockRing[i & (MSG_RING - 1)] = the L1 block of message i, for the newest MSG_RING messages:
# submitHeader checks that a header leaves out no message of a block <= its l1_block (whole
# blocks). Pre-initialised nonzero like msgAccRing, so an append writes nonzero -> nonzero.
msgBlockRing: uint256[MSG_RING]


@deploy
def __init__(owner: address, quorum: uint256, min_types: uint256):
    """
    @param owner administers the registry (platform roots, measurements, revocations,
           policy); later: governance
    @param quorum signatures a QC needs (1..32)
    @param min_types distinct TEE types a QC needs (1..quorum)
    """
    registry.__init__(owner, quorum, min_types)
    # acc_0 = the genesis accumulator in slot 0; the other slots get the same nonzero
    # placeholder (never read for a real index before an append overwrites it)
    for i: uint256 in range(MSG_RING):
        self.msgAccRing[i] = MSG_GENESIS_ACC
        self.msgBlockRing[i] = 1
    self.challengePeriod = DEFAULT_CHALLENGE_PERIOD
    self.challengeBond = DEFAULT_CHALLENGE_BOND


# ---------------------------------------------------------------- L1 messages


@internal
def _append(kind: uint256, amount: uint256, payload_hash: bytes32) -> uint256:
    hot: uint256 = state.hot
    assert hot & state.FROZEN_BIT == 0, "Rollup: frozen"
    index: uint256 = hot & state.W40
    assert index < state.W40, "Rollup: message index overflow"
    self.msgAccRing[unsafe_add(index, 1) & (MSG_RING - 1)] = keccak256(
        abi_encode(self.msgAccRing[index & (MSG_RING - 1)], kind, msg.sender, amount, block.number, payload_hash)
    )
    self.msgBlockRing[index & (MSG_RING - 1)] = block.number
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
    receipts: DynArray[registry.Signature, dap.MAX_RECEIPTS] = [],
):
    """
    @notice Accept the next header when a valid QC of the committee signed it, and pay
            the withdrawals it lists. Signatures: EIP-2098 (r, vs), ordered by strictly
            increasing signer address. `receipts`: DAP storage receipts over the header's
            data_commitment (same form and order), at least dapThreshold() of them.
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
    # the accumulator after msg_count messages, also when newer ones are pending (the ring)
    assert unsafe_sub(total, header.msg_count) < MSG_RING, "Rollup: msg_count too far behind the L1 messages; consume more"
    assert header.msg_acc == self.msgAccRing[header.msg_count & (MSG_RING - 1)], "Rollup: msg_acc differs from the L1 accumulator"
    # ... and whole L1 blocks: the first message left pending (its ring slot is valid: lag <
    # MSG_RING) is from a block after l1_block (one assert: a reason string costs ~100 bytes of code)
    assert header.l1_block < block.number and (
        header.msg_count == total or self.msgBlockRing[header.msg_count & (MSG_RING - 1)] > header.l1_block
    ), "Rollup: l1_block is not a finished L1 block, or skips a message of a block <= it"
    assert header.l1_block >= (hot >> state.L1BLOCK_SHIFT) & state.W40, "Rollup: l1_block goes backwards"
    epoch: uint256 = (hot >> state.EPOCH_SHIFT) & state.W32
    assert header.epoch >= epoch, "Rollup: epoch goes backwards"
    assert header.epoch <= state.W32, "Rollup: epoch out of range"

    # one assert for both cases (a reason string costs ~100 bytes of runtime code each time)
    wh: bytes32 = EMPTY_WITHDRAWALS_HASH
    if len(withdrawals) != 0:
        wh = keccak256(abi_encode(withdrawals))
    assert header.withdrawals_hash == wh, "Rollup: withdrawals do not match withdrawals_hash"

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
    # DAP storage receipts over the data commitment (dap.vy; t = 0: nothing more is read)
    dap_t: uint256 = (hot >> state.DAPT_SHIFT) & state.W6
    if dap_t != 0:
        assert len(receipts) >= dap_t, "DAP: too few storage receipts for the threshold"
        digest = keccak256(abi_encode(dap.RECEIPT_DOMAIN, chain.id, self, header.data_commitment))
        prev = 0
        for sig: registry.Signature in receipts:
            vs: uint256 = convert(sig.vs, uint256)
            signer: address = ecrecover(digest, unsafe_add(27, vs >> 255), convert(sig.r, uint256), vs & registry.LOW_255)
            assert convert(signer, uint256) > prev and dap._dapActive[signer] != 0, "DAP: receipt not by an active DAP, or receipts not by strictly increasing signer"
            prev = convert(signer, uint256)

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


# ---------------------------------------------------------------- challenge, freeze, escape


@external
def setChallengeParams(period: uint256, bond: uint256):
    """
    @notice Owner: blocks a challenge (and any L1 message) may wait for a header before the
            Rollup can be frozen, and the minimum challenge bond. Open challenges keep the
            deadline they were given.
    """
    registry._only_owner()
    assert period >= 1 and period <= MAX_CHALLENGE_PERIOD, "Rollup: challenge period out of range (1..2**32 blocks)"
    self.challengePeriod = period
    self.challengeBond = bond
    log ChallengeParamsSet(period=period, bond=bond)


@external
@payable
def challenge(payload: Bytes[SMALL_PAYLOAD]):
    """
    @notice Force the committee to execute a transaction it ignores: `payload` is an envelope
            holding a *signed* transaction, msg.value (>= challengeBond) the bond. It becomes
            an L1 message of kind 2 in the one message chain, so the committee executes it in
            L1 order; a header must consume it (msg_count > its index) before
            `challengeDeadline(index)`, or anyone may `freeze` the Rollup.
    @dev    The enclaves settle the bond inside EnclaveNet, in the state every member signs:
            credited back to the challenger when the transaction executes, to the committee's
            treasury when it is garbage or was already executed (docs/CONTRACTS.md).
    """
    assert len(payload) > 0, "Rollup: empty challenge payload"
    assert msg.value >= self.challengeBond, "Rollup: challenge bond below challengeBond"
    index: uint256 = self._append(KIND_CHALLENGE, msg.value, keccak256(payload))
    deadline: uint256 = block.number + self.challengePeriod
    self.challengeDeadline[index] = deadline
    log L1Message(
        index=index, sender=msg.sender, kind=KIND_CHALLENGE, value=msg.value,
        l1_block=block.number, payload=payload
    )
    log ChallengeStarted(index=index, challenger=msg.sender, bond=msg.value, deadline=deadline)


@internal
def _freeze(index: uint256, deadline: uint256):
    state.hot = state.hot | state.FROZEN_BIT
    log Frozen(by=msg.sender, index=index, deadline=deadline)


@external
def freeze(index: uint256):
    """
    @notice Anyone: freeze the Rollup because challenge `index` passed its deadline and no
            accepted header consumed it. No more headers, deposits, submissions or
            challenges; balances leave through `escape`, unconsumed messages through `reclaim`.
    """
    hot: uint256 = state.hot
    assert hot & state.FROZEN_BIT == 0, "Rollup: already frozen"
    deadline: uint256 = self.challengeDeadline[index]
    assert deadline != 0, "Rollup: no challenge at this message index"
    assert index >= (hot >> state.CONSUMED_SHIFT) & state.W40, "Rollup: challenge resolved (an accepted header consumed it)"
    assert block.number > deadline, "Rollup: challenge deadline not passed yet"
    self._freeze(index, deadline)


@internal
@pure
def _smt_root(key: bytes32, leaf: bytes32, siblings: DynArray[bytes32, MAX_PROOF]) -> bytes32:
    """enclavenet.crypto.smt.smt_verify: the root of `leaf` at `key` with these siblings."""
    k: uint256 = convert(key, uint256)
    n: uint256 = len(siblings)
    h: bytes32 = leaf
    for i: uint256 in range(n, bound=MAX_PROOF):
        # siblings run from the leaf's level (depth n - 1) up to the root's children (depth 0)
        if (k >> unsafe_add(unsafe_sub(256, n), i)) & 1 == 1:
            h = keccak256(concat(SMT_NODE, siblings[i], h))
        else:
            h = keccak256(concat(SMT_NODE, h, siblings[i]))
    return h


@external
def escape(
    header: Header,
    balance: uint256,
    salt: bytes32,
    siblings: DynArray[bytes32, MAX_PROOF],
    recipient: address,
):
    """
    @notice After the freeze: withdraw msg.sender's EnclaveNet balance to `recipient` by
            proving its salted leaf (enclavenet.crypto.escape.EscapeLeaf) against the
            balances root of the last accepted header. Needs no enclave; once per account;
            only an EOA calls it (msg.sender == tx.origin), never a contract (docs/CONTRACTS.md).
    @param  header the last accepted header (its hash must be lastHeaderHash)
    """
    assert state.hot & state.FROZEN_BIT != 0, "Rollup: not frozen (the escape hatch opens after a freeze)"
    last: bytes32 = self.lastHeaderHash
    assert last != empty(bytes32), "Rollup: no header was ever accepted (reclaim deposits)"
    assert keccak256(abi_encode(header)) == last, "Rollup: header is not the last accepted header"
    # Only an externally owned account escapes (its key controls the address here as on
    # EnclaveNet). An EnclaveNet contract's address has no key: on L1 whoever deploys code at
    # it (same deployer and nonce, CREATE2) would take the contract's balance. One assert
    # for both (a revert string costs ~100 bytes of code; the Rollup is near EIP-170).
    assert msg.sender == tx.origin and not self.escaped[msg.sender], "Rollup: already escaped, or not an EOA"
    assert balance != 0, "Rollup: a zero balance has no leaf"
    assert recipient != empty(address), "Rollup: recipient is the zero address"
    key: bytes32 = keccak256(slice(convert(msg.sender, bytes32), 12, 20))
    leaf: bytes32 = keccak256(concat(SMT_LEAF, key, convert(balance, bytes32), salt))
    assert self._smt_root(key, leaf, siblings) == header.balances_root, "Rollup: balance proof does not match the balances root"
    assert balance <= self.balance - self.owedTotal, "Rollup: balance larger than the Rollup holds"
    self.escaped[msg.sender] = True
    log Escaped(account=msg.sender, recipient=recipient, amount=balance)
    raw_call(recipient, b"", value=balance)


@internal
@view
def _segment_start(acc: bytes32, length: uint256) -> uint256:
    """
    Index of the first of `length` messages whose chain ends at accumulator `acc`: the
    current accumulator, or one `proveMessages` recorded; refuse any other.
    """
    end: uint256 = state.hot & state.W40
    if acc != self.msgAccRing[end & (MSG_RING - 1)]:
        end = self._provenAcc[acc]
        assert end != 0, "Rollup: the messages do not lead to the L1 accumulator or a proven one"
        end = unsafe_sub(end, 1)
    assert end >= length, "Rollup: segment longer than the chain before it"
    return unsafe_sub(end, length)


@external
def proveMessages(start_acc: bytes32, messages: DynArray[Message, MAX_SEGMENT]):
    """
    @notice Record that `start_acc` lies on the L1 message chain (the accumulator before
            `messages`, which lead to the current or an already proven accumulator), so a
            reclaim of an older message needs a segment of at most 256 messages.
    """
    assert len(messages) > 0, "Rollup: empty segment"
    acc: bytes32 = start_acc
    for m: Message in messages:
        acc = keccak256(abi_encode(acc, m.kind, m.sender, m.value, m.l1_block, m.payload_hash))
    start: uint256 = self._segment_start(acc, len(messages))
    self._provenAcc[start_acc] = start + 1
    log MessagesProven(index=start, acc=start_acc)


@external
def reclaim(start_acc: bytes32, messages: DynArray[Message, MAX_SEGMENT], position: uint256):
    """
    @notice Pay back the value of an L1 message (deposit, submission with value, challenge
            bond) that no accepted header consumed: `messages[position]`, in a segment of
            the L1 message chain from `start_acc` (the accumulator before it) to the current
            accumulator or a proven one. Anyone may call it; the message's sender is paid.
            Allowed once the Rollup is frozen, or when the message is past its deadline
            (l1_block + challengePeriod) -- the committee failed, so this freezes the Rollup
            first: no later header can credit what is paid back here.
    """
    assert position < len(messages), "Rollup: position outside the segment"
    acc: bytes32 = start_acc
    for m: Message in messages:
        acc = keccak256(abi_encode(acc, m.kind, m.sender, m.value, m.l1_block, m.payload_hash))
    index: uint256 = self._segment_start(acc, len(messages)) + position
    hot: uint256 = state.hot
    assert index >= (hot >> state.CONSUMED_SHIFT) & state.W40, "Rollup: message consumed by an accepted header (its value is in the balances root: use escape)"
    m: Message = messages[position]
    assert m.value != 0, "Rollup: message carries no value"
    assert not self.reclaimed[index], "Rollup: message already reclaimed"
    if hot & state.FROZEN_BIT == 0:
        deadline: uint256 = m.l1_block + self.challengePeriod
        assert block.number > deadline, "Rollup: message not past its deadline (l1_block + challengePeriod) and not frozen"
        self._freeze(index, deadline)
    self.reclaimed[index] = True
    ok: bool = raw_call(m.sender, b"", value=m.value, gas=WITHDRAWAL_GAS, revert_on_failure=False)
    if not ok:
        self.owed[m.sender] += m.value
        self.owedTotal += m.value
    log Reclaimed(index=index, sender=m.sender, amount=m.value, paid=ok)


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
def msgAcc() -> bytes32:
    """@notice The L1 message accumulator after all msgCount() messages."""
    return self.msgAccRing[(state.hot & state.W40) & (MSG_RING - 1)]


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
