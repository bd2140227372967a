"""Fuzz: peer messages into a node (node/node.py ``_peer_http``: the ops of peers.py, the
signed-request check of peerauth.py, the handlers of committee.py, viewchange.py, sync.py,
epochs.py / certify.py and ingress.py).

In process, no sockets: a ``Node`` whose enclave is member A of the fuzz committee
(``_fuzz_world.py``: head at height 1, height 2 proposed by C), with an L1 watcher that knows the
three members and the rule (quorum 2 of 2 types) and no L1 behind it. Requests go to
``_peer_http`` as aiohttp would hand them over. Inputs, for every op and unknown ones: random
bytes, random CBOR maps with fields named like the handlers', mutations of a valid message of
each op (the proposal of height 2, its announce, an epoch bundle request, a committee
signature request...), with a valid ``X-EnclaveNet-Peer-Auth`` signature by member B's enclave
for the ops that need one, or a random / mutated one.

Each asserts: the answer is 200 or a refusal (HTTP 400 with a CBOR ``{"error": message}`` that
is not empty), never a 500 (an unexpected exception: a bug); a refusal changes nothing (the
node's head, signatures, records, quotes, mempool; the enclave's fingerprint); no refusal
carries a key of the committee. One target gives every field of each valid message a value of
the wrong type (huge and negative integers, infinite floats, text, null...).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit._fuzz import assert_no_secret, cbor_values, examples, mutated
from tests.unit._fuzz_world import CHAIN, L1_CHAIN, World, world
from web3 import Web3

from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.enclave.harness import DEFAULT_ROLLUP
from enclavenet.node.config import NodeConfig
from enclavenet.node.host import EnclaveHost
from enclavenet.node.l1watch import L1Watcher, Member
from enclavenet.node.node import Node
from enclavenet.node.peers import AUTH_OPS, PEER_AUTH_HEADER

ZERO = "0x" + "00" * 20
LOOP = asyncio.new_event_loop()
OPS = sorted(["identity", "epoch_bundle", "txs", "propose", "batch", "snapshot", "epoch_push", "announce",
              "committee_sign", "timeout"])
FIELDS = ["proposer", "header", "signature", "input", "batch_data", "withdrawals", "sigs", "diff", "round", "tc",
          "height", "hash", "pending", "quote", "enc_pub", "epoch", "bundle", "envelopes", "members", "quorum",
          "min_types", "version", "parent", "locked", "signer"]


class _Request:
    """What ``_peer_http`` reads of an aiohttp request."""

    def __init__(self, op: str, body: bytes, auth: str | None) -> None:
        self.match_info = {"op": op}
        self.headers = {PEER_AUTH_HEADER: auth} if auth is not None else {}
        self.remote = "127.0.0.1"  # the sending host (unsigned txs forwards are grouped by it)
        self._body = body

    async def read(self) -> bytes:
        return self._body


class Harness:
    def __init__(self, w: World) -> None:
        self.w = w
        self.stale = False
        addrs = sorted((to_checksum(m.address) for m in w.members), key=lambda a: int(a, 16))
        c = to_checksum(w.members[2].address)
        run = next(r for r in (1, 2, 3) if (2 // r) % 3 == addrs.index(c))  # C is the round-0 proposer of height 2
        self.node = Node(NodeConfig(name="fz", data_dir=tempfile.mkdtemp(prefix="fuzz-peers-"), l1_rpc="http://127.0.0.1:9",
                                    rollup=DEFAULT_ROLLUP, registry=DEFAULT_ROLLUP, l1_chain_id=L1_CHAIN, chain_id=CHAIN,
                                    platform={"tee": "sgx"}, enclave={}, proposer_run=run, proposer_timeout=0.5))
        n = self.node
        n.store.ensure()
        n.host = EnclaveHost(w.a.handle)
        ident = w.a.identity
        n.address, n.tee_type, n.quote, n.enc_pub = to_checksum(ident["address"]), int(ident["tee_type"]), \
            bytes(ident["quote"]), bytes(ident["enc_pub"])
        watcher = L1Watcher(Web3(), DEFAULT_ROLLUP, DEFAULT_ROLLUP)
        watcher.cursor = 10**6  # every L1 block a proposal names is confirmed
        watcher.quorum, watcher.min_types, watcher.last_member_check = 2, 2, time.time()
        for m in w.members:
            a = to_checksum(m.address)
            watcher.members[a] = Member(a, int(m.identity["tee_type"]), 2**40, active=True, checked=True)
            n.quotes[a] = bytes(m.identity["quote"])
            n.enc_pubs[a] = bytes(m.identity["enc_pub"])
        n.watcher = watcher

        async def no_poll() -> None:
            return None

        async def l1_time(block: int) -> int:
            return 1_700_000_000

        n.l1.poll = no_poll  # type: ignore[method-assign]
        n.l1.block_time = l1_time  # type: ignore[method-assign]
        LOOP.run_until_complete(n.refresh_status())
        # the node's steady state: its enclave told the committee L1 shows (its peer loop does this
        # first; else the first request that calls update_committee would do it, a change of its own)
        LOOP.run_until_complete(n.epochs.update_committee())
        self.valid = self._valid_messages()

    def _valid_messages(self) -> dict[str, dict[str, Any]]:
        w, c = self.w, to_checksum(self.w.members[2].address)
        wire = {"input": {k: v for k, v in w.p2.items() if k != "envelopes"}, "header": w.o2["header"],
                "batch_data": w.o2["batch_data"], "withdrawals": [], "diff": w.o2["diff"]}
        b = w.members[1].identity
        return {
            "propose": {"proposer": c, "signature": w.o2["signature"], "sigs": [], **wire},
            "announce": {"proposer": c, "signature": w.o2["signature"], "sigs": [], **wire},
            "epoch_bundle": {"quote": bytes(b["quote"]), "enc_pub": bytes(b["enc_pub"]), "epoch": 0},
            "epoch_push": {"epoch": 1, "bundle": w.valid["epoch_import"]["bundle"]},
            "committee_sign": {"members": [bytes(m.identity["quote"]) for m in w.members], "quorum": 2, "min_types": 2},
            "batch": {"height": 1},
            "txs": {"envelopes": list(w.p2["envelopes"])},
            "timeout": {"height": 2, "round": 0, "parent": w.o1["header_hash"], "locked": bytes(32),
                        "signature": bytes(65), "signer": c},
            "identity": {}, "snapshot": {},
        }

    def sign(self, op: str, body: bytes, *, expiry: int | None = None) -> str:
        """The auth header member B's enclave gives ``op`` with ``body`` to A."""
        b = self.w.members[1]
        exp = expiry if expiry is not None else int(time.time()) + 60
        out = b.call("peer_auth", op=op, to=bytes.fromhex(self.node.address[2:]), body_hash=keccak256(body), expiry=exp)
        return f"{b.address}:{exp}:{bytes(out['signature']).hex()}"

    def fingerprint(self) -> tuple[Any, ...]:
        n = self.node
        return (n.head_height, n.head_hash, n.finalized, dict(n.my_sigs), sorted(n.records), sorted(n.accepted_records),
                n.epoch, list(n.epochs_held), dict(n.quotes), dict(n.enc_pubs), len(n.mempool), dict(n.chain),
                self.w.fingerprint())

    def close(self) -> None:
        """Stop the host's ecall thread (the enclave is the world's: it stays) and drop the data dir."""
        if self.node.host is not None:  # EnclaveHost.close() would close the enclave too: stop its thread only
            self.node.host._queue.put((-1, -1, None, None))
        shutil.rmtree(self.node.cfg.data_dir, ignore_errors=True)

    def post(self, op: str, body: bytes, auth: str | None) -> tuple[int, Any]:
        resp = LOOP.run_until_complete(asyncio.wait_for(self.node._peer_http(_Request(op, body, auth)), 30))  # type: ignore[arg-type]
        raw = resp.body
        assert isinstance(raw, bytes)
        return resp.status, cbor2.loads(raw)


