"""The L2 -> L1 message relay (docs/BRIDGE.md): untrusted glue.

After a header this node submitted is accepted, each L2 -> L1 message in its batch data is
relayed with ``Bridge.relayMessage`` (one L1 transaction per message). The Bridge checks
everything (the header chain up to the Rollup's last header, the meta, the message proof, the
replay key), so this role only builds arguments and retries: a message that another relayer
already ran is dropped; one whose proof went stale because newer headers landed is rebuilt with
the longer header chain on the next try. Relaying is permissionless: if this node dies,
``enclavenet.client.bridge`` relays from the batch data the DAPs store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
from typing import Any

from web3 import Web3

from ..chain.errors import ChainError, TxReverted
from ..crypto.header import Header
from .batch import split_batch_items
from .core import NodeCore, Role

log = logging.getLogger("enclavenet.node.relayer")
MAX_TRIES = 10


class Relayer(Role):
    def __init__(self, node: NodeCore, tx_pool: concurrent.futures.ThreadPoolExecutor) -> None:
        super().__init__(node)
        self.tx_pool = tx_pool
        self.pending: dict[int, tuple[bytes, int]] = {}  # height -> (batch data, tries)
        self._bridge: Any = None
        self._busy = False
        self.relayed = 0

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.bridge)

    def _contract(self) -> Any:
        if self._bridge is None:
            from ..contracts import load_artifact

            assert self.node.watcher is not None
            w3 = self.node.watcher.w3
            self._bridge = w3.eth.contract(address=Web3.to_checksum_address(self.cfg.bridge),
                                           abi=load_artifact("Bridge")["abi"])
        return self._bridge

    def accepted(self, height: int, batch_data: bytes) -> None:
        """A header this node submitted is on L1: queue its messages (if it has any)."""
        if not self.enabled:
            return
        try:
            _, _, _, msgs = split_batch_items(_items(batch_data))
        except (ValueError, KeyError):
            return
        if msgs:
            self.pending[height] = (batch_data, 0)
            if not self._busy:
                self.node.spawn(self.drain())

    def _chain(self, height: int) -> list[Header] | None:
        w = self.node.watcher
        assert w is not None
        out = []
        for h in range(height, w.height + 1):
            acc = w.headers.get(h)
            if acc is None:
                return None
            out.append(acc.header)
        return out or None

    async def drain(self) -> None:
        from ..client.bridge import relay_args

        if self.node.sender is None:
            log.warning("%s: no L1 key: cannot relay L2 -> L1 messages", self.cfg.name)
            return
        self._busy = True
        loop = asyncio.get_running_loop()
        sender = self.node.sender
        try:
            while self.pending and not self.node.stopping.is_set():
                height = min(self.pending)
                batch_data, tries = self.pending[height]
                chain = self._chain(height)
                if chain is None:  # the watcher has not seen it (yet): a try
                    if tries + 1 >= MAX_TRIES:
                        del self.pending[height]
                    else:
                        self.pending[height] = (batch_data, tries + 1)
                    await asyncio.sleep(0.5)
                    continue
                _, _, _, msgs = split_batch_items(_items(batch_data))
                done = True
                for k in range(len(msgs)):
                    fn = self._contract().functions.relayMessage(*relay_args(chain, batch_data, k).args())
                    try:
                        await loop.run_in_executor(self.tx_pool, functools.partial(sender.transact, fn, gas=3_000_000))
                        self.relayed += 1
                        log.info("%s: relayed L2 -> L1 message %d of height %d", self.cfg.name, k, height)
                    except TxReverted as exc:
                        if "already relayed" in str(exc):
                            continue
                        done = False
                        log.info("%s: relay of message %d at height %d reverted (retrying): %s",
                                 self.cfg.name, k, height, exc)
                    except ChainError as exc:
                        done = False
                        log.warning("%s: relay of height %d failed: %s", self.cfg.name, height, exc)
                if done or tries + 1 >= MAX_TRIES:
                    if not done:
                        log.warning("%s: giving up relaying height %d after %d tries (anyone can relay it: "
                                    "enclavenet.client.bridge)", self.cfg.name, height, MAX_TRIES)
                    del self.pending[height]
                else:
                    self.pending[height] = (batch_data, tries + 1)
                    await asyncio.sleep(1.0)
        finally:
            self._busy = False


def _items(batch_data: bytes) -> list[bytes]:
    from ..enclave.batch import batch_data_items

    return batch_data_items(batch_data)
