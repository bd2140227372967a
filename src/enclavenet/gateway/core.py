"""The gateway's confidential part: seal transactions, keep receipt keys, sign views, decrypt.

It runs on the user's side of the trust line. It holds what the user's own client would hold
(receipt keys of the envelopes it sealed, viewing-session keys, and -- only with ``--account`` --
user keys), never a committee secret. The node sees envelopes and sealed results only; the L1
(when given) is read to cross-check the epoch key against the Rollup and to date blocks.

Every node call goes over JSON-RPC (``aiohttp``); errors come back as :class:`RpcError` with a
message that says what was wrong and what to do.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import rlp

from ..client.core import NONCE_PROBE_CODE, NONCE_SEARCH_LIMIT, SentTx, balance_probe
from ..client.core import ConfidentialClient as _Client
from ..client.formats import (
    ERROR_ENTRY_PREFIX,
    MAX_VIEW_GAS,
    DecryptedReceipt,
    ViewResult,
    build_log_query,
    build_view_request,
    create_address,
    decode_log_result,
    decode_receipt,
    decode_view_result,
    inspect_raw_transaction,
    revert_reason,
)
from ..crypto.envelope import (
    EnvelopeError,
    HintSigner,
    RoutingHint,
    SealedRequest,
    SessionKeys,
    open_receipt,
    seal,
)
from ..crypto.hashing import address_bytes, keccak256, to_checksum
from ..enclave.views import ViewDomain
from ..node.jsonrpc import INVALID_PARAMS, RpcError
from .sessions import SessionStore, address_of_secret, new_secret

log = logging.getLogger(__name__)

# error codes the gateway answers with (besides the node's, passed on)
REVERTED = 3  # execution reverted: data = the revert data (as geth / anvil)
NOT_AUTHORISED = -32000  # no viewing session for the account (not -32005: tools retry "limit exceeded")
NODE_DOWN = -32050
WRONG_EPOCH = -32003
TX_REFUSED = -32003  # "transaction rejected" (EIP-1474): the enclave refused it, it was not executed
MAX_KEPT = 200_000
EPOCH_KEY_WAIT_S = 10.0
VIEW_TTL = 30  # seconds a view request the gateway signs stays valid
MAX_LOG_ACCOUNTS = 8  # session accounts one eth_getLogs asks the enclave for

ZERO_ADDRESS = "0x" + "00" * 20
_EPOCH_KEY_SELECTOR = keccak256(b"epochKey(uint256)")[:4]


@dataclass
class Sent:
    """One transaction this gateway sealed: what reading its receipt needs."""

    eth_hash: str
    receipt_id: str
    raw: bytes = field(repr=False)
    sent: SentTx = field(repr=False)
    receipt: dict[str, Any] | None = None
    refused: str | None = None
    told_none_at: float | None = None  # when a tool last read "not mined yet" (see Chain.reported_block_number)
    served: bool = False  # a tool has read the receipt


def code_probe(address: str) -> bytes:
    """Init code reverting with the code at ``address`` (EXTCODESIZE/EXTCODECOPY, readable by any contract)."""
    a = b"\x73" + address_bytes(address)
    # PUSH20 a EXTCODESIZE DUP1 PUSH1 0 PUSH1 0 PUSH20 a EXTCODECOPY PUSH1 0 REVERT
    return a + b"\x3b\x80\x60\x00\x60\x00" + a + b"\x3c\x60\x00\xfd"


def _hexint(v: Any, what: str, default: int | None = None) -> int:
    if v is None:
        if default is None:
            raise RpcError(INVALID_PARAMS, f"{what} is missing")
        return default
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, str):
        try:
            return int(v, 16) if v.startswith(("0x", "0X")) else int(v)
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"{what} must be a hex quantity (0x...)")


def _hexbytes(v: Any, what: str) -> bytes:
    if v is None:
        return b""
    if isinstance(v, str) and v.startswith(("0x", "0X")):
        try:
            return bytes.fromhex(v[2:] if len(v) % 2 == 0 else "0" + v[2:])
        except ValueError:
            pass
    raise RpcError(INVALID_PARAMS, f"{what} must be 0x-prefixed hex data")


def _address(v: Any, what: str) -> str:
    try:
        return to_checksum(str(v))
    except Exception:
        raise RpcError(INVALID_PARAMS, f"{what} must be a 20-byte 0x address") from None


class JsonRpcClient:
    """A minimal async JSON-RPC client (one keep-alive session)."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def call(self, method: str, params: list[Any]) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        try:
            async with self._session.post(self.url, json=body) as resp:
                out = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise RpcError(NODE_DOWN, f"the {self.name} at {self.url} is unreachable during {method} "
                                      f"({type(exc).__name__}); is it running?") from None
        if not isinstance(out, dict):
            raise RpcError(NODE_DOWN, f"the {self.name} answered {method} with a non-JSON-RPC response")
        err = out.get("error")
        if err:
            code = err.get("code", -32000) if isinstance(err, dict) else -32000
            msg = str(err.get("message", err)) if isinstance(err, dict) else str(err)
            raise RpcError(int(code), f"{self.name}: {msg}", err.get("data") if isinstance(err, dict) else None)
        return out.get("result")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class GatewayCore:
    """One user's (or a few users') confidential session with an EnclaveNet node."""

    def __init__(self, node_url: str, *, l1_rpc: str | None = None, session_ttl: int = 24 * 3600) -> None:
        self.node = JsonRpcClient(node_url, "EnclaveNet node")
        self.l1 = JsonRpcClient(l1_rpc, "L1") if l1_rpc else None
        self.session_ttl = session_ttl
        self.chain_id = 0
        self.sessions = SessionStore(None)
        self.domain: ViewDomain | None = None
        self.epoch: int | None = None
        self.epoch_pub = b""
        self._sessions = SessionKeys()  # envelope session keys: one X25519 agreement per sender and epoch
        self.epoch_checked_on_l1 = False
        self.rollup: str | None = None
        self._epoch_lock = asyncio.Lock()
        self._nonce_lock = asyncio.Lock()
        self.keys: dict[str, bytes] = {}  # --account keys: the gateway may sign transactions for these
        self.anon_secret = new_secret()  # signs views that name no sender (msg.sender = a random address)
        self.anon = address_of_secret(self.anon_secret)
        self.sent: OrderedDict[str, Sent] = OrderedDict()  # by Ethereum tx hash
        self.next_nonce: dict[str, int] = {}  # highest nonce sent + 1, per sender
        self.epoch_retries = 0
        self.reported_height = 0  # the last block number a tool was told (see Chain.reported_block_number)

    # ------------------------------------------------------------------ start
    async def start(self) -> None:
        self.chain_id = _hexint(await self.node.call("eth_chainId", []), "eth_chainId")
        contracts = await self.node.call("enclavenet_contracts", [])
        if not isinstance(contracts, dict) or "rollup" not in contracts or "l1ChainId" not in contracts:
            raise RpcError(NODE_DOWN, "the node's enclavenet_contracts names no Rollup / L1 chain id")
        l1_chain = _hexint(contracts["l1ChainId"], "l1ChainId")
        if self.l1 is not None:
            on_l1 = _hexint(await self.l1.call("eth_chainId", []), "L1 chain id")
            if on_l1 != l1_chain:
                raise RpcError(-32000, f"the node is anchored on L1 chain {l1_chain}, but {self.l1.url} is chain "
                                       f"{on_l1}: give --l1-rpc of the node's L1")
        self.rollup = to_checksum(contracts["rollup"])
        # views are signed for this deployment; a node lying about it only gets its views refused
        self.domain = ViewDomain(self.chain_id, l1_chain, self.rollup)
        self.sessions.domain = self.domain

    async def close(self) -> None:
        await self.node.close()
        if self.l1 is not None:
            await self.l1.close()

    def add_account(self, secret: bytes) -> str:
        """``--account KEY``: authorise a viewing session with the user's key, and keep it to sign
        ``eth_sendTransaction`` for that account."""
        s = self.sessions.authorise_with_key(secret, self.session_ttl)
        self.keys[s.account] = secret
        return s.account

    def default_account(self) -> str | None:
        acc = self.sessions.accounts()
        return acc[0] if acc else None

    # ------------------------------------------------------------------ epoch key
    async def epoch_key(self, refresh: bool = False) -> tuple[int, bytes]:
        async with self._epoch_lock:
            if self.epoch is not None and not refresh:
                return self.epoch, self.epoch_pub
            deadline = time.monotonic() + EPOCH_KEY_WAIT_S
            while True:
                res = await self.node.call("enclavenet_epochKey", [])
                if res is not None or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if not isinstance(res, dict):
                raise RpcError(NODE_DOWN, "the node announces no epoch key yet (no header accepted on L1); retry shortly")
            epoch = _hexint(res.get("epoch"), "epoch")
            pub = _hexbytes(res.get("epochKey"), "epochKey")
            if len(pub) != 32:
                raise RpcError(-32000, f"the node's epoch key has {len(pub)} bytes, not 32: refusing to seal to it")
            if self.l1 is not None:
                await self._check_on_l1(epoch, pub)
            self.epoch, self.epoch_pub = epoch, pub
            return epoch, pub

    async def _check_on_l1(self, epoch: int, pub: bytes) -> None:
        assert self.l1 is not None and self.rollup is not None
        data = "0x" + (_EPOCH_KEY_SELECTOR + epoch.to_bytes(32, "big")).hex()
        deadline = time.monotonic() + EPOCH_KEY_WAIT_S
        while True:
            on_l1 = _hexbytes(await self.l1.call("eth_call", [{"to": self.rollup, "data": data}, "latest"]), "epochKey")
            if on_l1 == pub:
                self.epoch_checked_on_l1 = True
                return
            if on_l1 != b"\x00" * 32 or time.monotonic() > deadline:
                raise RpcError(-32000, f"the node's key for epoch {epoch} is not the one the Rollup {self.rollup} "
                                       "recorded on L1: refusing to seal to it (the node may be lying)")
            await asyncio.sleep(0.2)

    async def _seal(self, plaintext: bytes, hint: RoutingHint | None, refresh: bool = False) -> SealedRequest:
        epoch, pub = await self.epoch_key(refresh)  # first: a lying node's key is caught whoever sends
        return seal(plaintext, pub, self.chain_id, epoch, hint, self._sessions.for_hint(hint, pub), self.hint_signer(hint))

    def hint_signer(self, hint: RoutingHint | None) -> HintSigner | None:
        """What authenticates a routing hint (envelope flag 4; nodes admit hinted envelopes only
        with it): the sender's --account key, else its viewing-session key, which the sender's
        ViewingSession statement authorises (carried in the envelope: kind 1). A wallet's raw
        transaction of an account with neither is refused: the gateway holds nothing to sign with."""
        if hint is None:
            return None
        sender = to_checksum(hint.sender)
        secret = self.keys.get(sender)
        if secret is not None:
            return HintSigner(secret)
        s = self.sessions.get(sender)
        if s is not None:
            st = s.statement
            return HintSigner.delegated(s.secret, address_bytes(st.key), st.expiry, st.signature)
        raise RpcError(
            NOT_AUTHORISED,
            f"transactions from {sender} need a viewing session on this gateway: nodes admit an envelope that "
            "names its sender only when the sender (or a session key it authorised) signs it. Authorise one at "
            "/authorise (MetaMask), with enclavenet_requestSession + enclavenet_authorise, or start the gateway "
            "with --account KEY")

    # ------------------------------------------------------------------ transactions
    async def send_raw(self, raw: bytes) -> str:
        """Seal a signed transaction to the epoch key, send it, return its Ethereum hash."""
        try:
            info = inspect_raw_transaction(raw)
        except Exception as exc:  # rlp / eth_account raise several types on garbage
            raise RpcError(INVALID_PARAMS, f"not a signed transaction EnclaveNet takes ({exc})") from None
        if info.chain_id != self.chain_id:
            raise RpcError(-32000, f"the transaction is signed for chain id {info.chain_id}; EnclaveNet's is "
                                   f"{self.chain_id}: sign it for {self.chain_id}")
        eth_hash = "0x" + keccak256(raw).hex()
        hint = RoutingHint(address_bytes(info.sender), info.nonce)
        sealed = await self._seal(raw, hint)
        try:
            rid = await self.node.call("eth_sendRawTransaction", ["0x" + sealed.envelope.encode().hex()])
        except RpcError as exc:
            if exc.code != WRONG_EPOCH:
                raise RpcError(exc.code, f"the node refused the transaction: {exc.message}") from None
            self.epoch_retries += 1
            sealed = await self._seal(raw, hint, refresh=True)
            rid = await self.node.call("eth_sendRawTransaction", ["0x" + sealed.envelope.encode().hex()])
        expected = "0x" + keccak256(sealed.envelope.encode()).hex()
        if not isinstance(rid, str) or rid.lower() != expected:
            raise RpcError(NODE_DOWN, "the node answered with another id than the envelope's receipt id")
        created = create_address(info.sender, info.nonce) if info.to is None else None
        st = SentTx(sealed.receipt_key, info.sender, info.nonce, info.to, keccak256(raw), created,
                    2 if raw[:1] == b"\x02" else 0)
        self.sent[eth_hash] = Sent(eth_hash, expected, raw, st)
        while len(self.sent) > MAX_KEPT:
            self.sent.popitem(last=False)
        self.next_nonce[info.sender] = max(self.next_nonce.get(info.sender, 0), info.nonce + 1)
        return eth_hash

    async def send_transaction(self, tx: dict[str, Any]) -> str:
        """``eth_sendTransaction`` for an account whose key was given with ``--account``."""
        from ..client.formats import sign_transaction

        sender = _address(tx.get("from") or self.default_account() or "", "from")
        secret = self.keys.get(sender)
        if secret is None:
            raise RpcError(-32000, f"eth_sendTransaction: this gateway holds no key for {sender} (it signs only for "
                                   "--account keys); sign the transaction in your wallet and send it with "
                                   "eth_sendRawTransaction")
        to = _address(tx["to"], "to") if tx.get("to") else None
        data = _hexbytes(tx.get("data", tx.get("input")), "data")
        value = _hexint(tx.get("value"), "value", 0)
        gas = _hexint(tx.get("gas"), "gas", 0) or min(
            MAX_VIEW_GAS, int(await self.estimate_gas({**tx, "from": sender}) * 1.25) + 10_000
        )
        async with self._nonce_lock:
            nonce = _hexint(tx.get("nonce"), "nonce", -1)
            if nonce < 0:
                nonce = await self.nonce(sender, "pending")
            fee = tx.get("maxFeePerGas", tx.get("gasPrice"))
            max_fee = _hexint(fee, "maxFeePerGas", 0) if fee is not None else _hexint(
                await self.node.call("eth_gasPrice", []), "eth_gasPrice", 0)
            raw = sign_transaction(secret, self.chain_id, nonce, to, data, value, gas, max_fee=max_fee,
                                   priority_fee=_hexint(tx.get("maxPriorityFeePerGas"), "maxPriorityFeePerGas", 0))
            return await self.send_raw(raw)

    # ------------------------------------------------------------------ receipts
    async def receipt(self, eth_hash: str) -> dict[str, Any] | None:
        s = self.sent.get(eth_hash.lower())
        if s is None:
            return None  # not sealed here: only its sender's gateway can read it
        if s.refused is not None:
            raise RpcError(TX_REFUSED, f"transaction {eth_hash} was refused by the enclave (not executed, "
                                       f"nonce not used): {s.refused}")
        if s.receipt is not None:
            return s.receipt
        node = await self.node.call("eth_getTransactionReceipt", [s.receipt_id])
        if node is None:
            return None
        enc = _hexbytes(node.get("encryptedReceipt"), "encryptedReceipt")
        if enc.startswith(ERROR_ENTRY_PREFIX):
            s.refused = enc[len(ERROR_ENTRY_PREFIX):].decode("utf-8", "replace")
            return await self.receipt(eth_hash)
        try:
            dr: DecryptedReceipt = decode_receipt(open_receipt(s.sent.receipt_key, enc))
        except (EnvelopeError, ValueError) as exc:
            raise RpcError(-32000, f"receipt of {eth_hash} does not decrypt: {exc}") from None
        if dr.refused:
            s.refused = dr.error or "no reason given"
            return await self.receipt(eth_hash)
        rc = _Client.receipt_json(s.eth_hash, node, dr, s.sent)
        rc["receiptId"] = s.receipt_id
        if node.get("receiptIndex") is not None:  # the entry's position in its batch, as the enclave's log index
            rc["transactionIndex"] = node["receiptIndex"]
            for lg in rc["logs"]:
                lg["transactionIndex"] = node["receiptIndex"]
        rc["revertReason"] = dr.revert_reason if dr.status == 0 else None
        s.receipt = rc
        return rc

    def transaction(self, eth_hash: str) -> dict[str, Any] | None:
        s = self.sent.get(eth_hash.lower())
        if s is None:
            return None
        tx = decode_raw(s.raw, s.sent.sender)
        tx["hash"] = s.eth_hash
        rc = s.receipt
        tx["blockHash"] = rc["blockHash"] if rc else None
        tx["blockNumber"] = rc["blockNumber"] if rc else None
        tx["transactionIndex"] = rc["transactionIndex"] if rc else None
        return tx

    def pending(self) -> list[Sent]:
        return [s for s in self.sent.values() if s.receipt is None and s.refused is None]

    def own_receipts(self) -> list[dict[str, Any]]:
        return [s.receipt for s in self.sent.values() if s.receipt is not None]

    # ------------------------------------------------------------------ views
    def _signer_for(self, sender: str | None) -> tuple[str, bytes, Any]:
        """(from, secret, session) of a view: the account's session, an --account key, or anonymous."""
        if sender is None:
            d = self.default_account()
            if d is None:
                return self.anon, self.anon_secret, None
            sender = d
        s = self.sessions.get(sender)
        if s is not None:
            return s.account, s.secret, s.statement
        if sender in self.keys:
            return sender, self.keys[sender], None
        if sender == self.anon:
            return self.anon, self.anon_secret, None
        raise RpcError(
            NOT_AUTHORISED,
            f"reads as {sender} need a viewing session: authorise one at /authorise on this gateway (MetaMask), "
            "with enclavenet_requestSession + enclavenet_authorise (a script), or start the gateway with "
            f"--account KEY. The enclave answers views only to their signer.",
        )

    async def enclave_logs(
        self, account: str, lo: int, hi: int, criteria: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], list[int]]:
        """The logs in heights ``lo..hi`` matching ``criteria`` (address, topics) that ``account``
        may read, by a log query its viewing session signs (``enclavenet_getLogs``): its own,
        those naming it in an indexed topic, and public events (docs/GATEWAY.md "Logs"); and the
        heights the node had no log index for (yet)."""
        frm, secret, session = self._signer_for(account)
        addrs = criteria.get("address")
        addresses = [addrs] if isinstance(addrs, str) else list(addrs or [])
        topics = list(criteria.get("topics") or [])
        def build(epoch: int, domain: ViewDomain) -> bytes:
            try:
                return build_log_query(secret, frm, domain, epoch, lo, hi, addresses, topics, ttl=VIEW_TTL,
                                       session=session)
            except ValueError as exc:
                raise RpcError(INVALID_PARAMS, f"eth_getLogs: {exc}") from None

        sealed, res = await self._sealed_request("enclavenet_getLogs", build, [hex(lo), hex(hi)])
        try:
            out = decode_log_result(open_receipt(sealed.receipt_key, _hexbytes(res["encryptedResult"], "result")))
        except (EnvelopeError, ValueError, TypeError) as exc:
            raise RpcError(-32000, f"enclavenet_getLogs: the sealed result does not open ({exc})") from None
        if not out.ok:
            raise RpcError(-32000, f"the enclave refused the log query: {out.error}")
        return out.logs, out.missing

    def log_accounts(self) -> list[str]:
        """The accounts whose readable logs eth_getLogs serves: those with a viewing session here."""
        return self.sessions.accounts()[:MAX_LOG_ACCOUNTS]

    async def _sealed_request(self, method: str, build: Any, extra: list[Any]) -> tuple[Any, dict[str, Any]]:
        """Seal ``build(epoch, domain)`` (a signed request) to the epoch key and send it as
        ``method(envelope, *extra)``; once more, re-sealed, if the node says the epoch moved on.
        A fresh nonce each time, a short expiry: the enclave answers each signed request once and
        keeps at most 256 live ones per account, so they must expire soon."""
        epoch, _ = await self.epoch_key()
        assert self.domain is not None
        for attempt in (0, 1):
            sealed = await self._seal(build(epoch, self.domain), None, refresh=attempt == 1)
            try:
                res = await self.node.call(method, ["0x" + sealed.envelope.encode().hex(), *extra])
                break
            except RpcError as exc:
                if exc.code != WRONG_EPOCH or attempt == 1:
                    raise RpcError(exc.code, exc.message) from None
                self.epoch_retries += 1
                epoch, _ = await self.epoch_key(refresh=True)
        if not isinstance(res, dict) or "encryptedResult" not in res:
            raise RpcError(NODE_DOWN, f"{method} returned no encryptedResult")
        return sealed, res

    async def view(self, sender: str | None, to: str | None, data: bytes, *, value: int = 0,
                   gas: int | None = None, estimate: bool = False, key: bytes | None = None) -> ViewResult:
        frm, secret, session = (sender, key, None) if key is not None and sender else self._signer_for(sender)
        method = "enclavenet_estimateGas" if estimate else "enclavenet_call"
        sealed, res = await self._sealed_request(method, lambda epoch, domain: build_view_request(
            secret, frm, domain, epoch, to, data, value, gas or MAX_VIEW_GAS, ttl=VIEW_TTL, session=session), [])
        try:
            return decode_view_result(open_receipt(sealed.receipt_key, _hexbytes(res["encryptedResult"], "result")))
        except (EnvelopeError, ValueError) as exc:
            raise RpcError(-32000, f"{method}: the sealed result does not open ({exc})") from None

    @staticmethod
    def _call_args(tx: Any) -> tuple[str | None, str | None, bytes, int, int | None]:
        if not isinstance(tx, dict):
            raise RpcError(INVALID_PARAMS, "the call object must be {from?, to?, data?, value?, gas?}")
        frm = _address(tx["from"], "from") if tx.get("from") else None
        if frm == ZERO_ADDRESS:  # cast sends from = 0x0 when no --from is given
            frm = None
        to = _address(tx["to"], "to") if tx.get("to") else None
        data = _hexbytes(tx.get("data", tx.get("input")), "data")
        value = _hexint(tx.get("value"), "value", 0)
        gas = _hexint(tx["gas"], "gas") if tx.get("gas") else None
        return frm, to, data, value, gas

    async def call(self, tx: Any) -> str:
        frm, to, data, value, gas = self._call_args(tx)
        res = await self.view(frm, to, data, value=value, gas=gas)
        if not res.ok:
            raise reverted(res)
        return "0x" + res.return_data.hex()

    async def estimate_gas(self, tx: Any) -> int:
        frm, to, data, value, _ = self._call_args(tx)
        res = await self.view(frm, to, data, value=value, estimate=True)
        if res.ok:
            return res.gas_used
        # the estimate says only that it fails: run it as a call for the revert data
        call = await self.view(frm, to, data, value=value)
        if not call.ok:
            raise reverted(call)
        raise reverted(res)

    async def _probe(self, code: bytes, sender: str | None) -> bytes:
        """Run init code that reverts with its answer. ``sender`` None: as a fresh throwaway key (for
        what any contract may read: BALANCE, EXTCODECOPY), so probes never use up an account's
        live-view allowance in the enclave."""
        if sender is None:
            secret = new_secret()
            res = await self.view(address_of_secret(secret), None, code, gas=1_000_000, key=secret)
        else:
            res = await self.view(sender, None, code, gas=1_000_000)
        if res.ok:
            raise RpcError(-32000, "the enclave did not answer the probe (it should revert with its answer)")
        return res.return_data

    async def balance(self, address: str) -> int:
        word = await self._probe(balance_probe(address), None)
        if len(word) != 32:
            raise RpcError(-32000, f"balance probe answered {len(word)} bytes: {revert_reason(word)}")
        return int.from_bytes(word, "big")

    async def code(self, address: str) -> bytes:
        return await self._probe(code_probe(address), None)

    async def nonce(self, address: str, tag: Any = "latest") -> int:
        """The account's nonce: read privately by a creation probe (only its session can), then
        ``pending`` adds what this gateway sent; ``latest`` stays below transactions whose
        receipt is not on L1 yet (so tools do not take them for replaced)."""
        word = await self._probe(NONCE_PROBE_CODE, address)
        target = to_checksum(word[-20:])
        n = next((i for i in range(NONCE_SEARCH_LIMIT) if create_address(address, i) == target), None)
        if n is None:
            raise RpcError(-32000, f"could not find the nonce of {address}")
        if tag == "pending":
            return max(n, self.next_nonce.get(address, 0))
        waiting = [s.sent.nonce for s in self.pending() if s.sent.sender == address and s.sent.nonce is not None]
        return min([n, *waiting])


