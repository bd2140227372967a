"""The confidential world state: accounts, code, storage, and the two roots that commit to it.

pyrevm keeps state in an in-memory database it cannot enumerate, so this module keeps the
canonical copy of the state that the executor feeds pyrevm with and reads back after every
batch (see executor.py for how the writes are collected). It owns:

* ``accounts``: address (20 bytes) -> ``AccountRecord(nonce, balance, code_hash, salt)``;
* ``code``: code hash -> runtime code;
* ``storage``: address -> {slot: value} (non-zero values only);
* the **storage commitment**: a bucketed 16-ary Merkle tree over one entry per account with
  a nonce or code and one per non-zero storage slot (see ``StateCommitment``):

      account entry   key keccak256(0x01 || address),         payload nonce (32) || code_hash (32)
      storage entry   key keccak256(0x02 || address || slot), payload value (32)

* the **withdrawal queue**: withdrawals made but not yet listed in a header (the Rollup pays at
  most ``MAX_WITHDRAWALS`` = 16 per header; the executor carries the rest over, FIFO). When it
  is non-empty it is one more entry of the storage commitment::

      queue entry     key WITHDRAWAL_QUEUE_KEY = keccak256(0x03 || "EnclaveNet.WithdrawalQueue.v1"),
                      payload keccak256(0x08 || for each queued withdrawal: recipient (20) || amount (32))

* the **balances tree** below; and the **state root**, which binds everything:
  ``state_root = keccak256(0x07 || storage_commitment_root || balances_root)``;
* the **balances tree** (``crypto.smt`` format, the escape hatch's): a leaf
  ``smt_leaf(keccak(address), balance, salt)`` per account with a non-zero native balance.
  A leaf's salt is ``keccak256("EnclaveNet.BalanceSalt.v1" || secret || address || version)``
  where ``secret`` is what the program passes in (derived from the epoch state key) and
  ``version`` is the block number of the batch that last changed the balance. The salt is
  stored in the account, so a proof never needs an old epoch's secret.

``snapshot()`` is a canonical CBOR serialisation of accounts, code and storage (sorted), so
equal states give equal bytes on every member.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import cbor2
import sha3

from ..crypto.hashing import ZERO32, address_bytes, domain_tag, keccak256, to_checksum
from ..crypto.header import Withdrawal
from ..crypto.smt import SparseMerkleTree, smt_key, smt_leaf
from .contract_keys import ContractKeyChain, ContractKeyError, open_section, seal_section
from .errors import EnclaveRefusal
from .leaf_cover import cover_keys

KECCAK_EMPTY = keccak256(b"")
SALT_DOMAIN = domain_tag("EnclaveNet.BalanceSalt.v1")
SNAPSHOT_VERSION = 1
WITHDRAWAL_QUEUE_KEY = keccak256(b"\x03", b"EnclaveNet.WithdrawalQueue.v1")
# At most this many withdrawals wait in the queue (the executor refuses more; a snapshot with
# more is refused): 4,096 headers' worth, a bound on memory and on the per-batch queue hash.
MAX_QUEUED_WITHDRAWALS = 65_536


class StateError(EnclaveRefusal):
    """A snapshot or state operation is invalid."""


class AccountRecord:
    """One account: nonce, native balance (wei), code hash, balance-leaf salt (ZERO32 if none)."""

    __slots__ = ("balance", "code_hash", "nonce", "salt")

    def __init__(self, nonce: int = 0, balance: int = 0, code_hash: bytes = KECCAK_EMPTY, salt: bytes = ZERO32) -> None:
        self.nonce = nonce
        self.balance = balance
        self.code_hash = code_hash
        self.salt = salt

    def is_empty(self) -> bool:
        return self.nonce == 0 and self.balance == 0 and self.code_hash == KECCAK_EMPTY

    def __repr__(self) -> str:  # balances are confidential: never in a log line
        return f"AccountRecord(nonce={self.nonce}, code_hash=0x{self.code_hash.hex()[:8]}..)"


def account_key(address: bytes) -> bytes:
    return _keccak(b"\x01" + address)


def storage_key(address: bytes, slot: int) -> bytes:
    return _keccak(b"\x02" + address + slot.to_bytes(32, "big"))


def account_payload(acct: AccountRecord) -> bytes:
    """The commitment entry body of an account: len (1 byte) || nonce (32) || code_hash (32)."""
    return b"\x40" + acct.nonce.to_bytes(32, "big") + acct.code_hash


def storage_payload(value: int) -> bytes:
    """The commitment entry body of a slot: len (1 byte) || value (32)."""
    return b"\x20" + value.to_bytes(32, "big")


def _keccak(data: bytes) -> bytes:
    return sha3.keccak_256(data).digest()


class StateCommitment:
    """A Merkle commitment to a set of (32-byte key -> payload) entries, cheap to update.

    Entries fall into 65,536 buckets by the first two bytes of their (uniformly random) key.

        bucket hash = ZERO32 if empty, else keccak256(0x05 || for each entry in key order:
                      key || len(payload) (1 byte) || payload)
        node hash   = ZERO32 if its 16 children are all ZERO32, else keccak256(0x06 || children)

    over four 16-ary levels (65,536 -> 4,096 -> 256 -> 16 -> 1). Changing k entries rehashes
    at most k buckets (a few entries each) and their ancestors, each once: ~1 keccak per entry
    plus O(min(k, 4096)) node hashes per batch, where a binary sparse Merkle tree needs
    ~log2(n) keccaks per entry. A membership proof would be the bucket's entries plus 4 x 15
    sibling hashes; nobody outside the enclaves needs one (the escape hatch uses the balances
    tree), so none is offered.
    """

    __slots__ = ("_buckets", "_count", "_levels")
    FANOUT_BITS = 4
    LEVELS = 4  # 16 ** 4 = 65,536 buckets

    def __init__(self) -> None:
        self._buckets: dict[int, dict[bytes, bytes]] = {}
        n = 1 << (self.FANOUT_BITS * self.LEVELS)
        self._levels: list[list[bytes]] = []
        while n >= 1:
            self._levels.append([ZERO32] * n)
            n >>= self.FANOUT_BITS
        self._count = 0

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def __len__(self) -> int:
        return self._count

    def get(self, key: bytes) -> bytes | None:
        b = self._buckets.get((key[0] << 8) | key[1])
        return None if b is None else b.get(key)

    def update(self, changes: dict[bytes, bytes | None]) -> None:
        """Set or delete (None) entries, then rehash what changed.

        A value is an entry *body*: ``len(payload)`` (1 byte) || payload, as ``account_payload``
        and ``storage_payload`` build it.
        """
        buckets = self._buckets
        dirty: set[int] = set()
        add = dirty.add
        count = self._count
        for key, body in changes.items():
            bid = (key[0] << 8) | key[1]
            bucket = buckets.get(bid)
            if body is None:
                if bucket is not None and bucket.pop(key, None) is not None:
                    count -= 1
                    add(bid)
                    if not bucket:
                        del buckets[bid]
                continue
            if bucket is None:
                bucket = buckets[bid] = {}
            if key not in bucket:
                count += 1
            bucket[key] = body
            add(bid)
        self._count = count
        level0 = self._levels[0]
        keccak = sha3.keccak_256
        for bid in dirty:
            bucket = buckets.get(bid)
            if not bucket:
                level0[bid] = ZERO32
            elif len(bucket) == 1:
                ((k, v),) = bucket.items()
                level0[bid] = keccak(b"\x05" + k + v).digest()
            else:
                level0[bid] = keccak(b"\x05" + b"".join([k + v for k, v in sorted(bucket.items())])).digest()
        bits = self.FANOUT_BITS
        fan = 1 << bits
        for lvl in range(1, len(self._levels)):
            below, here = self._levels[lvl - 1], self._levels[lvl]
            dirty = {i >> bits for i in dirty}
            for i in dirty:
                kids = below[i * fan : (i + 1) * fan]
                here[i] = ZERO32 if kids.count(ZERO32) == fan else _keccak(b"\x06" + b"".join(kids))


def withdrawal_queue_payload(queue: Iterable[Withdrawal], senders: Iterable[bytes]) -> bytes:
    """The commitment entry body of a non-empty withdrawal queue:
    0x20 || keccak256(0x09 || for each: recipient (20) || amount (32) || sender (20)).

    The senders are committed too: who queued a withdrawal decides whose balance leaf carries
    it (leaf value = balance + owed), so a state that moved a queued withdrawal to another
    sender (and the difference into a spendable balance) would otherwise keep both roots."""
    h = sha3.keccak_256(b"\x09")
    for w, s in zip(queue, senders, strict=True):
        h.update(address_bytes(w.recipient) + w.amount.to_bytes(32, "big") + s)
    return b"\x20" + h.digest()


def balance_salt(secret: bytes, address: bytes, version: int) -> bytes:
    return keccak256(SALT_DOMAIN, secret, address, version.to_bytes(32, "big"))


@dataclass(frozen=True)
class AccountChange:
    """The new (nonce, balance, code_hash) of an account after a batch; ``code`` if new."""

    nonce: int
    balance: int
    code_hash: bytes
    code: bytes | None = None


@dataclass
class UndoRecord:
    """What one batch overwrote, to put it back: O(changes), not O(state)."""

    accounts: dict[bytes, AccountRecord | None]  # previous record (a copy), None if absent
    storage: dict[bytes, dict[int, int]]  # previous values of changed slots (0 = absent)
    new_code: set[bytes]  # code hashes the batch introduced
    version: int  # the executor's version before the batch
    withdrawal_queue: tuple[Withdrawal, ...] | None = None  # the queue before, if the batch changed it
    contract_keys: dict[bytes, ContractKeyChain] | None = None  # the key chains before, if changed
    queue_senders: tuple[bytes, ...] = ()  # who made each withdrawal of ``withdrawal_queue``


class WorldState:
    """Canonical state plus the state tree and the balances tree."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, AccountRecord] = {}
        self.code: dict[bytes, bytes] = {}
        self.storage: dict[bytes, dict[int, int]] = {}
        self.commitment = StateCommitment()
        self.balances_tree = SparseMerkleTree()
        # withdrawals not yet listed in a header, oldest first (see the module docstring)
        self.withdrawal_queue: tuple[Withdrawal, ...] = ()
        # the sender of each queued withdrawal, and what the queue owes each sender: a balance
        # leaf's value is balance + owed, so the escape hatch also pays queued withdrawals
        self.queue_senders: tuple[bytes, ...] = ()
        self.owed: dict[bytes, int] = {}
        # per-contract state keys and rotation policies (contract_keys.py); not in the commitment
        self.contract_keys: dict[bytes, ContractKeyChain] = {}
        # smt key -> address of every balance leaf (built on first use, then kept up to date;
        # entries of removed leaves may stay): to re-salt the cover leaves (leaf_cover.py)
        self._leaf_names: dict[bytes, bytes] | None = None

    # --- reads ---------------------------------------------------------------------------
    @property
    def state_root(self) -> bytes:
        return _keccak(b"\x07" + self.commitment.root + self.balances_tree.root)

    @property
    def balances_root(self) -> bytes:
        return self.balances_tree.root

    def account(self, address: bytes) -> AccountRecord | None:
        return self.accounts.get(address)

    def balance(self, address: bytes) -> int:
        a = self.accounts.get(address)
        return a.balance if a is not None else 0

    def leaf_value(self, address: bytes) -> int:
        """The value of ``address``'s balance leaf: its balance plus its queued withdrawals."""
        return self.balance(address) + self.owed.get(address, 0)

    def nonce(self, address: bytes) -> int:
        a = self.accounts.get(address)
        return a.nonce if a is not None else 0

    def get_storage(self, address: bytes, slot: int) -> int:
        s = self.storage.get(address)
        return s.get(slot, 0) if s is not None else 0

    def iter_storage(self, address: bytes) -> Iterator[tuple[int, int]]:
        yield from sorted(self.storage.get(address, {}).items())

    def slot_count(self) -> int:
        return sum(len(s) for s in self.storage.values())

    # --- writes --------------------------------------------------------------------------
    def apply(
        self,
        accounts: dict[bytes, AccountChange],
        storage: dict[bytes, dict[int, int]],
        wiped: Iterable[bytes],
        salt_secret: bytes,
        version: int,
        undo_version: int | None = None,
        withdrawal_queue: tuple[Withdrawal, ...] | None = None,
        queue_senders: tuple[bytes, ...] = (),
    ) -> UndoRecord | None:
        """Apply one batch's net changes and update both trees incrementally.

        ``wiped``: accounts whose storage is cleared first (self-destructed contracts). With
        ``undo_version`` (the executor's version before the batch), also return what was
        overwritten, for ``undo``. ``withdrawal_queue``: the new queue (None: unchanged).
        """
        keep = undo_version is not None
        old_accounts: dict[bytes, AccountRecord | None] = {}
        old_storage: dict[bytes, dict[int, int]] = {}
        new_code: set[bytes] = set()
        state_changes: dict[bytes, bytes | None] = {}
        balance_changes: dict[bytes, bytes | None] = {}
        all_storage = self.storage
        for addr in wiped:
            old = all_storage.pop(addr, None)
            if old:
                if keep:
                    old_storage[addr] = dict(old)
                for slot in old:
                    state_changes[storage_key(addr, slot)] = None
        for addr, slots in storage.items():
            cur = all_storage.get(addr)
            if cur is None:
                cur = all_storage[addr] = {}
            if keep:
                prev = old_storage.setdefault(addr, {})
                for slot in slots:
                    if slot not in prev:
                        prev[slot] = cur.get(slot, 0)
            a2 = b"\x02" + addr
            for slot, value in slots.items():
                if value:
                    cur[slot] = value
                    state_changes[_keccak(a2 + slot.to_bytes(32, "big"))] = b"\x20" + value.to_bytes(32, "big")
                elif cur.pop(slot, None) is not None:
                    state_changes[_keccak(a2 + slot.to_bytes(32, "big"))] = None
            if not cur:
                del all_storage[addr]
        all_accounts = self.accounts
        queue_changed = withdrawal_queue is not None and (
            withdrawal_queue != self.withdrawal_queue or queue_senders != self.queue_senders
        )
        old_owed = self.owed
        in_tree = 0  # changed leaves that were in the tree before the batch
        new_owed = _owed(withdrawal_queue, queue_senders) if queue_changed and withdrawal_queue is not None else old_owed
        for addr, ch in accounts.items():
            if ch.code is not None and ch.code_hash not in self.code:
                self.code[ch.code_hash] = ch.code
                new_code.add(ch.code_hash)
            rec = all_accounts.get(addr)
            if rec is None:
                rec = AccountRecord()
                if keep:
                    old_accounts[addr] = None
            elif keep:
                old_accounts[addr] = AccountRecord(rec.nonce, rec.balance, rec.code_hash, rec.salt)
            had_entry = bool(rec.nonce) or rec.code_hash != KECCAK_EMPTY
            old_value = rec.balance + old_owed.get(addr, 0)
            rec.balance = ch.balance
            if _set_leaf(rec, addr, old_value, ch.balance + new_owed.get(addr, 0), salt_secret, version,
                         balance_changes, self._leaf_names) and old_value:
                in_tree += 1
            if rec.nonce != ch.nonce or rec.code_hash != ch.code_hash or not had_entry:
                rec.nonce, rec.code_hash = ch.nonce, ch.code_hash
                if rec.nonce or rec.code_hash != KECCAK_EMPTY:
                    state_changes[account_key(addr)] = account_payload(rec)
                elif had_entry:
                    state_changes[account_key(addr)] = None
            if rec.is_empty() and not new_owed.get(addr):
                all_accounts.pop(addr, None)
            else:
                all_accounts[addr] = rec
        old_queue = None
        old_senders = self.queue_senders
        if queue_changed and withdrawal_queue is not None:
            for addr in old_owed.keys() | new_owed.keys():  # owed changed without a balance change
                if addr in accounts or old_owed.get(addr, 0) == new_owed.get(addr, 0):
                    continue
                rec = all_accounts.get(addr)
                if rec is None:
                    rec = AccountRecord()
                    if keep:
                        old_accounts[addr] = None
                elif keep:
                    old_accounts[addr] = AccountRecord(rec.nonce, rec.balance, rec.code_hash, rec.salt)
                value = rec.balance + new_owed.get(addr, 0)
                old_value = rec.balance + old_owed.get(addr, 0)
                if _set_leaf(rec, addr, old_value, value, salt_secret, version, balance_changes, self._leaf_names) \
                        and old_value:
                    in_tree += 1
                if rec.is_empty() and not value:
                    all_accounts.pop(addr, None)
                else:
                    all_accounts[addr] = rec
            old_queue = self.withdrawal_queue
            self.queue_senders, self.owed = queue_senders, new_owed
            self._set_queue(withdrawal_queue, queue_senders, state_changes)
        if balance_changes and salt_secret != ZERO32:  # ZERO32: no secret (tests, or no balance moved)
            self._cover(balance_changes, salt_secret, version, in_tree, old_accounts if keep else None)
        if state_changes:
            self.commitment.update(state_changes)
        if balance_changes:
            self.balances_tree.update(balance_changes)
        if not keep:
            return None
        assert undo_version is not None
        return UndoRecord(old_accounts, old_storage, new_code, undo_version, old_queue, None, old_senders)

    def _cover(
        self,
        balance_changes: dict[bytes, bytes | None],
        salt_secret: bytes,
        version: int,
        in_tree: int,
        old_accounts: dict[bytes, AccountRecord | None] | None,
    ) -> None:
        """Re-salt the batch's cover leaves (leaf_cover.py) into ``balance_changes``; the
        tree is still the pre-batch one, so every member draws the same cover."""
        names = self._leaf_names
        if names is None:  # once per state object; then _set_leaf adds every new leaf's name
            names = self._leaf_names = {smt_key(a): a for a in self.accounts}
        tree = self.balances_tree
        for key in cover_keys(tree, salt_secret, version, balance_changes, len(balance_changes), len(tree) - in_tree):
            addr = names.get(key)
            rec = self.accounts.get(addr) if addr is not None else None
            if addr is None or rec is None:
                raise StateError("balances tree leaf without an account (state corrupted)")
            value = rec.balance + self.owed.get(addr, 0)
            if old_accounts is not None and addr not in old_accounts:  # else: kept before its nonce changed
                old_accounts[addr] = AccountRecord(rec.nonce, rec.balance, rec.code_hash, rec.salt)
            rec.salt = balance_salt(salt_secret, addr, version)
            balance_changes[key] = smt_leaf(key, value, rec.salt)

    def _set_queue(
        self, queue: tuple[Withdrawal, ...], senders: tuple[bytes, ...], state_changes: dict[bytes, bytes | None]
    ) -> None:
        self.withdrawal_queue = queue
        state_changes[WITHDRAWAL_QUEUE_KEY] = withdrawal_queue_payload(queue, senders) if queue else None

    def undo(self, rec: UndoRecord) -> None:
        """Put back what one batch overwrote (records, salts, slots, code) and both trees."""
        state_changes: dict[bytes, bytes | None] = {}
        balance_changes: dict[bytes, bytes | None] = {}
        for a, slots in rec.storage.items():
            cur = self.storage.setdefault(a, {})
            for slot, value in slots.items():
                if value:
                    cur[slot] = value
                    state_changes[storage_key(a, slot)] = storage_payload(value)
                elif cur.pop(slot, None) is not None:
                    state_changes[storage_key(a, slot)] = None
            if not cur:
                del self.storage[a]
        now_owed = self.owed
        old_owed = now_owed
        if rec.withdrawal_queue is not None:
            old_owed = _owed(rec.withdrawal_queue, rec.queue_senders)
        for a, old in rec.accounts.items():
            now = self.accounts.get(a)
            had_entry = now is not None and (bool(now.nonce) or now.code_hash != KECCAK_EMPTY)
            if old is None or old.is_empty():
                self.accounts.pop(a, None)
            else:
                self.accounts[a] = old
            has_entry = old is not None and (bool(old.nonce) or old.code_hash != KECCAK_EMPTY)
            if has_entry:
                assert old is not None
                state_changes[account_key(a)] = account_payload(old)
            elif had_entry:
                state_changes[account_key(a)] = None
            now_value = (now.balance if now else 0) + now_owed.get(a, 0)
            old_value = (old.balance if old else 0) + old_owed.get(a, 0)
            if (now_value, now.salt if now else ZERO32) != (old_value, old.salt if old else ZERO32):
                bkey = smt_key(a)
                balance_changes[bkey] = smt_leaf(bkey, old_value, old.salt) if old and old_value else None
        for h in rec.new_code:
            self.code.pop(h, None)
        if rec.withdrawal_queue is not None:
            self.queue_senders, self.owed = rec.queue_senders, old_owed
            self._set_queue(rec.withdrawal_queue, rec.queue_senders, state_changes)
        if state_changes:
            self.commitment.update(state_changes)
        if balance_changes:
            self.balances_tree.update(balance_changes)

    # --- snapshot ------------------------------------------------------------------------
    def snapshot(self, chain_id: int, version: int) -> bytes:
        """Canonical CBOR: equal states give equal bytes."""
        accounts = [
            [a, r.nonce, r.balance, r.code_hash, r.salt] for a, r in sorted(self.accounts.items())
        ]
        code = [[h, c] for h, c in sorted(self.code.items())]
        chains = self.contract_keys
        storage = [
            [a, [x for kv in sorted(slots.items()) for x in kv]]
            for a, slots in sorted(self.storage.items())
            if a not in chains
        ]
        m: dict[str, object] = {
            "v": SNAPSHOT_VERSION,
            "chain_id": chain_id,
            "version": version,
            "accounts": accounts,
            "code": code,
            "storage": storage,
        }
        if chains:  # absent when no contract has a key policy: the same bytes as before
            m["contract_keys"] = [c.to_cbor(a) for a, c in sorted(chains.items())]
            m["sealed_storage"] = [
                [a, c.rotation, self.storage_section(a)] for a, c in sorted(chains.items()) if a in self.storage
            ]
        if self.withdrawal_queue:  # absent when empty: the same bytes as before the queue existed
            m["withdrawal_queue"] = [
                [address_bytes(w.recipient), w.amount, s] for w, s in zip(self.withdrawal_queue, self.queue_senders, strict=True)
            ]
        return cbor2.dumps(m, canonical=True)

    def storage_section(self, address: bytes) -> bytes:
        """``address``'s storage sealed under its current contract key (as in a snapshot)."""
        chain = self.contract_keys[address]
        flat = [x for kv in sorted(self.storage.get(address, {}).items()) for x in kv]
        return seal_section(chain.current_key, address, chain.rotation, cbor2.dumps(flat, canonical=True))

    @classmethod
    def from_snapshot(cls, data: bytes, chain_id: int) -> tuple[WorldState, int]:
        """Parse and check a snapshot; rebuild both trees. Returns (state, version)."""
        try:
            m = cbor2.loads(data)
        except Exception as exc:
            raise StateError(f"snapshot is not valid CBOR ({type(exc).__name__})") from None
        if not isinstance(m, dict) or m.get("v") != SNAPSHOT_VERSION:
            raise StateError(f"snapshot must be a CBOR map with v={SNAPSHOT_VERSION}")
        if m.get("chain_id") != chain_id:
            raise StateError(f"snapshot is for chain id {m.get('chain_id')}, this executor runs {chain_id}")
        version = m.get("version")
        if not isinstance(version, int) or version < 0:
            raise StateError("snapshot field 'version' must be a non-negative integer")
        st = cls()
        try:
            for h, c in m["code"]:
                if not isinstance(h, bytes) or not isinstance(c, bytes) or keccak256(c) != h:
                    raise StateError("snapshot code entry does not match its hash")
                st.code[h] = c
            state_changes: dict[bytes, bytes | None] = {}
            balance_changes: dict[bytes, bytes | None] = {}
            for a, nonce, balance, code_hash, salt in m["accounts"]:
                _check_addr(a)
                if not (_is_u256(nonce) and _is_u256(balance)):
                    raise StateError("snapshot account nonce/balance must be uint256")
                if not (isinstance(code_hash, bytes) and len(code_hash) == 32 and isinstance(salt, bytes) and len(salt) == 32):
                    raise StateError("snapshot account code_hash/salt must be 32 bytes")
                if code_hash != KECCAK_EMPTY and code_hash not in st.code:
                    raise StateError("snapshot account refers to code it does not contain")
                rec = AccountRecord(nonce, balance, code_hash, salt)
                st.accounts[a] = rec
                if nonce or code_hash != KECCAK_EMPTY:
                    state_changes[account_key(a)] = account_payload(rec)
            for a, flat in m["storage"]:
                _check_addr(a)
                if not isinstance(flat, list) or len(flat) % 2:
                    raise StateError("snapshot storage must be a flat [slot, value, ...] list")
                slots: dict[int, int] = {}
                for i in range(0, len(flat), 2):
                    slot, value = flat[i], flat[i + 1]
                    if not (_is_u256(slot) and _is_u256(value)) or value == 0:
                        raise StateError("snapshot storage slots and values must be uint256, values non-zero")
                    slots[slot] = value
                    state_changes[storage_key(a, slot)] = storage_payload(value)
                st.storage[a] = slots
            for item in m.get("contract_keys", []):
                a, chain = ContractKeyChain.from_cbor(item)
                st.contract_keys[a] = chain
            sealed = []
            for a, rotation, blob in m.get("sealed_storage", []):
                owner = st.contract_keys.get(a) if isinstance(a, bytes) else None
                if owner is None or rotation != owner.rotation or not isinstance(blob, bytes):
                    raise StateError("snapshot sealed_storage entry has no matching current contract key")
                sealed.append([a, cbor2.loads(open_section(owner.current_key, a, rotation, blob))])
            for a, flat in sealed:
                if a in st.storage:
                    raise StateError("snapshot has a contract's storage both plain and sealed")
                _check_addr(a)
                if not isinstance(flat, list) or len(flat) % 2 or not flat:
                    raise StateError("snapshot sealed storage must be a non-empty flat [slot, value, ...] list")
                slots = {}
                for i in range(0, len(flat), 2):
                    slot, value = flat[i], flat[i + 1]
                    if not (_is_u256(slot) and _is_u256(value)) or value == 0:
                        raise StateError("snapshot storage slots and values must be uint256, values non-zero")
                    slots[slot] = value
                    state_changes[storage_key(a, slot)] = storage_payload(value)
                st.storage[a] = slots
            queue = m.get("withdrawal_queue", [])
            if not isinstance(queue, list) or len(queue) > MAX_QUEUED_WITHDRAWALS:
                raise StateError("snapshot withdrawal_queue must be a list of [recipient, amount]")
            ws = []
            senders = []
            for entry in queue:
                recipient, amount = entry[0], entry[1]
                sender = entry[2] if len(entry) == 3 else recipient  # older snapshots: no sender
                _check_addr(recipient)
                _check_addr(sender)
                if len(entry) not in (2, 3) or not _is_u256(amount) or amount == 0 or recipient == bytes(20):
                    raise StateError("snapshot withdrawal_queue entries need a non-zero recipient and amount")
                ws.append(Withdrawal(to_checksum(recipient), amount))
                senders.append(sender)
            if ws:
                st._set_queue(tuple(ws), tuple(senders), state_changes)
                st.queue_senders = tuple(senders)
                st.owed = _owed(st.withdrawal_queue, st.queue_senders)
            if st.owed.keys() - st.accounts.keys():
                raise StateError("snapshot withdrawal_queue sender has no account record (salt)")
            for a, rec in st.accounts.items():
                value = rec.balance + st.owed.get(a, 0)
                if value:
                    if value >= 1 << 256:
                        raise StateError("snapshot balance plus queued withdrawals overflows")
                    bkey = smt_key(a)
                    balance_changes[bkey] = smt_leaf(bkey, value, rec.salt)
        except ContractKeyError as exc:
            raise StateError(f"snapshot: {exc}") from None
        except (KeyError, IndexError, TypeError, ValueError, cbor2.CBORError) as exc:
            # IndexError: a short withdrawal_queue entry; CBORError (no ValueError in cbor2 5.9): a
            # sealed storage section whose plaintext is not CBOR
            if isinstance(exc, StateError):
                raise
            raise StateError(f"snapshot is malformed ({type(exc).__name__})") from None
        st.commitment.update(state_changes)
        st.balances_tree.update(balance_changes)
        return st, version


