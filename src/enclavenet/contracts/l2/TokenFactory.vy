# pragma version 0.4.3
# @license MIT
"""
@title EnclaveNet bridged-token factory
@notice Genesis code at 0x..57d7. On an ERC20 deposit command from the L1 Bridge the enclave
        calls `deposit` from the bridge system caller (0x..57d8, no key signs for it): the first
        deposit of an L1 token creates its canonical token (a minimal proxy to 0x..57d6, CREATE2
        with salt = the L1 token, so the L1 Bridge can compute the address) and initialises
        it; every deposit mints.
"""

interface Token:
    def initialize(l1_token: address, l1_bridge: address, decimals_: uint8): nonpayable
    def mint(to: address, amount: uint256): nonpayable

IMPL: constant(address) = 0x00000000000000000000000000000000000057d6
BRIDGE_CALLER: constant(address) = 0x00000000000000000000000000000000000057D8
# enclavenet.crypto.bridge.PROXY_INITCODE_HASH (a unit test checks it)
PROXY_INITCODE_HASH: constant(bytes32) = 0xf2e40b990b37e689ff89ee1586ae30b6d8672ee22dce14092e0269453786391d


@external
@view
def tokenOf(l1_token: address) -> address:
    """@notice The canonical EnclaveNet token of `l1_token` (whether deployed yet or not)."""
    return self._token_of(l1_token)


@internal
@view
def _token_of(l1_token: address) -> address:
    h: bytes32 = keccak256(concat(b"\xff", convert(self, bytes20), convert(l1_token, bytes32), PROXY_INITCODE_HASH))
    return convert(convert(h, uint256) & convert(max_value(uint160), uint256), address)


@external
def deposit(l1_token: address, l1_bridge: address, decimals_: uint8, to: address, amount: uint256):
    assert msg.sender == BRIDGE_CALLER, "TokenFactory: only the bridge system caller deposits"
    token: address = self._token_of(l1_token)
    if token.codesize == 0:
        created: address = create_minimal_proxy_to(IMPL, salt=convert(l1_token, bytes32))
        assert created == token, "TokenFactory: proxy address mismatch"
        extcall Token(token).initialize(l1_token, l1_bridge, decimals_)
    extcall Token(token).mint(to, amount)
