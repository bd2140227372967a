"""A small committee for the enclave fuzz targets (test_fuzz_ecalls.py, test_fuzz_sealed.py).

Three in-process members of three TEE vendors (quorum 2 of 2 types). Member C proposed heights
1 and 2 (a deposit and transfers, with sealed state diffs); A and B verified height 1, B height 2.
The fuzzed member is **A**: head at height 1, nothing finalised, height 2 not yet seen. So every
state-changing ecall has a valid request that A would accept (``valid``), to mutate.
"""

from __future__ import annotations

import time
from typing import Any

import cbor2
from eth_account import Account

from enclavenet.crypto.envelope import RoutingHint, seal
from enclavenet.crypto.hashing import address_bytes, keccak256
from enclavenet.enclave.harness import Member, batch_request, form_committee, program_config
from enclavenet.enclave.tx import sign_tx
from enclavenet.tee import DEFAULT_PROGRAM, EnclaveError, InProcessEnclave, SimulatedVendor

CHAIN = 4242
L1_CHAIN = 31337
VENDORS = [SimulatedVendor.generate(n) for n in ("sgx", "tdx", "sev-snp")]
CFG = program_config(VENDORS, chain_id=CHAIN, l1_chain_id=L1_CHAIN)
ALICE = Account.from_key(bytes.fromhex("a1" * 32))
BOB = Account.from_key(bytes.fromhex("b2" * 32))

# ecalls whose success changes the member (after one succeeds, the world is rebuilt)
STATE_CHANGING = {
    "committee", "epoch_genesis", "epoch_rotate", "epoch_import", "epoch_erase", "execute_batch",
    "verify_batch", "accept_header", "rollback", "timeout", "apply_batch", "restore", "stats",
}


def _tx(acct: Any, nonce: int, to: str, value: int, epoch_pub: bytes) -> bytes:
    raw = sign_tx(bytes(acct.key), CHAIN, nonce, to, b"", value, 21_000)
    return seal(raw, epoch_pub, CHAIN, 0, RoutingHint(address_bytes(acct.address), nonce)).envelope.encode()


def _log_item(out: dict[str, Any], sigs: list[bytes]) -> dict[str, Any]:
    """One height of a ``logs`` request as the node builds it (node/logindex.py)."""
    from enclavenet.enclave.batch import batch_data_items
    from enclavenet.node.logindex import meta_proof

    meta, proof = meta_proof(batch_data_items(out["batch_data"]))
    return {"blob": out["logs"], "header": out["header"], "signatures": sigs, "meta": meta, "proof": proof}


