# pragma version 0.4.3
# @license MIT
"""
@title EnclaveNet data availability providers: collateral and the laziness penalty game
@notice DAPs store every header's encrypted batch data off chain and sign storage receipts
        over its `data_commitment`; the Rollup accepts a header only with receipts from at
        least `t` active DAPs (dap.vy, checked in Rollup.submitHeader). This contract holds
        the DAPs' collateral, lets them join and leave after a delay, decides which are
        active (it alone sets the Rollup's DAP flags and threshold), and runs the laziness
        penalty game (TeeRollup V-F): anyone requests a piece of stored data on chain with
        a fee; the DAPs answer with the piece and a Merkle proof before a deadline; the
        named DAPs that did not answer are slashed -- fully when nobody answered, by
        `lazyPenalty` otherwise (Tas and Boneh's slashing function, docs/DAP.md).
@dev    Formats: `enclavenet.crypto.dap` (receipt digest, piece paths) and
        `enclavenet.crypto.merkle` (tree rules). Administration follows the Rollup's owner.

        A DAP record is ONE storage slot:
            bits   0..127  collateral (wei)
            bits 128..191  leave_at: block from which the DAP may withdraw (0 = not leaving)
            bits 192..223  pending: open data requests naming this DAP (withdrawal waits for 0)
            bit  254       registered
            bit  255       active: its receipts count (registered, not leaving, collateral
                           >= minCollateral when last changed) -- `rec >= ACTIVE_BIT`
        The Rollup requires `threshold` receipts from active DAPs, however many are active:
        with fewer active DAPs than that, headers wait (the check never switches itself off
        when DAPs leave or are slashed; the owner may lower the threshold, in the open).
"""

interface Rollup:
    def dapControl(dap: address, active: bool, threshold: uint256): nonpayable
    def owner() -> address: view


struct Signature:
    # EIP-2098 compact signature: r, and s with the recovery bit (v - 27) as its top bit
    r: bytes32
    vs: bytes32


# enclavenet.crypto.dap.DAP_RECEIPT_DOMAIN
RECEIPT_DOMAIN: constant(bytes32) = keccak256("EnclaveNet.DapReceipt.v1")
MAX_RECEIPTS: constant(uint256) = 32  # DAPs named per request
MAX_THRESHOLD: constant(uint256) = 8  # the Rollup's bound on receipts per header (dap.vy)
MAX_PIECE: constant(uint256) = 131072  # bytes of one answered piece (an envelope's bound)
MAX_DEPTH: constant(uint256) = 32  # Merkle depth of a piece (batch data has < 2**32 items)
MAX_ENDPOINT: constant(uint256) = 256
MERKLE_LEAF: constant(bytes1) = 0x00  # enclavenet.crypto.merkle domain bytes
MERKLE_NODE: constant(bytes1) = 0x01

COLLATERAL_MASK: constant(uint256) = 2**128 - 1
LEAVE_SHIFT: constant(uint256) = 128
LEAVE_MASK: constant(uint256) = 2**64 - 1
PENDING_SHIFT: constant(uint256) = 192
PENDING_MASK: constant(uint256) = 2**32 - 1
PENDING_ONE: constant(uint256) = 2**192
REGISTERED_BIT: constant(uint256) = 2**254
ACTIVE_BIT: constant(uint256) = 2**255
LOW_255: constant(uint256) = 2**255 - 1

DEFAULT_MIN_COLLATERAL: constant(uint256) = 10**18
DEFAULT_LEAVE_DELAY: constant(uint256) = 50400  # blocks (~1 week at 12 s)
DEFAULT_REQUEST_FEE: constant(uint256) = 10**16
DEFAULT_ANSWER_PERIOD: constant(uint256) = 300  # blocks (~1 hour)
DEFAULT_LAZY_PENALTY: constant(uint256) = 10**17  # min collateral / 10
MAX_PERIOD: constant(uint256) = 2**32


struct DapInfo:
    collateral: uint256
    registered: bool
    active: bool
    leave_at: uint256
    pending: uint256


