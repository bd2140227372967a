"""Issue 14, the attacks on shared snapshots, the committee policy and epoch bundles (C1, H4, Lows),
performed as the review did: in-process enclaves of three TEE types (sgx, tdx, sev-snp; quorum 2
of 2 types, the measured floors), the embedded L1 with the real Rollup, and the sev-snp member
broken through the fault hook ``compromise()`` (its signing key and epoch keys leaked).

Each test runs the attack to its end where the enclaves let it through, so it fails -- with the
thief paid, or the leaked key reading what it must not -- while the hole is open.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_account import Account
from web3.logs import DISCARD

from enclavenet.chain import EmbeddedL1
from enclavenet.contracts import deploy_contracts, qc_signatures
from enclavenet.crypto.envelope import open_envelope, seal
from enclavenet.crypto.hashing import to_checksum
from enclavenet.crypto.header import Header
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.harness import (
    Member,
    batch_request,
    form_committee,
    program_config,
    share_epoch,
    update_committee,
)
from enclavenet.enclave.keys import STATE_SUBKEY_INFO, EnclaveIdentity, EpochKeyManager
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor
from enclavenet.tee.platform import Quote, measure_enclave

CHAIN = 4242
ETH = 10**18
TYPES = ("sgx", "tdx", "sev-snp")
WITHDRAW = "0x00000000000000000000000000000000000057d0"


class World:
    """The Rollup on the embedded L1 and a committee of sgx, tdx, sev-snp (quorum 2 of 2 types)."""

    def __init__(self, l1: EmbeddedL1) -> None:
        self.l1 = l1
        self.owner = l1.sender(0)
        self.vendors = {t: SimulatedVendor.generate(t) for t in TYPES}
        roots = {v.tee_type: v.root_address for v in self.vendors.values()}
        dep = deploy_contracts(self.owner, self.owner.address, 2, 2, platform_roots=roots)
        self.rollup = dep.rollup
        self.f = dep.rollup.functions
        self.cfg = program_config(self.vendors.values(), chain_id=CHAIN, l1_chain_id=l1.chain_id,
                                  rollup=dep.rollup.address, min_quorum=2, min_types=2)
        meas = measure_enclave(DEFAULT_PROGRAM, self.cfg)
        for tee in roots:
            self.owner.transact(self.f.allowMeasurement(tee, meas))
        self.handles = {t: self.new_handle(t) for t in TYPES}
        self.m = {t: Member(h) for t, h in self.handles.items()}
        for mem in self.m.values():
            self.register(mem)
        self.epoch_pub = form_committee(list(self.m.values()), 2, 2)
        self.messages: list[list[Any]] = []
        self.head: tuple[int, bytes] = (0, bytes(32))
        self.accepted: dict[int, tuple[bytes, list[bytes]]] = {}  # height -> (header, QC)
        self.nonces: dict[str, int] = {}

    def new_handle(self, tee: str) -> InProcessEnclave:
        return InProcessEnclave(self.vendors[tee].new_platform(), DEFAULT_PROGRAM, self.cfg, allow_faults=True)

    def register(self, mem: Member) -> None:
        self.owner.transact(self.f.register(*Quote.decode(mem.identity["quote"]).registration_args()))

    def deposit(self, who: Any, value: int) -> None:
        """A real L1 deposit by ``who`` (a TxSender), recorded as the batch will see it."""
        rc = who.transact(self.f.deposit(), value=value)
        for ev in self.rollup.events.L1Message().process_receipt(rc, errors=DISCARD):
            a = ev.args
            self.messages.append([a.index, a.kind, to_checksum(a.sender), a.value, a.l1_block, bytes(a.payload)])

    def tx(self, who: Any, to: str, value: int) -> bytes:
        acct = getattr(who, "account", who)
        n = self.nonces.get(acct.address, 0)
        self.nonces[acct.address] = n + 1
        return seal(sign_tx(bytes(acct.key), CHAIN, n, to, b"", value, 21_000), self.epoch_pub, CHAIN, 0).envelope.encode()

    def batch(self, proposer: str, voter: str, envelopes: list[bytes] = (), *, submit: bool = True,
              epoch: int = 0) -> dict[str, Any]:
        """Execute the next height on ``proposer``, vote on ``voter``, submit to L1 with that QC,
        and report it accepted to every member that follows it."""
        h, prev = self.head
        msgs = [m for m in self.messages if m[0] >= self._consumed()]
        l1_block = max([m[4] for m in msgs], default=self._l1_block())
        req = batch_request(h + 1, prev, l1_block=l1_block, timestamp=1_700_000_000 + h, messages=msgs,
                            envelopes=list(envelopes), epoch=epoch)
        out = self.m[proposer].call("execute_batch", **req)
        vote = self.m[voter].call("verify_batch", header=out["header"], **req)
        sigs = [out["signature"], vote["signature"]]
        if submit:
            header = Header.decode(out["header"])
            digest = header.signing_digest(self.l1.chain_id, self.rollup.address)
            pairs = [(self.m[proposer].address, sigs[0]), (self.m[voter].address, sigs[1])]
            assert all(Account._recover_hash(digest, signature=s) == a for a, s in pairs)
            self.owner.transact(self.f.submitHeader(header.as_tuple(), [tuple(w) for w in out["withdrawals"]],
                                                    qc_signatures(pairs)))
            self.head = (h + 1, out["header_hash"])
            self.accepted[h + 1] = (out["header"], sigs)
            self._done = header.msg_count
            for t, mem in self.m.items():
                if t in (proposer, voter):
                    mem.call("accept_header", header=out["header"], signatures=sigs)
                elif mem.call("status")["head_hash"] == prev and epoch in mem.call("epochs")["held"]:
                    mem.call("apply_batch", header=out["header"], signatures=sigs, **req)  # outside the QC
        return out

    def _consumed(self) -> int:
        return getattr(self, "_done", 0)

    def _l1_block(self) -> int:
        return max([m[4] for m in self.messages], default=0)

    def balance(self, who: str) -> int:
        return int(self.owner.w3.eth.get_balance(who))


def leaked_state_subkey(leak: dict[str, Any], epoch: int, purpose: bytes) -> bytes:
    state_key = bytes.fromhex(leak["epochs"][epoch]["state_key"])
    info = STATE_SUBKEY_INFO + struct.pack(">Q", epoch) + purpose
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(state_key)


def open_shared(blob: bytes, key: bytes) -> dict[str, Any]:
    """What the thief does with the leaked epoch state key: decrypt a shared snapshot."""
    aad, nonce = blob[:13], blob[13:25]
    plain = cbor2.loads(AESGCM(key).decrypt(nonce, blob[25:], aad))
    assert isinstance(plain, dict)
    return plain


def reseal(plain: dict[str, Any], key: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return aad + nonce + AESGCM(key).encrypt(nonce, cbor2.dumps(plain), aad)


@pytest.fixture
def world() -> Iterator[World]:
    with EmbeddedL1() as l1:
        w = World(l1)
        try:
            yield w
        finally:
            for h in w.handles.values():
                h.close()


def test_c1_a_forged_shared_snapshot_with_a_fabricated_deposit_pays_no_thief(world: World) -> None:
    """C1 as demonstrated: sev-snp is broken; it executes a fake batch (a fabricated 1 ETH deposit
    to the thief), decrypts its own snapshot, puts the real L1 head back, re-seals it; the hosts of
    sgx and tdx restore it (against the accepted header and its QC, as nodes now do) and would
    then execute, sign and submit the thief's withdrawal."""
    victim, thief = world.l1.sender(1), Account.create()
    world.deposit(victim, ETH)
    world.batch("sgx", "tdx")  # height 1: the victim's deposit, accepted on L1
    assert world.balance(world.rollup.address) == ETH
    leak = world.handles["sev-snp"].compromise()
    key = leaked_state_subkey(leak, 0, b"snapshot-v1")
    snp = world.m["sev-snp"]
    real = open_shared(snp.call("snapshot")["shared"], key)
    h, prev = world.head
    fake_msg = [1, 1, thief.address, ETH, world.messages[0][4] + 1, b""]
    snp.call("execute_batch", **batch_request(h + 1, prev, l1_block=fake_msg[4], timestamp=1_700_000_100,
                                              messages=[fake_msg]))
    blob = snp.call("snapshot")["shared"]
    forged = open_shared(blob, key)
    forged["head"], forged["finalized"] = real["head"], real["finalized"]  # claims to be the L1 head
    forged_blob = reseal(forged, key, blob[:13])
    header1, qc1 = world.accepted[1]
    refusals = []
    for t in ("sgx", "tdx"):
        try:
            world.m[t].call("restore", blob=forged_blob, header=header1, signatures=qc1)
        except EnclaveError as exc:
            refusals.append(str(exc))
    if len(refusals) < 2:  # the hole is open: carry the theft through to L1
        try:
            world.batch("sgx", "tdx", [world.tx(thief, WITHDRAW, ETH)])
        except Exception as exc:
            refusals.append(f"theft stopped later: {exc}")
    assert world.balance(thief.address) == 0, "the thief was paid from a forged snapshot"
    assert world.balance(world.rollup.address) == ETH
    assert len(refusals) == 2 and all("not the accepted header" in r for r in refusals), refusals
    # the honest members are untouched and carry on from the real head
    for t in ("sgx", "tdx"):
        assert world.m[t].call("status")["head_hash"] == world.head[1]
    world.batch("tdx", "sgx", [world.tx(victim, victim.address, 1)])
    # a shared snapshot without the accepted header is refused outright, the honest one is restorable
    with pytest.raises(EnclaveError, match="only against the L1-accepted header"):
        world.m["sgx"].call("restore", blob=forged_blob)
    fresh = world.new_handle("sgx")
    try:
        fm = Member(fresh)
        quotes = [m.identity["quote"] for m in (*world.m.values(), fm)]
        update_committee((world.m["sgx"], world.m["tdx"], fm), (world.m["sgx"], world.m["tdx"]), quotes, 2, 2)
        share_epoch(world.m["sgx"], [fm], 0)
        good = world.m["tdx"].call("snapshot")["shared"]
        header2, qc2 = world.accepted[2]
        with pytest.raises(EnclaveError, match="QC: 1 member signatures"):
            fm.call("restore", blob=good, header=header2, signatures=qc2[:1])
        st = fm.call("restore", blob=good, header=header2, signatures=qc2)
        assert (st["height"], st["head_hash"], st["finalized_height"]) == (2, world.head[1], 2)
    finally:
        fresh.close()


