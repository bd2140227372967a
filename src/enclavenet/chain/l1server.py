"""The embedded L1 served over HTTP JSON-RPC (``enclavenet l1``).

Nodes are separate processes, so the in-process eth-tester chain (:class:`EmbeddedL1`) is put
behind an aiohttp JSON-RPC endpoint on 127.0.0.1 that web3.py (``HTTPProvider``) and the nodes
talk to like any Ethereum node: batch requests, ``eth_getLogs``, auto-mining (each transaction
in its own block), revert reasons as ``{"code": 3, "message": "execution reverted: ...",
"data": "0x08c379a0..."}`` as geth/anvil send them, and the test-chain controls ``evm_mine``,
``evm_increaseTime``, ``evm_snapshot``, ``evm_revert``, ``anvil_mine``.

eth-tester is not thread-safe: every request runs on ONE worker thread, in arrival order, so
the event loop keeps accepting connections while a transaction executes.

    with L1Server.start_in_thread() as srv:   # tests
        w3 = Web3(Web3.HTTPProvider(srv.url))

    $ enclavenet l1 --port 8545
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from eth_abi import encode as abi_encode
from hexbytes import HexBytes

from ..node.jsonrpc import INVALID_PARAMS, JsonRpcServer, RpcError
from .embedded import EmbeddedL1

log = logging.getLogger(__name__)

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")

# Fields whose integer value eth-tester returns but JSON-RPC carries as fixed-size DATA.
_DATA_FIELDS = {"logsBloom": 256}


_TX_KEYS = {"data": "input", "y_parity": "yParity"}

# What eth-tester takes in a call / transaction object; tools send more (``input`` for ``data``,
# blob and authorization fields left empty, ``accessList``): map or drop those, as geth does.
_REQUEST_KEYS = {
    "from", "to", "gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas", "value", "data", "nonce",
    "type", "chainId", "accessList",
}
_TX_METHODS = ("eth_call", "eth_estimateGas", "eth_sendTransaction", "eth_createAccessList")


def _normalise_request(params: list[Any]) -> list[Any]:
    """A call / transaction object as ethers, viem and cast send it -> what eth-tester accepts."""
    if not params or not isinstance(params[0], Mapping):
        return params
    tx = dict(params[0])
    if "input" in tx:
        inp = tx.pop("input")
        tx.setdefault("data", inp)
    if tx.get("type") not in (None, "0x0", "0x1", "0x2", 0, 1, 2):
        raise RpcError(INVALID_PARAMS, f"transaction type {tx['type']} is not supported by the embedded L1 (use 0, 1 or 2)")
    if not tx.get("accessList"):
        tx.pop("accessList", None)
    if str(tx.get("from", "")).lower() == "0x" + "00" * 20:
        # cast calls "from" the zero address when none is given; eth-tester would charge it gas
        tx.pop("from")
    # every transaction is mined at once: "pending" state is the latest (eth-tester knows no "pending" here)
    rest = ["latest" if p == "pending" else p for p in params[1:2]]
    return [{k: v for k, v in tx.items() if k in _REQUEST_KEYS and v is not None}, *rest]


def _bloom(logs: list[Any]) -> str:
    """The 2048-bit logs bloom of a receipt's logs (eth-tester leaves it out)."""
    from ..crypto.hashing import keccak256

    bloom = 0
    for lg in logs:
        items = [bytes.fromhex(str(lg["address"])[2:])] + [bytes.fromhex(str(t)[2:]) for t in lg.get("topics", [])]
        for item in items:
            h = keccak256(item)
            for i in (0, 2, 4):
                bloom |= 1 << (int.from_bytes(h[i : i + 2], "big") & 2047)
    return "0x" + bloom.to_bytes(256, "big").hex()


def _fix_receipt(rc: Any) -> Any:
    """Standard receipt shape: logsBloom, logs with ``removed``, no pre-Byzantium ``state_root``."""
    if not isinstance(rc, Mapping):
        return rc
    out = {k: (None if v == "" and k in ("to", "contractAddress") else v)
           for k, v in rc.items() if k not in ("state_root", "stateRoot")}
    logs = [{**{k: v for k, v in lg.items() if k != "type"}, "removed": False} for lg in out.get("logs", [])]
    out["logs"] = logs
    out["logsBloom"] = _bloom(logs)
    return out


def _camel(key: str) -> str:
    if key in _TX_KEYS:
        return _TX_KEYS[key]
    head, *rest = key.split("_")
    return head + "".join(p.title() for p in rest)