struct DataRequest:
    data_commitment: bytes32
    path: uint256  # bit k = the branch taken at depth k from the root (1 = right child)
    deadline: uint256  # last block in which an answer counts
    fee: uint256
    requester: address
    liable_hash: bytes32  # keccak256(abi_encode(named DAPs)), strictly increasing addresses
    n_liable: uint256
    responders: uint256
    resolved: bool


event DapRegistered:
    dap: indexed(address)
    collateral: uint256
    endpoint: String[MAX_ENDPOINT]


event DapEndpointSet:
    dap: indexed(address)
    endpoint: String[MAX_ENDPOINT]


event DapCollateralAdded:
    dap: indexed(address)
    amount: uint256
    collateral: uint256


event DapActiveSet:
    dap: indexed(address)
    active: bool


event DapLeaving:
    dap: indexed(address)
    leave_at: uint256


event DapWithdrawn:
    dap: indexed(address)
    amount: uint256


event ThresholdSet:
    threshold: uint256


event ParamsSet:
    min_collateral: uint256
    leave_delay: uint256
    request_fee: uint256
    answer_period: uint256
    lazy_penalty: uint256


event DataRequested:
    request_id: indexed(uint256)
    requester: indexed(address)
    data_commitment: bytes32
    path: uint256
    deadline: uint256
    fee: uint256
    daps: DynArray[address, MAX_RECEIPTS]


event DataAnswered:
    request_id: indexed(uint256)
    dap: indexed(address)
    piece_hash: bytes32


event DapSlashed:
    dap: indexed(address)
    request_id: indexed(uint256)
    amount: uint256
    collateral: uint256


event DataRequestResolved:
    request_id: indexed(uint256)
    responders: uint256
    slashed: uint256


event Claimed:
    account: indexed(address)
    amount: uint256


rollup: public(immutable(address))
_daps: HashMap[address, uint256]
activeCount: public(uint256)
# receipts a header needs (the Rollup is told exactly this, not capped by activeCount)
threshold: public(uint256)
minCollateral: public(uint256)
leaveDelay: public(uint256)
requestFee: public(uint256)
answerPeriod: public(uint256)
lazyPenalty: public(uint256)
# slashed collateral, locked in this contract for good (burned: paid to nobody)
burned: public(uint256)
# answer fees and refunded request fees, collected with `claim`
owed: public(HashMap[address, uint256])
requestCount: public(uint256)
_requests: HashMap[uint256, DataRequest]
_answered: HashMap[uint256, HashMap[address, bool]]


@deploy
def __init__(rollup_address: address):
    """@param rollup_address the Rollup whose owner administers this contract (its
       setDapManager must then name this contract)"""
    assert rollup_address != empty(address), "DAP: rollup is the zero address"
    rollup = rollup_address
    self.minCollateral = DEFAULT_MIN_COLLATERAL
    self.leaveDelay = DEFAULT_LEAVE_DELAY
    self.requestFee = DEFAULT_REQUEST_FEE
    self.answerPeriod = DEFAULT_ANSWER_PERIOD
    self.lazyPenalty = DEFAULT_LAZY_PENALTY


@internal
@view
def _only_owner():
    assert msg.sender == staticcall Rollup(rollup).owner(), "DAP: caller is not the Rollup's owner"


@internal
@view
def _only_registered(rec: uint256):
    assert rec & REGISTERED_BIT != 0, "DAP: caller is not a registered DAP"


@internal
def _tell_rollup(dap: address, active: bool):
    """Push a DAP's flag (none for the zero address) and the threshold."""
    extcall Rollup(rollup).dapControl(dap, active, self.threshold)


@internal
def _set_active(dap: address, active: bool):
    if active:
        self.activeCount += 1
    else:
        self.activeCount -= 1
    self._tell_rollup(dap, active)
    log DapActiveSet(dap=dap, active=active)


@internal
@view
def _digest(data_commitment: bytes32) -> bytes32:
    return keccak256(abi_encode(RECEIPT_DOMAIN, chain.id, rollup, data_commitment))


# ---------------------------------------------------------------- administration


@external
def setThreshold(threshold: uint256):
    """
    @notice Rollup owner: storage receipts (from distinct active DAPs) every header needs;
            0 turns the check off. With fewer active DAPs than `threshold`, headers wait.
    """
    self._only_owner()
    assert threshold <= MAX_THRESHOLD, "DAP: threshold above 8"
    self.threshold = threshold
    self._tell_rollup(empty(address), False)
    log ThresholdSet(threshold=threshold)