def test_c1_a_forged_snapshot_moving_a_queued_withdrawal_to_a_victim_is_refused(world: World) -> None:
    """Beyond the roots the header names: a snapshot that reassigns the thief's queued withdrawal
    (the 17th of a batch, over the header cap) to the victim and moves the amount into the thief's
    spendable balance keeps every balance leaf (balance + queued) -- so the senders of queued
    withdrawals are part of the state root now, and the forgery no longer matches the header."""
    victim, thief = world.l1.sender(1), world.l1.sender(2)
    world.deposit(victim, ETH)
    world.deposit(thief, ETH)
    world.batch("sgx", "tdx")
    amount = 10**15
    outs = world.batch("sgx", "tdx", [world.tx(thief, WITHDRAW, amount) for _ in range(17)])
    assert len(outs["withdrawals"]) == 16  # one withdrawal of the thief stays queued
    leak = world.handles["sev-snp"].compromise()
    key = leaked_state_subkey(leak, 0, b"snapshot-v1")
    blob = world.m["sgx"].call("snapshot")["shared"]  # an honest snapshot, opened with the leaked key
    plain = open_shared(blob, key)
    st = cbor2.loads(plain["state"])
    t, v = bytes.fromhex(thief.address[2:]), bytes.fromhex(victim.address[2:])
    assert [q[2] for q in st["withdrawal_queue"]] == [t]
    st["withdrawal_queue"][0][2] = v
    for acct in st["accounts"]:
        if acct[0] == t:
            acct[2] += amount
        elif acct[0] == v:
            acct[2] -= amount
    plain["state"] = cbor2.dumps(st, canonical=True)
    forged = reseal(plain, key, blob[:13])
    header2, qc2 = world.accepted[2]
    with pytest.raises(EnclaveError, match=r"not the accepted header|does not match the expected state root"):
        world.m["tdx"].call("restore", blob=forged, header=header2, signatures=qc2)


