"""web3.py v8 middleware that makes a plain ``Web3`` confidential (see :func:`wrap`).

It sits innermost in the middleware onion, next to the provider, so web3.py's own middleware
(gas price strategy, validation, buffered gas estimate, attribute dicts) runs unchanged on top:

=============================  ==================================================================
``eth_sendTransaction``        fill nonce / gas / chain id, sign locally, seal to the epoch key
                               with the routing hint, send as ``eth_sendRawTransaction``
``eth_sendRawTransaction``     a transaction the user signed: sealed, then sent
``eth_getTransactionReceipt``  decrypted with the kept receipt key, returned in Ethereum form
``eth_call``                   signed (EIP-712) view request, sealed -> ``enclavenet_call``
``eth_estimateGas``            the same -> ``enclavenet_estimateGas``
``eth_getTransactionCount``    a wrapped account's nonce (read privately once, then tracked)
``eth_getBalance``             a native balance, by a signed creation view (BALANCE opcode)
``eth_accounts``               the wrapped accounts' addresses
``eth_getLogs``                the logs the first account may read, by a signed log query
                               (``enclavenet_getLogs``; docs/CLIENT.md "Logs")
``eth_getBlockByNumber``       ``latest`` / ``pending``: a synthetic block (no fees) when the
                               node has no such method
=============================  ==================================================================

Everything else passes through to the node unchanged.
"""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.middleware.base import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

from ..crypto.hashing import to_checksum
from .core import ConfidentialClient, MakeRequest, _hex_bytes, _hex_int
from .errors import EnclaveNetError, NodeUnavailable

BLOCK_GAS_LIMIT = 30_000_000


