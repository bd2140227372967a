"""Typed errors of the confidential client.

Every error the client raises is an :class:`EnclaveNetError`. Those that correspond to a
familiar web3.py situation also inherit the web3.py exception, so code written for plain
web3.py keeps working: a :class:`TransactionReverted` is a ``ContractLogicError`` (what
``.call()`` / ``.estimate_gas()`` raise on a revert), a :class:`NodeUnavailable` is a
``Web3RPCError``. Messages say what was wrong and what to do; they never carry a key,
a plaintext or a sealed payload.
"""

from __future__ import annotations

from typing import Any

from web3.exceptions import ContractLogicError, Web3RPCError

__all__ = [
    "EnclaveNetError",
    "EnvelopeRefused",
    "EpochChanged",
    "EpochKeyMismatch",
    "NodeBusy",
    "NodeUnavailable",
    "ReceiptUnreadable",
    "ReceiptUnverified",
    "TransactionRefused",
    "TransactionReverted",
]


class EnclaveNetError(Exception):
    """Base class of every error raised by ``enclavenet.client``."""


class TransactionReverted(EnclaveNetError, ContractLogicError):
    """The contract reverted. ``reason`` is the decrypted revert reason (only the sender sees it).

    Raised by ``.call()`` and ``.estimate_gas()`` (and so by ``.transact()`` when it estimates
    gas first), and by :func:`enclavenet.client.check_receipt` for a mined transaction whose
    status is 0. ``data`` is the raw revert data (hex), as web3.py's ``ContractLogicError``.
    """

    def __init__(self, reason: str, data: str | None = None, receipt: Any = None) -> None:
        message = f"execution reverted: {reason}" if reason else "execution reverted"
        ContractLogicError.__init__(self, message, data=data)
        self.reason = reason
        self.receipt = receipt


class TransactionRefused(EnclaveNetError):
    """The enclave refused a transaction it could decrypt (bad nonce, bad signature, wrong chain
    id, ...). The reason comes from the sender's decrypted receipt."""

    def __init__(self, reason: str, receipt_id: str | None = None) -> None:
        super().__init__(f"the enclave refused the transaction: {reason}")
        self.reason = reason
        self.receipt_id = receipt_id


class EnvelopeRefused(EnclaveNetError):
    """The node (or the enclave) refused the envelope itself: malformed, too large, duplicate,
    mempool full, or it could not be decrypted. ``code`` is the JSON-RPC error code if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class EpochChanged(EnvelopeRefused):
    """The envelope was sealed to an epoch the committee no longer (or does not yet) accept.

    The client re-fetches the epoch key, re-seals and retries once before raising this."""


class NodeBusy(EnvelopeRefused):
    """The node refused for now (JSON-RPC -32005: the committee is saturated, or a rate limit);
    nothing changed. ``retry_after``: the seconds the node asked to wait. The client waits and
    sends again (``ConfidentialClient.busy_wait_s`` in all) before raising this."""

    def __init__(self, message: str, code: int | None = None, retry_after: float = 0.5) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class EpochKeyMismatch(EnclaveNetError):
    """The node's epoch key differs from the one the Rollup on L1 recorded: refuse to seal to it."""


class ReceiptUnreadable(EnclaveNetError):
    """A receipt came back that this client cannot decrypt or parse (not ours, tampered, or an
    error entry the enclave wrote because the envelope did not decrypt)."""


class ReceiptUnverified(EnclaveNetError):
    """The node's receipt is not proven against a header accepted on L1 (no proof, a wrong
    proof, or the L1 transaction it names did not accept that header): not final, maybe a lie."""


class NodeUnavailable(EnclaveNetError, Web3RPCError):
    """The node could not be reached or answered something that is not JSON-RPC."""

    def __init__(self, message: str) -> None:
        Web3RPCError.__init__(self, message, user_message=message)
