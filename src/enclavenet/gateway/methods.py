"""The gateway's JSON-RPC method table: standard Ethereum shapes over a confidential chain.

Every method an Ethereum tool calls in its normal flow is answered here (docs/GATEWAY.md has
the table); a method that cannot be answered confidentially gets an error saying why and what
to do instead (code -32004), never a bare "unknown method".
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..node.jsonrpc import INVALID_PARAMS, METHOD_NOT_FOUND, JsonRpcServer, RpcError
from .blocks import Chain
from .core import GatewayCore, _address, _hexbytes, _hexint
from .sessions import SessionError

UNAVAILABLE = -32004
CLIENT_VERSION = "EnclaveNet-gateway/1"

#: methods that cannot be answered on a confidential chain: why, and what to do instead
UNAVAILABLE_METHODS: dict[str, str] = {
    "eth_getStorageAt": "contract storage is confidential (only the contract's own code reads it); "
                        "call a view function with eth_call instead",
    "eth_getProof": "state proofs would reveal confidential storage; balance proofs for the escape hatch "
                    "come from enclavenet_escapeLeaf on the node (docs/CLIENT.md)",
    "eth_newPendingTransactionFilter": "pending transactions are sealed envelopes nobody but their sender "
                                       "can read; watch your own with eth_getTransactionReceipt",
    "eth_pendingTransactions": "pending transactions are confidential; this gateway knows only its own",
    "eth_sign": "the gateway holds no wallet keys (only viewing-session keys, which cannot sign for you); "
                "sign in your wallet",
    "personal_sign": "the gateway holds no wallet keys; sign in your wallet",
    "eth_signTypedData_v4": "the gateway holds no wallet keys; sign in your wallet",
    "eth_signTransaction": "the gateway holds no wallet keys; sign in your wallet and use eth_sendRawTransaction",
    "eth_getTransactionByBlockNumberAndIndex": "a block's transactions are confidential; ask by hash for your own",
    "eth_getTransactionByBlockHashAndIndex": "a block's transactions are confidential; ask by hash for your own",
    "eth_getBlockReceipts": "a block's receipts are sealed to each sender; ask for your own by hash",
    "debug_traceTransaction": "traces would reveal confidential execution",
    "debug_traceCall": "traces would reveal confidential execution",
    "trace_transaction": "traces would reveal confidential execution",
    "trace_block": "traces would reveal confidential execution",
    "txpool_content": "the mempool holds sealed envelopes only",
    "txpool_status": "the mempool holds sealed envelopes only",
    "eth_fillTransaction": "the gateway signs nothing for you, so it fills nothing: your client fills the "
                           "nonce (eth_getTransactionCount), gas (eth_estimateGas) and zero fees itself",
    "anvil_setBalance": "EnclaveNet balances come from L1 deposits: deposit on the L1 (Rollup.deposit)",
    "hardhat_setBalance": "EnclaveNet balances come from L1 deposits: deposit on the L1 (Rollup.deposit)",
}


class RecordingServer(JsonRpcServer):
    """A JSON-RPC server that counts every method called and how it was answered."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: Counter[tuple[str, str]] = Counter()

    async def handle_batch(self, reqs: list[Any]) -> list[dict[str, Any]]:
        # through handle_one, so batched calls (ethers batches what it sends within 10 ms) are
        # counted and answered like single ones
        out = [await self.handle_one(r) for r in reqs]
        return [r for r in out if r is not None]

    async def handle_one(self, req: Any) -> dict[str, Any] | None:
        method = req.get("method") if isinstance(req, dict) else None
        id_ = req.get("id") if isinstance(req, dict) else None
        valid_id = isinstance(id_, str | int | float | type(None)) and not isinstance(id_, bool)
        valid = valid_id and isinstance(req.get("params", []) if isinstance(req, dict) else None, list)
        if isinstance(method, str) and method not in self._methods and req.get("jsonrpc") == "2.0" and valid:
            self.calls[(method[:64], f"error {METHOD_NOT_FOUND}")] += 1
            if "id" not in req:
                return None  # a notification gets no answer
            return {"jsonrpc": "2.0", "id": req.get("id"), "error": {
                "code": METHOD_NOT_FOUND,
                "message": f"method {method[:64]!r} is not served by the EnclaveNet gateway; docs/GATEWAY.md "
                           "lists the Ethereum methods it answers and why some cannot be answered confidentially"}}
        resp = await super().handle_one(req)
        if isinstance(method, str):
            if resp is None:
                outcome = "notification"
            elif "error" in resp:
                outcome = f"error {resp['error'].get('code')}"
            else:
                outcome = "ok"
            self.calls[(method[:64], outcome)] += 1
        return resp


