"""Send transactions signed locally, and get a receipt or a clear error back.

    sender = TxSender(l1, l1.accounts[0])          # or l1.sender(0)
    address = sender.deploy(abi, bytecode, owner)
    receipt = sender.transact(token.functions.transfer(bob, 10))

What it takes care of:

* **nonces**: a local counter (no round trip per transaction), resynchronised from the node
  on "nonce too low" / "already known" / "replacement underpriced" and whenever the L1 object
  rewrote history (revert, rollback, reorg); thread-safe.
* **gas**: estimated by the node, times ``gas_margin``; EIP-1559 fees (2 x base fee + tip).
* **transient failures** (connection refused, timeouts, 429/5xx): bounded retries with
  exponential backoff; resending the same signed bytes is harmless.
* **reverts**: :class:`TxReverted` naming the call and the decoded reason -- from the gas
  estimate, or, for a transaction mined with status 0, by replaying it at the parent block.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import TransactionNotFound
from web3.types import TxParams, TxReceipt, Wei

from .base import L1
from .errors import (
    ChainError,
    InsufficientFunds,
    TxRejected,
    TxReverted,
    TxTimeout,
    is_revert,
    node_message,
    revert_reason,
    with_retries,
)

log = logging.getLogger(__name__)

_NONCE_ERRORS = (
    "nonce too low",
    "nonce too high",
    "invalid transaction nonce",  # eth-tester: "Expected 2, but got 1"
    "already known",
    "known transaction",
    "replacement transaction underpriced",
)
_FUNDS_ERRORS = ("insufficient funds", "cannot afford")
_FEE_ERRORS = ("base fee", "fee too low", "underpriced")


def _short(value: Any, limit: int = 46) -> str:
    text = "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_call(fn: ContractFunction) -> str:
    """``name(arg, ...) on 0xabc...`` for messages (long arguments are shortened)."""
    args = [_short(a) for a in fn.args or ()]
    args += [f"{k}={_short(v)}" for k, v in (fn.kwargs or {}).items()]
    return f"{fn.fn_name}({', '.join(args)}) on {fn.address}"


class TxSender:
    """Signs with ``account`` and sends through ``l1`` (an :class:`L1`, or a bare ``Web3``)."""

    def __init__(
        self,
        l1: L1 | Web3,
        account: LocalAccount,
        *,
        gas_margin: float = 1.25,
        priority_fee: int = 10**9,
        receipt_timeout: float = 60.0,
        attempts: int = 5,
        backoff: float = 0.05,
    ) -> None:
        if isinstance(l1, L1):
            self.l1: L1 | None = l1
            self.w3 = l1.w3
            self.endpoint = l1.endpoint
        else:
            self.l1 = None
            self.w3 = l1
            self.endpoint = str(getattr(l1.provider, "endpoint_uri", None) or l1.provider)
        self.account = account
        self.gas_margin = gas_margin
        self.priority_fee = priority_fee
        self.receipt_timeout = receipt_timeout
        self.attempts = attempts
        self.backoff = backoff
        self._lock = threading.Lock()
        self._nonce: int | None = None
        self._generation = self.l1.generation if self.l1 else 0
        self._chain_id: int | None = None
        self._block_gas_limit: int | None = None

    @property
    def address(self) -> str:
        return str(self.account.address)

    # -- public API -------------------------------------------------------------------

    def transact(
        self, fn: ContractFunction, *, value: int = 0, gas: int | None = None
    ) -> TxReceipt:
        """Call a contract function in a transaction; return its (successful) receipt."""
        data = bytes(HexBytes(fn._encode_transaction_data()))
        return self._send(describe_call(fn), to=fn.address, data=data, value=value, gas=gas)

    def deploy(
        self,
        abi: Sequence[dict[str, Any]] | Sequence[Any],
        bytecode: bytes | str,
        *args: Any,
        value: int = 0,
        gas: int | None = None,
    ) -> str:
        """Deploy a contract; return its (checksummed) address."""
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        constructor = factory.constructor(*args)
        data = bytes(HexBytes(constructor.data_in_transaction))
        what = f"deploying a contract ({', '.join(_short(a) for a in args)})"
        receipt = self._send(what, to=None, data=data, value=value, gas=gas)
        return str(receipt["contractAddress"])

    def send_raw(
        self,
        to: str | None,
        data: bytes | str = b"",
        *,
        value: int = 0,
        gas: int | None = None,
        what: str | None = None,
    ) -> TxReceipt:
        """Send a transaction built from raw fields (calldata without an ABI, a plain ETH
        transfer, or contract creation with ``to=None``)."""
        label = what or (f"transaction to {to}" if to else "contract creation")
        return self._send(label, to=to, data=bytes(HexBytes(data)), value=value, gas=gas)

    def resync_nonce(self) -> int:
        """Forget the local nonce and read the account's next one from the node."""
        with self._lock:
            self._nonce = self._fetch_nonce()
            return self._nonce

    # -- internals --------------------------------------------------------------------

    def _retry(self, fn: Any, what: str) -> Any:
        return with_retries(
            fn, what=what, endpoint=self.endpoint, attempts=self.attempts, backoff=self.backoff
        )

    def _fetch_nonce(self) -> int:
        return int(
            self._retry(
                lambda: self.w3.eth.get_transaction_count(self.account.address, "pending"),
                "eth_getTransactionCount",
            )
        )

    def _static(self) -> tuple[int, int]:
        if self._chain_id is None or self._block_gas_limit is None:
            self._chain_id = int(self._retry(lambda: self.w3.eth.chain_id, "eth_chainId"))
            latest = self._retry(lambda: self.w3.eth.get_block("latest"), "eth_getBlock")
            self._block_gas_limit = int(latest["gasLimit"])
        return self._chain_id, self._block_gas_limit

    def _call_params(self, to: str | None, data: bytes, value: int) -> TxParams:
        params: TxParams = {
            "from": self.account.address,
            "data": HexBytes(data),
            "value": Wei(value),
        }
        if to is not None:
            params["to"] = Web3.to_checksum_address(to)
        return params

    def _estimate(self, what: str, to: str | None, data: bytes, value: int) -> int:
        _, block_gas_limit = self._static()
        try:
            estimate = self._retry(
                lambda: self.w3.eth.estimate_gas(self._call_params(to, data, value)),
                "eth_estimateGas",
            )
        except ChainError:
            raise
        except Exception as exc:
            if is_revert(exc):
                reason, revert_data = revert_reason(exc)
                raise TxReverted(what, reason, data=revert_data) from exc
            raise self._rejected(what, exc) from exc
        return min(int(estimate * self.gas_margin), block_gas_limit)

    def _fees(self) -> dict[str, int]:
        latest = self._retry(lambda: self.w3.eth.get_block("latest"), "eth_getBlock")
        base_fee = int(latest.get("baseFeePerGas", 0) or 0)
        return {
            "maxFeePerGas": 2 * base_fee + self.priority_fee,
            "maxPriorityFeePerGas": self.priority_fee,
        }

    def _rejected(self, what: str, exc: BaseException) -> ChainError:
        message = node_message(exc)
        lowered = message.lower()
        if any(s in lowered for s in _FUNDS_ERRORS):
            return InsufficientFunds(
                f"{what}: account {self.address} cannot pay value + gas ({message}) -- "
                "fund it, or send from another account"
            )
        return TxRejected(f"{what}: the node at {self.endpoint} refused the transaction: {message}")

    def _send(
        self, what: str, *, to: str | None, data: bytes, value: int, gas: int | None
    ) -> TxReceipt:
        chain_id, _ = self._static()
        if gas is None:
            gas = self._estimate(what, to, data, value)
        tx_hash = self._sign_and_submit(what, chain_id, to, data, value, gas)
        receipt = self._wait(what, tx_hash)
        if receipt["status"] != 1:
            self._raise_mined_revert(what, receipt, to, data, value, gas)
        return receipt

    def _sign_and_submit(
        self, what: str, chain_id: int, to: str | None, data: bytes, value: int, gas: int
    ) -> HexBytes:
        fee_retries = 3
        for _ in range(self.attempts + 1):
            fees = self._fees()
            with self._lock:
                if self.l1 is not None and self.l1.generation != self._generation:
                    self._generation = self.l1.generation
                    self._nonce = None
                if self._nonce is None:
                    self._nonce = self._fetch_nonce()
                tx: dict[str, Any] = {
                    "chainId": chain_id,
                    "nonce": self._nonce,
                    "gas": gas,
                    "value": value,
                    "data": data,
                    "type": 2,
                    **fees,
                }
                if to is not None:
                    tx["to"] = Web3.to_checksum_address(to)
                signed = self.account.sign_transaction(tx)
                raw, tx_hash = signed.raw_transaction, HexBytes(signed.hash)
                try:
                    self._submit(raw)
                except ChainError:
                    raise
                except Exception as exc:
                    message = node_message(exc).lower()
                    if any(s in message for s in _NONCE_ERRORS):
                        if self._known(tx_hash):  # an earlier attempt did get through
                            self._nonce += 1
                            return tx_hash
                        log.info("%s: %s; resynchronising the nonce", what, node_message(exc))
                        self._nonce = None
                        continue
                    if any(s in message for s in _FEE_ERRORS) and fee_retries > 0:
                        fee_retries -= 1  # base fee moved between reading and sending
                        continue
                    raise self._rejected(what, exc) from exc
                self._nonce += 1
            log.debug("%s: sent %s (nonce %d)", what, tx_hash.to_0x_hex(), tx["nonce"])
            return tx_hash
        raise TxRejected(
            f"{what}: the nonce of {self.address} stayed wrong after {self.attempts} "
            "resynchronisations -- is another process sending from this account?"
        )

    def _submit(self, raw: bytes) -> None:
        self._retry(lambda: self.w3.eth.send_raw_transaction(raw), "eth_sendRawTransaction")

    def _known(self, tx_hash: HexBytes) -> bool:
        try:
            self.w3.eth.get_transaction(tx_hash)
            return True
        except TransactionNotFound:
            return False
        except Exception:
            return False

    def _wait(self, what: str, tx_hash: HexBytes) -> TxReceipt:
        deadline = time.monotonic() + self.receipt_timeout
        delay = 0.005
        while True:
            try:
                receipt: TxReceipt = self._retry(
                    lambda: self.w3.eth.get_transaction_receipt(tx_hash),
                    "eth_getTransactionReceipt",
                )
                return receipt
            except TransactionNotFound:
                pass
            if time.monotonic() >= deadline:
                raise TxTimeout(what, tx_hash.to_0x_hex(), self.receipt_timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _raise_mined_revert(
        self, what: str, receipt: TxReceipt, to: str | None, data: bytes, value: int, gas: int
    ) -> None:
        """The transaction was mined but failed: replay it at the parent block for the reason."""
        tx_hash = receipt["transactionHash"].to_0x_hex()
        parent = int(receipt["blockNumber"]) - 1
        params = self._call_params(to, data, value)
        params["gas"] = gas
        try:
            self._retry(lambda: self.w3.eth.call(params, parent), "eth_call")
        except ChainError:
            raise
        except Exception as exc:
            if not is_revert(exc):
                raise
            reason, revert_data = revert_reason(exc)
            if "outofgas" in reason.lower().replace(" ", ""):  # anvil / eth-tester wording
                reason = f"out of gas (gas limit {gas})"
            raise TxReverted(
                what, reason, data=revert_data, tx_hash=tx_hash, receipt=receipt
            ) from exc
        used = int(receipt["gasUsed"])
        reason = (
            f"out of gas (gas limit {gas})"
            if used >= gas
            else "status 0, but a replay at the parent block succeeds: an earlier transaction "
            "in the same block changed the state"
        )
        raise TxReverted(what, reason, tx_hash=tx_hash, receipt=receipt)