def test_h4_the_host_cannot_lower_the_qc_rule_below_the_measured_floors(world: World) -> None:
    """H4: a host set quorum 1 / min_types 1, then a one-signature QC (the leaked sev-snp key) made
    an honest enclave adopt a batch with a fabricated deposit. The floors are in the measured config."""
    thief = Account.create()
    world.deposit(world.l1.sender(1), ETH)
    world.batch("sgx", "tdx")
    quotes = [m.identity["quote"] for m in world.m.values()]
    fresh = world.new_handle("tdx")  # a new enclave's first committee is the host's word: floors still hold
    try:
        fm = Member(fresh)
        with pytest.raises(EnclaveError, match="below this program's floor 2"):
            fm.call("committee", members=[*quotes, fm.identity["quote"]], quorum=1, min_types=1)
        assert fm.call("committee", members=[*quotes, fm.identity["quote"]], quorum=2, min_types=2)["how"] == "genesis"
    finally:
        fresh.close()
    honest = world.m["tdx"]
    with pytest.raises(EnclaveError, match="below this program's floor 2"):
        honest.call("committee", members=quotes, quorum=1, min_types=1)
    with pytest.raises(EnclaveError, match="below this program's floor 2"):
        honest.call("committee", members=quotes, quorum=2, min_types=1)
    leak = world.handles["sev-snp"].compromise()
    h, prev = world.head
    fake = [1, 1, thief.address, ETH, world.messages[0][4] + 1, b""]
    req = batch_request(h + 1, prev, l1_block=fake[4], timestamp=1_700_000_100, messages=[fake])
    out = world.m["sev-snp"].call("execute_batch", **req)
    assert SigningKey(bytes(leak["signing_key"])).address == out["signer"]
    with pytest.raises(EnclaveError, match="QC: 1 member signatures, quorum is 2"):
        honest.call("apply_batch", header=out["header"], signatures=[out["signature"]], **req)
    with pytest.raises(EnclaveError, match="QC: 1 member signatures"):
        honest.call("accept_header", header=out["header"], signatures=[out["signature"]])
    st = honest.call("status")
    assert (st["height"], st["finalized_height"], st["head_hash"]) == (1, 1, world.head[1])


