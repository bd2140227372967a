"""The node's JSON-RPC methods (docs/NODE_API.md): Ethereum-style where they fit.

Application error codes (the message always says what was wrong):

* -32001 mempool full (total or per sender)
* -32002 duplicate transaction (pending or already included: a replay)
* -32003 wrong or unknown epoch (re-seal to ``enclavenet_epochKey``)
* -32005 rate limited (per client IP or per sender; retryable: ``data.retryAfter`` seconds)
* -32007 routing hint not authenticated by its sender (node/hintauth.py: unsigned, forged, or
  signed over other bytes); nothing was queued or counted against the named sender
* -32006 not persisted: the node could not write the transaction to its disk (not acknowledged;
  retry here or at another node)
* -32010 the enclave refused the request (e.g. a view call that does not decrypt)
* -32050 the node is not ready yet (no epoch key / enclave down)
* -32602 invalid params: malformed hex, malformed envelope, too large, missing routing hint
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..tee.boundary import EnclaveError
from . import metrics as node_metrics
from .hintauth import HintAuthError
from .host import EnclaveBusy
from .ingress import NotPersisted
from .jsonrpc import CLIENT_IP, INVALID_PARAMS, Deferred, RpcError, hex_bytes, quantity
from .logindex import LogQueryTooLarge
from .mempool import DuplicateTransaction, MempoolError, MempoolFull
from .ratelimit import RATE_LIMITED, RateLimiter

if TYPE_CHECKING:
    from .core import NodeCore

MEMPOOL_FULL = -32001
DUPLICATE = -32002
WRONG_EPOCH = -32003
NOT_PERSISTED = -32006
HINT_UNAUTHENTICATED = -32007
ENCLAVE_REFUSED = -32010
NOT_READY = -32050

MAX_ENVELOPE = 128 * 1024


def install_rpc_methods(
    node: NodeCore, *, submit_envelope: Callable[[bytes, str], Awaitable[bytes]], node_status: Callable[[], dict[str, Any]]
) -> None:
    """Register the JSON-RPC methods on ``node.rpc``: reads go to the shared node state, a new
    transaction to ``submit_envelope`` (ingress), ``enclavenet_status`` to ``node_status``."""
    rpc = node.rpc
    cfg = node.cfg
    metrics = node_metrics.install(node)

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": node_metrics.CONTENT_TYPE})

    rpc.get("/metrics", serve_metrics)

    def chain_id() -> str:
        return hex(cfg.chain_id)

    def net_version() -> str:
        return str(cfg.chain_id)

    def block_number() -> str:
        return hex(node.l1_height)

    def zero() -> str:
        return "0x0"

    def gas_price() -> str:
        """The next batch's base fee with two EIP-1559 steps of headroom (docs/FEES.md); 0 without fees."""
        return hex(node.base_fee + node.base_fee // 4)

    def fee_history(count: Any, newest: Any = "latest", percentiles: Any = None) -> dict[str, Any]:
        """``eth_feeHistory`` over accepted heights: base fees as the enclaves reported them (0 for
        heights this node did not see run); gas used per batch is not published (0.0)."""
        try:
            n = int(count, 0) if isinstance(count, str) else int(count)
            hi = node.l1_height if newest in ("latest", "pending", "safe", "finalized", None) else (
                int(newest, 0) if isinstance(newest, str) else int(newest))
        except (TypeError, ValueError):
            raise RpcError(INVALID_PARAMS, "eth_feeHistory: blockCount and newestBlock must be numbers") from None
        if not 1 <= n <= 1024 or hi < 0:
            raise RpcError(INVALID_PARAMS, "eth_feeHistory: blockCount must be 1..1024 and newestBlock a height")
        n = min(n, hi + 1)
        lo = hi - n + 1
        fees = [node.fee_history.get(h, 0) for h in range(lo, hi + 1)]
        out: dict[str, Any] = {"oldestBlock": hex(lo), "baseFeePerGas": [hex(f) for f in fees] + [hex(node.base_fee)],
                               "gasUsedRatio": [0.0] * n}
        if isinstance(percentiles, list) and percentiles:
            out["reward"] = [["0x0"] * len(percentiles) for _ in range(n)]
        return out

    # issue 14 M4: a client (IP) or a sender cannot fill the mempool or the enclave's time alone
    tx_ip = RateLimiter(cfg.rate_tx_per_ip, "raw transactions")
    tx_sender = RateLimiter(cfg.rate_tx_per_sender, "raw transactions")
    view_ip = RateLimiter(cfg.rate_view_per_ip, "views and gas estimates")
    node.rate_limiters = {"tx_per_ip": tx_ip, "tx_per_sender": tx_sender, "view_per_ip": view_ip}

    def send_raw(data: Any) -> Deferred:
        try:
            raw = hex_bytes(data, "transaction (envelope)", max_len=MAX_ENVELOPE)
        except RpcError:
            metrics.refused("malformed")
            raise
        if node.epoch is None:
            metrics.refused("not_ready")
            raise RpcError(NOT_READY, "the committee has no epoch key yet; retry in a moment")
        ip = CLIENT_IP.get()
        tx_ip.take(ip, "IP")
        group = node.fair_group(ip)
        try:  # node/admission.py: a flood is told to come back, a client with a small share is not
            node.admission.check(len(node.mempool), mine=node.mempool.group_count(group),
                                 groups=node.mempool.group_total())
        except RpcError:
            metrics.refused("busy")
            raise
        try:  # before anything is counted against the hint's sender (node/hintauth.py)
            sender = node.hint_verifier.check(raw)
        except HintAuthError as exc:
            metrics.refused("unauthenticated_hint")
            raise RpcError(HINT_UNAUTHENTICATED, str(exc)) from None
        if sender is not None:
            tx_sender.take("0x" + sender.hex(), "sender")
        try:
            logged = submit_envelope(raw, ip)
        except MempoolFull as exc:
            metrics.refused("full")
            raise RpcError(MEMPOOL_FULL, str(exc)) from None
        except DuplicateTransaction as exc:
            metrics.refused("duplicate")
            raise RpcError(DUPLICATE, str(exc)) from None
        except MempoolError as exc:
            msg = str(exc)
            code = WRONG_EPOCH if "epoch" in msg and "envelope sealed to epoch" in msg else INVALID_PARAMS
            metrics.refused("wrong_epoch" if code == WRONG_EPOCH else "malformed")
            raise RpcError(code, msg) from None
        return Deferred(acknowledged(logged))

    async def acknowledged(logged: Awaitable[bytes]) -> str:
        """The receipt id, once the envelope is in pending.log on disk (node/ingress.py)."""
        try:
            rid = await logged
        except NotPersisted as exc:
            metrics.refused("not_persisted")
            raise RpcError(NOT_PERSISTED, str(exc)) from None
        return "0x" + rid.hex()

    def get_receipt(rid_hex: Any) -> dict[str, Any] | None:
        rid = hex_bytes(rid_hex, "receipt id", length=32)
        return node.receipts.get(rid)

    def tx_status(rid_hex: Any) -> dict[str, Any]:
        """Where a transaction is: pending, inflight (in a proposal), included, or unknown."""
        rid = hex_bytes(rid_hex, "receipt id", length=32)
        height = node.receipts.height_of(rid)
        if height is not None:
            return {"status": "included", "height": height}
        e = node.mempool.get(rid)
        if e is not None:
            return {"status": "inflight" if e.inflight else "pending", "height": hex(e.inflight) if e.inflight else None}
        return {"status": "unknown"}

    async def sealed_ecall(method: str, request: dict[str, Any], what: str) -> dict[str, Any]:
        """A view-lane ecall answering a sealed, signed request (views, estimates, log queries)."""
        if node.host is None or node.epoch is None:
            raise RpcError(NOT_READY, "the enclave has no epoch key yet; retry in a moment")
        view_ip.take(CLIENT_IP.get(), "IP")
        try:
            out = await node.host.call(method, request)
        except EnclaveBusy as exc:
            raise RpcError(RATE_LIMITED, str(exc), {"retryAfter": 0.5}) from None
        except EnclaveError as exc:
            msg = str(exc)
            code = WRONG_EPOCH if "unknown or erased" in msg else ENCLAVE_REFUSED
            raise RpcError(code, f"enclave refused the {what}: {msg}") from None
        return {"encryptedResult": "0x" + bytes(out["result"]).hex()}

    async def view(method: str, data: Any) -> dict[str, Any]:
        raw = hex_bytes(data, "request envelope", max_len=MAX_ENVELOPE)
        return await sealed_ecall(method, {"envelope": raw}, "request")

    async def call(data: Any, *_: Any) -> dict[str, Any]:
        return await view("view_call", data)

    async def get_logs(data: Any = None, from_block: Any = None, to_block: Any = None) -> dict[str, Any]:
        """``enclavenet_getLogs(envelope, fromBlock, toBlock)``: a signed log query (enclave/logs.py)
        sealed in ``envelope``; the range is given in the clear too, so this node can pick the
        stored log blobs to hand the enclave (it learns the range, as any eth_getLogs node does,
        never the filter or the answer). The answer is sealed to the requester."""
        raw = hex_bytes(data, "request envelope", max_len=MAX_ENVELOPE)
        if from_block is None or to_block is None:
            raise RpcError(INVALID_PARAMS, "enclavenet_getLogs takes [envelope, fromBlock, toBlock] (heights, hex)")
        lo = quantity(from_block, "fromBlock")
        hi = quantity(to_block, "toBlock")
        try:
            blobs = node.log_index.blobs(lo, hi)
        except LogQueryTooLarge as exc:
            raise RpcError(INVALID_PARAMS, f"enclavenet_getLogs: {exc}") from None
        out = await sealed_ecall("logs", {"envelope": raw, "blobs": blobs}, "log query")
        return {**out, "fromBlock": hex(lo), "toBlock": hex(hi)}

    async def estimate(data: Any, *_: Any) -> dict[str, Any]:
        return await view("estimate_gas", data)

    def epoch_key() -> dict[str, Any] | None:
        w = node.watcher
        if w is None or not w.headers:
            return None
        acc = w.headers[w.height]
        return {
            "epoch": hex(acc.header.epoch),
            "epochKey": "0x" + acc.header.epoch_key.hex(),
            "height": hex(acc.header.height),
            "headerHash": "0x" + acc.hash.hex(),
        }

    async def escape_leaf(request: Any) -> dict[str, Any]:
        """The caller's own escape-hatch leaf, sealed by the enclave to the key that signed the
        request (crypto/escape.py): ``{address, expiry, signature}``."""
        if not isinstance(request, dict):
            raise RpcError(INVALID_PARAMS, "escape leaf request must be an object {address, expiry, signature}")
        address = hex_bytes(request.get("address"), "address", length=20)
        expiry = quantity(request.get("expiry"), "expiry")
        signature = hex_bytes(request.get("signature"), "signature", length=65)
        if node.host is None:
            raise RpcError(NOT_READY, "the enclave is not running; retry in a moment")
        view_ip.take(CLIENT_IP.get(), "IP")
        try:
            out = await node.host.call("escape_leaf", {"address": address, "expiry": expiry, "signature": signature})
        except EnclaveError as exc:
            raise RpcError(ENCLAVE_REFUSED, f"enclave refused the request: {exc}") from None
        return {
            "sealed": "0x" + bytes(out["sealed"]).hex(),
            "height": hex(int(out["height"])),
            "headerHash": "0x" + bytes(out["header_hash"]).hex(),
            "balancesRoot": "0x" + bytes(out["balances_root"]).hex(),
            "finalized": bool(out["finalized"]),
        }

    def status() -> dict[str, Any]:
        return node_status()

    def contracts() -> dict[str, Any]:
        return {"rollup": cfg.rollup, "registry": cfg.registry, "l1ChainId": hex(cfg.l1_chain_id),
                "chainId": hex(cfg.chain_id), "startBlock": hex(cfg.start_block)}

    def get_header(height: Any) -> dict[str, Any] | None:
        h = quantity(height, "height")
        w = node.watcher
        acc = w.headers.get(h) if w else None
        if acc is None:
            return None
        rec = node.accepted_records.get(h)
        return {
            "height": hex(h), "hash": "0x" + acc.hash.hex(), "header": "0x" + acc.header.encode().hex(),
            "l1TxHash": acc.l1_tx, "signers": len(acc.signatures),
            "withdrawals": [[x.recipient, hex(x.amount)] for x in acc.withdrawals],
            # fast-path transactions in the batch (L1 messages are counted by msg_count); null
            # when this node adopted the height without its batch (e.g. from a snapshot)
            "txCount": len(rec.envelopes) if rec is not None else None,
        }

    def admin_set_batch(size: Any, interval: Any) -> dict[str, Any]:
        n = quantity(size, "batch size", max_value=20_000)
        if n < 1:
            raise RpcError(INVALID_PARAMS, "batch size must be >= 1")
        if not isinstance(interval, int | float) or isinstance(interval, bool) or not 0 < interval <= 60:
            raise RpcError(INVALID_PARAMS, "batch interval must be a number of seconds in (0, 60]")
        cfg.batch_size = n
        cfg.batch_interval = float(interval)
        return {"batchSize": n, "batchInterval": float(interval)}

    if cfg.admin_rpc:
        rpc.method("enclavenet_adminSetBatch", admin_set_batch)
    if cfg.allow_faults:
        install_fault_methods(node)
    rpc.method("eth_chainId", chain_id)
    rpc.method("net_version", net_version)
    rpc.method("eth_blockNumber", block_number)
    rpc.method("eth_gasPrice", gas_price)
    rpc.method("eth_feeHistory", fee_history)
    rpc.method("eth_maxPriorityFeePerGas", zero)
    rpc.method("eth_sendRawTransaction", send_raw)
    rpc.method("eth_getTransactionReceipt", get_receipt)
    rpc.method("enclavenet_call", call)
    rpc.method("enclavenet_estimateGas", estimate)
    rpc.method("enclavenet_getLogs", get_logs)
    rpc.method("enclavenet_epochKey", epoch_key)
    rpc.method("enclavenet_status", status)
    rpc.method("enclavenet_contracts", contracts)
    rpc.method("enclavenet_txStatus", tx_status)
    rpc.method("enclavenet_getHeader", get_header)
    rpc.method("enclavenet_escapeLeaf", escape_leaf)


def install_fault_methods(node: NodeCore) -> None:
    """Fault injection (docs/FAULTS.md), only on a node started with ``allow_faults`` (a devnet
    that asked for it): never on a shared node -- ``enclavenet_adminCompromise`` hands out keys.

    * ``enclavenet_adminFaults(policy)``: ``{links?: {drop, cut, delay, reorder, replay, reorder_window,
      ops, peers, seed} | null, enclaveLink?: {drop, delay, replay, seed} | null,
      enclave?: "crash" | "hang", l1?: {down_s, hold_submits} | null}``; returns the current policies with their counters
      (``{}`` only reads them);
    * ``enclavenet_adminCompromise()``: the enclave's keys (``ProcessEnclave.compromise()``), as
      a broken TEE would leak them: ``{address, signingKey, epochs: {epoch: {txKey, stateKey}}}``.
    """
    from .core import L1Faults
    from .host import EnclaveLinkFaults
    from .peers import LinkFaults

    rpc = node.rpc

    async def on_ecall_thread(fn: Any) -> Any:  # the pipe is sequential: same thread as the ecalls
        assert node.host is not None
        return await node.host.run_on_ecall_thread(fn)

    async def faults(policy: Any = None) -> dict[str, Any]:
        if policy is None:
            policy = {}
        if not isinstance(policy, dict):
            raise RpcError(INVALID_PARAMS, "fault policy must be an object {links?, enclaveLink?, enclave?, l1?}")
        unknown = sorted(set(policy) - {"links", "enclaveLink", "enclave", "l1"})
        if unknown:
            raise RpcError(INVALID_PARAMS, f"unknown fault policy field(s): {', '.join(unknown)}")
        try:
            if "links" in policy:
                new = LinkFaults.from_dict(policy["links"] or {})
                old = node.link_faults
                new.injected = old.injected  # counters accumulate over policies
                for k in ("drop", "cut", "delay", "reorder", "replay", "reorder_window", "ops", "peers", "seed", "_rng"):
                    setattr(old, k, getattr(new, k))
            if "l1" in policy:
                node.l1_faults = L1Faults.from_dict(policy["l1"] or {}, node.l1_faults)
            if "enclaveLink" in policy and node.host is not None:
                el = policy["enclaveLink"]
                if el is None:
                    node.host.faults = None
                else:
                    prev = node.host.faults
                    f = EnclaveLinkFaults.from_dict(el)
                    if prev is not None:
                        f.injected, f.replays = prev.injected, prev.replays
                    node.host.faults = f
        except ValueError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None
        what = policy.get("enclave")
        if what is not None:
            if node.host is None:
                raise RpcError(NOT_READY, "the enclave is not running")
            if what == "crash":
                await on_ecall_thread(node.host.enclave.crash)
            elif what == "hang":
                await on_ecall_thread(node.host.enclave.hang)
            else:
                raise RpcError(INVALID_PARAMS, "enclave fault must be 'crash' or 'hang'")
        return {
            "links": node.link_faults.to_dict(),
            "enclaveLink": node.host.faults.to_dict() if node.host is not None and node.host.faults else None,
            "l1": node.l1_faults.to_dict(),
        }

    async def compromise() -> dict[str, Any]:
        if node.host is None:
            raise RpcError(NOT_READY, "the enclave is not running")
        try:
            leaked = await on_ecall_thread(node.host.enclave.compromise)
        except EnclaveError as exc:
            raise RpcError(ENCLAVE_REFUSED, f"enclave refused the fault hook: {exc}") from None
        epochs = leaked.get("epochs") or {}
        return {
            "address": leaked.get("address"),
            "signingKey": "0x" + str(leaked.get("signing_key_hex", "")),
            "epochs": {str(e): {"txKey": "0x" + k["tx_key"], "stateKey": "0x" + k["state_key"]} for e, k in epochs.items()},
        }

    rpc.method("enclavenet_adminFaults", faults)
    rpc.method("enclavenet_adminCompromise", compromise)