class World:
    def __init__(self) -> None:
        self.members = [Member(InProcessEnclave(v.new_platform(), DEFAULT_PROGRAM, CFG)) for v in VENDORS]
        a, b, c = self.members
        self.epoch_pub = form_committee(self.members, 2, 2, genesis=2)
        env1 = [_tx(ALICE, 0, BOB.address, 10**15, self.epoch_pub)]
        p1 = batch_request(1, bytes(32), l1_block=2, messages=[[0, 1, ALICE.address, 10**18, 2, b""]], envelopes=env1)
        o1 = c.call("execute_batch", with_diff=True, **p1)
        s1 = [o1["signature"]] + [m.call("verify_batch", header=o1["header"], **p1)["signature"] for m in (a, b)]
        env2 = [_tx(ALICE, 1, BOB.address, 10**15, self.epoch_pub), _tx(ALICE, 2, ALICE.address, 1, self.epoch_pub)]
        p2 = batch_request(2, o1["header_hash"], l1_block=2, timestamp=1_700_000_012, envelopes=env2)
        p2["messages"] = []
        o2 = c.call("execute_batch", with_diff=True, **p2)
        s2 = [o2["signature"], b.call("verify_batch", header=o2["header"], **p2)["signature"]]
        snap_c = c.call("snapshot")
        self.snap_a = a.call("snapshot")
        ident_a = a.identity
        view_plain = cbor2.dumps({"from": ALICE.address, "to": BOB.address, "data": b"", "value": 0, "gas": 50_000,
                                  "epoch": 0, "nonce": 1, "expiry": int(time.time()) + 600, "sig": bytes(65)})
        view_env = seal(view_plain, self.epoch_pub, CHAIN, 0).envelope.encode()
        self.o1, self.o2, self.p1, self.p2 = o1, o2, p1, p2
        # a valid (or at least well-formed, reaching deep) request for each ecall of member A
        self.valid: dict[str, dict[str, Any]] = {
            "status": {}, "identity": {}, "epochs": {}, "snapshot": {},
            "verify_batch": {**p2, "header": o2["header"]},
            "execute_batch": dict(p2),
            "apply_batch": {"header": o2["header"], "signatures": s2, "batch_data": o2["batch_data"], "diff": o2["diff"]},
            "accept_header": {"header": o1["header"], "signatures": s1},
            "rollback": {"height": 0},
            "restore": {"blob": snap_c["shared"], "header": o2["header"], "signatures": s2},
            "epoch_export": {"epoch": 0, "member": b.identity["quote"], "member_enc_pub": b.identity["enc_pub"]},
            "epoch_import": {"bundle": c.call("epoch_export", epoch=0, member=ident_a["quote"],
                                              member_enc_pub=ident_a["enc_pub"])["bundle"]},
            "committee_sign": {"members": [m.identity["quote"] for m in self.members], "quorum": 2, "min_types": 2},
            "peer_auth": {"op": "txs", "to": b.address, "body_hash": keccak256(b"x"), "expiry": 2**40},
            "view_call": {"envelope": view_env},
            "estimate_gas": {"envelope": view_env},
            "logs": {"envelope": view_env, "blobs": [_log_item(o1, s1), _log_item(o2, s2)]},
            "escape_leaf": {"address": ALICE.address, "expiry": 2**40, "signature": bytes(65)},
            "escape_export": {"height": 1},
            "timeout": {"height": 2, "round": 0},
        }
        self.snap_shared_c = snap_c
        self.dirty = False

    @property
    def a(self) -> Member:
        return self.members[0]

    def program(self, i: int = 0) -> Any:
        return self.members[i].handle._server.program  # type: ignore[attr-defined]

    def fingerprint(self, i: int = 0) -> tuple[Any, ...]:
        """What must not move when A refuses: its head, roots, epochs, committee and signing guard
        (less the guard's input records: see ``input_records``)."""
        m = self.members[i]
        p = self.program(i)
        guard = p._guard.to_cbor()
        return (
            cbor2.dumps(m.call("status"), canonical=True),
            cbor2.dumps(m.call("epochs"), canonical=True),
            cbor2.dumps(p._committee.to_cbor(), canonical=True),
            cbor2.dumps(_without_inputs(guard), canonical=True),
            p._ex.state_root,
        )

    def input_records(self, i: int = 0) -> bytes:
        """The guard's record of the batch inputs executed per (height, parent, round). By design
        (guard.py, "no re-execution oracle") execute_batch / verify_batch record the input they
        executed even when they then refuse (e.g. the proposed header does not match), so that a
        host cannot re-run other inputs on the same state; no other refusal may change it."""
        return cbor2.dumps(_inputs_only(self.program(i)._guard.to_cbor()), canonical=True)

    def secrets(self) -> list[bytes | str]:
        out: list[bytes | str] = []
        for i in range(len(self.members)):
            leaked = self.program(i).compromised_export()
            out += [leaked["signing_key_hex"], leaked["enc_key_hex"]]
            out += [v for keys in leaked["epochs"].values() for v in keys.values()]
        return out

    def close(self) -> None:
        for m in self.members:
            m.close()


_EMPTY_SLOT = {"round": 0, "signed": [], "allowed": None, "timeouts": [], "timed_out": -1}


def _without_inputs(obj: Any) -> Any:
    """The guard's record less its input records (and the slots that held nothing else)."""
    if isinstance(obj, dict):
        return {k: _without_inputs(v) for k, v in obj.items() if k != "inputs"}
    if isinstance(obj, list):
        out = [_without_inputs(v) for v in obj]
        return [v for v in out if not (isinstance(v, list) and len(v) == 2 and v[1] == _EMPTY_SLOT)]
    return obj


def _inputs_only(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (v if k == "inputs" else _inputs_only(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_inputs_only(v) for v in obj]
    return None


_world: World | None = None


def world() -> World:
    """The shared world, rebuilt when the last example changed it (so examples stay independent)."""
    global _world
    if _world is None or _world.dirty:
        if _world is not None:
            _world.close()
        _world = World()
    return _world


def ecall(w: World, method: str, payload: bytes) -> tuple[bytes | None, str | None]:
    """(result, None) or (None, refusal message) from member A; marks the world dirty on a
    success that may have changed A."""
    try:
        out = w.a.handle.ecall(method, payload)
    except EnclaveError as exc:
        return None, str(exc)
    if method in STATE_CHANGING:
        w.dirty = True
    return out, None
