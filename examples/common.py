"""Small helpers the example scripts share: artifacts, sending transactions, expected refusals."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.exceptions import ContractLogicError

from enclavenet.compiler import Artifact, load_artifact

EXAMPLES_DIR = Path(__file__).resolve().parent

try:  # eth-tester (the embedded L1) raises its own exception class for reverts
    from eth_tester.exceptions import TransactionFailed

    _REVERTS: tuple[type[Exception], ...] = (ContractLogicError, TransactionFailed)
except ImportError:  # pragma: no cover - eth-tester is a dependency, but keep scripts portable
    _REVERTS = (ContractLogicError,)


def artifact(example: str, contract: str) -> Artifact:
    """The committed artifact ``examples/<example>/artifacts/<contract>.json``."""
    return load_artifact(EXAMPLES_DIR / example / "artifacts" / f"{contract}.json")


def send(w3: Any, call: Any, sender: str, value: int = 0) -> Any:
    """Transact ``call`` (a bound contract function) from ``sender``; return the receipt.

    Raises ``RuntimeError`` when the transaction is mined but fails.
    """
    tx_hash = call.transact({"from": sender, "value": value})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1:
        raise RuntimeError(f"{call.fn_name} from {sender} failed")
    return receipt


def refusal(call: Any, sender: str, value: int = 0) -> str | None:
    """Try ``call`` from ``sender`` and return the contract's revert reason, or None if it passed.

    Views are called; state-changing functions are sent as transactions (a refused one is not
    mined: the node rejects it while estimating gas).
    """
    view = call.abi.get("stateMutability") in ("view", "pure")
    try:
        if view:
            call.call({"from": sender})
        else:
            call.transact({"from": sender, "value": value})
    except _REVERTS as e:
        message = str(e.args[0]) if e.args else str(e)
        return message.removeprefix("execution reverted: ").removeprefix("execution reverted")
    return None


def need_accounts(accounts: Sequence[str], n: int, example: str) -> list[str]:
    if len(accounts) < n:
        raise ValueError(f"{example} needs {n} funded accounts, got {len(accounts)}")
    return list(accounts[:n])


def main(run: Callable[[Any, Sequence[str]], dict[str, Any]]) -> None:
    """Run an example on the embedded L1 (eth-tester) and print its results as JSON."""
    from web3 import EthereumTesterProvider

    w3 = Web3(EthereumTesterProvider())
    results = run(w3, w3.eth.accounts)
    json.dump(results, sys.stdout, indent=2, default=str)
    print()
