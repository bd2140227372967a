# pragma version ~=0.4.3
"""
@title Pair
@notice A constant-product market (x * y = k, 0.3% fee) between two ERC20 tokens, in the
        style of Uniswap v2. Every trade calls both token contracts (transferFrom in, transfer
        out): inter-contract calls between confidential contracts. On EnclaveNet nobody sees the
        reserves, the trades or the traders, so there is nothing to front-run.
"""
from ethereum.ercs import IERC20

event AddLiquidity:
    provider: indexed(address)
    amount0: uint256
    amount1: uint256
    shares: uint256

event RemoveLiquidity:
    provider: indexed(address)
    amount0: uint256
    amount1: uint256
    shares: uint256

event Swap:
    trader: indexed(address)
    token_in: indexed(address)
    amount_in: uint256
    amount_out: uint256

FEE_KEPT: constant(uint256) = 997  # out of 1000: the pool keeps 0.3% of every input
FEE_BASE: constant(uint256) = 1000

token0: public(IERC20)
token1: public(IERC20)
reserve0: public(uint256)
reserve1: public(uint256)
total_shares: public(uint256)
shares: public(HashMap[address, uint256])


@deploy
def __init__(token0: IERC20, token1: IERC20):
    assert token0 != token1, "the two tokens must differ"
    self.token0 = token0
    self.token1 = token1


@view
@internal
def _amount_out(amount_in: uint256, reserve_in: uint256, reserve_out: uint256) -> uint256:
    assert reserve_in > 0 and reserve_out > 0, "the pool has no liquidity"
    kept: uint256 = amount_in * FEE_KEPT
    return kept * reserve_out // (reserve_in * FEE_BASE + kept)


@view
@external
def get_amount_out(token_in: address, amount_in: uint256) -> uint256:
    """@notice What `swap` would pay out for `amount_in` of `token_in` right now."""
    if token_in == self.token0.address:
        return self._amount_out(amount_in, self.reserve0, self.reserve1)
    assert token_in == self.token1.address, "token is not in this pair"
    return self._amount_out(amount_in, self.reserve1, self.reserve0)


@external
@nonreentrant
def add_liquidity(amount0: uint256, amount1: uint256) -> uint256:
    """
    @notice Deposit both tokens (approve them first) for pool shares. After the first deposit,
            amounts should follow the pool's ratio: shares follow the smaller side.
    """
    assert amount0 > 0 and amount1 > 0, "deposit both tokens"
    minted: uint256 = 0
    if self.total_shares == 0:
        minted = isqrt(amount0 * amount1)
    else:
        minted = min(
            amount0 * self.total_shares // self.reserve0,
            amount1 * self.total_shares // self.reserve1,
        )
    assert minted > 0, "deposit too small"
    assert extcall self.token0.transferFrom(msg.sender, self, amount0), "token0 transfer failed"
    assert extcall self.token1.transferFrom(msg.sender, self, amount1), "token1 transfer failed"
    self.reserve0 += amount0
    self.reserve1 += amount1
    self.total_shares += minted
    self.shares[msg.sender] += minted
    log AddLiquidity(provider=msg.sender, amount0=amount0, amount1=amount1, shares=minted)
    return minted


@external
@nonreentrant
def remove_liquidity(amount: uint256) -> (uint256, uint256):
    """@notice Burn `amount` pool shares for the matching part of both reserves."""
    assert amount > 0 and self.shares[msg.sender] >= amount, "not enough shares"
    out0: uint256 = amount * self.reserve0 // self.total_shares
    out1: uint256 = amount * self.reserve1 // self.total_shares
    self.shares[msg.sender] -= amount
    self.total_shares -= amount
    self.reserve0 -= out0
    self.reserve1 -= out1
    assert extcall self.token0.transfer(msg.sender, out0), "token0 transfer failed"
    assert extcall self.token1.transfer(msg.sender, out1), "token1 transfer failed"
    log RemoveLiquidity(provider=msg.sender, amount0=out0, amount1=out1, shares=amount)
    return out0, out1


@external
@nonreentrant
def swap(token_in: address, amount_in: uint256, min_out: uint256) -> uint256:
    """@notice Sell `amount_in` of `token_in` (approve it first) for the other token."""
    assert amount_in > 0, "swap a positive amount"
    t_in: IERC20 = self.token0
    t_out: IERC20 = self.token1
    r_in: uint256 = self.reserve0
    r_out: uint256 = self.reserve1
    if token_in == self.token1.address:
        t_in = self.token1
        t_out = self.token0
        r_in = self.reserve1
        r_out = self.reserve0
    else:
        assert token_in == self.token0.address, "token is not in this pair"
    amount_out: uint256 = self._amount_out(amount_in, r_in, r_out)
    assert amount_out >= min_out, "slippage: output below min_out"
    assert amount_out > 0, "swap too small"
    assert extcall t_in.transferFrom(msg.sender, self, amount_in), "input transfer failed"
    assert extcall t_out.transfer(msg.sender, amount_out), "output transfer failed"
    if token_in == self.token0.address:
        self.reserve0 = r_in + amount_in
        self.reserve1 = r_out - amount_out
    else:
        self.reserve1 = r_in + amount_in
        self.reserve0 = r_out - amount_out
    log Swap(trader=msg.sender, token_in=token_in, amount_in=amount_in, amount_out=amount_out)
    return amount_out
