"""The embedded L1: an in-process eth-tester chain on py-evm. Nothing to start.

Every transaction is mined at once in its own block (auto-mining). The chain id, block gas
limit, number of funded accounts and their balance are settable; the funded accounts are the
same development accounts anvil funds (see :mod:`.accounts`), so addresses agree across
backends. Creating one costs ~15 ms, so tests can take a fresh chain each.

Speed: a contract transaction costs one gas estimate, one signature and one execution.
py-evm's own estimator binary-searches (~14 executions); :func:`_estimate_gas` usually needs
two, and falls back to the binary search when that is not enough.
"""

from __future__ import annotations

import threading
from typing import Any

from eth.abc import SignedTransactionAPI, StateAPI
from eth.estimators.gas import binary_gas_search_intrinsic_tolerance
from eth.exceptions import HeaderNotFound
from eth.exceptions import TransactionNotFound as EVMTransactionNotFound
from eth.vm.spoof import SpoofTransaction
from eth_keys import keys
from eth_tester import EthereumTester, PyEVMBackend
from eth_tester.backends.pyevm.main import generate_genesis_state_for_keys
from eth_tester.backends.pyevm.serializers import (
    serialize_transaction,
    serialize_transaction_receipt,
)
from eth_tester.exceptions import TransactionNotFound
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider
from web3.providers.eth_tester.defaults import API_ENDPOINTS
from web3.types import RPCEndpoint, RPCResponse

from .accounts import dev_accounts
from .base import DEFAULT_BALANCE_ETH, DEFAULT_CHAIN_ID, DEFAULT_GAS_LIMIT, L1, SnapshotId
from .errors import ChainError


def _succeeds_with(state: StateAPI, transaction: SignedTransactionAPI, gas: int) -> Any:
    """Run ``transaction`` with ``gas`` on a throwaway state; return the computation."""
    spoof: Any = SpoofTransaction(transaction, gas=gas, gas_price=0)
    snapshot = state.snapshot()
    try:
        return state.apply_transaction(spoof)
    finally:
        state.revert(snapshot)


