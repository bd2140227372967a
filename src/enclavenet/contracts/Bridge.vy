# pragma version 0.4.3
# @license MIT
"""
@title EnclaveNet L1 Bridge
@notice ERC20 deposits and L1 -> EnclaveNet contract calls in (as bridge commands in the
        Rollup's inbox), L2 -> L1 messages out (relayed against headers the Rollup accepted).
@dev    Formats are exactly those of `enclavenet.crypto.bridge` (commands, message items,
        the messages root at the end of the batch meta, the canonical L2 token address).
        A separate contract from the Rollup (which is near the EIP-170 limit); design and
        storage: docs/CONTRACTS.md ("The Bridge").

        Generic messages are not called from this contract (which holds the locked tokens:
        a message to a token with `transfer(...)` data would spend them) but from EXECUTOR,
        a 65-byte forwarder this contract creates, which only forwards this contract's
        calls and holds nothing. A target authenticates a message by
        `msg.sender == Bridge.EXECUTOR()` and reads its L2 sender from
        `Bridge.xDomainMessageSender()`.
"""

# enclavenet.crypto.bridge
COMMAND_MAGIC: constant(bytes4) = 0x454e4201  # b"ENB\x01"
KIND_ERC20_DEPOSIT: constant(uint256) = 1
KIND_CALL: constant(uint256) = 2
TOKEN_FACTORY: constant(address) = 0x00000000000000000000000000000000000057D7
# keccak256(EIP-1167 proxy init code to TOKEN_IMPL_ADDRESS 0x..57d6), crypto.bridge.PROXY_INITCODE_HASH
PROXY_INITCODE_HASH: constant(bytes32) = 0xf2e40b990b37e689ff89ee1586ae30b6d8672ee22dce14092e0269453786391d
MAX_DATA: constant(uint256) = 4096  # MAX_CALL_DATA / MAX_MESSAGE_DATA
MAX_GAS_LIMIT: constant(uint256) = 30000000  # of an L1 -> contract call
DEFAULT_DECIMALS: constant(uint256) = 18
# crypto.bridge.META_ROOT_PREFIX (25 bytes: CBOR text(22) "l2_to_l1_messages_root", bytes(32) head)
META_ROOT_PREFIX: constant(bytes25) = 0x766c325f746f5f6c315f6d657373616765735f726f6f745820
META_SUFFIX_LEN: constant(uint256) = 57  # the prefix and the 32-byte root
MAX_META: constant(uint256) = 1024
MAX_CHAIN: constant(uint256) = 64  # headers per relay: older ones need an anchor()
MAX_DEPTH: constant(uint256) = 32  # Merkle depth (batch data and outboxes have < 2**32 items)
MERKLE_LEAF: constant(bytes1) = 0x00  # enclavenet.crypto.merkle domain bytes
MERKLE_NODE: constant(bytes1) = 0x01
# the executor's init code around this contract's address (see the module docstring):
#   init:    PUSH1 65 DUP1 PUSH1 9 PUSH0 CODECOPY PUSH0 RETURN
#   runtime: PUSH20 <bridge> CALLER EQ PUSH1 0x1d JUMPI PUSH0 PUSH0 REVERT
#            JUMPDEST PUSH1 20 CALLDATASIZE SUB DUP1 PUSH1 20 PUSH0 CALLDATACOPY  (data = calldata[20:])
#            PUSH0 PUSH0 DUP3 PUSH0 PUSH0 PUSH0 CALLDATALOAD PUSH1 96 SHR GAS CALL  (target = calldata[:20])
#            RETURNDATASIZE PUSH0 PUSH0 RETURNDATACOPY PUSH1 0x3d JUMPI
#            RETURNDATASIZE PUSH0 REVERT JUMPDEST RETURNDATASIZE PUSH0 RETURN      (bubble up)
EXECUTOR_PRE: constant(bytes10) = 0x60418060095f395ff373
EXECUTOR_POST: constant(Bytes[44]) = x"3314601d575f5ffd5b601436038060145f375f5f825f5f5f3560601c5af13d5f5f3e603d573d5ffd5b3d5ff3"


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


interface IRollup:
    def submit(payload: Bytes[8192]): payable
    def lastHeaderHash() -> bytes32: view
    def msgCount() -> uint256: view


interface IERC20Balance:
    def balanceOf(account: address) -> uint256: view


event ERC20DepositInitiated:
    token: indexed(address)
    sender: indexed(address)
    to: indexed(address)
    amount: uint256
    l1_message_index: uint256


event MessageSent:
    sender: indexed(address)
    target: indexed(address)
    gas_limit: uint256
    data: Bytes[MAX_DATA]
    l1_message_index: uint256


event MessageRelayed:
    id: indexed(bytes32)
    height: uint256
    index: uint256
    sender: address
    target: address


event ERC20WithdrawalFinalized:
    token: indexed(address)
    recipient: indexed(address)
    id: indexed(bytes32)
    amount: uint256


