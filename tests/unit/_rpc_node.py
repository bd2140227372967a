"""A node core with only its JSON-RPC ingress (``eth_sendRawTransaction`` into mempool and
pending.log), served in process by aiohttp's test server: what the admission tests drive."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from enclavenet.node.api import install_rpc_methods
from enclavenet.node.config import NodeConfig
from enclavenet.node.core import NodeCore
from enclavenet.node.ingress import Ingress

ZERO = "0x" + "00" * 20
CHAIN = 1337


class RpcNode(NodeCore):
    def __init__(self, data_dir: Path, **cfg: Any) -> None:
        super().__init__(NodeConfig(name="n0", data_dir=str(data_dir), l1_rpc="http://127.0.0.1:9", rollup=ZERO,
                                    registry=ZERO, l1_chain_id=31337, chain_id=CHAIN, platform={"tee": "sgx"},
                                    enclave={}, **cfg))
        self.ingress = Ingress(self)
        self.epoch, self.epochs_held = 0, [0]
        self.store.ensure()
        install_rpc_methods(self, submit_envelope=self.ingress.submit_envelope, node_status=dict)


@asynccontextmanager
async def serving(data_dir: Path, **cfg: Any) -> AsyncIterator[tuple[RpcNode, TestClient[Any, Any]]]:
    node = RpcNode(data_dir, **cfg)
    async with TestClient(TestServer(node.rpc.app())) as client:
        yield node, client