def test_h4_a_host_cannot_add_a_revoked_member_and_export_it_the_next_epoch(world: World) -> None:
    """H4 as demonstrated: sev-snp is revoked on L1, the committee drops it and rotates; a host then
    put the revoked enclave back into its enclave's committee and exported the new epoch to it, which
    opened an epoch-1 envelope. Now only a certificate -- a QC of the current committee over the new
    one -- adds members, and a removed member is never re-admitted."""
    world.deposit(world.l1.sender(1), ETH)
    world.batch("sgx", "tdx")
    snp = world.m["sev-snp"]
    leak = world.handles["sev-snp"].compromise()
    world.owner.transact(world.f.revokeType(3))
    honest = [world.m["sgx"], world.m["tdx"]]
    quotes_all = [m.identity["quote"] for m in world.m.values()]
    for m in honest:  # what the nodes do on the revocation: drop it (stricter: no certificate needed)
        assert m.call("committee", members=quotes_all[:2], quorum=2, min_types=2)["how"] == "stricter"
    epoch1 = world.m["sgx"].call("epoch_rotate")
    share_epoch(world.m["sgx"], [world.m["tdx"]], 1)
    bundle = None
    refusals = []
    try:  # the malicious host of sgx puts the revoked enclave back and exports epoch 1 to it
        world.m["sgx"].call("committee", members=quotes_all, quorum=2, min_types=2)
        bundle = world.m["sgx"].call("epoch_export", epoch=1, member=snp.identity["quote"],
                                     member_enc_pub=snp.identity["enc_pub"])["bundle"]
    except EnclaveError as exc:
        refusals.append(str(exc))
    if bundle is not None:  # the hole is open: the revoked enclave reads an epoch-1 envelope
        snp.call("committee", members=quotes_all, quorum=2, min_types=2)
        snp.call("epoch_import", bundle=bundle)
        env = seal(b"secret for epoch 1", epoch1["epoch_pub"], CHAIN, 1)
        keys = world.handles["sev-snp"].compromise()["epochs"]
        if 1 in keys:
            opened = open_envelope(env.envelope, X25519PrivateKey.from_private_bytes(bytes.fromhex(keys[1]["tx_key"])), CHAIN)
            assert opened.plaintext != b"secret for epoch 1", "the revoked enclave opened an epoch-1 envelope"
    assert refusals and "was removed from the committee and is never re-admitted" in refusals[0], refusals
    # a never-seen enclave of the revoked type: no certificate, a forged one (leaked key only), or
    # a certificate signed before the revocation -- all refused
    other = world.new_handle("sev-snp")
    try:
        om = Member(other)
        quotes = [*quotes_all[:2], om.identity["quote"]]
        with pytest.raises(EnclaveError, match=r"adds member .* needs a certificate"):
            world.m["sgx"].call("committee", members=quotes, quorum=2, min_types=2)
        old_cert = snp.call("committee_sign", members=quotes_all, quorum=2, min_types=2)
        with pytest.raises(EnclaveError, match="was removed from the committee and is never re-admitted"):
            world.m["sgx"].call("committee", members=quotes_all, quorum=2, min_types=2, version=old_cert["version"],
                                signatures=[old_cert["signature"]])
        thief_sig = SigningKey(bytes(leak["signing_key"]))
        fields = {"members": quotes, "quorum": 2, "min_types": 2}
        one = world.m["sgx"].call("committee_sign", **fields)
        with pytest.raises(EnclaveError, match="certificate refused: QC: 1 member signatures"):
            world.m["tdx"].call("committee", **fields, version=one["version"], signatures=[one["signature"]])
        assert thief_sig.address == snp.address
        # the certified path works: both honest members sign, both adopt it, the newcomer gets epoch 1
        two = world.m["tdx"].call("committee_sign", **fields)
        assert two["digest"] == one["digest"]
        for m in honest:  # a signature by a non-member (here the revoked one) is skipped, not fatal
            assert m.call("committee", **fields, version=one["version"],
                          signatures=[old_cert["signature"], one["signature"], two["signature"]])["how"] == "certified"
        with pytest.raises(EnclaveError, match="was removed from the committee"):
            world.m["sgx"].call("committee_sign", members=quotes_all, quorum=2, min_types=2)
        om.call("committee", **fields, version=one["version"], signatures=[one["signature"], two["signature"]])
        share_epoch(world.m["sgx"], [om], 1)
        assert om.call("epochs")["held"][1] == epoch1["epoch_pub"]
    finally:
        other.close()