event Anchored:
    header_hash: indexed(bytes32)


ROLLUP: public(immutable(address))
EXECUTOR: public(immutable(address))
# tokens held for EnclaveNet, per L1 token (what deposits credited minus what withdrawals paid)
locked: public(HashMap[address, uint256])
# relayed L2 -> L1 messages, by id = keccak256(item)
relayed: public(HashMap[bytes32, bool])
# header hashes once the Rollup's last (anchor()): a relay's header chain may end at one
anchored: public(HashMap[bytes32, bool])
# the L2 sender of the generic message being relayed (empty outside a relay; transient
# storage: 100 gas a write, and it cannot outlive the transaction)
xDomainMessageSender: public(transient(address))


@deploy
def __init__(rollup: address):
    assert rollup.is_contract, "Bridge: the rollup is not a contract"
    ROLLUP = rollup
    EXECUTOR = raw_create(concat(EXECUTOR_PRE, convert(self, bytes20), EXECUTOR_POST))


# ---------------------------------------------------------------- in: L1 -> EnclaveNet


@internal
def _call_optional_return(token: address, data: Bytes[100]):
    """SafeERC20: the call must succeed and return nothing (from a contract) or true."""
    ok: bool = False
    ret: Bytes[32] = b""
    ok, ret = raw_call(token, data, max_outsize=32, revert_on_failure=False)
    assert ok, "Bridge: token transfer reverted"
    if len(ret) == 0:
        assert token.is_contract, "Bridge: the token is not a contract"
    else:
        assert len(ret) == 32 and convert(ret, uint256) == 1, "Bridge: token transfer returned false"


@internal
@view
def _decimals(token: address) -> uint256:
    ok: bool = False
    ret: Bytes[32] = b""
    ok, ret = raw_call(token, method_id("decimals()"), max_outsize=32, is_static_call=True, revert_on_failure=False)
    if not ok or len(ret) != 32:
        return DEFAULT_DECIMALS
    d: uint256 = convert(ret, uint256)
    if d > 255:
        return DEFAULT_DECIMALS
    return d


@external
@nonreentrant
def depositERC20(token: address, to: address, amount: uint256):
    """
    @notice Lock `amount` of `token` here (approve it first) and mint its canonical
            EnclaveNet token (l2TokenOf(token)) to `to`. The amount credited is what this
            contract received (fee-on-transfer tokens credit less).
    """
    assert amount > 0, "Bridge: deposit of zero"
    assert to != empty(address), "Bridge: deposit to the zero address"
    assert token.is_contract, "Bridge: the token is not a contract"
    before: uint256 = staticcall IERC20Balance(token).balanceOf(self)
    self._call_optional_return(
        token, abi_encode(msg.sender, self, amount, method_id=method_id("transferFrom(address,address,uint256)"))
    )
    received: uint256 = staticcall IERC20Balance(token).balanceOf(self) - before
    assert received > 0, "Bridge: no tokens received"
    self.locked[token] += received
    index: uint256 = staticcall IRollup(ROLLUP).msgCount()
    payload: Bytes[196] = concat(
        COMMAND_MAGIC, abi_encode(KIND_ERC20_DEPOSIT, token, msg.sender, to, received, self._decimals(token))
    )
    extcall IRollup(ROLLUP).submit(payload)
    log ERC20DepositInitiated(token=token, sender=msg.sender, to=to, amount=received, l1_message_index=index)


@external
def sendMessage(target: address, data: Bytes[MAX_DATA], gas_limit: uint256):
    """
    @notice Call EnclaveNet contract `target` with `data` and `gas_limit`, from the L1 alias
            of msg.sender (crypto.bridge.l1_alias).
    """
    assert gas_limit > 0, "Bridge: zero gas limit"
    assert gas_limit <= MAX_GAS_LIMIT, "Bridge: gas limit above 30,000,000"
    index: uint256 = staticcall IRollup(ROLLUP).msgCount()
    extcall IRollup(ROLLUP).submit(concat(COMMAND_MAGIC, abi_encode(KIND_CALL, msg.sender, target, gas_limit, data)))
    log MessageSent(sender=msg.sender, target=target, gas_limit=gas_limit, data=data, l1_message_index=index)


# ---------------------------------------------------------------- out: EnclaveNet -> L1


@internal
@pure
def _piece_root(piece_hash: bytes32, path: uint256, siblings: DynArray[bytes32, MAX_DEPTH]) -> bytes32:
    """enclavenet.crypto.merkle: the root above leaf `piece_hash` reached by `path`
    (DapManager._piece_root: siblings from the leaf up, bit d-1-j set = sibling j on the left)."""
    h: bytes32 = keccak256(concat(MERKLE_LEAF, piece_hash))
    d: uint256 = len(siblings)
    for j: uint256 in range(d, bound=MAX_DEPTH):
        if (path >> unsafe_sub(unsafe_sub(d, 1), j)) & 1 == 1:
            h = keccak256(concat(MERKLE_NODE, siblings[j], h))
        else:
            h = keccak256(concat(MERKLE_NODE, h, siblings[j]))
    return h