@external
def setParams(
    min_collateral: uint256,
    leave_delay: uint256,
    request_fee: uint256,
    answer_period: uint256,
    lazy_penalty: uint256,
):
    """
    @notice Rollup owner: the game's parameters. A new minimum applies to registrations,
            top-ups and slashes from now on; open requests keep their deadline and fee.
    """
    self._only_owner()
    assert min_collateral > 0 and min_collateral <= COLLATERAL_MASK, "DAP: min collateral out of range"
    assert answer_period >= 1 and answer_period <= MAX_PERIOD, "DAP: answer period out of range (1..2**32 blocks)"
    assert leave_delay >= answer_period and leave_delay <= MAX_PERIOD, "DAP: leave delay must be in answer period..2**32 blocks"
    assert lazy_penalty <= min_collateral, "DAP: lazy penalty above the min collateral"
    self.minCollateral = min_collateral
    self.leaveDelay = leave_delay
    self.requestFee = request_fee
    self.answerPeriod = answer_period
    self.lazyPenalty = lazy_penalty
    log ParamsSet(
        min_collateral=min_collateral, leave_delay=leave_delay, request_fee=request_fee,
        answer_period=answer_period, lazy_penalty=lazy_penalty
    )


# ---------------------------------------------------------------- DAP life cycle


@external
@payable
def register(endpoint: String[MAX_ENDPOINT]):
    """
    @notice Register msg.sender (the DAP's receipt-signing key) with msg.value as collateral
            (at least minCollateral) and the URL where it serves data. Its receipts count
            at once.
    """
    assert self._daps[msg.sender] == 0, "DAP: already registered (leave and withdraw first)"
    assert msg.value >= self.minCollateral, "DAP: collateral below minCollateral"
    assert msg.value <= COLLATERAL_MASK, "DAP: collateral out of range"
    self._daps[msg.sender] = msg.value | REGISTERED_BIT | ACTIVE_BIT
    log DapRegistered(dap=msg.sender, collateral=msg.value, endpoint=endpoint)
    self._set_active(msg.sender, True)


@external
def setEndpoint(endpoint: String[MAX_ENDPOINT]):
    """@notice A registered DAP announces a new URL."""
    self._only_registered(self._daps[msg.sender])
    log DapEndpointSet(dap=msg.sender, endpoint=endpoint)


@external
@payable
def addCollateral():
    """@notice Top up msg.sender's collateral; it counts again once at minCollateral."""
    rec: uint256 = self._daps[msg.sender]
    self._only_registered(rec)
    assert (rec >> LEAVE_SHIFT) & LEAVE_MASK == 0, "DAP: leaving (withdraw, then register again)"
    assert msg.value > 0, "DAP: no value sent"
    c: uint256 = (rec & COLLATERAL_MASK) + msg.value
    assert c <= COLLATERAL_MASK, "DAP: collateral out of range"
    rec = (rec & ~COLLATERAL_MASK) | c
    activate: bool = rec < ACTIVE_BIT and c >= self.minCollateral
    if activate:
        rec |= ACTIVE_BIT
    self._daps[msg.sender] = rec
    log DapCollateralAdded(dap=msg.sender, amount=msg.value, collateral=c)
    if activate:
        self._set_active(msg.sender, True)


@external
def leave():
    """
    @notice Stop counting for receipts now; the collateral stays liable for leaveDelay
            blocks, and until every request naming the DAP is resolved.
    """
    rec: uint256 = self._daps[msg.sender]
    self._only_registered(rec)
    assert (rec >> LEAVE_SHIFT) & LEAVE_MASK == 0, "DAP: already leaving"
    leave_at: uint256 = block.number + self.leaveDelay
    self._daps[msg.sender] = (rec & ~ACTIVE_BIT) | (leave_at << LEAVE_SHIFT)
    log DapLeaving(dap=msg.sender, leave_at=leave_at)
    if rec >= ACTIVE_BIT:
        self._set_active(msg.sender, False)


