"""The enclave program: the ecall handlers a committee member runs inside its TEE.

``EnclaveProgram(platform, config).ecall(method, payload) -> bytes`` is the only way in (the
tee runner hosts it; docs/ENCLAVE.md is the API). Payloads and responses are CBOR maps. Every
refusal is an ``EnclaveRefusal`` whose message says what was wrong and carries no secret.

State the program keeps:

* identity (signing + encryption keys) and the committee's epoch keys (``keys.py``);
* the committee it trusts (attested members, QC rule) and the never-sign-twice guard;
* the confidential EVM (``executor.py``) and the head of its tentative chain (``ChainHead``),
  with the pre-batch state of every unfinalised height (for ``rollback``) and the finalised
  pointer (moved only by a QC'd header: ``accept_header`` / ``apply_batch``).
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto.bridge import (
    META_COUNT_KEY,
    BridgeFormatError,
    Erc20Deposit,
    L1Call,
    L2ToL1Message,
    is_command,
    parse_command,
)
from ..crypto.envelope import (
    Envelope,
    EnvelopeError,
    EnvelopeOpener,
    OpenedEnvelope,
    open_envelope,
    seal_receipt,
    seal_result,
)
from ..crypto.escape import (
    DEFAULT_TREASURY,
    EscapeError,
    EscapeLeaf,
    escape_request_digest,
    public_key_address,
    recover_public_key,
    seal_escape_leaf,
)
from ..crypto.hashing import ZERO32, address_bytes, keccak256, to_checksum
from ..crypto.header import Header
from ..crypto.merkle import merkle_verify_at
from ..crypto.messages import KIND_CHALLENGE, KIND_USER, accumulate
from ..crypto.peer import peer_request_digest
from ..crypto.quote import TEE_NAMES, TEE_TYPES, enc_key_hash
from ..crypto.smt import smt_key, smt_leaf
from ..crypto.timeout import timeout_digest
from ..tee.counter import CounterConflict, CounterError
from ..tee.platform import EnclavePlatform
from ..tee.sealing import SealingError
from .batch import (
    ERROR_ENTRY_PREFIX,
    BatchInput,
    ChainHead,
    batch_data_items,
    batch_data_roots,
    commit_batch_data,
    error_entry,
)
from .bridge import BRIDGE_ENTRY, command_call
from .codec import U64_MAX, Request, as_address, as_bytes, decode_map, encode
from .committee import (
    Committee,
    CommitteeContext,
    SignGuard,
    check_quote,
    check_timeout_certificate,
)
from .contract_keys import derive_contract_key
from .diff import BatchDiff
from .errors import EnclaveRefusal
from .executor import BlockInfo, Executor, Receipt
from .fees import MAX_BASE_FEE, FeeRule
from .guard import MAX_ROUND
from .keys import EnclaveIdentity, EpochKeyError, EpochKeyManager
from .logs import (
    LOG_QUERY_ADDRESS,
    LOGS_COMMIT_SUBKEY,
    LOGS_SUBKEY,
    MAX_QUERY_RESULTS,
    PUBLIC_EVENTS_GAS,
    PUBLIC_EVENTS_SELECTOR,
    blob_prefix,
    decode_log_index,
    decode_public_events,
    index_batch_logs,
    log_index_plaintext,
    logs_commitment,
    may_read,
    open_log_blob_plain,
    parse_log_filter,
    seal_log_blob,
)
from .tx import InboxCall, SignedTx, TxError, decode_item
from .views import ViewDomain, ViewReplayGuard, ViewRequest, parse_view_request

MAX_ESCAPE_PUBKEYS = 1 << 20  # public keys escape_export seals to (a local cache, oldest dropped)
MAX_QC_SEEN = 4096  # header hashes whose QC a log query checked, kept in memory
MAX_UNFINALISED = 32  # heights executed beyond the finalised one (each keeps its pre-batch state)
SNAPSHOT_MAGIC = b"ENSS\x01"  # shared snapshot: sealed under the epoch state key
SNAPSHOT_SUBKEY = "snapshot-v1"
SALT_SUBKEY = "escape-leaf-salt"
CONTRACT_KEY_SUBKEY = "contract-key-v1"
PLATFORM_SUBKEY = "platform-v1"  # platform calls' secret (random bytes, per-tx PREVRANDAO)
DIFF_MAGIC = b"ENSD\x01"  # a batch's state diff: sealed under the epoch state key (apply_batch)
DIFF_SUBKEY = "batch-diff-v1"
LOCAL_LABEL = b"EnclaveNet.program.local.v1"
GUARD_COUNTER_DOMAIN = b"EnclaveNet.guard-counter.v1"
_ZERO_ADDR = b"\x00" * 20


@dataclass(frozen=True)
class ProgramConfig:
    """The enclave's config (part of its measurement: every member runs the same one)."""

    chain_id: int
    l1_chain_id: int
    rollup: str
    platform_roots: dict[int, str]
    measurements: frozenset[bytes] = frozenset()
    epoch_grace: int = 1
    tx_gas_limit: int = 30_000_000
    treasury: str = DEFAULT_TREASURY  # credited with the bonds of frivolous challenges
    # QC floors (measured: the host cannot go below them; the committee's rule may be stricter)
    min_quorum: int = 1
    min_types: int = 1
    # the ``stats`` ecall (per-stage timings: a side channel on what a batch ran) answers only
    # in a benchmark build; the flag is in the measured config, so an attested member shows it
    stats: bool = False
    # the most gas a view call or a gas estimate may burn (issue 14 M4: unmetered 30M-gas views
    # held the enclave's one ecall thread); a request asking more is capped, as geth's RPC gas cap
    view_gas_limit: int = 10_000_000
    # the L1 Bridge (contracts/Bridge.vy): only inbox messages it submitted are bridge commands
    # (crypto/bridge.py); None = no bridge
    bridge: bytes | None = None
    # fees (fees.py, docs/FEES.md): the base fee's floor in wei per gas (0 = fees off) and the
    # gas per batch that keeps it steady
    min_base_fee: int = 0
    fee_target_gas: int = 40_000_000

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any]) -> ProgramConfig:
        r = Request(dict(m), "config")
        roots: dict[int, str] = {}
        raw_roots = r.raw("platform_roots") if r.has("platform_roots") else {}
        if not isinstance(raw_roots, dict):
            raise EnclaveRefusal("config: platform_roots must be a map {tee type: root address}")
        for k, v in raw_roots.items():
            tee = TEE_TYPES.get(k) if isinstance(k, str) and not k.isdigit() else int(k)
            if tee is None:
                raise EnclaveRefusal(f"config: unknown TEE type {k!r} in platform_roots")
            roots[tee] = as_address(v, f"platform_roots[{k}]", "config")
        meas = r.items("measurements", 1024, default=[])
        if r.has("stats") and not isinstance(r.raw("stats"), bool):
            raise EnclaveRefusal("config: stats must be true or false")
        return cls(
            chain_id=r.integer("chain_id", lo=1, hi=U64_MAX),
            l1_chain_id=r.integer("l1_chain_id", lo=1, hi=U64_MAX),
            rollup=r.address("rollup"),
            platform_roots=roots,
            measurements=frozenset(as_bytes(x, "measurements", "config", 32) for x in meas),
            epoch_grace=r.integer("epoch_grace", hi=16, default=1),
            tx_gas_limit=r.integer("tx_gas_limit", lo=21_000, hi=30_000_000, default=30_000_000),
            treasury=r.address("treasury") if r.has("treasury") else DEFAULT_TREASURY,
            min_quorum=r.integer("min_quorum", lo=1, hi=256),
            min_types=r.integer("min_types", lo=1, hi=255),
            stats=r.has("stats") and r.raw("stats") is True,
            view_gas_limit=r.integer("view_gas_limit", lo=21_000, hi=30_000_000, default=10_000_000),
            bridge=address_bytes(r.address("bridge")) if r.has("bridge") else None,
            min_base_fee=r.integer("min_base_fee", hi=MAX_BASE_FEE, default=0),
            fee_target_gas=r.integer("fee_target_gas", lo=21_000, hi=10**12, default=40_000_000),
        )

    @property
    def committee_context(self) -> CommitteeContext:
        return CommitteeContext(self.chain_id, self.l1_chain_id, self.rollup, self.min_quorum, self.min_types)


@dataclass
class _Undo:
    """What height h needs to be undone: the head and state before it, and h's header hash."""

    head: ChainHead
    state: bytes
    state_root: bytes
    header_hash: bytes


@dataclass
class _Executed:
    header: Header
    withdrawals: list[list[Any]]
    receipts: dict[bytes, bytes]
    batch_data: bytes
    undo: _Undo
    # the batch's log index plaintext (logs.py), committed by the meta's logs_hash; None: no index
    logs_plain: bytes | None = None
    fees: dict[str, Any] | None = None  # fees.py: base fees and the unfunded senders (fees on)


@dataclass
class Stats:
    """Cumulative in-enclave stage costs (seconds) and counts, for benchmarks (``stats`` ecall)."""

    t: dict[str, float] = field(default_factory=dict)
    n: dict[str, int] = field(default_factory=dict)

    def add(self, stage: str, dt: float, count: int = 1) -> None:
        self.t[stage] = self.t.get(stage, 0.0) + dt
        self.n[stage] = self.n.get(stage, 0) + count


