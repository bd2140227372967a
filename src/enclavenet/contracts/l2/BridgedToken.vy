# pragma version 0.4.3
# @license MIT
"""
@title EnclaveNet bridged ERC20 (the token implementation)
@notice The canonical EnclaveNet token of an L1 ERC20 locked in the L1 Bridge. Each L1 token
        gets its own minimal proxy to this code, deployed by the token factory (CREATE2, salt =
        the L1 token) on its first deposit; the factory initialises it and mints deposits.
        `withdraw` burns and sends an L2 -> L1 message to the Bridge, which pays the L1 tokens
        once a header carrying the message is accepted (enclavenet.crypto.bridge).
@dev    Genesis code at 0x..57d6, never called directly (its own storage stays empty).
"""

from ethereum.ercs import IERC20
from ethereum.ercs import IERC20Detailed

implements: IERC20
implements: IERC20Detailed

FACTORY: constant(address) = 0x00000000000000000000000000000000000057D7
OUTBOX: constant(address) = 0x00000000000000000000000000000000000057d5


event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256


event Approval:
    owner: indexed(address)
    spender: indexed(address)
    value: uint256


event WithdrawalInitiated:
    owner: indexed(address)
    l1_recipient: indexed(address)
    amount: uint256


l1Token: public(address)
l1Bridge: public(address)
decimals: public(uint8)
totalSupply: public(uint256)
balanceOf: public(HashMap[address, uint256])
allowance: public(HashMap[address, HashMap[address, uint256]])


@external
@view
def name() -> String[32]:
    return "EnclaveNet bridged ERC20"


@external
@view
def symbol() -> String[8]:
    return "enERC20"


@external
def initialize(l1_token: address, l1_bridge: address, decimals_: uint8):
    """@notice Set once by the factory, right after it creates this token's proxy."""
    assert msg.sender == FACTORY, "BridgedToken: only the factory initialises"
    assert self.l1Bridge == empty(address), "BridgedToken: already initialised"
    self.l1Token = l1_token
    self.l1Bridge = l1_bridge
    self.decimals = decimals_


@external
def mint(to: address, amount: uint256):
    """@notice Credit an L1 deposit (the factory, on the Bridge's command)."""
    assert msg.sender == FACTORY, "BridgedToken: only the factory mints"
    self.totalSupply += amount
    self.balanceOf[to] += amount
    log Transfer(sender=empty(address), receiver=to, value=amount)


@internal
def _transfer(sender: address, receiver: address, amount: uint256):
    assert receiver != empty(address), "BridgedToken: transfer to the zero address (use withdraw)"
    self.balanceOf[sender] -= amount
    self.balanceOf[receiver] += amount
    log Transfer(sender=sender, receiver=receiver, value=amount)


@external
def transfer(receiver: address, amount: uint256) -> bool:
    self._transfer(msg.sender, receiver, amount)
    return True


@external
def transferFrom(sender: address, receiver: address, amount: uint256) -> bool:
    allowed: uint256 = self.allowance[sender][msg.sender]
    if allowed != max_value(uint256):
        self.allowance[sender][msg.sender] = allowed - amount
    self._transfer(sender, receiver, amount)
    return True


@external
def approve(spender: address, amount: uint256) -> bool:
    self.allowance[msg.sender][spender] = amount
    log Approval(owner=msg.sender, spender=spender, value=amount)
    return True


@external
def withdraw(l1_recipient: address, amount: uint256):
    """
    @notice Burn `amount` and have the L1 Bridge pay it to `l1_recipient` in the L1 token,
            once the header carrying this batch is accepted and the message relayed.
    """
    assert l1_recipient != empty(address), "BridgedToken: withdrawal to the zero address"
    assert amount != 0, "BridgedToken: a withdrawal needs a non-zero amount"
    self.balanceOf[msg.sender] -= amount
    self.totalSupply -= amount
    log Transfer(sender=msg.sender, receiver=empty(address), value=amount)
    log WithdrawalInitiated(owner=msg.sender, l1_recipient=l1_recipient, amount=amount)
    raw_call(OUTBOX, concat(convert(self.l1Bridge, bytes20), abi_encode(self.l1Token, l1_recipient, amount)))