@external
def withdraw():
    """@notice After the leave delay, with no request pending: take the collateral back."""
    rec: uint256 = self._daps[msg.sender]
    self._only_registered(rec)
    leave_at: uint256 = (rec >> LEAVE_SHIFT) & LEAVE_MASK
    assert leave_at != 0, "DAP: not leaving (call leave first)"
    assert block.number >= leave_at, "DAP: leave delay not over"
    assert (rec >> PENDING_SHIFT) & PENDING_MASK == 0, "DAP: a data request naming this DAP is not resolved yet"
    amount: uint256 = rec & COLLATERAL_MASK
    self._daps[msg.sender] = 0
    log DapWithdrawn(dap=msg.sender, amount=amount)
    if amount != 0:
        raw_call(msg.sender, b"", value=amount)


@external
def claim():
    """@notice Collect answer fees and refunded request fees owed to msg.sender."""
    amount: uint256 = self.owed[msg.sender]
    assert amount != 0, "DAP: nothing owed to the caller"
    self.owed[msg.sender] = 0
    log Claimed(account=msg.sender, amount=amount)
    raw_call(msg.sender, b"", value=amount)


# ---------------------------------------------------------------- the laziness penalty game


@external
@payable
def requestData(data_commitment: bytes32, path: uint256, receipts: DynArray[Signature, MAX_RECEIPTS]) -> uint256:
    """
    @notice Ask the DAPs that signed storage receipts over `data_commitment` (the receipts,
            e.g. from a submitHeader's calldata, in strictly increasing signer order) for the
            piece of batch data at `path` (bit k: the branch taken at depth k from the root,
            1 = right; enclavenet.crypto.dap.piece_path). msg.value >= requestFee. Any
            registered DAP may answer until the deadline; then anyone calls `resolveRequest`.
    @return the request id
    """
    assert msg.value >= self.requestFee, "DAP: request fee below requestFee"
    assert len(receipts) > 0, "DAP: a request names at least one DAP (by its storage receipt)"
    assert path < 2**MAX_DEPTH, "DAP: path deeper than 32 levels"
    digest: bytes32 = self._digest(data_commitment)
    daps: DynArray[address, MAX_RECEIPTS] = []
    prev: uint256 = 0
    for sig: Signature in receipts:
        vs: uint256 = convert(sig.vs, uint256)
        signer: address = ecrecover(digest, unsafe_add(27, vs >> 255), convert(sig.r, uint256), vs & LOW_255)
        addr: uint256 = convert(signer, uint256)
        assert addr > prev, "DAP: bad receipt signature, or receipts not by strictly increasing signer"
        rec: uint256 = self._daps[signer]
        assert rec & REGISTERED_BIT != 0, "DAP: receipt signer is not a registered DAP"
        assert (rec >> PENDING_SHIFT) & PENDING_MASK < PENDING_MASK, "DAP: too many open requests name this DAP"
        self._daps[signer] = rec + PENDING_ONE
        daps.append(signer)
        prev = addr
    rid: uint256 = self.requestCount
    self.requestCount = rid + 1
    deadline: uint256 = block.number + self.answerPeriod
    self._requests[rid] = DataRequest(
        data_commitment=data_commitment, path=path, deadline=deadline, fee=msg.value,
        requester=msg.sender, liable_hash=keccak256(abi_encode(daps)), n_liable=len(daps),
        responders=0, resolved=False
    )
    log DataRequested(
        request_id=rid, requester=msg.sender, data_commitment=data_commitment, path=path,
        deadline=deadline, fee=msg.value, daps=daps
    )
    return rid


@internal
@pure
def _piece_root(piece_hash: bytes32, path: uint256, siblings: DynArray[bytes32, MAX_DEPTH]) -> bytes32:
    """enclavenet.crypto.merkle: the root above leaf `piece_hash` reached by `path`."""
    h: bytes32 = keccak256(concat(MERKLE_LEAF, piece_hash))
    d: uint256 = len(siblings)
    for j: uint256 in range(d, bound=MAX_DEPTH):
        # siblings run from the leaf up: siblings[j] sits at depth d - 1 - j
        if (path >> unsafe_sub(unsafe_sub(d, 1), j)) & 1 == 1:
            h = keccak256(concat(MERKLE_NODE, siblings[j], h))
        else:
            h = keccak256(concat(MERKLE_NODE, h, siblings[j]))
    return h


