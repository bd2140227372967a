"""Funded development accounts, identical on every backend.

Both the embedded chain and anvil fund the accounts derived from the well-known development
mnemonic ``test test ... junk`` (path ``m/44'/60'/0'/0/i``), so account *i* has the same
address, and a contract deployed by it the same address, whichever L1 a test runs on. These
keys are public: never use them on a real network.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_DERIVATION_PATH = "m/44'/60'/0'/0/"

# The first ten keys of DEV_MNEMONIC, precomputed (deriving costs ~25 ms each).
_FIRST_DEV_KEYS = (
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "dbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
)


@cache
def dev_key(index: int) -> bytes:
    """The private key of development account ``index``."""
    if index < 0:
        raise ValueError(f"account index must be >= 0, got {index}")
    if index < len(_FIRST_DEV_KEYS):
        return bytes.fromhex(_FIRST_DEV_KEYS[index])
    Account.enable_unaudited_hdwallet_features()
    derived: LocalAccount = Account.from_mnemonic(
        DEV_MNEMONIC, account_path=f"{DEV_DERIVATION_PATH}{index}"
    )
    return bytes(derived.key)


def dev_accounts(count: int) -> list[LocalAccount]:
    """The first ``count`` development accounts, as signing ``LocalAccount`` objects."""
    return [Account.from_key(dev_key(i)) for i in range(count)]


def eth_tester_accounts(count: int) -> list[LocalAccount]:
    """eth-tester's own development accounts are the private keys 1..count.

    A script run plainly on ``Web3(EthereumTesterProvider())`` and confidentially with these keys
    sees the same addresses, which is how the examples compare the two runs.
    """
    return [Account.from_key(i.to_bytes(32, "big")) for i in range(1, count + 1)]


def pay(w3: Any, frm: LocalAccount, to: str, value: int, *, timeout: float = 60.0) -> Any:
    """Send ``value`` wei from ``frm`` to ``to`` on L1 and wait for it; returns the receipt.

    Raises ``TxReverted`` if the payment is mined with status 0 (e.g. ``to`` refuses ETH).
    """
    from .errors import TxReverted

    tx = {
        "to": to,
        "value": value,
        "gas": 21_000,
        "chainId": w3.eth.chain_id,
        "nonce": w3.eth.get_transaction_count(frm.address, "pending"),
        "maxFeePerGas": 2 * w3.eth.get_block("latest")["baseFeePerGas"] + 10**9,
        "maxPriorityFeePerGas": 10**9,
    }
    h = w3.eth.send_raw_transaction(frm.sign_transaction(tx).raw_transaction)
    rc = w3.eth.wait_for_transaction_receipt(h, timeout=timeout)
    if rc.status != 1:
        raise TxReverted(f"paying {value} wei from {frm.address} to {to}", "mined with status 0")
    return rc
