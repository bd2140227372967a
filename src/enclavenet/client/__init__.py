"""The EnclaveNet user SDK: confidential web3.py in one line, plus the L1 paths.

    from web3 import Web3
    from eth_account import Account
    from enclavenet.client import wrap

    w3 = wrap(Web3(Web3.HTTPProvider(node_url)), Account.from_key(key), l1=l1_w3)
    token = w3.eth.contract(abi=abi, bytecode=bytecode)
    h = token.constructor(10**6).transact()            # sealed to the epoch key
    addr = w3.eth.wait_for_transaction_receipt(h).contractAddress   # decrypted for the sender
    token = w3.eth.contract(address=addr, abi=abi)
    token.functions.transfer(bob, 5).transact()
    token.functions.balanceOf(me).call()                # signed view: msg.sender is real

See docs/CLIENT.md.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from .core import ConfidentialClient, EpochKey, SentTx
from .errors import (
    EnclaveNetError,
    EnvelopeRefused,
    EpochChanged,
    EpochKeyMismatch,
    NodeBusy,
    NodeUnavailable,
    ReceiptUnreadable,
    TransactionRefused,
    TransactionReverted,
)
from .escape import (
    Challenge,
    ChallengeStatus,
    EscapeResult,
    ReclaimResult,
    challenge,
    challenge_status,
    escape_withdraw,
    fetch_escape_from_daps,
    fetch_escape_leaf,
    freeze,
    last_accepted_header,
    load_escape_leaf,
    reclaim_deposit,
    save_escape_leaf,
)
from .l1 import (
    WITHDRAWAL_ADDRESS,
    InboxSubmission,
    deposit,
    submit_via_l1,
    withdraw,
)
from .middleware import EnclaveNetMiddleware, install

__all__ = [
    "WITHDRAWAL_ADDRESS",
    "Challenge",
    "ChallengeStatus",
    "ConfidentialClient",
    "EnclaveNetError",
    "EnclaveNetMiddleware",
    "EnvelopeRefused",
    "EpochChanged",
    "EpochKey",
    "EpochKeyMismatch",
    "EscapeResult",
    "InboxSubmission",
    "NodeBusy",
    "NodeUnavailable",
    "ReceiptUnreadable",
    "ReclaimResult",
    "SentTx",
    "TransactionRefused",
    "TransactionReverted",
    "challenge",
    "challenge_status",
    "check_receipt",
    "client_of",
    "deposit",
    "escape_withdraw",
    "fetch_escape_from_daps",
    "fetch_escape_leaf",
    "freeze",
    "last_accepted_header",
    "load_escape_leaf",
    "reclaim_deposit",
    "save_escape_leaf",
    "submit_via_l1",
    "withdraw",
    "wrap",
]


def wrap(
    w3: Web3,
    account: LocalAccount | list[LocalAccount],
    *,
    l1: Web3 | None = None,
    rollup: str | None = None,
    legacy_transactions: bool = False,
) -> Web3:
    """Make ``w3`` (connected to an EnclaveNet node's JSON-RPC) confidential, in place; return it.

    ``account`` signs transactions and view calls locally (its key never leaves the process);
    give a list to sign for several accounts (``{"from": ...}`` picks one; the first is the
    default).
    With ``l1`` (a ``Web3`` on the L1), the node's epoch key is cross-checked against
    ``Rollup.epochKey(epoch)`` before anything is sealed to it (``rollup`` defaults to the
    address the node reports in ``enclavenet_contracts``). ``w3.eth.default_account`` becomes
    the account; ``w3.enclavenet`` is the :class:`ConfidentialClient` (epoch, nonce, receipts).
    """
    endpoint = str(getattr(w3.provider, "endpoint_uri", None) or type(w3.provider).__name__)
    client = ConfidentialClient(
        account, l1=l1, rollup=rollup, legacy_transactions=legacy_transactions, endpoint=endpoint
    )
    install(w3, client)
    w3.eth.default_account = Web3.to_checksum_address(client.address)
    w3.enclavenet = client  # type: ignore[attr-defined]
    return w3


def client_of(w3: Web3) -> ConfidentialClient:
    """The :class:`ConfidentialClient` behind a wrapped ``Web3``."""
    client = getattr(w3, "enclavenet", None)
    if not isinstance(client, ConfidentialClient):
        raise EnclaveNetError("this Web3 is not wrapped: call enclavenet.client.wrap(w3, account) first")
    return client


def check_receipt(receipt: Any) -> Any:
    """Return ``receipt`` if its transaction succeeded; raise TransactionReverted with the reason."""
    if int(receipt["status"]) == 1:
        return receipt
    reason = receipt.get("revertReason") if hasattr(receipt, "get") else None
    data: Any = receipt.get("returnData") if hasattr(receipt, "get") else None
    if data is not None and not isinstance(data, str):
        data = "0x" + bytes(data).hex()
    raise TransactionReverted(str(reason or ""), data=data, receipt=receipt)