def _estimate_gas(state: StateAPI, transaction: SignedTransactionAPI) -> int:
    """Gas estimate in about two executions instead of a binary search.

    Run once with the whole block gas limit to learn the gas consumed (before refunds) and
    the revert, if any; then check that consumption plus 1/32 (room for the 1/64 every call
    frame must keep back) suffices. If it does not, fall back to py-evm's binary search.
    """
    computation = _succeeds_with(state, transaction, state.gas_limit)
    if computation.is_error:
        raise computation.error
    consumed = state.gas_limit - computation.get_gas_remaining()
    candidate = min(state.gas_limit, consumed + consumed // 32)
    try:
        if not _succeeds_with(state, transaction, candidate).is_error:
            return int(candidate)
    except Exception:  # e.g. below an intrinsic/floor cost: let the exact search decide
        pass
    return int(binary_gas_search_intrinsic_tolerance(state, transaction))


class _IndexedBackend(PyEVMBackend):
    """eth-tester's py-evm backend, finding transactions through py-evm's hash index.

    eth-tester looks a transaction up by scanning blocks back from the head, so receipts of
    old transactions and ``eth_getLogs`` (one receipt per transaction) cost time in the length
    of the chain; a follower catching up became quadratic. The index answers at once.
    """

    def _locate(self, transaction_hash: bytes) -> tuple[Any, Any, int]:
        chain = self.chain
        pending = chain.get_block()
        for index, transaction in enumerate(pending.transactions):
            if transaction.hash == transaction_hash:
                return pending, transaction, index
        try:
            number, index = chain.chaindb.get_transaction_index(transaction_hash)
            if number < pending.number:
                block = chain.get_canonical_block_by_number(number)
                transaction = block.transactions[index]
                if transaction.hash == transaction_hash:
                    return block, transaction, index
        except (EVMTransactionNotFound, HeaderNotFound, IndexError):
            pass
        raise TransactionNotFound(f"No transaction found for hash {transaction_hash.hex()}")

    def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
        block, transaction, index = self._locate(transaction_hash)
        is_pending = block.number == self.chain.get_block().number
        return serialize_transaction(block, transaction, index, is_pending)

    def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
        block, transaction, index = self._locate(transaction_hash)
        is_pending = block.number == self.chain.get_block().number
        receipts = block.get_receipts(self.chain.chaindb)
        return serialize_transaction_receipt(
            block, receipts, transaction, index, is_pending, self.chain.get_vm()
        )


class _LockedProvider(EthereumTesterProvider):
    """eth-tester is not thread-safe: one request at a time (a sender's threads, a follower)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.RLock()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        with self.lock:
            return super().make_request(method, params)


class EmbeddedL1(L1):
    """An in-process chain (eth-tester + py-evm) with funded development accounts."""

    def __init__(
        self,
        *,
        chain_id: int = DEFAULT_CHAIN_ID,
        accounts: int = 10,
        balance_eth: int = DEFAULT_BALANCE_ETH,
        gas_limit: int = DEFAULT_GAS_LIMIT,
    ) -> None:
        funded = dev_accounts(accounts)
        private_keys = [keys.PrivateKey(bytes(a.key)) for a in funded]
        genesis_state = generate_genesis_state_for_keys(
            private_keys, overrides={"balance": Web3.to_wei(balance_eth, "ether")}
        )
        genesis_params = PyEVMBackend.generate_genesis_params(overrides={"gas_limit": gas_limit})
        backend = _IndexedBackend(genesis_parameters=genesis_params, genesis_state=genesis_state)
        backend.account_keys = tuple(private_keys)  # eth_accounts = the funded accounts
        # eth-tester builds a fresh chain class per backend: set ours on it, so that it
        # survives reverts to genesis (which make a new chain object of the same class),
        # and on the chain object, which has already copied the default estimator.
        chain_class = type(backend.chain)
        chain_class.chain_id = chain_id
        chain_class.gas_estimator = staticmethod(_estimate_gas)
        backend.chain.gas_estimator = _estimate_gas

        endpoints = {namespace: dict(methods) for namespace, methods in API_ENDPOINTS.items()}
        endpoints["eth"]["chainId"] = lambda *_: chain_id
        self.tester = EthereumTester(backend)
        self._snapshots: list[SnapshotId] = []
        provider = _LockedProvider(self.tester, api_endpoints=endpoints)
        self._lock = provider.lock  # also held by the test-chain controls below
        w3 = Web3(provider)
        super().__init__(w3, chain_id, funded, "embedded eth-tester")

    def mine(self, blocks: int = 1) -> None:
        if blocks > 0:
            with self._lock:
                self.tester.mine_blocks(blocks)

    def increase_time(self, seconds: int) -> None:
        with self._lock:
            pending = int(self.tester.get_block_by_number("pending")["timestamp"])
            target = max(self.timestamp() + int(seconds), pending + 1)
            # eth-tester mines one block stamped one second before the time it is given
            self.tester.time_travel(target + 1)

    def snapshot(self) -> SnapshotId:
        with self._lock:
            snapshot_id: int = self.tester.take_snapshot()
            self._snapshots.append(snapshot_id)
            return snapshot_id

    def revert(self, snapshot: SnapshotId) -> None:
        if snapshot not in self._snapshots:
            raise ChainError(
                f"unknown snapshot {snapshot!r}: it was never taken here, or was already "
                "reverted to (or lies after one that was); take a new snapshot"
            )
        with self._lock:
            self.tester.revert_to_snapshot(snapshot)
            # like anvil: forget this snapshot and every later one
            del self._snapshots[self._snapshots.index(snapshot) :]
            self._history_rewritten()

    def rollback(self, depth: int) -> None:
        with self._lock:
            head = self.block_number()
            if not 0 <= depth <= head:
                raise ValueError(f"cannot roll back {depth} blocks: the chain has {head}")
            if depth == 0:
                return
            backend = self.tester.backend
            target = backend.chain.get_canonical_block_by_number(head - depth)
            backend.revert_to_snapshot(target.hash)  # that block becomes the head
            self._history_rewritten()

    def reorg(self, depth: int) -> None:
        with self._lock:
            self.rollback(depth)
            # new blocks differ from the dropped ones (fresh prevrandao), hence new hashes
            self.mine(depth)
