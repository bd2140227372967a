"""Viewing sessions: the keys this gateway signs its users' view requests with.

A user authorises a session key once, by signing (EIP-712, any wallet: ``eth_signTypedData_v4``)
the statement ``ViewingSession(address account, address sessionKey, uint256 expiry)`` in the
view domain ``{name: "EnclaveNet", version: "2", chainId, verifyingContract: <Rollup>, salt: <L1
chain id>}`` (``enclave/views.py``). The gateway
makes the session key, keeps it in memory only, and signs that user's ``ViewCall`` requests
with it, attaching the statement; the enclave checks both (``enclave/views.py``). The session
key speaks only for views of that one account, on that chain, until ``expiry``: it can never
sign a transaction, so a gateway that leaks it leaks read access, not funds.

Three ways to authorise (docs/GATEWAY.md): ``enclavenet gateway --account KEY`` (the gateway
signs the statement with the user's key), the JSON-RPC pair ``enclavenet_requestSession`` /
``enclavenet_authorise`` (a script or the /authorise page asks the wallet to sign), or
:meth:`SessionStore.authorise_with_key` in-process (the devnet).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..client.formats import ViewingSession, session_digest, session_typed_data, sign_digest
from ..crypto.hashing import to_checksum
from ..crypto.secp256k1 import SignatureError, SigningKey, recover_address
from ..enclave.views import ViewDomain

DEFAULT_SESSION_TTL = 24 * 3600
MAX_SESSION_TTL = 30 * 24 * 3600
#: How long a requested (not yet signed) session key is kept.
PENDING_TTL = 600
MAX_PENDING = 1000


def address_of_secret(secret: bytes) -> str:
    return SigningKey(secret).address


def new_secret() -> bytes:
    return SigningKey.generate().secret


def _json(v: Any) -> Any:
    """Typed data with bytes (the domain's salt) as 0x-hex, as wallets take it over JSON-RPC."""
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json(x) for x in v]
    return v


class SessionError(ValueError):
    """A session could not be authorised; the message says why and what to do."""


@dataclass
class Session:
    """A session key this gateway holds for one account (the secret never leaves the process)."""

    secret: bytes = field(repr=False)
    statement: ViewingSession

    @property
    def account(self) -> str:
        return self.statement.account

    @property
    def expiry(self) -> int:
        return self.statement.expiry


class SessionStore:
    """Session keys by account; pending requests until the wallet has signed them."""

    def __init__(self, domain: ViewDomain | None, *, clock: Any = time.time) -> None:
        self.domain = domain  # set once the gateway knows the deployment (enclavenet_contracts)
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._pending: dict[tuple[str, str], tuple[bytes, int, float]] = {}
        self._order: list[str] = []  # accounts in the order they were authorised (first = default)
        self._lock = threading.Lock()

    def now(self) -> int:
        return int(self._clock())

    # ------------------------------------------------------------------ requests
    def request(self, account: str, ttl: int = DEFAULT_SESSION_TTL) -> dict[str, Any]:
        """Make a session key for ``account``; return the typed data its wallet must sign."""
        try:
            account = to_checksum(account)
        except Exception:
            raise SessionError("account must be a 20-byte 0x address") from None
        if not 60 <= ttl <= MAX_SESSION_TTL:
            raise SessionError(f"session ttl must be between 60 s and {MAX_SESSION_TTL} s, got {ttl}")
        secret = new_secret()
        key = address_of_secret(secret)
        expiry = self.now() + ttl
        with self._lock:
            self._drop_stale_pending()
            if len(self._pending) >= MAX_PENDING:
                raise SessionError("too many unsigned session requests; sign one or wait 10 minutes")
            self._pending[(account, key)] = (secret, expiry, time.monotonic())
        return {
            "account": account,
            "sessionKey": key,
            "expiry": expiry,
            "typedData": _json(session_typed_data(self._domain(), account, key, expiry)),
        }

    def authorise(self, account: str, session_key: str, signature: bytes) -> Session:
        """Store a requested session once ``signature`` (the wallet's) proves ``account`` signed it."""
        try:
            account, session_key = to_checksum(account), to_checksum(session_key)
        except Exception:
            raise SessionError("account and sessionKey must be 20-byte 0x addresses") from None
        with self._lock:
            pending = self._pending.get((account, session_key))
        if pending is None:
            raise SessionError(
                f"no pending session key {session_key} for {account}: call enclavenet_requestSession first "
                "(requests expire after 10 minutes)"
            )
        secret, expiry, _ = pending
        statement = ViewingSession(account, session_key, expiry, bytes(signature))
        self._check(statement)
        with self._lock:
            self._pending.pop((account, session_key), None)
        return self._store(Session(secret, statement))

    def authorise_with_key(self, user_secret: bytes, ttl: int = DEFAULT_SESSION_TTL) -> Session:
        """Make and sign a session with the user's own key (``--account KEY``, the devnet)."""
        account = address_of_secret(user_secret)
        secret = new_secret()
        key = address_of_secret(secret)
        expiry = self.now() + ttl
        sig = sign_digest(user_secret, session_digest(self._domain(), account, key, expiry))
        return self._store(Session(secret, ViewingSession(account, key, expiry, sig)))

    def _check(self, s: ViewingSession) -> None:
        if len(s.signature) != 65:
            raise SessionError(f"the session signature must be 65 bytes (r||s||v), got {len(s.signature)}")
        if s.expiry <= self.now():
            raise SessionError(f"the session expired at {s.expiry}; request a new one")
        try:
            signer = recover_address(session_digest(self._domain(), s.account, s.key, s.expiry), s.signature)
        except SignatureError as exc:
            raise SessionError(f"bad session signature ({exc})") from None
        if signer != s.account:
            raise SessionError(
                f"the session statement is signed by {signer}, not by {s.account}: sign the typed data "
                "enclavenet_requestSession returned with that account (eth_signTypedData_v4)"
            )

    def _domain(self) -> ViewDomain:
        if self.domain is None:
            raise SessionError("the gateway does not know the deployment yet (node not reached); retry shortly")
        return self.domain

    def _store(self, session: Session) -> Session:
        with self._lock:
            self._sessions[session.account] = session
            if session.account not in self._order:
                self._order.append(session.account)
        return session

    def _drop_stale_pending(self) -> None:
        cutoff = time.monotonic() - PENDING_TTL
        for k in [k for k, v in self._pending.items() if v[2] < cutoff]:
            del self._pending[k]

    # ------------------------------------------------------------------ lookups
    def get(self, account: str) -> Session | None:
        """The live session of ``account`` (None if none or expired)."""
        s = self._sessions.get(to_checksum(account))
        if s is None or s.expiry <= self.now() + 5:
            return None
        return s

    def accounts(self) -> list[str]:
        """Accounts with a live session, in the order they were authorised."""
        return [a for a in self._order if self.get(a) is not None]

    def revoke(self, account: str) -> bool:
        with self._lock:
            return self._sessions.pop(to_checksum(account), None) is not None

    def describe(self) -> list[dict[str, Any]]:
        return [
            {"account": s.account, "sessionKey": s.statement.key, "expiry": s.expiry}
            for a in self.accounts()
            if (s := self._sessions[a])
        ]
