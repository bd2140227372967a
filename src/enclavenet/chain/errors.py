"""What can go wrong talking to the L1, as exceptions that say what happened and what to do.

Everything the chain package raises on purpose is a :class:`ChainError`:

* :class:`L1Unavailable` -- the node could not be reached (after bounded retries).
* :class:`TxRejected` -- the node refused a transaction (:class:`InsufficientFunds`, a bad fee,
  a nonce that stayed wrong after resynchronising ...). Nothing was mined.
* :class:`TxReverted` -- the contract reverted; the message names the call and the decoded
  reason (Vyper ``assert x, "reason"`` / ``raise "reason"``), on eth-tester and on anvil alike.
* :class:`TxTimeout` -- the transaction was sent but no receipt came in time.
* :class:`ReorgTooDeep` -- an event follower saw a reorganisation deeper than it remembers.
* :class:`AnvilError` -- anvil is missing or would not start.

The helpers below classify web3 / eth-tester / HTTP exceptions (``is_transient``,
``revert_reason``, ``node_message``) and retry transient failures (``with_retries``), so that
the sender, the follower and the backends share one policy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import requests
from eth_abi import decode as abi_decode
from web3.exceptions import (
    ContractLogicError,
    ProviderConnectionError,
    RequestTimedOut,
    TimeExhausted,
    TooManyRequests,
    Web3RPCError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
NO_REASON = "no reason given (a bare `assert` or `revert`)"


class ChainError(Exception):
    """Base class of every error the chain package raises on purpose."""


class L1Unavailable(ChainError):
    """The L1 node could not be reached, or kept failing, after bounded retries."""

    def __init__(self, endpoint: str, cause: BaseException | str) -> None:
        self.endpoint = endpoint
        why = cause if isinstance(cause, str) else describe_exception(cause)
        super().__init__(
            f"cannot reach L1 at {endpoint}: {why} -- is the node running? Start one "
            "(`node_modules/.bin/anvil`) or pass the right URL with --l1-rpc"
        )


class TxRejected(ChainError):
    """The node refused a transaction before mining it (nothing was executed)."""


class InsufficientFunds(TxRejected):
    """The sending account cannot pay for value + gas."""


class TxTimeout(ChainError):
    """A transaction was accepted by the node but no receipt arrived in time."""

    def __init__(self, what: str, tx_hash: str, seconds: float) -> None:
        self.tx_hash = tx_hash
        super().__init__(
            f"{what}: no receipt for {tx_hash} after {seconds:.0f} s -- the node may not be "
            "mining (automine off? gas price below base fee?); check the node and resend"
        )


class TxReverted(ChainError):
    """The contract reverted. ``reason`` is the decoded revert string (or a description)."""

    def __init__(
        self,
        what: str,
        reason: str,
        *,
        data: bytes = b"",
        tx_hash: str | None = None,
        receipt: Any = None,
    ) -> None:
        self.what = what
        self.reason = reason
        self.data = data
        self.tx_hash = tx_hash
        self.receipt = receipt
        where = f" in tx {tx_hash}" if tx_hash else ""
        super().__init__(f"{what} reverted{where}: {reason}")


class ReorgTooDeep(ChainError):
    """A reorganisation replaced blocks older than the follower remembers."""


class AnvilError(ChainError):
    """anvil is missing, or did not start, or stopped answering."""


# -- classification -------------------------------------------------------------------


def describe_exception(exc: BaseException) -> str:
    """A short human description of a transport-level failure."""
    if isinstance(exc, requests.exceptions.ConnectionError):
        text = str(exc).lower()
        if "refused" in text:
            return "connection refused"
        if "name or service not known" in text or "nodename nor servname" in text:
            return "unknown host"
        return "connection failed"
    if isinstance(exc, requests.exceptions.Timeout):
        return "request timed out"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    return f"{type(exc).__name__}: {exc}"


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: connection trouble, timeouts, 429 and 5xx."""
    if isinstance(
        exc,
        requests.exceptions.ConnectionError
        | requests.exceptions.Timeout
        | ProviderConnectionError
        | TooManyRequests
        | RequestTimedOut
        | ConnectionError
        | TimeoutError,
    ):
        return True
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return False


def node_message(exc: BaseException) -> str:
    """The node's own error text, from a web3 RPC error, eth-tester error or anything else."""
    if isinstance(exc, Web3RPCError):
        response = exc.rpc_response
        if isinstance(response, dict) and isinstance(response.get("error"), dict):
            return str(response["error"].get("message", exc.message))
        return str(exc.message)
    if exc.args and isinstance(exc.args[0], str):
        return exc.args[0]
    return str(exc)


def _hex_bytes(data: Any) -> bytes:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return b""
    return b""


def decode_revert_data(data: bytes) -> str:
    """Decode ABI revert data: ``Error(string)``, ``Panic(uint256)``, or show it raw."""
    if not data:
        return NO_REASON
    if data[:4] == ERROR_STRING_SELECTOR:
        try:
            (text,) = abi_decode(["string"], data[4:])
            return str(text)
        except Exception:  # malformed Error(string): show raw
            pass
    if data[:4] == PANIC_SELECTOR and len(data) == 36:
        return f"panic code {int.from_bytes(data[4:], 'big'):#x}"
    return f"custom error data 0x{data.hex()}"


def is_revert(exc: BaseException) -> bool:
    """Is this exception an EVM revert / exceptional halt reported by a call or estimate?"""
    if isinstance(exc, ContractLogicError):
        return True
    name = type(exc).__name__
    if name == "TransactionFailed":  # eth_tester.exceptions.TransactionFailed
        return True
    if isinstance(exc, Web3RPCError):
        text = node_message(exc).lower()
        return "revert" in text or "evm error" in text or "out of gas" in text
    return False


def revert_reason(exc: BaseException) -> tuple[str, bytes]:
    """``(reason, raw revert data)`` of a revert raised by eth_call / eth_estimateGas.

    anvil answers with ``ContractLogicError("execution reverted: <reason>", data=0x08c379a0..)``;
    eth-tester with ``TransactionFailed("execution reverted: <reason>")`` (``b''`` when there is
    none). Both become the same plain reason string.
    """
    data = _hex_bytes(getattr(exc, "data", None))
    if data:
        return decode_revert_data(data), data
    text = node_message(exc).strip()
    for prefix in ("execution reverted:", "execution reverted", "VM Exception while processing"):
        if text.lower().startswith(prefix.lower()):
            text = text[len(prefix) :].strip()
            break
    if text in ("", "b''", 'b""', "0x"):
        return NO_REASON, b""
    return text, b""


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    endpoint: str,
    attempts: int = 5,
    backoff: float = 0.05,
    max_backoff: float = 2.0,
) -> T:
    """Call ``fn``; on a transient failure retry with exponential backoff, at most
    ``attempts`` times in all, then raise :class:`L1Unavailable`. Other errors pass through."""
    delay = backoff
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except TimeExhausted:
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == attempts:
                raise L1Unavailable(endpoint, exc) from exc
            log.warning(
                "%s: %s (attempt %d/%d), retrying in %.2fs",
                what,
                describe_exception(exc),
                attempt,
                attempts,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, max_backoff)
    raise AssertionError("unreachable")  # pragma: no cover