def _fix_block(block: Any) -> Any:
    """eth-tester leaves full transactions inside a block in snake_case: make them JSON-RPC."""
    if isinstance(block, Mapping) and isinstance(block.get("transactions"), list):
        txs = [
            {_camel(k): (None if k == "to" and v in ("", b"") else v) for k, v in t.items()} if isinstance(t, Mapping) else t
            for t in block["transactions"]
        ]
        return {**block, "transactions": txs}
    return block


def to_rpc(value: Any, key: str | None = None) -> Any:
    """eth-tester/web3 Python values -> JSON-RPC values (QUANTITY hex for ints, DATA hex for bytes)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if key in _DATA_FIELDS:
            return "0x" + value.to_bytes(_DATA_FIELDS[key], "big").hex()
        return hex(value)
    if isinstance(value, bytes | bytearray | HexBytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return {k: to_rpc(v, k) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_rpc(v) for v in value]
    return value


class L1Server:
    """JSON-RPC front of an :class:`EmbeddedL1` (made here unless given)."""

    PASS_THROUGH = (
        "eth_chainId",
        "net_version",
        "eth_blockNumber",
        "eth_getBlockByNumber",
        "eth_getBlockByHash",
        "eth_getBalance",
        "eth_getTransactionCount",
        "eth_getCode",
        "eth_getStorageAt",
        "eth_call",
        "eth_estimateGas",
        "eth_sendRawTransaction",
        "eth_sendTransaction",
        "eth_getTransactionReceipt",
        "eth_getTransactionByHash",
        "eth_getLogs",
        "eth_gasPrice",
        "eth_accounts",
        "eth_feeHistory",
        "eth_maxPriorityFeePerGas",
        "eth_syncing",
        "eth_getBlockTransactionCountByNumber",
        "eth_createAccessList",
        "web3_clientVersion",
        "net_listening",
    )

    def __init__(
        self,
        l1: EmbeddedL1 | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        **l1_options: Any,
    ) -> None:
        self.l1 = l1 or EmbeddedL1(**l1_options)
        self.host = host
        self.port = port
        self.rpc = JsonRpcServer(name="l1", max_body=32 * 1024 * 1024)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="l1-evm")
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = threading.Event()
        for name in self.PASS_THROUGH:
            self.rpc.method(name, self._pass(name))
        self.rpc.method("evm_mine", self._on_worker(self._mine))
        self.rpc.method("anvil_mine", self._on_worker(self._mine))
        self.rpc.method("evm_increaseTime", self._on_worker(self._increase_time))
        self.rpc.method("evm_snapshot", self._on_worker(self._snapshot))
        self.rpc.method("evm_revert", self._on_worker(self._revert))
        self.rpc.method(
            "enclavenet_l1Info",
            lambda: {"backend": "embedded eth-tester", "chainId": hex(self.l1.chain_id)},
        )

    # ------------------------------------------------------------------ handlers
    def _pass(self, method: str) -> Any:
        async def handler(*params: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(
                self._pool, self._call, method, list(params)
            )

        handler.__name__ = method
        return handler

    def _on_worker(self, fn: Any) -> Any:
        async def handler(*params: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(self._pool, lambda: fn(*params))

        return handler

    def _call(self, method: str, params: list[Any]) -> Any:
        if method == "net_version":
            return str(self.l1.chain_id)
        if method == "eth_chainId":
            return hex(self.l1.chain_id)
        if method == "eth_syncing":
            return False
        if method == "net_listening":
            return True
        if method == "web3_clientVersion":
            return "EnclaveNet-embedded-L1/eth-tester"
        if method in _TX_METHODS:
            params = _normalise_request(params)
        if method == "eth_createAccessList":
            gas = self._call("eth_estimateGas", params[:1])
            return {"accessList": [], "gasUsed": gas}
        try:
            result = self.l1.w3.manager.request_blocking(method, params)  # type: ignore[arg-type]
        except Exception as exc:
            raise _rpc_error(method, exc) from None
        if method in ("eth_getBlockByNumber", "eth_getBlockByHash"):
            result = _fix_block(result)
        elif method == "eth_getTransactionByHash" and isinstance(result, Mapping):
            result = {_camel(k): (None if k == "to" and v in ("", b"") else v) for k, v in result.items()}
        out = to_rpc(result)
        if method == "eth_getTransactionReceipt":
            out = _fix_receipt(out)
        elif method == "eth_feeHistory" and isinstance(out, dict):
            fees, ratios = out.get("baseFeePerGas") or [], out.get("gasUsedRatio") or []
            if ratios and len(fees) == len(ratios):  # the standard adds the next block's base fee
                pending = self.l1.tester.get_block_by_number("pending")
                fees.append(hex(int(pending.get("base_fee_per_gas") or 0)))
                out["baseFeePerGas"] = fees
            pct = params[2] if len(params) > 2 and isinstance(params[2], list) else []
            if pct and not out.get("reward"):
                tip = to_rpc(self.l1.w3.manager.request_blocking("eth_maxPriorityFeePerGas", []))
                out["reward"] = [[tip] * len(pct) for _ in out.get("gasUsedRatio", [])]
        return out

    def _mine(self, n: Any = 1, *_: Any) -> str:
        count = int(n, 16) if isinstance(n, str) else int(n)
        if not 0 <= count <= 10_000:
            raise RpcError(INVALID_PARAMS, f"cannot mine {count} blocks (0..10000)")
        self.l1.mine(max(count, 1) if n is not None else 1)
        return "0x0"

    def _increase_time(self, seconds: Any) -> str:
        s = int(seconds, 16) if isinstance(seconds, str) else int(seconds)
        if s < 0:
            raise RpcError(
                INVALID_PARAMS, "evm_increaseTime takes a non-negative number of seconds"
            )
        self.l1.increase_time(s)
        return hex(s)

    def _snapshot(self) -> str:
        return hex(int(self.l1.snapshot()))

    def _revert(self, snap: Any) -> bool:
        sid = int(snap, 16) if isinstance(snap, str) else int(snap)
        try:
            self.l1.revert(sid)
        except Exception as exc:
            raise RpcError(-32000, f"cannot revert to snapshot {sid}: {exc}") from None
        return True

    # ------------------------------------------------------------------ serving
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> str:
        app = self.rpc.app()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        log.info("embedded L1 (chain id %d) serving JSON-RPC on %s", self.l1.chain_id, self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # -- in a background thread (tests, Devnet in-process option)
    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> L1Server:
        srv = cls(**kwargs)
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            srv._loop = loop
            try:
                loop.run_until_complete(srv.start())
            except BaseException as exc:  # pragma: no cover - reported to the caller
                errors.append(exc)
                ready.set()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(srv.stop())
                loop.close()
                srv._stopped.set()

        srv._thread = threading.Thread(target=run, name="l1-server", daemon=True)
        srv._thread.start()
        ready.wait(30)
        if errors:
            raise errors[0]
        return srv

    def close(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> L1Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rpc_error(method: str, exc: Exception) -> RpcError:
    """Map eth-tester / web3 exceptions to JSON-RPC errors as geth/anvil would send them."""
    text = str(exc.args[0]) if exc.args else str(exc)
    name = type(exc).__name__
    if "execution reverted" in text or name in (
        "ContractLogicError",
        "TransactionFailed",
        "ContractCustomError",
    ):
        reason = (
            text.split("execution reverted:", 1)[-1].strip()
            if "execution reverted" in text
            else text
        )
        data = getattr(exc, "data", None)
        if isinstance(data, str) and data.startswith("0x"):
            payload = data
        elif reason and reason.lower() not in ("", "none"):
            payload = "0x" + (ERROR_STRING_SELECTOR + abi_encode(["string"], [reason])).hex()
        else:
            payload = "0x"
        msg = f"execution reverted: {reason}" if reason else "execution reverted"
        return RpcError(3, msg, payload)
    if name in (
        "ValidationError",
        "Web3ValidationError",
        "ValueError",
        "TypeError",
        "Web3TypeError",
    ):
        return RpcError(-32000, f"{method}: {text}"[:500])
    if name == "TransactionNotFound":
        return RpcError(-32000, f"{method}: {text}"[:500])
    return RpcError(-32000, f"{method} failed: {name}: {text}"[:500])


def serve_main(
    host: str = "127.0.0.1", port: int = 8545, *, chain_id: int | None = None, accounts: int = 10
) -> None:
    """Blocking entry point for ``enclavenet l1``: prints one JSON line ``{"url": ...}`` when ready."""
    opts: dict[str, Any] = {"accounts": accounts}
    if chain_id is not None:
        opts["chain_id"] = chain_id
    srv = L1Server(host=host, port=port, **opts)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await srv.start()
        print(json.dumps({"ready": True, "url": srv.url, "chainId": srv.l1.chain_id}), flush=True)
        await stop.wait()
        # bounded: a client's idle keep-alive connection must not hold the exit (aiohttp's
        # graceful shutdown waits for open connections up to its own timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(srv.stop(), 3.0)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    sys.stdout.flush()
    # the chain is in memory only: nothing to save, so the EVM worker thread (it may be in the
    # middle of a call) does not get to hold the process either
    os._exit(0)