_harness: Harness | None = None


def harness() -> Harness:
    global _harness
    w = world()
    if _harness is None or _harness.w is not w or _harness.stale:
        if _harness is not None:
            _harness.close()
        _harness = Harness(w)
    return _harness


def _check(op: str, body: bytes, auth: str | None) -> None:
    h = harness()
    before = h.fingerprint()
    inputs = h.w.input_records()
    status, out = h.post(op, body, auth)
    assert status in (200, 400), f"{op}: HTTP {status} {out!r}"
    if status == 200:  # accepted: what it changed is rebuilt for the next example
        if h.w.fingerprint() != before[-1] or h.w.input_records() != inputs:
            h.w.dirty = True
        elif h.fingerprint() != before:
            h.stale = True
        return
    assert isinstance(out, dict) and isinstance(out.get("error"), str) and out["error"], (op, out)
    assert_no_secret(out["error"], h.w.secrets())
    assert h.fingerprint() == before, f"{op} refused ({out['error']}) but changed the node"
    if h.w.input_records() != inputs:  # by design only after the enclave executed the input (_fuzz_world.py)
        assert op == "propose", (op, out)
        h.w.dirty = True


def _auth(op: str, body: bytes, how: str) -> str | None:
    return harness().sign(op, body) if how == "signed" and op in AUTH_OPS else None


@settings(max_examples=examples(100))
@given(
    st.one_of(st.sampled_from(OPS), st.text(max_size=10)),
    st.one_of(st.binary(max_size=64), st.dictionaries(st.sampled_from(FIELDS), cbor_values, max_size=6).map(cbor2.dumps),
              cbor_values.map(cbor2.dumps)),
    st.sampled_from(["signed", "signed", "none"]),
)
def test_random_peer_messages(op: str, body: bytes, how: str) -> None:
    _check(op, body, _auth(op, body, how))