def test_h4_restoring_an_old_local_blob_brings_no_erased_epoch_key_back(world: World) -> None:
    """H4: forward secrecy was broken by restoring an older local blob into the running enclave: the
    erased epoch keys came back. The erasure marks, the anchored epoch's grace window and the newer
    committee of the running enclave survive such a restore."""
    world.deposit(world.l1.sender(1), ETH)
    world.batch("sgx", "tdx")
    sgx = world.m["sgx"]
    oldest_local = sgx.call("snapshot")["local"]  # epoch 0 only, its state sealed under epoch 0
    sgx.call("epoch_rotate")
    share_epoch(sgx, [world.m["tdx"]], 1)
    old_local = sgx.call("snapshot")["local"]  # epochs 0 and 1, the committee with sev-snp
    quotes = [m.identity["quote"] for m in world.m.values()]
    sgx.call("committee", members=quotes[:2], quorum=2, min_types=2)  # sev-snp dropped
    sgx.call("epoch_rotate")
    share_epoch(sgx, [world.m["tdx"]], 2)
    assert sgx.call("epochs")["held"].keys() == {1, 2}  # epoch 0 erased by the grace rule
    old_env = seal(b"an epoch-0 secret", world.epoch_pub, CHAIN, 0)
    st = sgx.call("restore", blob=old_local)
    assert st["address"] == sgx.address and st["height"] == 1
    keys = world.handles["sgx"].compromise()["epochs"]
    assert 0 not in keys, "an erased epoch key came back with an old local blob"
    assert st["epochs_held"] == [1]
    with pytest.raises(EnclaveError, match="unknown or erased"):
        sgx.call("view_call", envelope=old_env.envelope.encode())
    snp = world.m["sev-snp"]
    with pytest.raises(EnclaveError, match="not a member"):  # the committee did not go back either
        sgx.call("epoch_export", epoch=1, member=snp.identity["quote"], member_enc_pub=snp.identity["enc_pub"])
    # a blob whose state is sealed under an erased epoch is not opened at all; nothing changes
    with pytest.raises(EnclaveError, match="sealed under epoch 0, whose keys this enclave does not hold"):
        sgx.call("restore", blob=oldest_local)
    assert sgx.call("status")["epochs_held"] == [1] and 0 not in world.handles["sgx"].compromise()["epochs"]