def reverted(res: ViewResult) -> RpcError:
    """The standard revert error: code 3, "execution reverted: reason", data = the revert data."""
    reason = res.revert_reason
    msg = f"execution reverted: {reason}" if reason else "execution reverted"
    return RpcError(REVERTED, msg, "0x" + res.return_data.hex())


def decode_raw(raw: bytes, sender: str) -> dict[str, Any]:
    """A signed transaction as the JSON-RPC transaction object."""
    def i(b: bytes) -> str:
        return hex(int.from_bytes(b, "big"))

    if raw[:1] == b"\x02":
        f = rlp.decode(raw[1:])
        return {
            "type": "0x2", "chainId": i(f[0]), "nonce": i(f[1]), "maxPriorityFeePerGas": i(f[2]),
            "maxFeePerGas": i(f[3]), "gasPrice": i(f[3]), "gas": i(f[4]),
            "to": to_checksum(f[5]) if f[5] else None, "value": i(f[6]), "input": "0x" + f[7].hex(),
            "accessList": [], "v": i(f[9]), "yParity": i(f[9]), "r": i(f[10]), "s": i(f[11]), "from": sender,
        }
    f = rlp.decode(raw)
    v = int.from_bytes(f[6], "big")
    return {
        "type": "0x0", "chainId": hex((v - 35) // 2), "nonce": i(f[0]), "gasPrice": i(f[1]), "gas": i(f[2]),
        "to": to_checksum(f[3]) if f[3] else None, "value": i(f[4]), "input": "0x" + f[5].hex(),
        "v": hex(v), "r": i(f[7]), "s": i(f[8]), "from": sender,
    }
