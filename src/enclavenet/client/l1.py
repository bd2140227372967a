"""The L1 paths: deposit, withdraw, and the inbox (forced inclusion).

* :func:`deposit` -- ``Rollup.deposit()`` with value: credited to the same address inside
  EnclaveNet, in L1 order.
* :func:`withdraw` -- a confidential transaction to :data:`WITHDRAWAL_ADDRESS` (value = amount,
  calldata = the L1 recipient or empty for the sender); the Rollup pays it when the header
  holding it is accepted on L1. Returns once the payment is seen in that L1 transaction.
* :func:`submit_via_l1` -- the same sealed envelope as the fast path, sent as an ordinary L1
  transaction to ``Rollup.submit(payload)``: always possible, even if every node ignores you.
  Its receipt is read like any other (``w3.eth.wait_for_transaction_receipt(receipt_id)``).

L1 transactions are signed locally by the account (the L1 node needs no unlocked accounts).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction

from ..crypto.envelope import RoutingHint
from ..crypto.hashing import address_bytes, keccak256, to_checksum
from .core import ConfidentialClient, SentTx, _hex_bytes, _hex_int
from .errors import EnclaveNetError, NodeUnavailable, TransactionReverted
from .formats import create_address, encode_inbox_call, sign_transaction

#: Inside EnclaveNet, value sent here by a top-level transaction leaves for L1.
WITHDRAWAL_ADDRESS = to_checksum("0x00000000000000000000000000000000000057d0")

ROLLUP_CLIENT_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "deposit", "stateMutability": "payable", "inputs": [], "outputs": []},
    {
        "type": "function",
        "name": "submit",
        "stateMutability": "payable",
        "inputs": [{"name": "payload", "type": "bytes"}],
        "outputs": [],
    },
    {
        "type": "function",
        "name": "claim",
        "stateMutability": "nonpayable",
        "inputs": [],
        "outputs": [],
    },
    {
        "type": "event",
        "name": "WithdrawalPaid",
        "anonymous": False,
        "inputs": [
            {"name": "recipient", "type": "address", "indexed": True},
            {"name": "amount", "type": "uint256", "indexed": False},
        ],
    },
    {
        "type": "event",
        "name": "WithdrawalOwed",
        "anonymous": False,
        "inputs": [
            {"name": "recipient", "type": "address", "indexed": True},
            {"name": "amount", "type": "uint256", "indexed": False},
        ],
    },
]


def _rollup(l1_w3: Web3, rollup: str) -> Any:
    return l1_w3.eth.contract(address=Web3.to_checksum_address(rollup), abi=ROLLUP_CLIENT_ABI)


def _l1_transact(l1_w3: Web3, account: LocalAccount, fn: ContractFunction, value: int, timeout: float) -> Any:
    """Sign ``fn`` locally, send it to the L1, wait for the receipt; raise if it reverted."""
    sender = Web3.to_checksum_address(account.address)
    base: Any = {"from": sender, "value": value}
    try:
        gas = fn.estimate_gas(base)
    except Exception as exc:
        raise TransactionReverted(f"L1 {fn.fn_name} would revert: {exc}") from None
    tx: Any = fn.build_transaction(
        {
            **base,
            "gas": int(gas * 1.2) + 10_000,
            "nonce": l1_w3.eth.get_transaction_count(sender, "pending"),
            "chainId": l1_w3.eth.chain_id,
        }
    )
    signed = account.sign_transaction(tx)
    h = l1_w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = l1_w3.eth.wait_for_transaction_receipt(h, timeout=timeout, poll_latency=0.05)
    if receipt["status"] != 1:
        raise TransactionReverted(f"L1 {fn.fn_name} reverted (tx {HexBytes(h).to_0x_hex()})", receipt=receipt)
    return receipt


def _rollup_address(w3: Web3 | None, rollup: str | None) -> str:
    if rollup:
        return to_checksum(rollup)
    if w3 is not None:
        client = getattr(w3, "enclavenet", None)
        if isinstance(client, ConfidentialClient):
            if client.rollup:
                return client.rollup
            res = w3.provider.make_request("enclavenet_contracts", [])  # type: ignore[arg-type]
            if isinstance(res, dict) and isinstance(res.get("result"), dict):
                client.rollup = to_checksum(res["result"]["rollup"])
                return client.rollup
    raise EnclaveNetError("give the Rollup address (rollup=...) or a wrapped Web3 whose node reports it")


def deposit(l1_w3: Web3, account: LocalAccount, rollup: str, amount: int, *, timeout: float = 60.0) -> Any:
    """Deposit ``amount`` wei on L1; it is credited to the same address inside EnclaveNet.

    Returns the L1 receipt. The credit appears once a header consuming this L1 block is accepted.
    """
    if amount <= 0:
        raise EnclaveNetError("a deposit needs a positive amount")
    return _l1_transact(l1_w3, account, _rollup(l1_w3, rollup).functions.deposit(), amount, timeout)


@dataclass(frozen=True)
class WithdrawalResult:
    receipt: Any  # the EnclaveNet receipt of the withdrawal transaction
    l1_tx_hash: str  # the L1 transaction (submitHeader) that paid it
    recipient: str
    amount: int
    paid: bool  # False: the Rollup could not push it (owed; the recipient calls Rollup.claim())


def withdraw(
    w3: Web3,
    l1_w3: Web3,
    amount: int,
    *,
    recipient: str | None = None,
    sender: str | None = None,
    rollup: str | None = None,
    timeout: float = 120.0,
) -> WithdrawalResult:
    """Withdraw ``amount`` wei from EnclaveNet to ``recipient`` on L1 (default: the sender).

    Sends the confidential withdrawal transaction through ``w3`` (wrapped), waits for its
    receipt (available only once its header is accepted on L1), and checks that the Rollup paid
    (or owes) the amount in that L1 transaction.
    """
    client = _client(w3)
    if amount <= 0:
        raise EnclaveNetError("a withdrawal needs a positive amount")
    frm = to_checksum(client.signer(sender).address)
    to_l1 = to_checksum(recipient) if recipient else frm
    data = b"" if to_l1 == frm else address_bytes(to_l1)
    tx: Any = {"from": frm, "to": WITHDRAWAL_ADDRESS, "value": amount, "data": data, "gas": 100_000}
    h = w3.eth.send_transaction(tx)
    receipt = w3.eth.wait_for_transaction_receipt(h, timeout=timeout, poll_latency=0.1)
    if receipt["status"] != 1:
        raise TransactionReverted(str(receipt.get("revertReason") or "withdrawal refused"), receipt=receipt)
    l1_hash = receipt.get("l1TransactionHash")
    if not l1_hash:
        raise NodeUnavailable("the node gave no L1 transaction for the accepted header")
    rollup_addr = _rollup_address(w3, rollup)
    contract = _rollup(l1_w3, rollup_addr)
    deadline = time.monotonic() + timeout
    l1_receipt = None
    while l1_receipt is None:
        try:
            l1_receipt = l1_w3.eth.get_transaction_receipt(str(l1_hash))  # type: ignore[arg-type]
        except Exception:
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"L1 transaction {l1_hash} not found on the L1 given") from None
            time.sleep(0.1)
    for ev, paid in ((contract.events.WithdrawalPaid(), True), (contract.events.WithdrawalOwed(), False)):
        for e in ev.process_receipt(l1_receipt, errors=_discard()):
            if to_checksum(e["args"]["recipient"]) == to_l1 and int(e["args"]["amount"]) == amount:
                return WithdrawalResult(receipt, str(l1_hash), to_l1, amount, paid)
    raise EnclaveNetError(
        f"the header holding the withdrawal was accepted in L1 tx {l1_hash}, but it paid no "
        f"{amount} wei to {to_l1}"
    )


def _discard() -> Any:
    from web3.logs import DISCARD

    return DISCARD


@dataclass(frozen=True)
class InboxSubmission:
    receipt_id: str  # keccak256(envelope): read the receipt with w3.eth.wait_for_transaction_receipt
    l1_receipt: Any  # the L1 receipt of Rollup.submit
    envelope: bytes


def submit_via_l1(
    w3: Web3,
    l1_w3: Web3,
    call: ContractFunction | dict[str, Any],
    *,
    value: int = 0,
    deposit_value: int = 0,
    gas: int = 1_000_000,
    rollup: str | None = None,
    inbox_call: bool = False,
    sender: str | None = None,
    timeout: float = 60.0,
) -> InboxSubmission:
    """Send a confidential transaction through the L1 inbox (``Rollup.submit``).

    ``sender`` picks one of the wrapped accounts (default: the first); it signs both the
    EnclaveNet transaction and the L1 transaction. ``call`` is a contract function (``token.functions.transfer(bob, 5)``) or a dict
    ``{"to", "data"}``. By default the envelope holds the same signed transaction as the fast
    path (it uses the account's next nonce); ``inbox_call=True`` sends an unsigned inbox call
    instead, authenticated by the L1 sender and independent of the nonce (sealed with a routing
    hint naming ``sender``, so only that account's ``Rollup.submit`` runs it). ``deposit_value`` wei
    ride along on L1 and are credited before the transaction runs.
    """
    client = _client(w3)
    account = client.signer(sender)
    address = to_checksum(account.address)
    mr = _make_request(w3)
    chain_id = client.ensure_chain_id(mr)
    if isinstance(call, dict):
        to = to_checksum(call["to"]) if call.get("to") else None
        data = _hex_bytes(call.get("data", b""))
        value = _hex_int(call.get("value", value))
    else:
        to = to_checksum(call.address)
        data = _hex_bytes(call._encode_transaction_data())
    rollup_addr = _rollup_address(w3, rollup)
    with client._lock:
        if inbox_call:
            if to is None:
                raise EnclaveNetError("an inbox call cannot create a contract: use inbox_call=False")
            plaintext = encode_inbox_call(chain_id, to, data, value, gas)
            # the hint binds the intended L1 sender (AEAD associated data): a copy of this public
            # envelope submitted from another account is refused by the enclaves (issue 14, H1)
            sealed = client.seal(mr, plaintext, RoutingHint(address_bytes(address), 0))
            nonce = None
        else:
            nonce = client.next_nonce(mr, address)
            plaintext = sign_transaction(bytes(account.key), chain_id, nonce, to, data, value, gas, legacy=client.legacy)
            sealed = client.seal(mr, plaintext, RoutingHint(address_bytes(address), nonce))
        envelope = sealed.envelope.encode()
        rid = "0x" + keccak256(envelope).hex()
        client.remember(
            rid,
            SentTx(
                sealed.receipt_key, address, nonce, to, keccak256(plaintext),
                create_address(address, nonce) if (to is None and nonce is not None) else None,
                0x7E if inbox_call else (2 if plaintext[:1] == b"\x02" else 0),
            ),
        )
        l1_receipt = _l1_transact(
            l1_w3, account, _rollup(l1_w3, rollup_addr).functions.submit(envelope), deposit_value, timeout
        )
        if nonce is not None:
            client.set_nonce(address, nonce + 1)
    return InboxSubmission(rid, l1_receipt, envelope)


def _client(w3: Web3) -> ConfidentialClient:
    client = getattr(w3, "enclavenet", None)
    if not isinstance(client, ConfidentialClient):
        raise EnclaveNetError("pass a Web3 wrapped with enclavenet.client.wrap(w3, account)")
    return client


def _make_request(w3: Web3) -> Any:
    """Raw node access below the middleware (the client seals itself)."""
    return w3.provider.make_request