def test_low_a_bundle_for_a_far_epoch_is_refused(world: World) -> None:
    """Low: the broken sev-snp member crafts a signed bundle for epoch 2^32 to an honest member
    (which would then propose at L1's epoch limit). Bundles more than one epoch ahead are refused."""
    leak = world.handles["sev-snp"].compromise()
    ident = EnclaveIdentity.from_secret_bytes(cbor2.dumps(
        {"v": 1, "sign": bytes(leak["signing_key"]), "enc": bytes.fromhex(leak["enc_key_hex"])}))
    thief_keys = EpochKeyManager(ident)
    thief_keys.new_epoch(1 << 32)
    sgx = world.m["sgx"]
    mgr = EpochKeyManager(ident)
    mgr.new_epoch(2)
    bundle2 = mgr.export_epoch(2, sgx.address, sgx.identity["enc_pub"])
    far_bundle = thief_keys.export_epoch(1 << 32, sgx.address, sgx.identity["enc_pub"])
    for b, e in ((far_bundle, 1 << 32), (bundle2, 2)):
        with pytest.raises(EnclaveError, match=f"epoch {e} is more than one above this enclave's current epoch 0"):
            sgx.call("epoch_import", bundle=b)
    assert sgx.call("epochs")["current"] == 0
    # a member that missed rotations skips ahead only as far as an accepted (QC'd) header shows
    world.deposit(world.l1.sender(1), ETH)
    world.batch("tdx", "sev-snp")
    header1, qc1 = world.accepted[1]
    with pytest.raises(EnclaveError, match="QC: 1 member signatures"):
        sgx.call("epoch_import", bundle=bundle2, header=header1, signatures=qc1[:1])
    with pytest.raises(EnclaveError, match="epoch 2 is more than one above this enclave's current epoch 0"):
        sgx.call("epoch_import", bundle=bundle2, header=header1, signatures=qc1)  # header 1 is of epoch 0
    mgr1 = EpochKeyManager(ident)
    mgr1.new_epoch(1)
    assert sgx.call("epoch_import", bundle=mgr1.export_epoch(1, sgx.address, sgx.identity["enc_pub"]))["epoch"] == 1


def test_low_a_member_that_missed_rotations_skips_ahead_only_as_far_as_an_accepted_header(world: World) -> None:
    """The bound must not strand an honest member that missed several rotations: an accepted
    (QC'd) header of a later epoch lets it import that epoch's keys directly."""
    sgx, tdx, snp = world.m["sgx"], world.m["tdx"], world.m["sev-snp"]
    world.deposit(world.l1.sender(1), ETH)
    world.batch("sgx", "tdx")
    for e in (1, 2, 3):  # sev-snp is away for three rotations
        sgx.call("epoch_rotate")
        share_epoch(sgx, [tdx], e)
    world.batch("tdx", "sgx", epoch=3)
    header, qc = world.accepted[2]
    ident = snp.identity
    bundle = sgx.call("epoch_export", epoch=3, member=ident["quote"], member_enc_pub=ident["enc_pub"])["bundle"]
    with pytest.raises(EnclaveError, match="epoch 3 is more than one above this enclave's current epoch 0"):
        snp.call("epoch_import", bundle=bundle)
    assert snp.call("epoch_import", bundle=bundle, header=header, signatures=qc)["epoch"] == 3
