"""The confidential client's state and logic, independent of how web3.py calls it.

A :class:`ConfidentialClient` holds one user's key, the committee's epoch key (checked against
the Rollup on L1 when an L1 connection is given), the receipt key of every envelope it sent
(so only it can read its receipts), and the account's next nonce. The web3 middleware
(``middleware.py``) routes JSON-RPC methods to it; every node call goes through a
``make_request(method, params) -> RPCResponse`` function handed in by the caller.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

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
from .errors import (
    EnclaveNetError,
    EnvelopeRefused,
    EpochChanged,
    EpochKeyMismatch,
    NodeBusy,
    NodeUnavailable,
    ReceiptUnreadable,
    TransactionRefused,
    TransactionReverted,
)
from .formats import (
    ERROR_ENTRY_PREFIX,
    MAX_VIEW_GAS,
    DecryptedReceipt,
    LogResult,
    ViewResult,
    build_log_query,
    build_view_request,
    create_address,
    decode_log_result,
    decode_receipt,
    decode_view_result,
    error_entry_reason,
    inspect_raw_transaction,
    logs_bloom,
    sign_transaction,
)
from .receipts import verify_receipt_on_l1

log = logging.getLogger(__name__)

LIMIT_EXCEEDED = -32005  # EIP-1474: the node's admission control or a rate limit (retryable)
BUSY_WAIT_S = 60.0  # how long a send keeps retrying "busy" answers


def _retry_after(err: dict[str, Any]) -> float:
    data = err.get("data")
    v = data.get("retryAfter") if isinstance(data, dict) else None
    return min(10.0, max(0.05, float(v))) if isinstance(v, int | float) and not isinstance(v, bool) else 0.5


# application error codes of the node's JSON-RPC (docs/NODE_API.md)
WRONG_EPOCH = -32003
NOT_READY = -32050

_NEXT_NONCE_RE = re.compile(r"(?:next is|expected) (\d+)")

MakeRequest = Callable[[str, Any], dict[str, Any]]

#: Receipt keys kept per client (oldest dropped first); a receipt older than that is unreadable.
MAX_KEPT_RECEIPT_KEYS = 200_000
#: How long to wait for a node that has no epoch key yet (a devnet still starting).
EPOCH_KEY_WAIT_S = 10.0
#: How long to wait for the Rollup on L1 to record an epoch key the node already announces.
L1_EPOCH_KEY_WAIT_S = 10.0

# Probes: init code run by a signed creation view that answers by *reverting* with one word
# (revert data always comes back to the caller, whatever the enclave does with creations).
# ADDRESS is where CREATE puts a contract the caller deploys now, keccak(rlp([caller, nonce])):
# so the caller alone learns its own nonce.  ADDRESS PUSH1 0 MSTORE PUSH1 32 PUSH1 0 REVERT
NONCE_PROBE_CODE = bytes.fromhex("30600052602060" + "00fd")
# BALANCE(caller):  CALLER BALANCE PUSH1 0 MSTORE PUSH1 32 PUSH1 0 REVERT
BALANCE_PROBE_CODE = bytes.fromhex("3331600052602060" + "00fd")


def balance_probe(address: str | bytes) -> bytes:
    """Init code reverting with BALANCE(address): PUSH20 address BALANCE PUSH1 0 MSTORE ... REVERT.

    Native balances are readable by any contract through the EVM's BALANCE opcode, inside
    EnclaveNet as on Ethereum; contract *storage* is what stays private.
    """
    return b"\x73" + address_bytes(address) + bytes.fromhex("31600052602060" + "00fd")
NONCE_SEARCH_LIMIT = 1_000_000


@dataclass(frozen=True)
class EpochKey:
    """The committee's public key for one epoch, as the node announced it (and L1 confirmed)."""

    epoch: int
    public: bytes
    height: int
    header_hash: str
    checked_on_l1: bool


@dataclass
class SentTx:
    """What the sender keeps about one envelope it sent, to read the receipt."""

    receipt_key: bytes = field(repr=False)
    sender: str
    nonce: int | None
    to: str | None
    tx_hash: bytes  # keccak256 of the raw signed transaction (the Ethereum tx hash)
    created: str | None  # CREATE address for a deployment
    tx_type: int = 2  # 2 EIP-1559, 0 legacy