@st.composite
def _mutated_message(draw: Any) -> tuple[str, bytes]:
    op = draw(st.sampled_from(sorted(harness().valid)))
    msg = dict(harness().valid[op])
    how = draw(st.sampled_from(["replace", "drop", "bytes", "add", "cbor"]))
    if how == "cbor" or not msg:
        return op, draw(mutated(cbor2.dumps(msg)))
    name = draw(st.sampled_from(sorted(msg)))
    if how == "replace":
        msg[name] = draw(st.one_of(cbor_values, st.sampled_from([2**40, 10**9, 2**64, 2**70, -1, 1.5, float("inf")])))
    elif how == "drop":
        del msg[name]
    elif how == "bytes" and isinstance(msg[name], bytes):
        msg[name] = draw(mutated(msg[name]))
    elif how == "bytes" and isinstance(msg[name], dict) and msg[name]:
        inner = dict(msg[name])
        inner[draw(st.sampled_from(sorted(inner)))] = draw(cbor_values)
        msg[name] = inner
    elif how == "bytes" and isinstance(msg[name], list) and msg[name]:
        i = draw(st.integers(0, len(msg[name]) - 1))
        msg[name] = list(msg[name])
        msg[name][i] = draw(mutated(msg[name][i])) if isinstance(msg[name][i], bytes) else draw(cbor_values)
    else:
        msg[draw(st.sampled_from(FIELDS))] = draw(cbor_values)
    return op, cbor2.dumps(msg)


@settings(max_examples=examples(150))
@given(_mutated_message())
def test_mutated_valid_peer_messages(om: tuple[str, bytes]) -> None:
    op, body = om
    _check(op, body, _auth(op, body, "signed"))


@settings(max_examples=examples(60))
@given(
    st.sampled_from(sorted(AUTH_OPS)),
    st.one_of(
        st.text(max_size=40),
        st.builds(lambda a, e, s: f"{a}:{e}:{s}", st.sampled_from(["0x" + "11" * 20, "zz", "", "0x" + "ab" * 21]),
                  st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=5)),
                  st.one_of(st.binary(max_size=70).map(bytes.hex), st.text(max_size=8))),
        st.just(b"").flatmap(lambda _: st.sampled_from(["expired", "ahead", "other_body", "mutated"])),
    ),
)
def test_forged_peer_auth_headers_are_refused(op: str, auth: str) -> None:
    h = harness()
    body = cbor2.dumps(h.valid.get(op, {}))
    if auth == "expired":
        auth = h.sign(op, body, expiry=int(time.time()) - 5)
    elif auth == "ahead":
        auth = h.sign(op, body, expiry=int(time.time()) + 10**6)
    elif auth == "other_body":
        auth = h.sign(op, body + b"\x00")
    elif auth == "mutated":
        good = h.sign(op, body)
        auth = good[:-3] + ("0" if good[-3] != "0" else "1") + good[-2:]
    before = h.fingerprint()
    status, out = h.post(op, body, auth)
    assert status == 400, f"{op} with a forged auth header {auth!r}: HTTP {status} {out!r}"
    assert "committee members only" in out["error"] or PEER_AUTH_HEADER in out["error"] or "signed request" in out["error"] \
        or "signature" in out["error"], out
    assert_no_secret(out["error"], h.w.secrets())
    assert h.fingerprint() == before


def _typed_fields() -> list[tuple[str, str]]:
    h = harness()
    return sorted((op, k) for op, msg in h.valid.items() for k, v in msg.items() if isinstance(v, bytes | int | list))


@settings(max_examples=examples(100))
@given(
    st.sampled_from(_typed_fields()),
    st.sampled_from([2**64, 2**70, 10**8, -1, float("inf"), float("nan"), 1.5, "00" * 32, [], {}, None, True,
                     b"", b"\xff", b"\x9f"]),  # bytes that are not CBOR (cbor2's errors are no ValueErrors)
)
def test_every_field_of_the_wrong_type(field: tuple[str, str], value: Any) -> None:
    """A CBOR integer where bytes are expected is refused (``bytes(10**8)`` would allocate 100 MB
    for a 9-byte message; ``bytes(2**64)`` raised OverflowError: HTTP 500); so is an infinite
    float where an integer is (``int(inf)``: OverflowError)."""
    op, name = field
    msg = {**harness().valid[op], name: value}
    body = cbor2.dumps(msg)
    _check(op, body, _auth(op, body, "signed"))


def test_the_valid_proposal_is_voted() -> None:
    """The mutations start from messages the node accepts (else they would test little)."""
    h = harness()
    body = cbor2.dumps(h.valid["propose"])
    status, out = h.post("propose", body, None)
    assert status == 200, out
    h.stale = True
    assert out["signer"] == h.node.address and h.node.head_height == 2
    h.w.dirty = True
