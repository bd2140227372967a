"""A web3.py provider that executes directly in pyrevm, the EVM the enclaves run.

``Web3(RevmProvider())`` answers the handful of JSON-RPC methods the example scripts use
(deploy, transact, call, receipts, balances) by calling ``pyrevm.EVM.deploy`` and
``pyrevm.EVM.message_call`` in-process. The same ``run(w3, accounts)`` script therefore runs
unchanged on the embedded L1 (eth-tester / py-evm) and in pyrevm, and the two result dicts can be
compared: plain execution on the L1 EVM versus the EVM of confidential execution.

It mimics an automining dev node: one block per transaction, funded dev accounts (the same
addresses as eth-tester's, private keys 1..10), no gas fees (gas price 0). Sender nonces advance
as on a real chain, so contracts land at the same addresses as on eth-tester. Reverting calls and
gas estimates come back as JSON-RPC error 3 "execution reverted: <reason>" with the revert data,
which web3.py turns into ``ContractLogicError``. Not a node: no signatures, no mempool, no filters.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import pyrevm
from eth_abi import decode
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

DEFAULT_BALANCE = 10**6 * 10**18  # 1M ether per dev account, as eth-tester
BLOCK_GAS_LIMIT = 30_000_000
CHAIN_ID = 131277322940537  # eth-tester's chain id, so scripts see the same value
_GENESIS_TIME = 1_700_000_000
_REVERT_RE = re.compile(r"^Revert \{ gas_used: (\d+), output: 0x([0-9a-fA-F]*) \}$")
_ERROR_SELECTOR = keccak(b"Error(string)")[:4]


def dev_accounts(n: int = 10) -> list[str]:
    """eth-tester's dev accounts: the addresses of private keys 1..n."""
    return [Account.from_key(i.to_bytes(32, "big")).address for i in range(1, n + 1)]