def _hex_int(v: Any, default: int = 0) -> int:
    if v is None:
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return int(v, 16) if v.startswith(("0x", "0X")) else int(v)
    raise EnclaveNetError(f"expected a hex quantity, got {type(v).__name__}")


def _hex_bytes(v: Any) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes | bytearray):
        return bytes(v)
    if isinstance(v, str):
        s = v[2:] if v.startswith(("0x", "0X")) else v
        try:
            return bytes.fromhex(s)
        except ValueError:
            raise EnclaveNetError("expected 0x-hex data") from None
    raise EnclaveNetError(f"expected hex data, got {type(v).__name__}")


def _is_epoch_error(message: str) -> bool:
    m = message.lower()
    return "epoch" in m and any(w in m for w in ("unknown", "wrong", "erased", "stale", "expired", "not held", "outside", "old", "future"))


class ConfidentialClient:
    """One user's confidential session with an EnclaveNet node (see :func:`enclavenet.client.wrap`)."""

    def __init__(
        self,
        account: LocalAccount | list[LocalAccount],
        *,
        l1: Web3 | None = None,
        rollup: str | None = None,
        legacy_transactions: bool = False,
        gas_margin: float = 0.25,
        endpoint: str = "node",
    ) -> None:
        accounts = list(account) if isinstance(account, list | tuple) else [account]
        if not accounts:
            raise TypeError("wrap() needs at least one account")
        for a in accounts:
            if not hasattr(a, "key") or not hasattr(a, "address"):
                raise TypeError(
                    "wrap() needs eth_account LocalAccounts (Account.from_key(...)): it signs locally"
                )
        #: the signing accounts by checksummed address; the first is the default sender
        self.accounts: dict[str, LocalAccount] = {to_checksum(a.address): a for a in accounts}
        self.account = accounts[0]
        self.busy_wait_s = BUSY_WAIT_S
        self.busy_retries = 0
        self._sessions = SessionKeys()  # one X25519 agreement per sender and epoch (crypto/envelope.py)
        self._hint_signers: dict[bytes, HintSigner] = {}  # routing-hint authentication per account
        self.address: str = to_checksum(accounts[0].address)
        self.l1 = l1
        self.rollup = to_checksum(rollup) if rollup else None
        self.legacy = legacy_transactions
        self.gas_margin = gas_margin
        self._gas_price: tuple[int, float] | None = None  # (eth_gasPrice, when asked)
        self.endpoint = endpoint
        self.chain_id: int | None = None
        self.epoch_key: EpochKey | None = None
        self._sent: OrderedDict[str, SentTx] = OrderedDict()
        self._nonces: dict[str, int] = {}
        #: per account: "enclave" when its nonce was read from the enclave by a signed view,
        #: "local" when the client counts from 0 because the enclave could not tell it.
        self.nonce_source: dict[str, str] = {}
        self._lock = threading.RLock()
        self._view_domain: ViewDomain | None = None
        self.epoch_retries = 0  # how many times an envelope was re-sealed after an epoch change

    def __repr__(self) -> str:
        return f"ConfidentialClient(accounts={list(self.accounts)}, chain_id={self.chain_id}, epoch={self.epoch_key.epoch if self.epoch_key else None})"

    # ------------------------------------------------------------------ node access

    def rpc(self, make_request: MakeRequest, method: str, params: Any) -> Any:
        """Call the node; return ``result`` or raise a typed error."""
        resp = self.transport(make_request, method, params)
        if not isinstance(resp, dict):
            raise NodeUnavailable(f"EnclaveNet node {self.endpoint} answered {method} with a non-JSON-RPC response")
        if "error" in resp and resp["error"] is not None:
            err = resp["error"]
            code = err.get("code") if isinstance(err, dict) else None
            message = str(err.get("message", err)) if isinstance(err, dict) else str(err)
            if code == WRONG_EPOCH or _is_epoch_error(message):
                raise EpochChanged(f"{method}: {message}", code)
            if code == -32601:
                raise NodeUnavailable(f"EnclaveNet node {self.endpoint} does not serve {method}: {message}")
            if code == NOT_READY:
                raise NodeUnavailable(f"EnclaveNet node {self.endpoint} is not ready: {message}")
            if code == LIMIT_EXCEEDED:
                raise NodeBusy(f"{method} refused for now by the node: {message}", code, _retry_after(err))
            raise EnvelopeRefused(f"{method} refused by the node: {message}", code)
        return resp.get("result")

    def transport(self, make_request: MakeRequest, method: str, params: Any) -> Any:
        """``make_request``, with transport failures turned into NodeUnavailable."""
        try:
            return make_request(method, params)
        except EnclaveNetError:
            raise
        except Exception as exc:  # requests / aiohttp / socket errors
            if type(exc).__module__.startswith(("requests", "urllib3", "aiohttp", "socket")) or isinstance(exc, OSError):
                raise NodeUnavailable(
                    f"EnclaveNet node {self.endpoint} unreachable during {method}: {type(exc).__name__}"
                ) from None
            raise

    def ensure_chain_id(self, make_request: MakeRequest) -> int:
        if self.chain_id is None:
            self.chain_id = _hex_int(self.rpc(make_request, "eth_chainId", []))
        return self.chain_id

    def view_domain(self, make_request: MakeRequest) -> ViewDomain:
        """The deployment signed views are bound to (EIP-712 domain): the EnclaveNet chain id, and
        the Rollup and its L1 chain id -- from ``wrap(l1=, rollup=)`` when given, else from the
        node (``enclavenet_contracts``; a lying node only makes the enclave refuse the view)."""
        with self._lock:
            if self._view_domain is None:
                chain_id = self.ensure_chain_id(make_request)
                rollup, l1_chain = self.rollup, self.l1.eth.chain_id if self.l1 is not None else None
                if rollup is None or l1_chain is None:
                    contracts = self.rpc(make_request, "enclavenet_contracts", [])
                    if not isinstance(contracts, dict) or "rollup" not in contracts or "l1ChainId" not in contracts:
                        raise NodeUnavailable("enclavenet_contracts returned no rollup address / L1 chain id")
                    rollup = rollup or to_checksum(contracts["rollup"])
                    l1_chain = l1_chain if l1_chain is not None else _hex_int(contracts["l1ChainId"])
                self._view_domain = ViewDomain(chain_id, int(l1_chain), to_checksum(rollup))
            return self._view_domain

    # ------------------------------------------------------------------ epoch key

    def current_epoch_key(self, make_request: MakeRequest, *, refresh: bool = False) -> EpochKey:
        """The epoch key to seal to (fetched once, again after an epoch change)."""
        with self._lock:
            if self.epoch_key is not None and not refresh:
                return self.epoch_key
            self.ensure_chain_id(make_request)
            deadline = time.monotonic() + EPOCH_KEY_WAIT_S
            while True:
                try:
                    res = self.rpc(make_request, "enclavenet_epochKey", [])
                except NodeUnavailable:
                    res = None
                if res is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # the committee has no accepted header yet: wait a little
            if not isinstance(res, dict) or "epochKey" not in res or "epoch" not in res:
                raise NodeUnavailable(
                    f"EnclaveNet node {self.endpoint} announces no epoch key (no header accepted on L1 "
                    f"after {EPOCH_KEY_WAIT_S:.0f} s)"
                )
            epoch = _hex_int(res["epoch"])
            public = _hex_bytes(res["epochKey"])
            if len(public) != 32:
                raise EpochKeyMismatch(f"the node's epoch key has {len(public)} bytes, expected 32 (X25519)")
            checked = False
            if self.l1 is not None:
                self._check_epoch_key_on_l1(make_request, epoch, public)
                checked = True
            if self.epoch_key is not None and self.epoch_key.epoch > epoch:
                raise EpochKeyMismatch(
                    f"the node announces epoch {epoch}, older than epoch {self.epoch_key.epoch} already seen"
                )
            self.epoch_key = EpochKey(
                epoch, public, _hex_int(res.get("height")), str(res.get("headerHash", "")), checked
            )
            log.debug("epoch key for epoch %d (checked on L1: %s)", epoch, checked)
            return self.epoch_key

    def _ensure_rollup(self, make_request: MakeRequest) -> str:
        """The Rollup's address: given to wrap(), else asked of the node (checked against L1's chain id)."""
        assert self.l1 is not None
        if self.rollup is None:
            contracts = self.rpc(make_request, "enclavenet_contracts", [])
            if not isinstance(contracts, dict) or "rollup" not in contracts:
                raise NodeUnavailable("enclavenet_contracts returned no rollup address")
            l1_chain = contracts.get("l1ChainId")
            if l1_chain is not None and _hex_int(l1_chain) != self.l1.eth.chain_id:
                raise EpochKeyMismatch(
                    f"the node is anchored on L1 chain {_hex_int(l1_chain)}, but the L1 given to wrap() "
                    f"is chain {self.l1.eth.chain_id}"
                )
            self.rollup = to_checksum(contracts["rollup"])
        return self.rollup

    def _check_epoch_key_on_l1(self, make_request: MakeRequest, epoch: int, public: bytes) -> None:
        assert self.l1 is not None
        self._ensure_rollup(make_request)
        assert self.rollup is not None
        rollup = self.l1.eth.contract(address=Web3.to_checksum_address(self.rollup), abi=ROLLUP_EPOCH_ABI)
        deadline = time.monotonic() + L1_EPOCH_KEY_WAIT_S
        while True:
            on_l1 = bytes(rollup.functions.epochKey(epoch).call())
            if on_l1 == public:
                return
            if on_l1 != b"\x00" * 32:
                raise EpochKeyMismatch(
                    f"the node's key for epoch {epoch} differs from the one the Rollup {self.rollup} "
                    "recorded on L1: refusing to seal to it (the node may be lying)"
                )
            if time.monotonic() > deadline:
                raise EpochKeyMismatch(
                    f"the Rollup {self.rollup} on L1 has no key for epoch {epoch} after "
                    f"{L1_EPOCH_KEY_WAIT_S:.0f} s: no accepted header carries it yet"
                )
            time.sleep(0.2)

    def seal(self, make_request: MakeRequest, plaintext: bytes, hint: RoutingHint | None, *, refresh: bool = False) -> SealedRequest:
        ek = self.current_epoch_key(make_request, refresh=refresh)
        assert self.chain_id is not None
        return seal(plaintext, ek.public, self.chain_id, ek.epoch, hint, self._sessions.for_hint(hint, ek.public),
                    self.hint_signer(hint))

    def hint_signer(self, hint: RoutingHint | None) -> HintSigner | None:
        """What authenticates ``hint`` (envelope flag 4): the hint sender's own key. Nodes admit a
        hinted envelope only with it (docs/NODE.md "Routing-hint authentication")."""
        if hint is None:
            return None
        s = self._hint_signers.get(hint.sender)
        if s is None:
            acct = self.accounts.get(to_checksum(hint.sender))
            if acct is None:
                raise EnclaveNetError(
                    f"cannot authenticate a routing hint for {to_checksum(hint.sender)}: this client holds no key "
                    f"for it (it signs only for {', '.join(self.accounts)}), and nodes admit an envelope that "
                    "names its sender only with that sender's signature")
            s = self._hint_signers[hint.sender] = HintSigner(bytes(acct.key))
        return s

    def _send_sealed(
        self,
        make_request: MakeRequest,
        method: str,
        plaintext: bytes,
        hint: RoutingHint | None,
    ) -> tuple[Any, SealedRequest]:
        """Seal, send, and on an epoch change re-fetch the key, re-seal and retry once. A "busy"
        answer (the committee is saturated, or a rate limit) is retried after the wait the node
        asked for, with jitter, for up to ``busy_wait_s`` seconds in all."""
        sealed = self.seal(make_request, plaintext, hint)
        deadline = time.monotonic() + self.busy_wait_s
        while True:
            try:
                try:
                    return self.rpc(make_request, method, ["0x" + sealed.envelope.encode().hex()]), sealed
                except EpochChanged:
                    self.epoch_retries += 1
                    sealed = self.seal(make_request, plaintext, hint, refresh=True)
                    return self.rpc(make_request, method, ["0x" + sealed.envelope.encode().hex()]), sealed
            except NodeBusy as exc:
                wait = exc.retry_after * random.uniform(1.0, 1.5)
                if time.monotonic() + wait > deadline:
                    raise
                self.busy_retries += 1
                time.sleep(wait)

    # ------------------------------------------------------------------ nonces

    def signer(self, address: Any | None) -> LocalAccount:
        """The account that signs for ``address`` (None: the default account)."""
        if address is None:
            return self.account
        a = to_checksum(str(address))
        acct = self.accounts.get(a)
        if acct is None:
            raise EnclaveNetError(
                f"this wrapped Web3 holds no key for {a}: it signs only for {', '.join(self.accounts)}"
            )
        return acct

    def next_nonce(self, make_request: MakeRequest, address: str | None = None) -> int:
        """The nonce the account's next transaction carries (read once, then counted)."""
        a = to_checksum(address) if address else self.address
        with self._lock:
            if a not in self._nonces:
                self._nonces[a] = self.discover_nonce(make_request, a)
            return self._nonces[a]

    def discover_nonce(self, make_request: MakeRequest, address: str | None = None) -> int:
        """The account's nonce in the enclave's state, read privately by a signed creation view.

        If the enclave cannot answer (no creation views), count locally from 0 and say so in
        ``nonce_source``.
        """
        a = to_checksum(address) if address else self.address
        word = self.probe(make_request, NONCE_PROBE_CODE, a)
        if word is None:
            log.info("the enclave cannot tell %s its nonce privately: counting from 0", a)
            self.nonce_source[a] = "local"
            return 0
        target = to_checksum(word[-20:])
        for n in range(NONCE_SEARCH_LIMIT):
            if create_address(a, n) == target:
                self.nonce_source[a] = "enclave"
                return n
        raise EnclaveNetError(f"could not find the nonce of {a} below {NONCE_SEARCH_LIMIT}")

    def set_nonce(self, address: str, nonce: int | None) -> None:
        """Set (None: forget) the tracked nonce of one of this client's accounts."""
        with self._lock:
            if nonce is None:
                self._nonces.pop(to_checksum(address), None)
            else:
                self._nonces[to_checksum(address)] = nonce

    def reset_nonce(self, address: str | None = None) -> None:
        """Forget the tracked nonce; the next transaction reads it from the enclave again."""
        self.set_nonce(address or self.address, None)

    def probe(self, make_request: MakeRequest, code: bytes, sender: str | None = None) -> bytes | None:
        """Run a probe (init code that reverts with one word) as a signed view; None if unsupported."""
        try:
            res = self.view(make_request, None, code, gas=100_000, sender=sender, raise_on_revert=False)
        except EnvelopeRefused as exc:
            log.debug("probe refused: %s", exc)
            return None
        if res.ok or len(res.return_data) != 32:
            return None
        return res.return_data

    # ------------------------------------------------------------------ transactions

    def send_transaction(self, make_request: MakeRequest, tx: dict[str, Any]) -> str:
        """``eth_sendTransaction``: fill, sign locally, seal with the routing hint, send."""
        account = self.signer(tx.get("from"))
        sender = to_checksum(account.address)
        chain_id = self.ensure_chain_id(make_request)
        if tx.get("chainId") is not None and _hex_int(tx["chainId"]) != chain_id:
            raise EnclaveNetError(f"transaction chainId {_hex_int(tx['chainId'])} is not EnclaveNet's {chain_id}")
        to = to_checksum(tx["to"]) if tx.get("to") else None
        data = _hex_bytes(tx.get("data", tx.get("input")))
        value = _hex_int(tx.get("value"))
        if tx.get("gas") is not None:
            gas = _hex_int(tx["gas"])
        else:
            est = self.view(make_request, to, data, value=value, estimate=True, sender=sender).gas_used
            gas = min(MAX_VIEW_GAS, int(est * (1 + self.gas_margin)) + 10_000)
        with self._lock:
            given = tx.get("nonce") is not None
            nonce = _hex_int(tx["nonce"]) if given else self.next_nonce(make_request, sender)
            max_fee, tip = self._fees(make_request, tx)
            raw = sign_transaction(bytes(account.key), chain_id, nonce, to, data, value, gas, legacy=self.legacy,
                                   max_fee=max_fee, priority_fee=tip)
            try:
                rid = self._send_raw(make_request, raw, sender, nonce, to)
            except NodeUnavailable:
                self.set_nonce(sender, None)  # the node may or may not hold it: re-read it next time
                raise
            if not given or self._nonces.get(sender) == nonce:
                self._nonces[sender] = nonce + 1
            return rid

    def _fees(self, make_request: MakeRequest, tx: dict[str, Any]) -> tuple[int, int]:
        """(max fee, priority fee) per gas: the transaction's own, else the node's ``eth_gasPrice``
        (0 without fees; docs/FEES.md), asked at most once a second."""
        tip = _hex_int(tx.get("maxPriorityFeePerGas"))
        for k in ("maxFeePerGas", "gasPrice"):
            if tx.get(k) is not None:
                return _hex_int(tx[k]), tip
        now = time.monotonic()
        if self._gas_price is None or now - self._gas_price[1] > 1.0:
            self._gas_price = (_hex_int(self.rpc(make_request, "eth_gasPrice", [])), now)
        return self._gas_price[0], tip

    def send_raw_transaction(self, make_request: MakeRequest, raw: bytes) -> str:
        """``eth_sendRawTransaction`` of a transaction the user signed: seal it, then send."""
        try:
            info = inspect_raw_transaction(raw)
        except Exception as exc:  # rlp / eth_account raise several types on garbage
            raise EnclaveNetError(f"eth_sendRawTransaction: not a signed transaction ({exc})") from None
        chain_id = self.ensure_chain_id(make_request)
        if info.chain_id != chain_id:
            raise EnclaveNetError(f"the transaction is signed for chain {info.chain_id}, EnclaveNet's chain id is {chain_id}")
        rid = self._send_raw(make_request, raw, info.sender, info.nonce, info.to)
        with self._lock:
            tracked = self._nonces.get(info.sender)
            if tracked is not None and info.nonce >= tracked:
                self._nonces[info.sender] = info.nonce + 1
        return rid

    def _send_raw(self, make_request: MakeRequest, raw: bytes, sender: str, nonce: int, to: str | None) -> str:
        hint = RoutingHint(address_bytes(sender), nonce)
        rid, sealed = self._send_sealed(make_request, "eth_sendRawTransaction", raw, hint)
        expected = "0x" + keccak256(sealed.envelope.encode()).hex()
        if not isinstance(rid, str) or rid.lower() != expected:
            raise NodeUnavailable(
                f"the node answered eth_sendRawTransaction with {rid!r}, not the envelope's receipt id {expected}"
            )
        self.remember(
            expected,
            SentTx(
                sealed.receipt_key, sender, nonce, to, keccak256(raw),
                create_address(sender, nonce) if to is None else None,
                2 if raw[:1] == b"\x02" else 0,
            ),
        )
        return expected

    def remember(self, receipt_id: str, sent: SentTx) -> None:
        with self._lock:
            self._sent[receipt_id.lower()] = sent
            while len(self._sent) > MAX_KEPT_RECEIPT_KEYS:
                self._sent.popitem(last=False)

    def sent(self, receipt_id: str) -> SentTx | None:
        return self._sent.get(receipt_id.lower())

    # ------------------------------------------------------------------ receipts

    def decrypt_receipt(self, receipt_id: str, encrypted: bytes) -> DecryptedReceipt:
        sent = self.sent(receipt_id)
        if sent is None:
            raise ReceiptUnreadable(
                f"receipt {receipt_id} was not sent by this client: only its sender holds the key to read it"
            )
        if encrypted.startswith(ERROR_ENTRY_PREFIX):
            reason = error_entry_reason(encrypted)
            raise EnvelopeRefused(f"the enclave could not open envelope {receipt_id}: {reason}")
        try:
            return decode_receipt(open_receipt(sent.receipt_key, encrypted))
        except EnvelopeError as exc:
            raise ReceiptUnreadable(f"receipt {receipt_id}: {exc}") from None
        except ValueError as exc:
            raise ReceiptUnreadable(f"receipt {receipt_id} decrypted but is malformed: {exc}") from None

    def get_receipt(self, make_request: MakeRequest, receipt_id: str) -> dict[str, Any] | None:
        """``eth_getTransactionReceipt``: the decrypted receipt in Ethereum JSON form, or None."""
        res = self.rpc(make_request, "eth_getTransactionReceipt", [receipt_id])
        if res is None:
            return None
        if not isinstance(res, dict) or "encryptedReceipt" not in res:
            raise NodeUnavailable("eth_getTransactionReceipt returned no encryptedReceipt")
        entry = _hex_bytes(res["encryptedReceipt"])
        dr = self.decrypt_receipt(receipt_id, entry)
        sent = self.sent(receipt_id)
        assert sent is not None
        if dr.refused:
            if sent.sender in self.accounts and sent.nonce is not None:
                self._heal_nonce(sent.sender, dr.error)
            raise TransactionRefused(dr.error or "no reason given", receipt_id)
        out = self.receipt_json(receipt_id, res, dr, sent)
        # final only when proven against a header accepted on L1 (client/receipts.py); without
        # an L1 to check, the receipt is the node's word: l1Verified False
        if self.l1 is not None:
            verify_receipt_on_l1(self.l1, self._ensure_rollup(make_request), res, entry)
        out["l1Verified"] = self.l1 is not None
        return out

    def _heal_nonce(self, sender: str, error: str) -> None:
        """After a refusal, take the nonce the enclave expects if it said so, else re-read it."""
        m = _NEXT_NONCE_RE.search(error)
        self.set_nonce(sender, int(m.group(1)) if m else None)

    @staticmethod
    def receipt_json(receipt_id: str, node: dict[str, Any], dr: DecryptedReceipt, sent: SentTx) -> dict[str, Any]:
        height = _hex_int(node.get("height"))
        block_hash = node.get("headerHash") or "0x" + "00" * 32
        index = _hex_int(dr.extra.get("index", dr.extra.get("tx_index", 0)))
        logs = [
            {
                "address": lg.address,
                "topics": ["0x" + t.hex() for t in lg.topics],
                "data": "0x" + lg.data.hex(),
                "logIndex": hex(i),
                "transactionIndex": hex(index),
                "transactionHash": receipt_id,
                "blockHash": block_hash,
                "blockNumber": hex(height),
                "removed": False,
            }
            for i, lg in enumerate(dr.logs)
        ]
        created = dr.contract_address or (sent.created if dr.status == 1 else None)
        out: dict[str, Any] = {
            "transactionHash": receipt_id,
            "transactionIndex": hex(index),
            "blockHash": block_hash,
            "blockNumber": hex(height),
            "from": dr.sender or sent.sender,
            "to": dr.to or sent.to,
            "contractAddress": created if sent.to is None else None,
            "cumulativeGasUsed": hex(dr.gas_used),
            "gasUsed": hex(dr.gas_used),
            "effectiveGasPrice": hex(dr.gas_price),
            "logs": logs,
            "logsBloom": "0x" + logs_bloom(dr.logs).hex(),
            "status": hex(dr.status),
            "type": hex(sent.tx_type),
            # EnclaveNet extras (plain web3 ignores them)
            "ethTransactionHash": "0x" + (dr.tx_hash or sent.tx_hash).hex(),
            "returnData": "0x" + dr.return_data.hex(),
            "revertReason": dr.revert_reason if dr.status == 0 else None,
            "l1TransactionHash": node.get("l1TxHash"),
        }
        return out

    # ------------------------------------------------------------------ views

    def view(
        self,
        make_request: MakeRequest,
        to: str | None,
        data: bytes,
        *,
        value: int = 0,
        gas: int | None = None,
        estimate: bool = False,
        sender: str | None = None,
        raise_on_revert: bool = True,
    ) -> ViewResult:
        """A signed view call (or gas estimate) as ``sender`` (default: the first account).

        The signature proves ``msg.sender``, so only an account this client holds can be the
        caller. Raises TransactionReverted with the decrypted reason (unless ``raise_on_revert``
        is False).
        """
        account = self.signer(sender)
        self.current_epoch_key(make_request)
        self.ensure_chain_id(make_request)
        method = "enclavenet_estimateGas" if estimate else "enclavenet_call"

        domain = self.view_domain(make_request)

        def build(epoch: int) -> bytes:
            return build_view_request(
                bytes(account.key), account.address, domain, epoch, to, data, value, gas or MAX_VIEW_GAS
            )

        sealed, res = self._sealed_request(make_request, method, build, [])
        try:
            result = decode_view_result(open_receipt(sealed.receipt_key, _hex_bytes(res["encryptedResult"])))
        except EnvelopeError as exc:
            raise ReceiptUnreadable(f"{method}: {exc}") from None
        except ValueError as exc:
            raise ReceiptUnreadable(f"{method}: the result decrypted but is malformed: {exc}") from None
        if not result.ok and raise_on_revert:
            raise TransactionReverted(result.revert_reason, data="0x" + result.return_data.hex())
        return result

    def _sealed_request(
        self, make_request: MakeRequest, method: str, build: Callable[[int], bytes], extra: list[Any]
    ) -> tuple[SealedRequest, dict[str, Any]]:
        """Seal ``build(epoch)`` (a signed request) to the current epoch key and send it as
        ``method(envelope, *extra)``; once more, re-sealed, if the node says the epoch moved on."""
        ek = self.current_epoch_key(make_request)
        sealed = self.seal(make_request, build(ek.epoch), None)
        try:
            res = self.rpc(make_request, method, ["0x" + sealed.envelope.encode().hex(), *extra])
        except EpochChanged:
            self.epoch_retries += 1
            ek = self.current_epoch_key(make_request, refresh=True)
            sealed = self.seal(make_request, build(ek.epoch), None)
            res = self.rpc(make_request, method, ["0x" + sealed.envelope.encode().hex(), *extra])
        if not isinstance(res, dict) or "encryptedResult" not in res:
            raise NodeUnavailable(f"{method} returned no encryptedResult")
        return sealed, res

    def get_logs(
        self,
        make_request: MakeRequest,
        from_block: int | str = "latest",
        to_block: int | str = "latest",
        *,
        address: str | list[str] | None = None,
        topics: list[Any] | None = None,
        sender: str | None = None,
        full: bool = False,
    ) -> list[dict[str, Any]] | LogResult:
        """``enclavenet_getLogs``: the logs in heights ``from_block..to_block`` matching ``address``
        / ``topics`` (eth_getLogs semantics) that ``sender`` (default: the first account) may read:
        those of its own transactions, those naming it in an indexed topic (an incoming Transfer),
        and events their contract declares public (docs/CLIENT.md "Logs"). The query is signed
        (the enclave checks who asks) and the answer sealed to this client. Raises EnclaveNetError
        with the enclave's reason when it refuses. ``full``: the whole LogResult (with the heights
        the node had no log index for, ``missing``, and those sealed under an erased epoch key)."""
        account = self.signer(sender)
        self.ensure_chain_id(make_request)
        domain = self.view_domain(make_request)

        def height(tag: int | str) -> int:
            if isinstance(tag, int):
                return tag
            if tag in ("latest", "pending", "safe", "finalized"):
                return _hex_int(self.rpc(make_request, "eth_blockNumber", []))
            if tag == "earliest":
                return 0
            return _hex_int(tag)

        lo, hi = max(1, height(from_block)), height(to_block)
        addrs = [address] if isinstance(address, str) else list(address or [])
        sealed, res = self._sealed_request(
            make_request, "enclavenet_getLogs",
            lambda epoch: build_log_query(bytes(account.key), account.address, domain, epoch, lo, hi, addrs, topics),
            [hex(lo), hex(hi)],
        )
        try:
            result = decode_log_result(open_receipt(sealed.receipt_key, _hex_bytes(res["encryptedResult"])))
        except EnvelopeError as exc:
            raise ReceiptUnreadable(f"enclavenet_getLogs: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ReceiptUnreadable(f"enclavenet_getLogs: the result decrypted but is malformed: {exc}") from None
        if not result.ok:
            raise EnclaveNetError(f"the enclave refused the log query: {result.error}")
        for lg in result.logs:  # this client names transactions by their receipt id (as its receipts do)
            lg["transactionHash"] = lg["receiptId"]
        return result if full else result.logs

    def balance(self, make_request: MakeRequest, address: str | None = None) -> int:
        """The native balance of ``address`` (default: the first account), by a signed creation view."""
        word = self.probe(make_request, balance_probe(address or self.address))
        if word is None:
            raise EnclaveNetError("the enclave did not answer the balance probe (creation views not supported)")
        return int.from_bytes(word, "big")


# Only what the client reads from the Rollup; the full ABI lives with the contracts.
ROLLUP_EPOCH_ABI: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "epochKey",
        "stateMutability": "view",
        "inputs": [{"name": "arg0", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bytes32"}],
    }
]
