"""An L1 reached over JSON-RPC: any Ethereum node at a URL (``--l1-rpc``), anvil included.

Reads and writes work against any node. The test-chain controls (mine, time travel,
snapshot/revert, rollback, reorg) use the development methods anvil provides
(``anvil_mine``, ``evm_increaseTime``, ``evm_snapshot``, ``evm_revert``, ``anvil_rollback``,
``anvil_reorg``); a node without them answers with a :class:`ChainError` naming the method.

Transport failures are retried with backoff (see :func:`.errors.with_retries`) and end in
:class:`L1Unavailable` ("cannot reach L1 at <url>: connection refused ...").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import RPCEndpoint

from .base import L1, SnapshotId
from .errors import ChainError, with_retries

if TYPE_CHECKING:
    from .anvil import AnvilProcess


class RpcL1(L1):
    """A JSON-RPC L1 node. ``accounts`` are the keys this process may sign with (for a
    node started by :func:`.anvil.start_anvil`, its funded development accounts)."""

    def __init__(
        self,
        url: str,
        *,
        accounts: Sequence[LocalAccount | bytes | str] = (),
        timeout: float = 30.0,
        connect_attempts: int = 3,
        owned_process: AnvilProcess | None = None,
    ) -> None:
        # Retries are ours (errors.with_retries), not web3's: one policy, and a fast, clear
        # "cannot reach" when nothing listens.
        # The chain id never changes: let web3 cache it (its validation middleware asks for
        # it before every eth_call / eth_estimateGas otherwise, one more round trip each).
        provider = Web3.HTTPProvider(
            url,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=None,
            cache_allowed_requests=True,
            cacheable_requests={RPCEndpoint("eth_chainId")},
        )
        w3 = Web3(provider)
        chain_id = with_retries(
            lambda: w3.eth.chain_id, what="eth_chainId", endpoint=url, attempts=connect_attempts
        )
        signers = [a if isinstance(a, LocalAccount) else Account.from_key(a) for a in accounts]
        super().__init__(w3, int(chain_id), signers, url)
        self.url = url
        self._process = owned_process

    # -- raw development methods ------------------------------------------------------

    def request(self, method: str, *params: Any) -> Any:
        """Send one JSON-RPC request (with retries); return its result or raise ChainError."""
        response = with_retries(
            lambda: self.w3.provider.make_request(RPCEndpoint(method), list(params)),
            what=method,
            endpoint=self.endpoint,
        )
        error = response.get("error")
        if error:
            message = error.get("message", error) if isinstance(error, dict) else error
            hint = ""
            if isinstance(error, dict) and error.get("code") == -32601:
                hint = " -- this node lacks that development method (it is anvil's)"
            raise ChainError(f"{method} failed at {self.endpoint}: {message}{hint}")
        return response.get("result")

    # -- test-chain controls ----------------------------------------------------------

    def mine(self, blocks: int = 1) -> None:
        if blocks > 0:
            self.request("anvil_mine", hex(blocks))

    def increase_time(self, seconds: int) -> None:
        self.request("evm_increaseTime", int(seconds))
        self.request("evm_mine")

    def snapshot(self) -> SnapshotId:
        snapshot_id: SnapshotId = self.request("evm_snapshot")
        return snapshot_id

    def revert(self, snapshot: SnapshotId) -> None:
        if not self.request("evm_revert", snapshot):
            raise ChainError(
                f"unknown snapshot {snapshot!r} at {self.endpoint}: it was never taken, or was "
                "already reverted to (or lies after one that was); take a new snapshot"
            )
        self._history_rewritten()

    def rollback(self, depth: int) -> None:
        if depth > 0:
            self.request("anvil_rollback", depth)
            self._history_rewritten()

    def reorg(self, depth: int, transactions: Sequence[tuple[bytes, int]] = ()) -> None:
        """Replace the latest ``depth`` blocks by new ones. ``transactions`` are signed raw
        transactions to include, each with the offset (0 .. depth-1) of its new block."""
        if depth > 0:
            pairs = [[Web3.to_hex(raw), offset] for raw, offset in transactions]
            self.request("anvil_reorg", depth, pairs)
            self._history_rewritten()

    def close(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