@external
def answerData(request_id: uint256, piece: Bytes[MAX_PIECE], siblings: DynArray[bytes32, MAX_DEPTH]):
    """
    @notice A registered DAP answers a request with the piece (an item of the batch data)
            and its Merkle siblings from the leaf up. The first valid answer earns the fee
            (claim); every valid answer spares its DAP the penalty. An answer that does not
            verify reverts: it counts as no answer.
    """
    req: DataRequest = self._requests[request_id]
    assert req.deadline != 0, "DAP: no such request"
    assert block.number <= req.deadline, "DAP: answer after the deadline"
    self._only_registered(self._daps[msg.sender])
    assert not self._answered[request_id][msg.sender], "DAP: already answered"
    piece_hash: bytes32 = keccak256(piece)
    assert self._piece_root(piece_hash, req.path, siblings) == req.data_commitment, "DAP: piece and proof do not match the data commitment at the requested path"
    self._answered[request_id][msg.sender] = True
    self._requests[request_id].responders = req.responders + 1
    if req.responders == 0:
        self.owed[msg.sender] += req.fee
    log DataAnswered(request_id=request_id, dap=msg.sender, piece_hash=piece_hash)


@external
def resolveRequest(request_id: uint256, daps: DynArray[address, MAX_RECEIPTS]):
    """
    @notice After the deadline, anyone: settle a request. `daps` = the DAPs it named (its
            DataRequested event). Slashing function (Tas and Boneh; docs/DAP.md): with k
            valid answers, each named DAP that did not answer loses
                its whole collateral               if k == 0,
                min(lazyPenalty, collateral)       if k >= 1.
            Slashed wei is burned (locked here for good). With k == 0 the fee goes back to
            the requester (claim).
    """
    req: DataRequest = self._requests[request_id]
    assert req.deadline != 0, "DAP: no such request"
    assert not req.resolved, "DAP: request already resolved"
    assert block.number > req.deadline, "DAP: answer period not over"
    assert keccak256(abi_encode(daps)) == req.liable_hash, "DAP: not the DAPs the request named"
    k: uint256 = req.responders
    lazy: uint256 = self.lazyPenalty
    min_c: uint256 = self.minCollateral
    total: uint256 = 0
    self._requests[request_id].resolved = True
    for d: address in daps:
        rec: uint256 = self._daps[d] - PENDING_ONE
        if not self._answered[request_id][d]:
            c: uint256 = rec & COLLATERAL_MASK
            cut: uint256 = c
            if k != 0:
                cut = min(lazy, c)
            c -= cut
            rec = (rec & ~COLLATERAL_MASK) | c
            total += cut
            log DapSlashed(dap=d, request_id=request_id, amount=cut, collateral=c)
            if rec >= ACTIVE_BIT and c < min_c:
                rec &= ~ACTIVE_BIT
                self._set_active(d, False)
        self._daps[d] = rec
    if k == 0:
        self.owed[req.requester] += req.fee
    self.burned += total
    log DataRequestResolved(request_id=request_id, responders=k, slashed=total)


# ---------------------------------------------------------------- views


@external
@view
def info(dap: address) -> DapInfo:
    rec: uint256 = self._daps[dap]
    return DapInfo(
        collateral=rec & COLLATERAL_MASK,
        registered=rec & REGISTERED_BIT != 0,
        active=rec >= ACTIVE_BIT,
        leave_at=(rec >> LEAVE_SHIFT) & LEAVE_MASK,
        pending=(rec >> PENDING_SHIFT) & PENDING_MASK,
    )


@external
@view
def request(request_id: uint256) -> DataRequest:
    return self._requests[request_id]


@external
@view
def answered(request_id: uint256, dap: address) -> bool:
    return self._answered[request_id][dap]


@external
@view
def receiptDigest(data_commitment: bytes32) -> bytes32:
    """@notice What a DAP signs: enclavenet.crypto.dap.dap_receipt_digest."""
    return self._digest(data_commitment)