def install(rpc: JsonRpcServer, core: GatewayCore, chain: Chain) -> None:
    m = rpc.method

    def fixed(value: Any) -> Any:
        return lambda *_: value

    m("eth_chainId", lambda: hex(core.chain_id))
    m("net_version", lambda: str(core.chain_id))
    m("net_listening", fixed(True))
    m("net_peerCount", fixed("0x1"))
    m("web3_clientVersion", fixed(CLIENT_VERSION))
    m("eth_syncing", fixed(False))
    m("eth_mining", fixed(False))
    m("eth_hashrate", fixed("0x0"))
    m("eth_coinbase", fixed("0x" + "00" * 20))
    m("eth_protocolVersion", fixed("0x41"))
    m("eth_accounts", lambda: core.sessions.accounts())
    m("eth_requestAccounts", lambda: core.sessions.accounts())
    async def gas_price() -> Any:
        return await core.node.call("eth_gasPrice", [])  # the node's (docs/FEES.md; 0 without fees)

    m("eth_gasPrice", gas_price)
    m("eth_maxPriorityFeePerGas", fixed("0x0"))
    m("eth_blobBaseFee", fixed("0x0"))

    async def block_number() -> str:
        return hex(await chain.reported_block_number())

    async def fee_history(count: Any, newest: Any = "latest", percentiles: Any = None) -> dict[str, Any]:
        n = max(1, min(1024, _hexint(count, "blockCount")))
        hi = await chain.resolve(newest)
        n = min(n, hi + 1)
        pct = percentiles if isinstance(percentiles, list) else []
        out: dict[str, Any] = await core.node.call("eth_feeHistory", [hex(n), hex(hi), pct])
        out["baseFeePerBlobGas"] = ["0x0"] * (n + 1)
        out["blobGasUsedRatio"] = [0.0] * n
        return out

    async def send_raw(data: Any) -> str:
        return await core.send_raw(_hexbytes(data, "signed transaction"))

    async def send_tx(tx: Any) -> str:
        if not isinstance(tx, dict):
            raise RpcError(INVALID_PARAMS, "eth_sendTransaction takes a transaction object")
        return await core.send_transaction(tx)

    async def receipt(h: Any) -> dict[str, Any] | None:
        _hexbytes(h, "transaction hash")
        rc = await core.receipt(str(h).lower())
        chain.told(str(h).lower(), mined=rc is not None)
        return rc

    async def tx_by_hash(h: Any) -> dict[str, Any] | None:
        h = str(h).lower()
        _hexbytes(h, "transaction hash")
        if core.sent.get(h) is not None:
            rc = await core.receipt(h)
            if rc is None:
                chain.told(h, mined=False)
        return core.transaction(h)

    async def call(tx: Any, block: Any = "latest", *_: Any) -> str:
        return await core.call(tx)

    async def estimate(tx: Any, *_: Any) -> str:
        return hex(await core.estimate_gas(tx))

    async def access_list(tx: Any, *_: Any) -> dict[str, Any]:
        return {"accessList": [], "gasUsed": hex(await core.estimate_gas(tx))}

    async def balance(address: Any, block: Any = "latest") -> str:
        return hex(await core.balance(_address(address, "address")))

    async def code(address: Any, block: Any = "latest") -> str:
        return "0x" + (await core.code(_address(address, "address"))).hex()

    async def nonce(address: Any, block: Any = "latest") -> str:
        return hex(await core.nonce(_address(address, "address"), "pending" if block == "pending" else "latest"))

    async def block_by_number(tag: Any, full: Any = False) -> dict[str, Any] | None:
        return await chain.block(await chain.resolve(tag), bool(full))

    async def block_by_hash(h: Any, full: Any = False) -> dict[str, Any] | None:
        _hexbytes(h, "block hash")
        return await chain.block_by_hash(str(h), bool(full))

    async def tx_count_by_number(tag: Any) -> str | None:
        b = await chain.block(await chain.resolve(tag))
        return hex(len(b["transactions"])) if b else None

    async def tx_count_by_hash(h: Any) -> str | None:
        b = await chain.block_by_hash(str(h))
        return hex(len(b["transactions"])) if b else None

    async def new_filter(criteria: Any = None) -> str:
        if criteria is not None and not isinstance(criteria, dict):
            raise RpcError(INVALID_PARAMS, "eth_newFilter takes a filter object {fromBlock?, toBlock?, address?, topics?}")
        return await chain.new_filter("logs", criteria)

    async def new_block_filter() -> str:
        return await chain.new_filter("block")

    def subscribe_http(*_: Any) -> None:
        raise RpcError(UNAVAILABLE, "eth_subscribe needs a WebSocket: connect to ws://<this gateway>/ "
                                    "(or poll with eth_newBlockFilter / eth_getFilterChanges over HTTP)")

    # ---------------------------------------------------------------- sessions
    def request_session(account: Any, ttl: Any = None) -> dict[str, Any]:
        try:
            return core.sessions.request(str(account), _hexint(ttl, "ttl", core.session_ttl))
        except SessionError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None

    def authorise(req: Any) -> dict[str, Any]:
        if not isinstance(req, dict):
            raise RpcError(INVALID_PARAMS, "enclavenet_authorise takes {account, sessionKey, signature}")
        try:
            s = core.sessions.authorise(str(req.get("account")), str(req.get("sessionKey")),
                                        _hexbytes(req.get("signature"), "signature"))
        except SessionError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None
        return {"account": s.account, "sessionKey": s.statement.key, "expiry": s.expiry}

    def revoke(account: Any) -> bool:
        return core.sessions.revoke(_address(account, "account"))

    def info() -> dict[str, Any]:
        return {"chainId": hex(core.chain_id), "node": core.node.url, "l1": core.l1.url if core.l1 else None,
                "rollup": core.rollup, "epoch": core.epoch, "epochKeyCheckedOnL1": core.epoch_checked_on_l1,
                "sessions": core.sessions.describe(), "sent": len(core.sent)}

    def calls(reset: Any = False) -> list[dict[str, Any]]:
        assert isinstance(rpc, RecordingServer)
        out = [{"method": k[0], "answer": k[1], "count": v} for k, v in sorted(rpc.calls.items())]
        if reset:
            rpc.calls.clear()
        return out

    table: dict[str, Any] = {
        "eth_blockNumber": block_number, "eth_feeHistory": fee_history,
        "eth_sendRawTransaction": send_raw, "eth_sendTransaction": send_tx,
        "eth_getTransactionReceipt": receipt, "eth_getTransactionByHash": tx_by_hash,
        "eth_call": call, "eth_estimateGas": estimate, "eth_createAccessList": access_list,
        "eth_getBalance": balance, "eth_getCode": code, "eth_getTransactionCount": nonce,
        "eth_getBlockByNumber": block_by_number, "eth_getBlockByHash": block_by_hash,
        "eth_getBlockTransactionCountByNumber": tx_count_by_number,
        "eth_getBlockTransactionCountByHash": tx_count_by_hash,
        "eth_getUncleCountByBlockNumber": lambda *_: "0x0", "eth_getUncleCountByBlockHash": lambda *_: "0x0",
        "eth_getLogs": chain.get_logs, "eth_newFilter": new_filter, "eth_newBlockFilter": new_block_filter,
        "eth_getFilterChanges": chain.filter_changes, "eth_getFilterLogs": chain.filter_logs,
        "eth_uninstallFilter": chain.uninstall,
        "eth_subscribe": subscribe_http, "eth_unsubscribe": subscribe_http,
        "enclavenet_requestSession": request_session, "enclavenet_authorise": authorise,
        "enclavenet_revokeSession": revoke, "enclavenet_sessions": lambda: core.sessions.describe(),
        "enclavenet_gatewayInfo": info, "enclavenet_gatewayCalls": calls,
    }
    for name, fn in table.items():
        m(name, fn)

    for name, why in UNAVAILABLE_METHODS.items():
        m(name, _unavailable(name, why))


def _unavailable(name: str, why: str) -> Any:
    def handler(*_: Any) -> None:
        raise RpcError(UNAVAILABLE, f"{name} is not available through the EnclaveNet gateway: {why}")

    handler.__name__ = name
    return handler
