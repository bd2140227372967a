"""Fees inside EnclaveNet: an EIP-1559 base fee per batch, plus tips (docs/FEES.md).

Opt-in by the measured config's ``min_base_fee`` (wei per gas). 0 = fees off: every gas price is
ignored and gas is free, the behaviour before fees.

* **The base fee** of a batch is slot 0 of the ``FEES_ADDRESS`` system contract: in the state
  root, the state diffs and the snapshots like any storage, so every member starts a batch from
  the same value. At the end of each batch the executor writes the next one with EIP-1559's rule
  on the batch's gas against ``target_gas`` (a batch of twice the target raises it by 1/8, an
  empty one lowers it by 1/8), never below ``min_base_fee``. ``FEES_CODE`` answers anyone with
  the value and stores only for the platform's system caller.
* **A signed transaction** pays ``effective = min(max_fee, base_fee + max_priority_fee)`` per gas
  (legacy: its gas price). It is refused -- no nonce used, nothing charged, the sender reported
  as unable to pay -- when ``max_fee < base_fee`` or when its balance is below
  ``gas * max_fee + value`` (Ethereum's rule). After its run the executor takes
  ``gas_used * effective`` from the sender (pyrevm's ``message_call`` charges no gas itself), once
  however many times a platform miss re-ran it. The EVM's ``BASEFEE`` opcode reads 0: pyrevm
  0.3.7 cannot disable revm's own base-fee check, which would refuse the system calls.
* **Where fees go**: ``base_fee * gas_used`` of the batch to the treasury, the tips
  (``(effective - base_fee) * gas_used``) to the batch's fee recipient -- the proposer's choice,
  carried in the batch input and re-executed by every voter, as Ethereum's coinbase.
* **Paid on L1**: inbox calls and bridge commands run at gas price 0 (forced inclusion must not
  need an EnclaveNet balance); views and gas estimates too.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..crypto.hashing import address_bytes
from .platform import SYSTEM_CALLER
from .tx import InboxCall, SignedTx, TxError

FEES_ADDRESS = bytes.fromhex("00000000000000000000000000000000000057d9")
ELASTICITY_DENOMINATOR = 8  # EIP-1559's BASE_FEE_MAX_CHANGE_DENOMINATOR
MAX_BASE_FEE = 10**15  # a wei-per-gas ceiling (1,000,000 gwei): keeps gas * price far from 2**256
FEES_CODE = (
    bytes.fromhex("3373")  # CALLER PUSH20 system caller
    + SYSTEM_CALLER
    + bytes.fromhex(
        "14" "6025" "57"  # EQ JUMPI store
        "600054" "600052" "60206000f3"  # RETURN(mstore(0, sload(0)), 32)
        "5b" "600035" "600055" "00"  # store: SSTORE(0, CALLDATALOAD(0)) STOP
    )
)
assert FEES_CODE[0x25] == 0x5B


@dataclass(frozen=True)
class FeeRule:
    min_base_fee: int  # wei per gas; 0 = fees off
    target_gas: int = 40_000_000  # a batch at this gas keeps the base fee (~1,000 token transfers)
    treasury: bytes = b"\x00" * 20  # gets the base fees

    def __post_init__(self) -> None:
        if not 0 <= self.min_base_fee <= MAX_BASE_FEE:
            raise ValueError(f"min_base_fee must be in 0..{MAX_BASE_FEE} wei per gas")
        if self.target_gas < 21_000:
            raise ValueError("target_gas must be at least 21000")
        object.__setattr__(self, "treasury", address_bytes(self.treasury))

    @property
    def on(self) -> bool:
        return self.min_base_fee > 0

    def next_base_fee(self, base_fee: int, gas_used: int) -> int:
        """EIP-1559's update, clamped to [min_base_fee, MAX_BASE_FEE]."""
        t = self.target_gas
        if gas_used > t:
            base_fee += max(1, base_fee * (gas_used - t) // t // ELASTICITY_DENOMINATOR)
        elif gas_used < t:
            base_fee -= base_fee * (t - gas_used) // t // ELASTICITY_DENOMINATOR
        return min(MAX_BASE_FEE, max(self.min_base_fee, base_fee))


def gas_price_of(item: SignedTx | InboxCall, base_fee: int) -> int:
    """The effective gas price ``item`` pays (0: paid on L1); TxError if it offers too little."""
    if not isinstance(item, SignedTx):
        return 0
    if item.gas_price < base_fee:
        raise TxError(
            f"max fee per gas {item.gas_price} is below the batch's base fee {base_fee}: "
            "ask eth_gasPrice and sign again"
        )
    if item.priority_fee is None:
        return item.gas_price
    return min(item.gas_price, base_fee + item.priority_fee)