def _owed(queue: tuple[Withdrawal, ...], senders: tuple[bytes, ...]) -> dict[bytes, int]:
    if len(senders) != len(queue):
        raise StateError("the withdrawal queue and its senders differ in length")
    owed: dict[bytes, int] = {}
    for w, s in zip(queue, senders, strict=True):
        owed[s] = owed.get(s, 0) + w.amount
    return owed


def _set_leaf(
    rec: AccountRecord,
    addr: bytes,
    old_value: int,
    value: int,
    salt_secret: bytes,
    version: int,
    balance_changes: dict[bytes, bytes | None],
    names: dict[bytes, bytes] | None,
) -> bool:
    """Re-leaf ``addr`` when its leaf value (balance + owed) changed or it has no salt yet
    (True: it did)."""
    if value == old_value and not (value and rec.salt == ZERO32):
        return False
    bkey = smt_key(addr)
    if value:
        if names is not None:
            names[bkey] = addr
        rec.salt = balance_salt(salt_secret, addr, version)
        balance_changes[bkey] = smt_leaf(bkey, value, rec.salt)
    else:
        rec.salt = ZERO32
        balance_changes[bkey] = None
    return True


def _is_u256(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 256


def _check_addr(a: object) -> None:
    if not isinstance(a, bytes) or len(a) != 20:
        raise StateError("snapshot addresses must be 20 bytes")