@internal
@pure
def _l2_token(l1_token: address) -> address:
    h: bytes32 = keccak256(
        concat(0xff, convert(TOKEN_FACTORY, bytes20), convert(convert(l1_token, uint256), bytes32), PROXY_INITCODE_HASH)
    )
    return convert(convert(convert(h, uint256) & convert(max_value(uint160), uint256), uint160), address)


@external
@pure
def l2TokenOf(l1_token: address) -> address:
    """@notice The canonical EnclaveNet token of `l1_token` (crypto.bridge.l2_token_address)."""
    return self._l2_token(l1_token)


@external
@nonreentrant
def relayMessage(
    headers: DynArray[Header, MAX_CHAIN],
    meta: Bytes[MAX_META],
    meta_siblings: DynArray[bytes32, MAX_DEPTH],
    index: uint256,
    sender: address,
    target: address,
    data: Bytes[MAX_DATA],
    msg_path: uint256,
    msg_siblings: DynArray[bytes32, MAX_DEPTH],
):
    """
    @notice Anyone: run L2 -> L1 message `index` of the batch of headers[0], once.
    @param headers headers[0] carries the message; each next one is its successor, and the
           last is the Rollup's last accepted header or an anchored one
    @param meta the batch data's meta (item 0 of headers[0].data_commitment), with its
           Merkle siblings from the leaf up
    @param msg_path the item's path in the messages tree (crypto.bridge.message_proof), and
           msg_siblings its siblings from the leaf up
    @dev   A message to this contract is an ERC20 withdrawal (data = l1 token, recipient,
           amount) and must come from the token's canonical L2 token; any other message is
           called through EXECUTOR with xDomainMessageSender set. If the call (or the token
           transfer) reverts, the whole relay reverts and the message stays relayable.
    """
    n: uint256 = len(headers)
    assert n > 0, "Bridge: no header"
    h: bytes32 = empty(bytes32)
    for i: uint256 in range(n, bound=MAX_CHAIN):
        if i > 0:
            assert headers[i].prev_hash == h, "Bridge: the headers do not chain"
        h = keccak256(abi_encode(headers[i]))
    assert h == staticcall IRollup(ROLLUP).lastHeaderHash() or self.anchored[h], "Bridge: the last header is neither the Rollup's last nor anchored"

    assert self._piece_root(keccak256(meta), 0, meta_siblings) == headers[0].data_commitment, "Bridge: the meta is not item 0 of the header's data commitment"
    m: uint256 = len(meta)
    assert m >= META_SUFFIX_LEN, "Bridge: the meta carries no messages root"
    assert convert(extract32(meta, unsafe_sub(m, META_SUFFIX_LEN)), uint256) >> 56 == convert(META_ROOT_PREFIX, uint256), "Bridge: the meta carries no messages root"
    root: bytes32 = extract32(meta, unsafe_sub(m, 32))

    item: Bytes[4288] = abi_encode(headers[0].height, index, sender, target, data)
    id: bytes32 = keccak256(item)
    assert self._piece_root(id, msg_path, msg_siblings) == root, "Bridge: the message is not under the batch's messages root"
    assert not self.relayed[id], "Bridge: message already relayed"
    self.relayed[id] = True

    if target == self:
        l1_token: address = empty(address)
        recipient: address = empty(address)
        amount: uint256 = 0
        assert len(data) == 96, "Bridge: a withdrawal's data is (l1 token, recipient, amount)"
        l1_token, recipient, amount = abi_decode(data, (address, address, uint256))
        assert sender == self._l2_token(l1_token), "Bridge: the withdrawal does not come from the token's canonical L2 token"
        assert self.locked[l1_token] >= amount, "Bridge: withdrawal above the locked amount"
        self.locked[l1_token] -= amount
        self._call_optional_return(
            l1_token, abi_encode(recipient, amount, method_id=method_id("transfer(address,uint256)"))
        )
        log ERC20WithdrawalFinalized(token=l1_token, recipient=recipient, id=id, amount=amount)
        return

    self.xDomainMessageSender = sender
    ok: bool = raw_call(EXECUTOR, concat(convert(target, bytes20), data), revert_on_failure=False)
    assert ok, "Bridge: the message call reverted (the message stays relayable)"
    self.xDomainMessageSender = empty(address)
    log MessageRelayed(id=id, height=headers[0].height, index=index, sender=sender, target=target)


@external
def anchor():
    """@notice Anyone: remember the Rollup's last header, so later relays of its batch (or
            older ones) need only the header chain up to it."""
    h: bytes32 = staticcall IRollup(ROLLUP).lastHeaderHash()
    assert h != empty(bytes32), "Bridge: no header accepted yet"
    self.anchored[h] = True
    log Anchored(header_hash=h)