class EnclaveProgram:
    """The trusted program. Build with ``EnclaveProgram(platform, config)``; call ``ecall``."""

    def __init__(self, platform: EnclavePlatform, config: Mapping[str, Any]) -> None:
        self._platform = platform
        self.cfg = ProgramConfig.from_mapping(config)
        self._identity = EnclaveIdentity.generate()
        self._epochs = self._new_epoch_manager(self._identity)
        # openers of the epochs in use, kept across batches so session envelopes' shared secrets
        # stay cached for the epoch (crypto/envelope.py FLAG_SESSION); dropped with the epoch key
        self._openers: dict[int, EnvelopeOpener] = {}
        self._committee = Committee()
        self._guard = SignGuard()
        # the platform monotonic counter behind the guard (docs/ENCLAVE.md "Rollback protection"):
        # its id follows the identity; _count is the count this enclave last saw it at
        self._counter_id = _guard_counter_id(self._identity.address)
        self._count = 0
        self._ex = self._new_executor()
        self._head = ChainHead()
        self._finalized: tuple[int, bytes] = (0, ZERO32)
        self._undo: dict[int, _Undo] = {}
        # header hashes whose QC a log query checked (memory only, oldest dropped): a query over
        # the same heights again does not recover every signature again
        self._qc_seen: dict[bytes, None] = {}
        self._state_cache: tuple[int, bytes, bytes] | None = None  # (height, state bytes, root)
        self._batch_epoch = 0
        self._anchored_epoch = -1  # the epoch of the newest header accepted with a QC (-1: none)
        self._tacc = [0.0, 0.0, 0.0, 0.0]
        # escape data for the DAPs (escape_export): not consensus state, never in a snapshot
        self._esc_pubkeys: dict[bytes, bytes] = {}  # address -> uncompressed public key
        self._esc_last: tuple[int, dict[bytes, tuple[int, bytes]]] | None = None  # height, addr -> (value, salt)
        self._view_domain = ViewDomain(self.cfg.chain_id, self.cfg.l1_chain_id, self.cfg.rollup)
        self._views = ViewReplayGuard()
        self.stats = Stats()
        self._handlers: dict[str, Callable[[bytes], dict[str, Any]]] = {
            "identity": self._identity_call,
            "committee": self._committee_call,
            "committee_sign": self._committee_sign,
            "epoch_genesis": self._epoch_genesis,
            "epoch_rotate": self._epoch_rotate,
            "epoch_export": self._epoch_export,
            "epoch_import": self._epoch_import,
            "epoch_erase": self._epoch_erase,
            "epochs": self._epochs_call,
            "execute_batch": self._execute_batch,
            "verify_batch": self._verify_batch,
            "accept_header": self._accept_header,
            "rollback": self._rollback,
            "timeout": self._timeout,
            "apply_batch": self._apply_batch,
            "view_call": self._view_call,
            "estimate_gas": self._estimate_gas,
            "logs": self._logs_call,
            "snapshot": self._snapshot,
            "restore": self._restore,
            "status": self._status,
            "stats": self._stats,
            "escape_leaf": self._escape_leaf,
            "escape_export": self._escape_export,
            "peer_auth": self._peer_auth,
        }

    def __repr__(self) -> str:
        return f"EnclaveProgram(address={self._identity.address}, height={self._head.height})"

    # ------------------------------------------------------------------ plumbing
    def _new_epoch_manager(self, identity: EnclaveIdentity) -> EpochKeyManager:
        # Erasure by epochs only: erasing by wall-clock time would make members disagree.
        return EpochKeyManager(identity, grace_epochs=self.cfg.epoch_grace, grace_seconds=None)

    def _new_executor(self) -> Executor:
        # max_undo=0: the program rolls back from the pre-batch state it keeps per unfinalised
        # height (``_Undo``), never with ``Executor.undo_batch``, so the executor keeps no undo
        # records (up to 64 batches' worth of old records: memory and CPU for nothing).
        return Executor(
            self.cfg.chain_id,
            self._salt_secret,
            tx_gas_limit=self.cfg.tx_gas_limit,
            max_undo=0,
            contract_key_fn=self._draw_contract_key,
            platform_secret_fn=self._platform_secret,
            fees=FeeRule(self.cfg.min_base_fee, self.cfg.fee_target_gas, address_bytes(self.cfg.treasury)),
        )

    def _draw_contract_key(self, address: bytes, rotation: int) -> bytes:
        """A contract's next state key (contract_keys.py): HKDF of the batch epoch's state subkey,
        salted with the batch's header context (previous header hash, height)."""
        hd = self._head  # the head the batch extends (moved only after end_batch)
        context = hd.hash + (hd.height + 1).to_bytes(8, "big")
        return derive_contract_key(self._epochs.state_subkey(self._batch_epoch, CONTRACT_KEY_SUBKEY), context, address, rotation)

    def _platform_secret(self) -> bytes:
        """The platform secret of the batch extending the head (executor.py, platform.py):
        keccak of the batch epoch's platform subkey and the header context (previous header
        hash, height). Every member derives the same; no contract ever sees it."""
        hd = self._head
        try:
            subkey = self._epochs.state_subkey(self._batch_epoch, PLATFORM_SUBKEY)
        except EpochKeyError:  # a view after the head's epoch was erased here: refuse it
            raise EnclaveRefusal(f"the platform secret of epoch {self._batch_epoch} is erased here") from None
        return keccak256(b"EnclaveNet.Platform.BatchSecret.v1" + subkey + hd.hash + (hd.height + 1).to_bytes(8, "big"))

    def _salt_secret(self) -> bytes:
        return self._epochs.state_subkey(self._batch_epoch, SALT_SUBKEY)

    def ecall(self, method: str, payload: bytes) -> bytes:
        handler = self._handlers.get(method)
        if handler is None:
            raise EnclaveRefusal(f"unknown ecall {method[:64]!r}; known: {', '.join(sorted(self._handlers))}")
        try:
            try:
                out = handler(payload)
            finally:  # a refusal is an output too (one bit of an executed input): counter first
                self._advance_counter()
            return encode(out)
        except EnclaveRefusal:
            raise
        except (EnvelopeError, EpochKeyError, SealingError) as exc:  # messages written never to hold secrets
            raise EnclaveRefusal(f"{method}: {exc}") from None
        finally:
            self._drop_erased_openers()

    def _drop_erased_openers(self) -> None:
        """An epoch key erased by any ecall (rotation's grace window, ``epoch_erase``, a restore)
        takes its opener and the session secrets cached there with it, before the ecall returns."""
        held = self._epochs
        for e in [e for e, op in self._openers.items() if not held.has_epoch(e) or op.private_key is not held.tx_private_key(e)]:
            del self._openers[e]

    def _advance_counter(self) -> None:
        """Make what the guard recorded in this ecall durable before anything of it leaves: advance
        the platform monotonic counter, its high-water mark raised to the highest height recorded.
        A sealed blob binds ``_count``; one below the counter is stale (``_restore``)."""
        high = self._guard.dirty
        if high is None:
            return
        try:
            value = self._platform.counter_advance(self._counter_id, self._count, high)
        except CounterConflict:
            # another process of this identity (started from the same blob) advanced it: it may have
            # signed anything up to the counter's high-water mark; so may this one's pending record
            try:
                cur = self._platform.counter_read(self._counter_id)
            except CounterError as exc:
                raise EnclaveRefusal(f"platform monotonic counter: {exc}; not signing") from None
            self._guard.forget_up_to(max(cur.high, high))
            self._guard.dirty = None
            self._count = cur.count
            raise EnclaveRefusal(
                "platform monotonic counter moved on without this enclave (another process of it runs on the "
                f"same sealed state): not signing at heights <= {self._guard.amnesia}"
            ) from None
        except CounterError as exc:
            raise EnclaveRefusal(f"platform monotonic counter: {exc}; not signing (retry later)") from None
        self._count = value.count
        self._guard.dirty = None

    def compromised_export(self) -> dict[str, Any]:
        """FAULT HOOK ONLY (tee ``__fault__.compromise``): every key this enclave holds."""
        epochs = self._epochs.compromised_export()
        return {
            "signing_key": self._identity.signing_key.secret,
            "signing_key_hex": self._identity.signing_key.secret.hex(),
            "enc_key_hex": self._identity.enc_key.private_bytes_raw().hex(),
            "address": self._identity.address,
            "epochs": {e: {k: v.hex() for k, v in keys.items()} for e, keys in epochs.items()},
            "session_secrets": {e: op.cached_sessions() for e, op in self._openers.items()},
        }

    # ------------------------------------------------------------------ identity and committee
    def _identity_call(self, payload: bytes) -> dict[str, Any]:
        decode_map(payload, "identity")
        ident = self._identity
        quote = self._platform.attest(ident.address, ident.enc_key_hash)
        return {
            "address": ident.address,
            "enc_pub": ident.enc_pub,
            "tee_type": self._platform.tee_type,
            "tee_name": self._platform.tee_name,
            "measurement": self._platform.measurement,
            "quote": quote.encode(),
            "expiry": quote.expiry,
        }

    def _allowed_measurements(self) -> frozenset[bytes]:
        return self.cfg.measurements | {self._platform.measurement}

    def _verify_member_quote(self, quote: bytes, what: str) -> Any:
        return check_quote(
            quote, self.cfg.platform_roots, self._allowed_measurements(), self._platform.now(), what
        )

    def _committee_claims(self, r: Request, what: str) -> list[Any]:
        quotes = r.items("members", 256)
        return [
            self._verify_member_quote(as_bytes(q, f"members[{i}]", what, max_len=64 * 1024), f"{what}: member {i}")
            for i, q in enumerate(quotes)
        ]

    def _committee_call(self, payload: bytes) -> dict[str, Any]:
        """Set the committee: the first one from the host; later ones only stricter, or certified
        by a QC of the current committee (``Committee.update``)."""
        r = Request.parse(payload, "committee")
        claims = self._committee_claims(r, "committee")
        quorum, min_types = r.integer("quorum", lo=1, hi=256), r.integer("min_types", lo=1, hi=255)
        sigs = r.items("signatures", 256) if r.has("signatures") else None
        version = r.integer("version", hi=U64_MAX) if r.has("version") else None
        how = self._committee.update(claims, quorum, min_types, self.cfg.committee_context, version, sigs)
        return {
            "members": list(self._committee.members),
            "quorum": self._committee.quorum,
            "min_types": self._committee.min_types,
            "version": self._committee.version,
            "how": how,
        }

    def _committee_sign(self, payload: bytes) -> dict[str, Any]:
        """This member's signature certifying ``{members, quorum, min_types}`` as the next
        committee, at ``version`` (optional: at least current + 1; members that joined at other
        times can be at different versions of the same committee, and a certificate needs one
        version signed by a QC). The host asks only for the committee L1's Registry names; a QC of
        such signatures lets every member adopt it (``committee``)."""
        r = Request.parse(payload, "committee_sign")
        claims = self._committee_claims(r, "committee_sign")
        quorum, min_types = r.integer("quorum", lo=1, hi=256), r.integer("min_types", lo=1, hi=255)
        at = r.integer("version", lo=1, hi=2**63, default=0)
        version, digest = self._committee.proposal(claims, quorum, min_types, self.cfg.committee_context, at)
        return {
            "version": version,
            "digest": digest,
            "signature": self._identity.sign(digest),
            "signer": self._identity.address,
        }

    # ------------------------------------------------------------------ epochs
    def _epoch_genesis(self, payload: bytes) -> dict[str, Any]:
        decode_map(payload, "epoch_genesis")
        if self._epochs.current_epoch is not None:
            raise EnclaveRefusal("epoch_genesis: this enclave already holds epoch keys (use epoch_rotate)")
        pub = self._epochs.new_epoch(0)
        return {"epoch": 0, "epoch_pub": pub}

    def _epoch_rotate(self, payload: bytes) -> dict[str, Any]:
        decode_map(payload, "epoch_rotate")
        cur = self._epochs.current_epoch
        if cur is None:
            raise EnclaveRefusal("epoch_rotate: no epoch yet (epoch_genesis or epoch_import first)")
        pub = self._epochs.new_epoch(cur + 1)
        return {"epoch": cur + 1, "epoch_pub": pub}

    def _epoch_export(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "epoch_export")
        epoch = r.integer("epoch", hi=U64_MAX)
        claims = self._verify_member_quote(r.blob("member", max_len=64 * 1024), "epoch_export")
        self._committee.require_member(claims.enclave, "epoch_export")
        member_enc_pub = r.blob("member_enc_pub", 32)
        if enc_key_hash(member_enc_pub) != claims.enc_key_hash:
            raise EnclaveRefusal("epoch_export: member_enc_pub is not the encryption key the member's quote attests")
        bundle = self._epochs.export_epoch(epoch, claims.enclave, member_enc_pub)
        return {"epoch": epoch, "member": claims.enclave, "bundle": bundle}

    def _epoch_import(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "epoch_import")
        if not self._committee.members:
            raise EnclaveRefusal("epoch_import: no committee yet (call 'committee' first)")
        replace = bool(r.raw("replace")) if r.has("replace") else False
        bundle = r.blob("bundle", max_len=8192)
        if replace:
            # Two members may rotate at once (a proposer and a fallback); the committee settles on
            # the keys of the proposal it votes for. Keys of an epoch that an accepted header used,
            # or that a batch this enclave executed above its finalised head used, never change.
            epoch = self._bundle_epoch(bundle)
            if epoch <= self._anchored_epoch:
                raise EnclaveRefusal(
                    f"epoch_import: epoch {epoch} is anchored by an accepted header; its keys cannot be replaced"
                )
            if self._head.height > self._finalized[0] and self._batch_epoch >= epoch:
                raise EnclaveRefusal(
                    f"epoch_import: a tentative batch of this enclave uses epoch {epoch}; its keys cannot be replaced"
                )
        epoch = self._bundle_epoch(bundle)
        known = max(self._anchored_epoch, -1 if self._epochs.current_epoch is None else self._epochs.current_epoch)
        if known >= 0 and epoch > known + 1 and r.has("header"):
            # a member that fell behind several rotations: an accepted (QC'd) header of a later
            # epoch shows how far the committee went
            anchor = self._proposed_header(r)
            self._committee.check_qc(anchor.hash(), r.items("signatures", 256), self.cfg.l1_chain_id, self.cfg.rollup)
            known = max(known, anchor.epoch)
        if known >= 0 and epoch > known + 1:
            raise EnclaveRefusal(
                f"epoch_import: epoch {epoch} is more than one above this enclave's current epoch {known}; "
                "import the epochs in order, or give the accepted header (and QC) of a later epoch"
            )
        epoch = self._epochs.import_epoch(bundle, list(self._committee.members), replace=replace)
        return {"epoch": epoch, "epoch_pub": self._epochs.tx_public_key(epoch)}

    @staticmethod
    def _bundle_epoch(bundle: bytes) -> int:
        try:
            epoch = cbor2.loads(cbor2.loads(bundle)["body"])["epoch"]
        except Exception:
            raise EnclaveRefusal("epoch_import: the bundle is not a valid CBOR bundle") from None
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise EnclaveRefusal("epoch_import: the bundle's epoch is not a non-negative integer")
        return epoch

    def _epoch_erase(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "epoch_erase")
        cur = self._epochs.current_epoch
        default = 0 if cur is None else max(0, cur - self.cfg.epoch_grace)
        keep_from = r.integer("keep_from", hi=U64_MAX, default=default) if r.has("keep_from") else default
        if cur is not None and keep_from > cur:
            raise EnclaveRefusal(f"epoch_erase: keep_from {keep_from} would erase the current epoch {cur}")
        erased = self._epochs.erase_before(keep_from)
        return {"erased": erased, "held": self._epochs.epochs()}

    def _epochs_call(self, payload: bytes) -> dict[str, Any]:
        decode_map(payload, "epochs")
        return {
            "current": self._epochs.current_epoch,
            "held": {e: self._epochs.tx_public_key(e) for e in self._epochs.epochs()},
            "anchored": self._anchored_epoch,
        }

    # ------------------------------------------------------------------ batches
    def _window_keys(self, epoch: int) -> dict[int, EnvelopeOpener]:
        """Openers (keys) of the epochs whose envelopes a batch at ``epoch`` accepts; refuse if one is missing."""
        if not self._epochs.has_epoch(epoch):
            raise EnclaveRefusal(f"batch epoch {epoch}: this enclave does not hold that epoch's keys")
        keys: dict[int, EnvelopeOpener] = {}
        for e in range(max(0, epoch - self.cfg.epoch_grace), epoch + 1):
            if not self._epochs.has_epoch(e):
                raise EnclaveRefusal(
                    f"batch epoch {epoch}: this enclave lacks the keys of epoch {e}, whose envelopes the "
                    f"batch must accept (grace {self.cfg.epoch_grace}); import them or use a later epoch"
                )
            priv = self._epochs.tx_private_key(e)
            op = self._openers.get(e)
            if op is None or op.private_key is not priv:  # first use, or the epoch's key was replaced
                op = self._openers[e] = EnvelopeOpener(priv, self.cfg.chain_id, e)
            keys[e] = op
        return keys

    def _pre_batch_state(self, record: bool = True) -> tuple[bytes, bytes]:
        """The head's serialised state (kept for rollback, and sealed by ``snapshot``)."""
        c = self._state_cache
        if c is not None and c[0] == self._head.height and c[2] == self._ex.state_root:
            return c[1], c[2]
        t0 = time.perf_counter()
        data = self._ex.snapshot()
        if record:  # else counted by the caller (seal_serialize)
            self.stats.add("undo_snapshot", time.perf_counter() - t0)
        self._state_cache = (self._head.height, data, self._ex.state_root)
        return data, self._ex.state_root

    def _open_items(
        self,
        raws: list[bytes],
        keys: dict[int, EnvelopeOpener],
        batch_epoch: int,
    ) -> list[tuple[Envelope, OpenedEnvelope] | bytes]:
        """Pass 1 over a batch's items: open each envelope; an error entry for one that does not open."""
        out: list[tuple[Envelope, OpenedEnvelope] | bytes] = []
        add = out.append
        decode = Envelope.decode
        for raw in raws:
            try:
                env = decode(raw)
            except EnvelopeError:
                add(error_entry("malformed"))
                continue
            key = keys.get(env.epoch)
            if key is None:
                add(error_entry("epoch"))
                continue
            try:
                add((env, key.open(env)))
            except EnvelopeError:
                add(error_entry("decrypt"))
        return out

    def _decode_items(
        self, opened: list[tuple[Envelope, OpenedEnvelope] | bytes], senders: list[str | None]
    ) -> list[SignedTx | InboxCall | TxError | None]:
        """Pass 2: decode each opened item and recover its signer (None where pass 1 failed)."""
        chain_id = self.cfg.chain_id
        out: list[SignedTx | InboxCall | TxError | None] = []
        add = out.append
        for o, l1_sender in zip(opened, senders, strict=True):
            if isinstance(o, bytes):
                add(None)
                continue
            try:
                add(decode_item(o[1].plaintext, chain_id, l1_sender))
            except TxError as exc:
                add(exc)
        return out

    def _execute_item(
        self, o: tuple[Envelope, OpenedEnvelope] | bytes, item: SignedTx | InboxCall | TxError | None
    ) -> Receipt | bytes:
        """Pass 3 (in execution order): check the routing hint and execute; a refusal is a receipt.
        An item that did not open stays its error entry."""
        if isinstance(o, bytes) or item is None:
            assert isinstance(o, bytes)
            return o
        try:
            if isinstance(item, TxError):
                raise item
            hint = o[0].hint
            if isinstance(item, InboxCall):
                # H1: the L1 sender is whoever called Rollup.submit, and the envelope is public in
                # the L1 event: anyone can copy it and submit it as their own. The sender the user
                # meant is bound in the AEAD's associated data (the routing hint), so a copy runs
                # as nobody. Public data only in this entry (both addresses are on L1).
                if hint is None:
                    raise TxError(
                        "an inbox call must be sealed with a routing hint naming its L1 sender (the "
                        "account calling Rollup.submit) and nonce 0; re-seal it with that hint"
                    )
                if hint.sender != item.sender:
                    return error_entry("inbox_sender")
                if hint.nonce != 0:
                    raise TxError(f"an inbox call's routing hint has nonce 0 (inbox calls have no nonce), got {hint.nonce}")
            elif hint is not None:
                if hint.sender != item.sender:
                    raise TxError("the envelope's routing hint names another sender than the transaction's signer")
                if isinstance(item, SignedTx) and hint.nonce != item.nonce:
                    raise TxError(f"the envelope's routing hint says nonce {hint.nonce}, the transaction has {item.nonce}")
            return self._ex.execute(item)
        except TxError as exc:
            sender = item.sender if not isinstance(item, TxError) else _ZERO_ADDR
            return Receipt(0, 0, b"", (), f"refused: {exc}", None, keccak256(o[1].plaintext), sender)

    def _run_batch(self, inp: BatchInput, round_: int | None) -> _Executed:
        """Execute ``inp`` on the head; on return the executor and head are advanced.

        ``round_`` None: a QC'd batch (apply_batch), not subject to the input record. Otherwise
        the input is recorded at (height, parent, round) before it runs, and a different input
        already recorded there is refused (guard.py: no re-execution oracle)."""
        inp.check_continues(self._head)
        if inp.height - self._finalized[0] > MAX_UNFINALISED:
            raise EnclaveRefusal(
                f"batch height {inp.height}: more than {MAX_UNFINALISED} heights beyond the finalised "
                f"height {self._finalized[0]}; report accepted headers first (accept_header)"
            )
        keys = self._window_keys(inp.epoch)
        if round_ is not None:
            self._guard.record_input(inp.height, inp.prev_hash, round_, _input_digest(inp))
        pre_state, pre_root = self._pre_batch_state()
        head = self._head
        t_start = time.perf_counter()
        self._batch_epoch = inp.epoch
        ex = self._ex
        # Items (L1 payloads, then envelopes) go through in passes: open all, decode all, then
        # execute in order, then seal all receipts. Opening and decoding depend only on the bytes,
        # so the result is that of one item at a time; each pass keeps its own crypto hot in cache.
        raws = [m.payload for m in inp.messages if m.payload] + inp.envelopes
        senders: list[str | None] = [
            (m.sender if m.kind == KIND_USER else None) for m in inp.messages if m.payload
        ] + [None] * len(inp.envelopes)
        bridge = self.cfg.bridge
        cmds: dict[int, Erc20Deposit | L1Call | None] = {}  # raws index -> bridge command (None: bad)
        if bridge is not None:
            j = 0
            for m in inp.messages:
                if m.payload:
                    if m.kind == KIND_USER and is_command(m.payload) and address_bytes(m.sender) == bridge:
                        try:
                            cmds[j] = parse_command(m.payload)
                        except BridgeFormatError:
                            cmds[j] = None
                    j += 1
        opened = self._open_items(raws, keys, inp.epoch)
        for j in cmds:  # a command is not an envelope: its entry is constant (bridge.py)
            opened[j] = BRIDGE_ENTRY if cmds[j] is not None else error_entry("bridge")
        t_opened = time.perf_counter()
        decoded = self._decode_items(opened, senders)
        t_decoded = time.perf_counter()
        results: list[Receipt | bytes] = []
        run = self._execute_item
        ex.begin_batch(BlockInfo(number=inp.height, timestamp=inp.timestamp), inp.fee_recipient)
        try:
            i = 0
            for m in inp.messages:
                if m.kind == KIND_USER and m.value:
                    ex.credit(m.sender, m.value)
                included = ex.batch_tx_count if m.kind == KIND_CHALLENGE else 0
                if m.payload:
                    cmd = cmds.get(i)
                    if cmd is not None:
                        assert bridge is not None
                        results.append(self._bridge_command(cmd, bridge, raws[i]))
                    else:
                        results.append(run(opened[i], decoded[i]))
                    i += 1
                if m.kind == KIND_CHALLENGE and m.value:
                    # the bond: back to the challenger when the challenged transaction was
                    # included (executed, even if it reverted); to the treasury when it was
                    # garbage or refused (already executed, nonce gap, not a signed tx...)
                    ex.credit(m.sender if ex.batch_tx_count > included else self.cfg.treasury, m.value)
            for o, it in zip(opened[i:], decoded[i:], strict=True):
                results.append(run(o, it))
            t_executed = time.perf_counter()
            entries: list[bytes] = []
            for o, r in zip(opened, results, strict=True):
                if isinstance(r, bytes):
                    entries.append(r)
                elif isinstance(o, bytes):  # a bridge command: its receipt feeds the log index only
                    entries.append(o)
                else:
                    entries.append(seal_receipt(o[1].receipt_key, r.encode()))
            t0 = time.perf_counter()
            commit = ex.end_batch()
        except BaseException:
            if ex.in_batch:
                ex.abort_batch()
            raise
        self._tacc = [t_opened - t_start, t_decoded - t_opened, t_executed - t_decoded, t0 - t_executed]
        # the log index, built here (post-batch state) by proposer and voters alike: the meta's
        # logs_hash commits it, so the header's data_commitment and the QC cover it
        t_logs = time.perf_counter()
        rids = [keccak256(raw) for raw in raws]  # receipt ids, once: the log index and the entries
        with_logs = [
            (k, rids[k], r.tx_hash, r.sender, r.logs)
            for k, r in enumerate(results)
            if not isinstance(r, bytes) and r.logs
        ]
        logs_plain: bytes | None
        try:
            logs_plain = log_index_plaintext(index_batch_logs(with_logs, self._public_events))
            logs_hash = logs_commitment(self._epochs.state_subkey(inp.epoch, LOGS_COMMIT_SUBKEY), logs_plain)
        except Exception:  # no index for this height (queries say "missing"); the same on every voter
            logs_plain, logs_hash = None, ZERO32
        self.stats.add("logs_index", time.perf_counter() - t_logs)
        receipts: dict[bytes, bytes] = {}
        ids: list[bytes] = []
        n_msg = len(raws) - len(inp.envelopes)
        for k, (rid, entry) in enumerate(zip(rids, entries, strict=True)):
            if k >= n_msg:
                ids.append(rid)
            # first inclusion wins, except over an error entry (a copied inbox call refused before
            # the original ran, say): the sealed receipt is the one its sender waits for
            prior = receipts.setdefault(rid, entry)
            if prior is not entry and prior.startswith(ERROR_ENTRY_PREFIX) and not entry.startswith(ERROR_ENTRY_PREFIX):
                receipts[rid] = entry
        msg_count = head.msg_count + len(inp.messages)
        msg_acc = accumulate(head.msg_acc, inp.messages)
        out_items = [
            L2ToL1Message(inp.height, k, sender, target, data).encode()
            for k, (sender, target, data) in enumerate(commit.messages)
        ]
        # public (fees.py): what the next batch pays per gas, and the senders refused because they
        # could not pay (their routing hints name them anyway), so hosts stop admitting them
        fees = {"base_fee": commit.base_fee, "next_base_fee": commit.next_base_fee,
                "unfunded": sorted(set(commit.unfunded))} if self.cfg.min_base_fee else None
        c = commit_batch_data(inp, head.msg_count, msg_count, msg_acc, ids, entries, logs_hash, out_items, fees)
        header = Header(
            height=inp.height,
            prev_hash=inp.prev_hash,
            epoch=inp.epoch,
            epoch_key=self._epochs.tx_public_key(inp.epoch),
            l1_block=inp.l1_block,
            msg_count=msg_count,
            msg_acc=msg_acc,
            tx_root=c.tx_root,
            receipts_root=c.receipts_root,
            state_root=commit.state_root,
            balances_root=commit.balances_root,
            withdrawals_hash=commit.withdrawals_hash,
            data_commitment=c.data_commitment,
        )
        t1 = time.perf_counter()
        for stage, dt in zip(("decrypt", "recover", "execute", "receipt"), self._tacc, strict=True):
            self.stats.add(stage, dt)
        self.stats.add("roots", t1 - t0)
        self.stats.add("batch_total", t1 - t_start)
        self.stats.add("txs", 0.0, len(entries))
        undo = _Undo(head, pre_state, pre_root, header.hash())
        self._undo[inp.height] = undo
        self._head = ChainHead(inp.height, undo.header_hash, inp.l1_block, msg_count, msg_acc, inp.timestamp)
        return _Executed(
            header,
            [[w.recipient, w.amount] for w in commit.withdrawals],
            receipts,
            c.batch_data,
            undo,
            logs_plain,
            fees,
        )

    def _bridge_command(self, cmd: Erc20Deposit | L1Call, bridge: bytes, payload: bytes) -> Receipt:
        """Run an L1 Bridge command in the open batch (a refusal is a failed receipt)."""
        item = command_call(cmd, bridge, keccak256(payload), self.cfg.chain_id, self.cfg.tx_gas_limit)
        try:
            return self._ex.execute(item, bridge_command=True)
        except TxError as exc:
            return Receipt(0, 0, b"", (), f"refused: {exc}", None, item.hash, item.sender)

    def _undo_last(self) -> None:
        """Put back the state before the head's batch (a refused vote, a failed check)."""
        h = self._head.height
        undo = self._undo.pop(h)
        self._ex.restore(undo.state, expect_state_root=undo.state_root)
        self._head = undo.head
        self._state_cache = (undo.head.height, undo.state, undo.state_root)

    def _sign(self, header: Header, round_: int) -> bytes:
        self._guard.record(header.height, header.hash(), round_, header.prev_hash)
        return self._identity.sign(header.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup))

    def _round(self, r: Request, height: int, prev_hash: bytes) -> int:
        """The request's round at ``height`` (default 0); a round above this enclave's current one
        is entered only with ``tc``, a timeout certificate for the round before at ``prev_hash``."""
        round_ = r.integer("round", hi=MAX_ROUND - 1, default=0) if r.has("round") else 0
        if round_ > self._guard.round(height):
            if not r.has("tc"):
                raise EnclaveRefusal(
                    f"{r._what}: round {round_} at height {height} needs a timeout certificate (tc) for round "
                    f"{round_ - 1}; this enclave is in round {self._guard.round(height)} there"
                )
            c = self._committee
            allowed = check_timeout_certificate(
                {a: m.tee_type for a, m in c.members.items()}, c.quorum, c.min_types,
                r.items("tc", 256), height, round_ - 1, prev_hash, self.cfg.l1_chain_id, self.cfg.rollup,
            )
            self._guard.enter_round(height, round_, allowed)
        return round_

    def _execute_batch(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "execute_batch")
        inp = BatchInput.parse(r)
        round_ = self._round(r, inp.height, inp.prev_hash)
        done = self._run_batch(inp, round_)
        h = done.header.hash()
        try:
            self._guard.check(inp.height, h, round_, inp.prev_hash)
        except EnclaveRefusal:
            self._undo_last()
            raise
        sig = self._sign(done.header, round_)
        out = {
            "header": done.header.encode(),
            "header_hash": h,
            "signature": sig,
            "signer": self._identity.address,
            "round": round_,
            "withdrawals": done.withdrawals,
            "receipts": done.receipts,
            "batch_data": done.batch_data,
        }
        if r.has("with_diff") and r.raw("with_diff") is True:
            out["diff"] = self._seal_diff(done.header)
        out["logs"] = self._seal_logs(done)
        if done.fees is not None:
            out["fees"] = done.fees
        return out

    # ------------------------------------------------------------------ the log index (logs.py)
    def _public_events(self, contract: bytes) -> frozenset[bytes]:
        """The event signatures ``contract`` declares public (``publicEvents()``, post-batch state)."""
        try:
            res = self._ex.call(_ZERO_ADDR, contract, PUBLIC_EVENTS_SELECTOR, 0, PUBLIC_EVENTS_GAS)
        except EnclaveRefusal:
            return frozenset()
        return decode_public_events(res.output) if res.success else frozenset()

    def _seal_logs(self, done: _Executed) -> bytes:
        """The batch's log index (built by ``_run_batch``, committed by the meta's ``logs_hash``),
        sealed under the batch epoch's state subkey and bound to the header (the node stores it
        per height; ``logs`` opens it)."""
        t0 = time.perf_counter()
        h = done.header
        if done.logs_plain is None:
            return b""
        try:
            blob = seal_log_blob(self._epochs.state_subkey(h.epoch, LOGS_SUBKEY), h.epoch, h.height, h.hash(),
                                 done.logs_plain)
        except Exception:  # the header is signed already: no index for this height (queries say "missing")
            blob = b""
        self.stats.add("logs_seal", time.perf_counter() - t0)
        return blob

    def _proven_log_index(self, item: Any, flt_lo: int, flt_hi: int) -> tuple[int, bytes, bytes | None]:
        """One height of a log query: ``item`` = {blob, header, signatures, meta, proof} (the
        node's stored blob, the accepted header, its QC, the batch data meta and the meta's
        Merkle proof, leaf 0, against ``header.data_commitment``). Returns (height, header hash,
        the index plaintext or None when the blob cannot be trusted -- reported ``missing``);
        EnclaveRefusal only when the item is not one at all. The plaintext is used only when its
        ``logs_commitment`` is the meta's ``logs_hash``: the QC signers re-executed the batch and
        so computed that hash themselves; a blob sealed by one enclave alone (a broken one holding
        the epoch key) does not match."""
        what = "logs: blobs[]"
        if not isinstance(item, dict):
            raise EnclaveRefusal(
                f"{what} must be maps {{blob, header, signatures, meta, proof}} (a bare blob proves nothing)"
            )
        q = Request(item, what)
        blob = q.blob("blob")
        epoch, height, hh = blob_prefix(blob)
        if not flt_lo <= height <= flt_hi:
            return height, hh, None
        try:
            header = Header.decode(q.blob("header", 416))
        except ValueError as exc:
            raise EnclaveRefusal(f"{what}: malformed header: {exc}") from None
        if (header.hash(), header.height, header.epoch) != (hh, height, epoch):
            return height, hh, None
        meta_raw = q.blob("meta", max_len=4096)
        proof = q.items("proof", 64)
        if not all(isinstance(x, bytes) and len(x) == 32 for x in proof):
            raise EnclaveRefusal(f"{what}: proof must be 32-byte siblings")
        try:
            meta = cbor2.loads(meta_raw)
        except Exception:
            return height, hh, None
        if not isinstance(meta, dict):
            return height, hh, None
        n_env, n_ent, committed = meta.get("n_envelopes"), meta.get("n_entries"), meta.get("logs_hash")
        if not (isinstance(n_env, int) and isinstance(n_ent, int) and n_env >= 0 and n_ent >= 0
                and isinstance(committed, bytes) and len(committed) == 32 and committed != ZERO32):
            return height, hh, None  # older batch data (no logs_hash) or a height without an index
        n_out = meta.get(META_COUNT_KEY, 0)
        if not isinstance(n_out, int) or n_out < 0:
            return height, hh, None
        if not merkle_verify_at(header.data_commitment, keccak256(meta_raw), 0, 1 + n_env + n_ent + n_out, list(proof)):
            return height, hh, None
        # the header itself: accepted -- the finalised one this enclave knows (its QC was checked
        # by accept_header / apply_batch), else a QC by this enclave's committee. Not a tentative
        # header of its own (head, undo): those may lose their height to another proposal.
        if hh != self._finalized[1] and hh not in self._qc_seen:
            try:
                self._committee.check_qc(hh, q.items("signatures", 256), self.cfg.l1_chain_id, self.cfg.rollup)
            except EnclaveRefusal:
                return height, hh, None
            self._qc_seen[hh] = None
            if len(self._qc_seen) > MAX_QC_SEEN:
                del self._qc_seen[next(iter(self._qc_seen))]
        if not self._epochs.has_epoch(epoch):
            return height, hh, b""  # marker: unavailable (erased epoch)
        plain = open_log_blob_plain(self._epochs.state_subkey(epoch, LOGS_SUBKEY), blob)
        if logs_commitment(self._epochs.state_subkey(epoch, LOGS_COMMIT_SUBKEY), plain) != committed:
            return height, hh, None  # sealed by one enclave, not what the QC signers computed
        return height, hh, plain

    def _logs_call(self, payload: bytes) -> dict[str, Any]:
        """An authenticated log query: a signed view request to ``LOG_QUERY_ADDRESS`` whose data
        is the filter; ``blobs`` the node's sealed log index of the heights asked, each with the
        proof that it is the index a QC committed (``_proven_log_index``). Answers, sealed to the
        requester, the matching logs the signer may read (logs.py, the rule); a height without a
        blob that proves out is listed as ``missing``."""
        r = Request.parse(payload, "logs")
        env, pt, rkey = self._open_request(payload, "logs")
        blobs = r.items("blobs", 4096, default=[])
        try:
            req = self._admit_view(pt, env.epoch)
            if req.to != to_checksum(LOG_QUERY_ADDRESS):
                raise EnclaveRefusal(
                    f"logs: the request is a view call to {req.to}, not a log query (to {to_checksum(LOG_QUERY_ADDRESS)})"
                )
            flt = parse_log_filter(req.data)
            caller = address_bytes(req.sender)
            found: list[list[Any]] = []
            searched: dict[int, bytes] = {}
            unavailable: set[int] = set()
            for item in blobs:
                height, hh, plain = self._proven_log_index(item, flt.lo, flt.hi)
                if not flt.lo <= height <= flt.hi or height in searched or plain is None:
                    continue
                if plain == b"":
                    unavailable.add(height)
                    continue
                unavailable.discard(height)
                searched[height] = hh
                for lg in decode_log_index(plain):
                    if flt.matches(lg) and may_read(caller, lg.readers, lg.public):
                        if len(found) >= MAX_QUERY_RESULTS:
                            raise EnclaveRefusal(
                                f"logs: more than {MAX_QUERY_RESULTS} logs match; ask a smaller range or a narrower filter"
                            )
                        found.append([height, hh, lg.tx_index, lg.log_index, lg.tx_log_index, lg.address,
                                      list(lg.topics), lg.data, lg.tx_hash, lg.receipt_id])
            missing = [h for h in range(flt.lo, flt.hi + 1) if h not in searched and h not in unavailable]
            out: dict[str, Any] = {"ok": True, "logs": found, "missing": missing, "unavailable": sorted(unavailable),
                                   "error": ""}
        except EnclaveRefusal as exc:
            out = {"ok": False, "logs": [], "missing": [], "unavailable": [], "error": str(exc)}
        return {"result": seal_result(rkey, encode(out))}

    def _proposed_header(self, r: Request) -> Header:
        try:
            return Header.decode(r.blob("header", 416))
        except ValueError as exc:
            raise EnclaveRefusal(f"{r._what}: malformed header: {exc}") from None

    def _reexecute_matching(self, r: Request, what: str, round_: int | None) -> tuple[Header, _Executed]:
        """Re-execute the request's batch and keep it only when it gives exactly the proposed
        header. A mismatch is refused generically: which fields differ would tell the host
        something about the confidential state (issue 14, H2)."""
        proposed = self._proposed_header(r)
        inp = BatchInput.parse(r)
        if proposed.height != inp.height or proposed.prev_hash != inp.prev_hash:
            raise EnclaveRefusal(f"{what}: the header's height/prev_hash differ from the batch's")
        done = self._run_batch(inp, round_)
        if done.header != proposed:
            self._undo_last()
            raise EnclaveRefusal(
                f"{what}: the header does not match this enclave's re-execution of the batch at height "
                f"{inp.height}; not signing"
            )
        return proposed, done

    def _verify_batch(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "verify_batch")
        proposed = self._proposed_header(r)
        ph = proposed.hash()
        round_ = self._round(r, proposed.height, proposed.prev_hash)
        # refuse before any work when the guard already forbids this header
        self._guard.check(proposed.height, ph, round_, proposed.prev_hash)
        hd = self._head
        if proposed.height == hd.height and ph == hd.hash and self._guard.has_signed(hd.height, ph):
            # a host retry of a vote this enclave already cast: the same (deterministic) signature
            self._guard.record(hd.height, ph, round_, proposed.prev_hash)
            sig = self._identity.sign(proposed.signing_digest(self.cfg.l1_chain_id, self.cfg.rollup))
            return {"header_hash": ph, "signature": sig, "signer": self._identity.address, "round": round_}
        header, done = self._reexecute_matching(r, "verify_batch", round_)
        sig = self._sign(header, round_)
        out = {"header_hash": header.hash(), "signature": sig, "signer": self._identity.address, "round": round_}
        if done.fees is not None:
            out["fees"] = done.fees
        return out

    def _timeout(self, payload: bytes) -> dict[str, Any]:
        """A timeout vote for (height, round): only when this enclave has finalised height - 1
        (the vote names that header as parent) and not height; it reports the last header this
        enclave signed at height and bars further header signatures at rounds <= round."""
        r = Request.parse(payload, "timeout")
        height = r.integer("height", lo=1, hi=U64_MAX)
        round_ = r.integer("round", hi=MAX_ROUND - 1)
        fin_h, fin_hash = self._finalized
        if fin_h != height - 1:
            raise EnclaveRefusal(
                f"timeout: this enclave's finalised height is {fin_h}; it times out only height {fin_h + 1} "
                "(accept the headers L1 accepted first)"
            )
        locked = self._guard.timeout(height, round_, fin_hash)
        digest = timeout_digest(self.cfg.l1_chain_id, self.cfg.rollup, height, round_, fin_hash, locked)
        return {
            "height": height,
            "round": round_,
            "parent": fin_hash,
            "locked": locked,
            "signature": self._identity.sign(digest),
            "signer": self._identity.address,
        }

    def _finalize(self, height: int, header_hash: bytes) -> None:
        self._finalized = (height, header_hash)
        self._guard.finalize(height)
        for h in [h for h in self._undo if h <= height]:
            del self._undo[h]

    def _accept_header(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "accept_header")
        header = self._proposed_header(r)
        h = header.hash()
        self._committee.check_qc(h, r.items("signatures", 256), self.cfg.l1_chain_id, self.cfg.rollup)
        fin_h, fin_hash = self._finalized
        if header.height <= fin_h:
            if header.height == fin_h and h == fin_hash:
                return self._finalized_info()
            raise EnclaveRefusal(
                f"accept_header: height {header.height} is at or below the finalised height {fin_h}"
            )
        if header.height > self._head.height:
            raise EnclaveRefusal(
                f"accept_header: this enclave's head is at height {self._head.height}; apply_batch "
                f"up to {header.height} first"
            )
        if header.height == self._head.height:
            mine = self._head.hash
        else:
            nxt = self._undo.get(header.height + 1)
            if nxt is None:
                raise EnclaveRefusal(
                    f"accept_header: this enclave no longer knows its header at height {header.height} "
                    "(restored from a snapshot past it)"
                )
            mine = nxt.head.hash
        if mine != h:
            raise EnclaveRefusal(
                f"accept_header: diverged at height {header.height}: this enclave's header there is "
                f"0x{mine.hex()}; rollback to {header.height - 1} and apply_batch the accepted batch"
            )
        self._finalize(header.height, h)
        self._anchored_epoch = max(self._anchored_epoch, header.epoch)
        return self._finalized_info()

    def _finalized_info(self) -> dict[str, Any]:
        return {"finalized_height": self._finalized[0], "finalized_hash": self._finalized[1]}

    def _rollback(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "rollback")
        target = r.integer("height", hi=U64_MAX)
        if target < self._finalized[0]:
            raise EnclaveRefusal(f"rollback: height {target} is below the finalised height {self._finalized[0]}")
        if target > self._head.height:
            raise EnclaveRefusal(f"rollback: height {target} is above the head at {self._head.height}")
        if target < self._head.height:
            undo = self._undo.get(target + 1)
            if undo is None:
                raise EnclaveRefusal(
                    f"rollback: the state before height {target + 1} is not kept (restored from a snapshot?)"
                )
            self._ex.restore(undo.state, expect_state_root=undo.state_root)
            self._head = undo.head
            self._state_cache = (undo.head.height, undo.state, undo.state_root)
            for h in [h for h in self._undo if h > target]:
                del self._undo[h]
        return self._status(b"")

    def _apply_batch(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "apply_batch")
        header = self._proposed_header(r)
        self._committee.check_qc(header.hash(), r.items("signatures", 256), self.cfg.l1_chain_id, self.cfg.rollup)
        if r.has("diff"):
            return self._apply_diff(r, header)
        header, _ = self._reexecute_matching(r, "apply_batch", None)
        self._finalize(header.height, header.hash())
        self._anchored_epoch = max(self._anchored_epoch, header.epoch)
        return self._status(b"")

    # ------------------------------------------------------------------ state diffs (apply without re-executing)
    def _diff_key_aad(self, header: Header) -> tuple[bytes, bytes]:
        if not self._epochs.has_epoch(header.epoch):
            raise EnclaveRefusal(
                f"apply_batch: this enclave does not hold the keys of epoch {header.epoch}, under which the "
                "state diff is sealed; import them or apply the batch by re-execution"
            )
        return self._epochs.state_subkey(header.epoch, DIFF_SUBKEY), DIFF_MAGIC + header.hash()

    def _seal_diff(self, header: Header) -> bytes:
        """The executor's net write set of the batch just executed (``diff.py``), sealed under the
        batch epoch's state key and bound to the header (so only committee enclaves read it, and
        only for that header)."""
        diff = self._ex.last_diff
        if diff is None:
            raise EnclaveRefusal("execute_batch: no state diff recorded for this batch")
        t0 = time.perf_counter()
        key, aad = self._diff_key_aad(header)
        nonce = os.urandom(12)
        blob = nonce + AESGCM(key).encrypt(nonce, diff.encode(), aad)
        self.stats.add("diff_seal", time.perf_counter() - t0)
        return blob

    def _open_diff(self, blob: bytes, header: Header) -> BatchDiff:
        key, aad = self._diff_key_aad(header)
        if len(blob) < 12 + 16:
            raise EnclaveRefusal("apply_batch: the state diff is too short to be sealed")
        try:
            plain = AESGCM(key).decrypt(blob[:12], blob[12:], aad)
        except InvalidTag:
            raise EnclaveRefusal(
                "apply_batch: the state diff does not decrypt under this header's epoch state key "
                "(tampered, for another header, or from outside the committee)"
            ) from None
        return BatchDiff.decode(plain)

    def _apply_diff(self, r: Request, header: Header) -> dict[str, Any]:
        """``apply_batch`` with ``diff``: adopt a QC'd batch from the proposer's sealed state diff
        instead of re-executing it. The QC was checked by the caller; here the batch data must
        match the header (tx root, receipts root, data commitment; its meta gives the timestamp),
        the header must extend this enclave's head, and the diff must give the header's state and
        balances roots -- else nothing changes and the call refuses (the host re-executes)."""
        t0 = time.perf_counter()
        hd = self._head
        hh = header.hash()
        if header.height != hd.height + 1 or header.prev_hash != hd.hash:
            raise EnclaveRefusal(
                f"apply_batch: the header at height {header.height} does not extend this enclave's head at "
                f"height {hd.height}; rollback to its parent or apply the heights before it"
            )
        if not self._epochs.has_epoch(header.epoch) or header.epoch_key != self._epochs.tx_public_key(header.epoch):
            raise EnclaveRefusal(
                f"apply_batch: this enclave does not hold the epoch {header.epoch} keys the header names"
            )
        try:
            items = batch_data_items(r.blob("batch_data"))
        except ValueError as exc:
            raise EnclaveRefusal(f"apply_batch: batch_data: {exc}") from None
        tx_root, receipts_root, commitment, meta = batch_data_roots(items)
        if (tx_root, receipts_root, commitment) != (header.tx_root, header.receipts_root, header.data_commitment):
            raise EnclaveRefusal(
                "apply_batch: the batch data does not match the header's tx root, receipts root or data commitment"
            )
        m = Request(meta, "apply_batch: batch data meta")
        timestamp = m.integer("timestamp", hi=U64_MAX)
        same = (
            m.integer("height", hi=U64_MAX) == header.height
            and m.blob("prev_hash", 32) == header.prev_hash
            and m.integer("epoch", hi=U64_MAX) == header.epoch
            and m.integer("l1_block", hi=U64_MAX) == header.l1_block
            and m.integer("msg_count", hi=U64_MAX) == header.msg_count
            and m.blob("msg_acc", 32) == header.msg_acc
            and m.integer("msg_start", hi=U64_MAX) == hd.msg_count
        )
        if not same or timestamp < hd.timestamp or header.l1_block < hd.l1_block:
            raise EnclaveRefusal("apply_batch: the batch data's meta does not match the header and this enclave's head")
        diff = self._open_diff(r.blob("diff"), header)
        self._batch_epoch = header.epoch  # balance salts and contract keys derive from its state key
        try:
            self._ex.apply_diff(diff, BlockInfo(header.height, timestamp), header.state_root, header.balances_root)
        except EnclaveRefusal as exc:
            raise EnclaveRefusal(f"apply_batch: {exc}; apply the batch by re-execution") from None
        self._head = ChainHead(header.height, hh, header.l1_block, header.msg_count, header.msg_acc, timestamp)
        self._finalize(header.height, hh)
        self._anchored_epoch = max(self._anchored_epoch, header.epoch)
        self.stats.add("apply_diff", time.perf_counter() - t0)
        return self._status(b"")

    def _peer_auth(self, payload: bytes) -> dict[str, Any]:
        """Sign a peer request of this member's host (crypto/peer.py; issue 14 M4): its own
        domain, so the signature is good for nothing but a peer's admission check."""
        r = Request.parse(payload, "peer_auth")
        op = r.raw("op")
        if not isinstance(op, str) or not (0 < len(op) <= 32) or not op.replace("_", "").isalnum():
            raise EnclaveRefusal("peer_auth: op must be a peer op name (1..32 letters, digits, _)")
        digest = peer_request_digest(
            self.cfg.l1_chain_id, self.cfg.rollup, r.address("to"), op, r.blob("body_hash", 32),
            r.integer("expiry", hi=U64_MAX),
        )
        return {"signature": self._identity.sign(digest), "signer": self._identity.address}

    # ------------------------------------------------------------------ views
    def _open_request(self, payload: bytes, what: str) -> tuple[Envelope, bytes, bytes]:
        r = Request.parse(payload, what)
        raw = r.blob("envelope", max_len=256 * 1024)
        env = Envelope.decode(raw)
        if not self._epochs.has_epoch(env.epoch):
            raise EnclaveRefusal(f"{what}: envelope epoch {env.epoch} is unknown or erased here")
        opened = open_envelope(env, self._epochs.tx_private_key(env.epoch), self.cfg.chain_id)
        return env, opened.plaintext, opened.receipt_key

    def _admit_view(self, pt: bytes, epoch: int) -> ViewRequest:
        now = self._views.now(self._platform.now(), self._head.timestamp)
        req = parse_view_request(pt, self._view_domain, epoch, now)
        self._views.admit(req, now)
        return req

    def _view_call(self, payload: bytes) -> dict[str, Any]:
        env, pt, rkey = self._open_request(payload, "view_call")
        try:
            req = self._admit_view(pt, env.epoch)
            gas = min(req.gas, self.cfg.view_gas_limit)
            res = self._ex.call(req.sender, None if req.is_create else req.to, req.data, req.value, gas)
            out = {"ok": res.success, "return_data": res.output, "gas_used": res.gas_used, "error": res.error or ""}
        except EnclaveRefusal as exc:
            out = {"ok": False, "return_data": b"", "gas_used": 0, "error": str(exc)}
        return {"result": seal_result(rkey, encode(out))}

    def _estimate_gas(self, payload: bytes) -> dict[str, Any]:
        env, pt, rkey = self._open_request(payload, "estimate_gas")
        try:
            req = self._admit_view(pt, env.epoch)
            gas = self._ex.estimate_gas(
                req.sender, None if req.is_create else req.to, req.data, req.value, gas_cap=self.cfg.view_gas_limit
            )
            out = {"ok": True, "return_data": b"", "gas_used": gas, "error": ""}
        except EnclaveRefusal as exc:
            out = {"ok": False, "return_data": b"", "gas_used": 0, "error": str(exc)}
        return {"result": seal_result(rkey, encode(out))}

    # ------------------------------------------------------------------ snapshots
    def _shared_plain(self) -> bytes:
        state, root = self._pre_batch_state(record=False)
        return encode(
            {
                "v": 1,
                "chain_id": self.cfg.chain_id,
                "head": self._head.to_cbor(),
                "finalized": list(self._finalized),
                "state": state,
                "state_root": root,
            }
        )

    def _snapshot(self, payload: bytes) -> dict[str, Any]:
        decode_map(payload, "snapshot")
        epoch = self._epochs.current_epoch
        if epoch is None:
            raise EnclaveRefusal("snapshot: no epoch key to seal under yet")
        self._advance_counter()  # normally a no-op (every ecall ends with it); the blob binds _count
        t0 = time.perf_counter()
        plain = self._shared_plain()
        t1 = time.perf_counter()
        key = self._epochs.state_subkey(epoch, SNAPSHOT_SUBKEY)
        nonce = os.urandom(12)
        aad = SNAPSHOT_MAGIC + struct.pack(">Q", epoch)
        shared = aad + nonce + AESGCM(key).encrypt(nonce, plain, aad)
        del plain
        # the local blob wraps the shared one (opened with the epoch keys it also carries)
        local_plain = encode(
            {
                "v": 1,
                "identity": self._identity.to_secret_bytes(),
                "epochs": self._epochs.to_secret_bytes(),
                "guard": self._guard.to_cbor(),
                "counter": self._count,
                "committee": self._committee.to_cbor(),
                "anchored": self._anchored_epoch,
                "shared": shared,
            }
        )
        local = self._platform.seal(local_plain, LOCAL_LABEL)
        del local_plain
        t2 = time.perf_counter()
        self.stats.add("seal_serialize", t1 - t0)
        self.stats.add("seal_encrypt", t2 - t1)
        return {
            "height": self._head.height,
            "head_hash": self._head.hash,
            "epoch": epoch,
            "shared": shared,
            "local": local,
        }

    def _load_shared_plain(self, plain: bytes, anchor: Header | None) -> None:
        """Load a snapshot's state. ``anchor``: the L1-accepted header the snapshot claims (its QC
        already checked): required for a shared blob, which any committee member -- a compromised
        one included -- can seal. The state must then BE that header's state: head hash, the
        recomputed state root and balances root, message count, accumulator and L1 block equal
        the header's, and the finalised pointer becomes that header. ``None``: this enclave's own
        platform-sealed local blob (restart)."""
        m = decode_map(plain, "snapshot")
        r = Request(m, "snapshot")
        if r.integer("chain_id", hi=U64_MAX) != self.cfg.chain_id:
            raise EnclaveRefusal("restore: the snapshot is for another chain id")
        head = ChainHead.from_cbor(r.map("head")._m)
        fin = r.items("finalized", 2)
        if len(fin) != 2 or not isinstance(fin[0], int) or isinstance(fin[0], bool) or not 0 <= fin[0] <= U64_MAX:
            # checked, not int()-ed: a shared blob is sealed by any committee member, a compromised one too
            raise EnclaveRefusal("restore: snapshot field 'finalized' must be [height (uint64), header hash]")
        finalized = (fin[0], as_bytes(fin[1], "finalized", "snapshot", 32))
        state = r.blob("state")
        root = r.blob("state_root", 32)
        if anchor is not None:
            hh = anchor.hash()
            if (head.height, head.hash) != (anchor.height, hh) or root != anchor.state_root:
                raise EnclaveRefusal(
                    f"restore: the snapshot's head (height {head.height}) is not the accepted header "
                    f"0x{hh.hex()} at height {anchor.height} it is restored against"
                )
            if (head.l1_block, head.msg_count, head.msg_acc) != (anchor.l1_block, anchor.msg_count, anchor.msg_acc):
                raise EnclaveRefusal("restore: the snapshot's L1 message position differs from the accepted header's")
            finalized = (anchor.height, hh)
        saved = self._ex.snapshot() if anchor is not None else None
        self._ex.restore(state, expect_state_root=root)  # recomputes the state root from the state
        if anchor is not None and self._ex.balances_root != anchor.balances_root:
            assert saved is not None
            self._ex.restore(saved)
            raise EnclaveRefusal("restore: the snapshot's balances root differs from the accepted header's")
        self._head = head
        self._finalized = finalized
        self._undo.clear()
        self._state_cache = (head.height, state, root)

    @staticmethod
    def _open_shared(blob: bytes, epochs: EpochKeyManager) -> bytes:
        hdr = len(SNAPSHOT_MAGIC) + 8
        if not blob.startswith(SNAPSHOT_MAGIC) or len(blob) < hdr + 12 + 16:
            raise EnclaveRefusal("restore: not a shared snapshot (bad magic or too short)")
        (epoch,) = struct.unpack(">Q", blob[len(SNAPSHOT_MAGIC) : hdr])
        if not epochs.has_epoch(epoch):
            raise EnclaveRefusal(
                f"restore: the snapshot is sealed under epoch {epoch}, whose keys this enclave does not hold"
            )
        key = epochs.state_subkey(epoch, SNAPSHOT_SUBKEY)
        try:
            return AESGCM(key).decrypt(blob[hdr : hdr + 12], blob[hdr + 12 :], blob[:hdr])
        except InvalidTag:
            raise EnclaveRefusal("restore: shared snapshot does not decrypt (tampered or another committee)") from None

    def _restore(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "restore")
        blob = r.blob("blob")
        if blob.startswith(SNAPSHOT_MAGIC):
            if not r.has("header"):
                raise EnclaveRefusal(
                    "restore: a shared snapshot is restored only against the L1-accepted header it claims: "
                    "give header and signatures (its QC)"
                )
            anchor = self._proposed_header(r)
            self._committee.check_qc(anchor.hash(), r.items("signatures", 256), self.cfg.l1_chain_id, self.cfg.rollup)
            if anchor.height < self._finalized[0]:
                raise EnclaveRefusal(
                    f"restore: the header at height {anchor.height} is below this enclave's finalised "
                    f"height {self._finalized[0]}"
                )
            self._load_shared_plain(self._open_shared(blob, self._epochs), anchor)
            self._guard.finalize(self._finalized[0])
            self._anchored_epoch = max(self._anchored_epoch, anchor.epoch)
            return self._status(b"")
        plain = self._platform.unseal(blob, LOCAL_LABEL)
        try:
            m = cbor2.loads(plain)
            identity = EnclaveIdentity.from_secret_bytes(m["identity"])
            epochs = self._new_epoch_manager(identity)
            epochs.load_secret_bytes(m["epochs"])
            guard = SignGuard.from_cbor(m["guard"])
            committee = Committee()
            committee.load_cbor(m["committee"])
            anchored = int(m.get("anchored", -1))
            shared = bytes(m["shared"])
            sealed_count = int(m["counter"])
        except Exception:  # cbor2's decode errors are no ValueError; the parts raise several types
            raise EnclaveRefusal("restore: the local snapshot is malformed") from None
        same = identity.address == self._identity.address
        counter_id = _guard_counter_id(identity.address)
        try:
            counter = self._platform.counter_read(counter_id)
        except CounterError as exc:
            raise EnclaveRefusal(f"restore: platform monotonic counter: {exc}") from None
        known = max(sealed_count, self._count) if same else sealed_count  # a running enclave merges its record
        if counter.count < known:
            raise EnclaveRefusal(
                f"restore: the platform monotonic counter ({counter.count}) is below the sealed blob's ({known}): "
                "the counter store was reset or rolled back, or belongs to another machine; this enclave cannot "
                "tell what it signed, so it does not restore"
            )
        if committee.members and (committee.quorum < self.cfg.min_quorum or committee.min_types < self.cfg.min_types):
            raise EnclaveRefusal("restore: the local snapshot's committee rule is below this program's floors")
        # never bring back what this running enclave has erased or left behind: its erasure
        # marks, the epochs older than its newest anchored epoch's grace window, its committee
        epochs.absorb_erasures(self._epochs)
        anchored = max(self._anchored_epoch, anchored)
        if anchored >= 0:
            epochs.erase_before(max(0, anchored - self.cfg.epoch_grace))
        committee.merge_newer(self._committee)
        self._load_shared_plain(self._open_shared(shared, epochs), None)  # state first: may refuse
        if same:
            guard.merge(self._guard)  # never forget a signature made since that blob
        else:
            guard.dirty = None  # the running identity's pending record goes with it (nothing of it left)
        if counter.count > known:
            # a stale blob: the counter advanced after it was sealed, so this enclave may have signed,
            # timed out or executed at heights up to the counter's high-water mark and forgotten it
            guard.forget_up_to(counter.high)
        self._identity, self._epochs, self._guard, self._committee = identity, epochs, guard, committee
        self._counter_id, self._count = counter_id, counter.count
        self._anchored_epoch = anchored
        self._guard.finalize(self._finalized[0])
        return self._status(b"")

    # ------------------------------------------------------------------ escape hatch
    def _escape_leaf(self, payload: bytes) -> dict[str, Any]:
        """The requesting user's own balance leaf and proof at the head, sealed to their key.

        The request is signed by the user (``crypto.escape.escape_request_digest``); the leaf is
        sealed to the public key recovered from that signature, so only the user opens it, and
        the sealed length is the same for every account (with or without a balance).
        """
        r = Request.parse(payload, "escape_leaf")
        address = r.address("address")
        expiry = r.integer("expiry", hi=U64_MAX)
        signature = r.blob("signature", 65)
        if expiry < self._platform.now():
            raise EnclaveRefusal(f"escape_leaf: the request expired at {expiry}; sign a new one")
        digest = escape_request_digest(self.cfg.chain_id, self.cfg.l1_chain_id, self.cfg.rollup, address, expiry)
        try:
            public_key = recover_public_key(digest, signature)
        except EscapeError as exc:
            raise EnclaveRefusal(f"escape_leaf: {exc}") from None
        if public_key_address(public_key) != address:
            raise EnclaveRefusal(f"escape_leaf: the request is not signed by {address}")
        self._remember_pubkey(public_key)
        hd = self._head
        root = self._ex.balances_root
        if self._ex.escape_value(address):  # balance + queued withdrawals (executor.escape_value)
            p = self._ex.balance_proof(address)
            leaf = EscapeLeaf(address, p.balance, p.salt, p.siblings, hd.height, hd.hash, root)
        else:
            leaf = EscapeLeaf.empty(address, hd.height, hd.hash, root)
        return {
            "sealed": seal_escape_leaf(leaf, public_key),
            "height": hd.height,
            "header_hash": hd.hash,
            "balances_root": root,
            "finalized": self._finalized == (hd.height, hd.hash),
        }

    def _remember_pubkey(self, public_key: bytes) -> bytes:
        a = address_bytes(public_key_address(public_key))
        if a not in self._esc_pubkeys and len(self._esc_pubkeys) >= MAX_ESCAPE_PUBKEYS:
            self._esc_pubkeys.pop(next(iter(self._esc_pubkeys)))
        self._esc_pubkeys[a] = public_key
        return a

    def _escape_export(self, payload: bytes) -> dict[str, Any]:
        """Escape data for the DAPs at the head (docs/DAP.md), which must be at ``height``:

        * ``diff``: ``[[smt key, leaf hash or b""]]`` -- the balances tree's salted leaf hashes
          that changed since ``base``, the height of this enclave's previous export (0 and every
          leaf when there was none, or it is not below the head). Leaf hashes are public-safe.
        * ``sealed``: ``[[address, sealed]]`` -- for each changed account whose public key the
          enclave knows (from its escape_leaf requests, or ``public_keys`` given here, each
          checked to hash to its address), its leaf value and salt (an EscapeLeaf without
          siblings) sealed to that key; keys given now get theirs even when unchanged.

        The host calls it once the header at ``height`` is accepted on L1."""
        r = Request.parse(payload, "escape_export")
        height = r.integer("height", hi=U64_MAX)
        hd = self._head
        if height != hd.height:
            raise EnclaveRefusal(f"escape_export: the head is at height {hd.height}, not {height}")
        fresh: set[bytes] = set()
        if r.has("public_keys"):
            raw = r.raw("public_keys")
            if not isinstance(raw, list) or len(raw) > MAX_ESCAPE_PUBKEYS:
                raise EnclaveRefusal(f"escape_export: public_keys must be a list of at most {MAX_ESCAPE_PUBKEYS}")
            for pk in raw:
                try:
                    fresh.add(self._remember_pubkey(as_bytes(pk, "public_keys", "escape_export", max_len=65)))
                except (EscapeError, ValueError, TypeError):
                    raise EnclaveRefusal("escape_export: a public key is not a secp256k1 public key") from None
        st = self._ex.state
        now: dict[bytes, tuple[int, bytes]] = {}
        for a in st.accounts.keys() | st.owed.keys():
            value = st.leaf_value(a)
            rec = st.accounts.get(a)
            if value and rec is not None:
                now[a] = (value, rec.salt)
        last = self._esc_last
        full = r.has("full") and bool(r.raw("full"))  # the host lost the previous export: every leaf
        base, before = (last[0], last[1]) if last is not None and last[0] < height and not full else (0, {})
        changed = [a for a in now.keys() | before.keys() if now.get(a) != before.get(a)]
        diff: list[list[bytes]] = []
        for a in sorted(changed):
            key = smt_key(a)
            v = now.get(a)
            diff.append([key, smt_leaf(key, v[0], v[1]) if v else b""])
        root = self._ex.balances_root
        sealed: list[list[Any]] = []
        for a in sorted((set(changed) | fresh) & self._esc_pubkeys.keys()):
            v = now.get(a)
            leaf = (EscapeLeaf(to_checksum(a), v[0], v[1], (), hd.height, hd.hash, root) if v
                    else EscapeLeaf.empty(a, hd.height, hd.hash, root))
            sealed.append([a, seal_escape_leaf(leaf, self._esc_pubkeys[a])])
        self._esc_last = (height, now)
        return {"height": height, "header_hash": hd.hash, "base": base, "balances_root": root,
                "diff": diff, "sealed": sealed}

    # ------------------------------------------------------------------ status
    def _status(self, payload: bytes) -> dict[str, Any]:
        decode_map(payload, "status")
        hd = self._head
        return {
            "height": hd.height,
            "head_hash": hd.hash,
            "epoch": self._epochs.current_epoch,
            "l1_block": hd.l1_block,
            "msg_count": hd.msg_count,
            "msg_acc": hd.msg_acc,
            "timestamp": hd.timestamp,
            "finalized_height": self._finalized[0],
            "finalized_hash": self._finalized[1],
            "address": self._identity.address,
            "tee_type": self._platform.tee_type,
            "tee_name": TEE_NAMES.get(self._platform.tee_type, str(self._platform.tee_type)),
            "epochs_held": self._epochs.epochs(),
            "state_root": self._ex.state_root,
            "balances_root": self._ex.balances_root,
            # > finalized_height: restored from a stale blob, signs nothing at heights <= it (guard.py)
            "amnesia": self._guard.amnesia,
            # fees.py: the next batch's base fee at the head (0: fees off); public, like Ethereum's
            "base_fee": self._ex.base_fee,
        }

    def _stats(self, payload: bytes) -> dict[str, Any]:
        r = Request.parse(payload, "stats")
        if not self.cfg.stats:
            raise EnclaveRefusal(
                "stats: per-stage timings are only given by a benchmark build (config stats: true, "
                "part of the measurement); this enclave's config does not enable them"
            )
        out = {"seconds": dict(self.stats.t), "counts": dict(self.stats.n), "accounts": len(self._ex.state.accounts)}
        if r.has("reset") and r.raw("reset"):
            self.stats = Stats()
        return out


def _guard_counter_id(address: str) -> bytes:
    """The platform monotonic counter of the enclave with signing address ``address``."""
    return keccak256(GUARD_COUNTER_DOMAIN, address_bytes(address))


def _input_digest(inp: BatchInput) -> bytes:
    """A digest of everything a batch's execution depends on (the input record, guard.py)."""
    h = hashlib.sha256(b"EnclaveNet.batch-input.v1")
    fields: list[Any] = [inp.height, inp.prev_hash, inp.epoch, inp.l1_block, inp.timestamp,
                         [[m.index, m.kind, m.sender, m.value, m.l1_block, m.payload] for m in inp.messages]]
    if inp.fee_recipient is not None:
        fields.append(inp.fee_recipient)
    h.update(encode(fields))
    for e in inp.envelopes:
        h.update(len(e).to_bytes(4, "big"))
        h.update(e)
    return h.digest()


__all__ = ["EnclaveProgram", "ProgramConfig"]
