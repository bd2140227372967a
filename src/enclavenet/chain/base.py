"""The one interface every L1 backend implements.

An :class:`L1` is a connected ``web3.Web3`` plus what tests and the node need around it:
the chain id, funded accounts, and test-chain controls (mine, time travel, snapshot/revert,
rollback, reorg). The embedded chain and JSON-RPC nodes (anvil) implement it; everything
above (``TxSender``, ``EventFollower``, the node, the client) only sees ``L1``, so the same
code path runs on both.

    with EmbeddedL1() as l1:              # or: with start_anvil() as l1:
        sender = l1.sender(0)
        receipt = sender.transact(contract.functions.ping(1))
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from eth_account.signers.local import LocalAccount
from web3 import Web3

from .errors import with_retries

if TYPE_CHECKING:
    from .sender import TxSender

DEFAULT_CHAIN_ID = 31337  # anvil's default, used by both backends
DEFAULT_GAS_LIMIT = 60_000_000  # block gas limit: room for large deployments and batches
DEFAULT_BALANCE_ETH = 10_000  # per funded account

SnapshotId = int | str


class L1(abc.ABC):
    """A connected L1 chain. Use as a context manager; ``close()`` releases what it owns.

    Attributes:
        w3: the web3 client, ready to use.
        chain_id: the chain id transactions must be signed for.
        accounts: funded accounts (``LocalAccount``, they sign locally).
        endpoint: where the chain is, for messages (a URL, or "embedded eth-tester").
    """

    w3: Web3
    chain_id: int
    accounts: list[LocalAccount]
    endpoint: str

    def __init__(
        self, w3: Web3, chain_id: int, accounts: list[LocalAccount], endpoint: str
    ) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.accounts = accounts
        self.endpoint = endpoint
        self._generation = 0

    # -- reading ----------------------------------------------------------------------

    def block_number(self) -> int:
        """The number of the latest block."""
        return self._read(lambda: self.w3.eth.block_number, "eth_blockNumber")

    def timestamp(self) -> int:
        """The timestamp of the latest block (what ``block.timestamp`` was in it)."""
        return int(self._read(lambda: self.w3.eth.get_block("latest"), "eth_getBlock")["timestamp"])

    def _read(self, fn: Any, what: str) -> Any:
        return with_retries(fn, what=what, endpoint=self.endpoint)

    # -- test-chain controls ----------------------------------------------------------

    @abc.abstractmethod
    def mine(self, blocks: int = 1) -> None:
        """Mine ``blocks`` empty blocks."""

    @abc.abstractmethod
    def increase_time(self, seconds: int) -> None:
        """Move the clock forward by ``seconds`` and mine one block carrying the new time
        (so that deadlines checked against ``block.timestamp`` can pass)."""

    @abc.abstractmethod
    def snapshot(self) -> SnapshotId:
        """Remember the current chain state; :meth:`revert` returns to it."""

    @abc.abstractmethod
    def revert(self, snapshot: SnapshotId) -> None:
        """Return to a snapshot. Later snapshots are forgotten; a snapshot can be reverted to
        once (anvil's rule; take a new one to return again)."""

    @abc.abstractmethod
    def rollback(self, depth: int) -> None:
        """Drop the latest ``depth`` blocks: the chain is ``depth`` blocks shorter, and their
        transactions are gone."""

    @abc.abstractmethod
    def reorg(self, depth: int) -> None:
        """Replace the latest ``depth`` blocks by ``depth`` new empty blocks: same height,
        different hashes; the old blocks' transactions are gone."""

    @property
    def generation(self) -> int:
        """Bumped whenever this object rewrites history (revert, rollback, reorg), so that
        cached state such as a sender's nonce knows to resynchronise."""
        return self._generation

    def _history_rewritten(self) -> None:
        self._generation += 1

    # -- conveniences -----------------------------------------------------------------

    def sender(self, account: int | LocalAccount = 0, **options: Any) -> TxSender:
        """A :class:`TxSender` for ``accounts[account]`` (or the given account)."""
        from .sender import TxSender

        signer = self.accounts[account] if isinstance(account, int) else account
        return TxSender(self, signer, **options)

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release what this object owns (a node process, a connection)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} chain_id={self.chain_id} at {self.endpoint}>"