class EnclaveNetMiddleware(Web3Middleware):
    """Routes the confidential methods to a :class:`ConfidentialClient`; see the module doc."""

    client: ConfidentialClient

    def __init__(self, w3: Any, client: ConfidentialClient) -> None:
        super().__init__(w3)
        self.client = client
        self._id = 0

    def __hash__(self) -> int:  # the base hashes str(__dict__); ours holds a client
        return id(self)

    def _response(self, result: Any) -> RPCResponse:
        self._id += 1
        return {"jsonrpc": "2.0", "id": self._id, "result": result}

    def handle(self, make_request: MakeRequest, method: str, params: Any) -> RPCResponse | None:
        """The response for an intercepted method, or None to pass it through."""
        c = self.client
        params = list(params or [])
        if method == "eth_sendTransaction":
            return self._response(c.send_transaction(make_request, dict(params[0])))
        if method == "eth_sendRawTransaction":
            return self._response(c.send_raw_transaction(make_request, _hex_bytes(params[0])))
        if method == "eth_getTransactionReceipt":
            return self._response(c.get_receipt(make_request, str(params[0])))
        if method in ("eth_call", "eth_estimateGas"):
            tx = dict(params[0])
            estimate = method == "eth_estimateGas"
            res = c.view(
                make_request,
                to_checksum(tx["to"]) if tx.get("to") else None,
                _hex_bytes(tx.get("data", tx.get("input"))),
                value=_hex_int(tx.get("value")),
                gas=_hex_int(tx["gas"]) if tx.get("gas") is not None else None,
                estimate=estimate,
                sender=tx.get("from"),
            )
            return self._response(hex(res.gas_used) if estimate else "0x" + res.return_data.hex())
        if method == "eth_getTransactionCount":
            self._own(params[0], "the nonce")
            return self._response(hex(c.next_nonce(make_request, to_checksum(str(params[0])))))
        if method == "eth_getBalance":
            return self._response(hex(c.balance(make_request, to_checksum(str(params[0])))))
        if method == "eth_accounts":
            return self._response(list(c.accounts))
        if method == "eth_getLogs":
            f = dict(params[0]) if params else {}
            if f.get("blockHash"):
                raise EnclaveNetError("eth_getLogs by blockHash is not supported here: give fromBlock / toBlock")
            return self._response(c.get_logs(make_request, f.get("fromBlock", "latest"), f.get("toBlock", "latest"),
                                             address=f.get("address"), topics=f.get("topics")))
        if method == "eth_getBlockByNumber" and params and params[0] in ("latest", "pending"):
            return self._latest_block(make_request, method, params)
        return None

    def _own(self, address: Any, what: str) -> None:
        if to_checksum(str(address)) not in self.client.accounts:
            raise EnclaveNetError(
                f"{what} of {to_checksum(str(address))} is private inside EnclaveNet: only that "
                f"account can read it (this Web3 is wrapped for {', '.join(self.client.accounts)})"
            )

    def _latest_block(self, make_request: MakeRequest, method: str, params: list[Any]) -> RPCResponse:
        resp = self.client.transport(make_request, method, params)
        err = resp.get("error") if isinstance(resp, dict) else None
        if not err or (isinstance(err, dict) and err.get("code") != -32601):
            return resp
        # the node keeps no Ethereum blocks: describe the last accepted header as one
        status = self.client.rpc(make_request, "enclavenet_status", [])
        height = _hex_int(status.get("height")) if isinstance(status, dict) else 0
        zero32 = "0x" + "00" * 32
        return self._response(
            {
                "number": hex(height),
                "hash": zero32,
                "parentHash": zero32,
                "nonce": "0x" + "00" * 8,
                "sha3Uncles": zero32,
                "logsBloom": "0x" + "00" * 256,
                "transactionsRoot": zero32,
                "stateRoot": zero32,
                "receiptsRoot": zero32,
                "miner": "0x" + "00" * 20,
                "difficulty": "0x0",
                "totalDifficulty": "0x0",
                "extraData": "0x",
                "size": "0x0",
                "gasLimit": hex(BLOCK_GAS_LIMIT),
                "gasUsed": "0x0",
                "timestamp": "0x0",
                "transactions": [],
                "uncles": [],
                "baseFeePerGas": "0x0",
            }
        )

    # -- sync -- #

    def wrap_make_request(self, make_request: Any) -> Any:
        def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
            out = self.handle(make_request, method, params)
            return out if out is not None else self.client.transport(make_request, method, params)

        return middleware

    def wrap_make_batch_request(self, make_batch_request: Any) -> Any:
        def one(method: str, params: Any) -> RPCResponse:
            resp = make_batch_request([(method, params)])
            if isinstance(resp, list):
                if len(resp) != 1:
                    raise NodeUnavailable(f"batch of one {method} answered with {len(resp)} responses")
                return resp[0]
            return resp

        def middleware(requests_info: list[tuple[RPCEndpoint, Any]]) -> list[RPCResponse] | RPCResponse:
            if not any(self._intercepts(m, p) for m, p in requests_info):
                return make_batch_request(requests_info)
            out: list[RPCResponse] = []
            for m, p in requests_info:
                r = self.handle(one, m, p)  # type: ignore[arg-type]
                out.append(r if r is not None else one(m, p))
            return out

        return middleware

    @staticmethod
    def _intercepts(method: str, params: Any) -> bool:
        return method in {
            "eth_sendTransaction", "eth_sendRawTransaction", "eth_getTransactionReceipt", "eth_call",
            "eth_estimateGas", "eth_getTransactionCount", "eth_getBalance", "eth_accounts", "eth_getLogs",
        } or (method == "eth_getBlockByNumber" and bool(params) and params[0] in ("latest", "pending"))

    # -- async: not supported (web3's AsyncWeb3 would need an async client) -- #

    async def async_wrap_make_request(self, make_request: Any) -> Any:
        raise EnclaveNetError("enclavenet.client.wrap supports the synchronous Web3 only, not AsyncWeb3")


def install(w3: Web3, client: ConfidentialClient) -> None:
    """Put the middleware innermost in ``w3``'s onion (replacing an earlier one)."""
    if "enclavenet" in w3.middleware_onion:
        w3.middleware_onion.remove("enclavenet")

    def build(w3_: Any) -> EnclaveNetMiddleware:
        return EnclaveNetMiddleware(w3_, client)

    w3.middleware_onion.inject(build, name="enclavenet", layer=0)  # type: ignore[arg-type]
