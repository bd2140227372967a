# pragma version ~=0.4.3
"""
@title VickreyAuction
@notice A sealed-bid second-price auction. Bids are sealed simply because the whole contract
        state is confidential on EnclaveNet: no commit-reveal round, no deposits that leak the
        bid's size on the L1. The highest bidder wins and pays the second-highest bid (or the
        reserve price if nobody else bid). When the seller closes the auction the winner and the
        price become readable; bids themselves never are, except each bidder's own.
"""

event BidPlaced:
    bidder: indexed(address)

event Closed:
    winner: indexed(address)
    price: uint256

event Withdrawn:
    account: indexed(address)
    amount: uint256

item: public(String[64])
seller: public(address)
reserve_price: public(uint256)
is_open: public(bool)
bid_count: public(uint256)

# Sealed: no getters. _owed is each bidder's escrowed bid, after closing what is still owed to them.
_owed: HashMap[address, uint256]
_highest: uint256
_second: uint256
_leader: address
_price: uint256


@deploy
def __init__(item: String[64], reserve_price: uint256):
    assert reserve_price > 0, "reserve price must be positive"
    self.item = item
    self.seller = msg.sender
    self.reserve_price = reserve_price
    self.is_open = True


@external
@payable
def bid():
    """@notice Place one sealed bid; the bid is the value sent with the call."""
    assert self.is_open, "the auction is closed"
    assert msg.sender != self.seller, "the seller may not bid"
    assert self._owed[msg.sender] == 0, "one sealed bid per bidder"
    assert msg.value >= self.reserve_price, "bid below the reserve price"
    self._owed[msg.sender] = msg.value
    self.bid_count += 1
    if msg.value > self._highest:
        self._second = self._highest
        self._highest = msg.value
        self._leader = msg.sender
    elif msg.value > self._second:
        self._second = msg.value  # a tie with the leader lands here: the price is then the bid
    log BidPlaced(bidder=msg.sender)


@external
def close():
    """@notice End the auction (seller only): fix the winner and the second price."""
    assert msg.sender == self.seller, "only the seller may close the auction"
    assert self.is_open, "the auction is already closed"
    self.is_open = False
    winner: address = self._leader
    if winner != empty(address):
        price: uint256 = max(self._second, self.reserve_price)
        self._price = price
        self._owed[winner] -= price  # the winner gets back what they bid above the price
        self._owed[self.seller] += price
    log Closed(winner=winner, price=self._price)


@view
@external
def winner() -> address:
    assert not self.is_open, "sealed until the auction closes"
    return self._leader


@view
@external
def price() -> uint256:
    assert not self.is_open, "sealed until the auction closes"
    return self._price


@view
@external
def my_balance() -> uint256:
    """@notice The caller's own escrowed bid; after closing, what `withdraw` would pay them."""
    return self._owed[msg.sender]


@external
@nonreentrant
def withdraw() -> uint256:
    """@notice After closing: losers take back their bids, the winner the change, the seller the price."""
    assert not self.is_open, "withdrawals open when the auction closes"
    amount: uint256 = self._owed[msg.sender]
    assert amount > 0, "nothing to withdraw"
    self._owed[msg.sender] = 0
    send(msg.sender, amount)
    log Withdrawn(account=msg.sender, amount=amount)
    return amount