class Reverted(Exception):
    """The EVM reverted or halted; ``data`` is the revert output (empty for a halt)."""

    def __init__(self, reason: str, data: bytes, gas_used: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data
        self.gas_used = gas_used


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


def _q(n: int) -> str:
    return hex(n)


def _int(v: Any, default: int) -> int:
    """A JSON-RPC quantity (0x-hex string or int) or ``default`` when absent."""
    if v is None:
        return default
    return int(v, 16) if isinstance(v, str) else int(v)


def _revert_from(err: RuntimeError) -> Reverted:
    text = str(err)
    m = _REVERT_RE.match(text)
    if not m:  # a halt: out of gas, invalid opcode, ...
        return Reverted(text, b"", 0)
    data = bytes.fromhex(m.group(2))
    reason = "execution reverted"
    if data[:4] == _ERROR_SELECTOR:
        reason += ": " + str(decode(["string"], data[4:])[0])
    return Reverted(reason, data, int(m.group(1)))


class RevmProvider(BaseProvider):
    """An in-process "node" whose EVM is pyrevm (spec SHANGHAI, as the enclaves)."""

    def __init__(self, accounts: list[str] | None = None, balance: int = DEFAULT_BALANCE) -> None:
        super().__init__()
        self.evm = pyrevm.EVM(spec_id="SHANGHAI")
        self.accounts = [to_checksum_address(a) for a in (accounts or dev_accounts())]
        for a in self.accounts:
            self.evm.set_balance(a, balance)
        self.block_number = 0
        self.receipts: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count()
        self._set_block(0)

    # --- the EVM -------------------------------------------------------------------------------

    def _set_block(self, number: int) -> None:
        self.block_number = number
        self.evm.set_block_env(
            pyrevm.BlockEnv(
                number=number, timestamp=_GENESIS_TIME + number, gas_limit=BLOCK_GAS_LIMIT
            )
        )

    def _bump_nonce(self, address: str) -> None:
        """A message call is a transaction too: advance the sender's nonce (pyrevm does not)."""
        info = self.evm.basic(address)
        balance = self.evm.get_balance(address)
        self.evm.insert_account_info(address, pyrevm.AccountInfo(nonce=info.nonce + 1))
        self.evm.set_balance(address, balance)

    def _execute(self, tx: dict[str, Any]) -> tuple[bytes, str | None, int, list[Any]]:
        """Run ``tx``; returns (output, created address, gas used, logs). Raises Reverted."""
        sender = to_checksum_address(tx.get("from") or self.accounts[0])
        data = bytes.fromhex(str(tx.get("data") or tx.get("input") or "0x")[2:])
        value = _int(tx.get("value"), 0)
        gas_limit = min(_int(tx.get("gas"), BLOCK_GAS_LIMIT), BLOCK_GAS_LIMIT)
        try:
            if tx.get("to"):
                out = self.evm.message_call(
                    sender, to_checksum_address(tx["to"]), data, value=value, gas=gas_limit
                )
                created = None
            else:
                created = to_checksum_address(
                    self.evm.deploy(sender, data, value=value, gas=gas_limit)
                )
                out = b""
        except RuntimeError as e:
            raise _revert_from(e) from None
        result = self.evm.result
        gas_used = result.gas_used if result is not None else 0
        logs = list(result.logs) if result is not None else []
        return bytes(out), created, gas_used, logs

    def _dry_run(self, tx: dict[str, Any]) -> tuple[bytes, int]:
        checkpoint = self.evm.snapshot()
        try:
            out, _, gas_used, _ = self._execute(tx)
        finally:
            self.evm.revert(checkpoint)
        return out, gas_used

    def _send(self, tx: dict[str, Any]) -> str:
        sender = to_checksum_address(tx.get("from") or self.accounts[0])
        nonce = self.evm.basic(sender).nonce
        self._set_block(self.block_number + 1)
        tx_hash = _hex(keccak(b"revm-tx" + bytes.fromhex(sender[2:]) + nonce.to_bytes(8, "big")))
        block_hash = _hex(keccak(b"revm-block" + self.block_number.to_bytes(8, "big")))
        status, created, gas_used = 1, None, 0
        logs: list[Any] = []
        checkpoint = self.evm.snapshot()
        try:
            _, created, gas_used, logs = self._execute(tx)
        except Reverted as e:
            self.evm.revert(checkpoint)
            status, gas_used = 0, e.gas_used
        if tx.get("to") or status == 0:
            self._bump_nonce(sender)  # deploy advanced it already
        self.receipts[tx_hash] = {
            "transactionHash": tx_hash,
            "transactionIndex": "0x0",
            "blockHash": block_hash,
            "blockNumber": _q(self.block_number),
            "from": sender,
            "to": to_checksum_address(tx["to"]) if tx.get("to") else None,
            "contractAddress": created,
            "cumulativeGasUsed": _q(gas_used),
            "gasUsed": _q(gas_used),
            "effectiveGasPrice": "0x0",
            "status": _q(status),
            "type": "0x2",
            "logsBloom": "0x" + "00" * 256,
            "logs": [
                {
                    "address": to_checksum_address(log.address),
                    "topics": list(log.topics),
                    "data": _hex(log.data[1]),
                    "logIndex": _q(i),
                    "transactionIndex": "0x0",
                    "transactionHash": tx_hash,
                    "blockHash": block_hash,
                    "blockNumber": _q(self.block_number),
                    "removed": False,
                }
                for i, log in enumerate(logs)
            ],
        }
        return tx_hash

    def _block(self) -> dict[str, Any]:
        n = self.block_number
        return {
            "number": _q(n),
            "hash": _hex(keccak(b"revm-block" + n.to_bytes(8, "big"))),
            "parentHash": _hex(keccak(b"revm-block" + max(n - 1, 0).to_bytes(8, "big"))),
            "timestamp": _q(_GENESIS_TIME + n),
            "gasLimit": _q(BLOCK_GAS_LIMIT),
            "gasUsed": "0x0",
            "baseFeePerGas": "0x0",
            "miner": "0x" + "00" * 20,
            "transactions": [],
        }

    # --- JSON-RPC --------------------------------------------------------------------------------

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        rid = next(self._ids)
        try:
            result = self._dispatch(str(method), list(params or []))
        except Reverted as e:
            return {
                "jsonrpc": "2.0",
                "id": rid,
                "error": {"code": 3, "message": e.reason, "data": _hex(e.data)},
            }
        except (KeyError, ValueError, TypeError, NotImplementedError) as e:
            return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": str(e)}}
        return {"jsonrpc": "2.0", "id": rid, "result": result}

    def _dispatch(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return _q(CHAIN_ID)
        if method == "net_version":
            return str(CHAIN_ID)
        if method == "eth_accounts":
            return list(self.accounts)
        if method == "eth_blockNumber":
            return _q(self.block_number)
        if method == "eth_getBlockByNumber":
            return self._block()
        if method in ("eth_gasPrice", "eth_maxPriorityFeePerGas"):
            return "0x0"
        if method == "eth_getBalance":
            return _q(self.evm.get_balance(to_checksum_address(params[0])))
        if method == "eth_getTransactionCount":
            return _q(self.evm.basic(to_checksum_address(params[0])).nonce)
        if method == "eth_getCode":
            return _hex(self.evm.get_code(to_checksum_address(params[0])) or b"")
        if method == "eth_call":
            return _hex(self._dry_run(params[0])[0])
        if method == "eth_estimateGas":
            _, gas_used = self._dry_run(params[0])
            return _q(min(gas_used * 2 + 50_000, BLOCK_GAS_LIMIT))  # room for the 63/64 rule
        if method == "eth_sendTransaction":
            return self._send(params[0])
        if method == "eth_getTransactionReceipt":
            return self.receipts.get(str(params[0]))
        raise NotImplementedError(f"RevmProvider does not implement {method}")

    def is_connected(self, show_traceback: bool = False) -> bool:
        return True
