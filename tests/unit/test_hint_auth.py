"""Routing-hint authentication at admission (issue 13 item 2; node/hintauth.py, envelope flag 4):
a node admits an envelope that names its sender only when that sender (or a session key it
authorised) signed it; a forged or unsigned hint is refused with a message that says what was
wrong, and nothing is queued or counted against the named sender. Plus the fairness that keeps
one client's flood from pushing another client back (node/mempool.py, node/admission.py)."""

from __future__ import annotations

import asyncio
import json
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from tests.unit._rpc_node import RpcNode
from tests.unit._rpc_node import serving as rpc_serving

from enclavenet.crypto.envelope import (
    FLAG_HINT_AUTH,
    Envelope,
    EnvelopeOpener,
    HintSigner,
    RoutingHint,
    SessionKey,
    hinted_fields,
    open_envelope,
    seal,
)
from enclavenet.crypto.hashing import address_bytes
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.views import ViewDomain, session_digest
from enclavenet.node.admission import Admission
from enclavenet.node.api import HINT_UNAUTHENTICATED
from enclavenet.node.hintauth import HintAuthError, HintVerifier
from enclavenet.node.jsonrpc import RpcError
from enclavenet.node.mempool import Mempool

CHAIN = 1337
ZERO = "0x" + "00" * 20
EPOCH_PRIV = X25519PrivateKey.generate()
EPOCH_PUB = EPOCH_PRIV.public_key().public_bytes_raw()
DOMAIN = ViewDomain(CHAIN, 31337, ZERO)
ALICE = SigningKey.generate()
MALLORY = SigningKey.generate()


def hint_of(key: SigningKey, nonce: int = 0) -> RoutingHint:
    return RoutingHint(address_bytes(key.address), nonce)


def sealed(key: SigningKey, nonce: int = 0, *, signer: HintSigner | None = None, hint: RoutingHint | None = None,
           session: SessionKey | None = None, chain: int = CHAIN) -> bytes:
    """An envelope with ``key``'s hint (or ``hint``), authenticated by ``signer`` (default: ``key``)."""
    return seal(b"tx %d" % nonce, EPOCH_PUB, chain, 0, hint or hint_of(key, nonce), session,
                signer or HintSigner(key.secret)).envelope.encode()


def verifier(**kw: Any) -> HintVerifier:
    return HintVerifier(CHAIN, DOMAIN, **kw)


# ---------------------------------------------------------------------------- the format
def test_an_authenticated_envelope_decodes_opens_and_verifies() -> None:
    for session in (None, SessionKey(EPOCH_PUB)):
        raw = sealed(ALICE, 3, session=session)
        env = Envelope.decode(raw)
        assert env.flags & FLAG_HINT_AUTH and env.hint == hint_of(ALICE, 3) and env.encode() == raw
        assert env.hint_auth is not None and len(env.hint_auth) == 66
        # the enclave opens it as before (the signature is not in the AAD; the flag is)
        assert open_envelope(env, EPOCH_PRIV, CHAIN).plaintext == b"tx 3"
        assert EnvelopeOpener(EPOCH_PRIV, CHAIN, 0).open(env).plaintext == b"tx 3"
        assert verifier().check(raw) == address_bytes(ALICE.address)
        assert hinted_fields(raw) == (0, address_bytes(ALICE.address), 3)


def test_clearing_the_authentication_flag_breaks_the_tag() -> None:
    """A host cannot strip the authentication to make an envelope look like the old format."""
    env = Envelope.decode(sealed(ALICE))
    stripped = Envelope(env.epoch, env.eph_pub, env.nonce, env.ciphertext, env.hint, env.session, None)
    with pytest.raises(Exception, match="bad tag"):
        open_envelope(Envelope.decode(stripped.encode()), EPOCH_PRIV, CHAIN)


def test_hinted_fields_agrees_with_decode_on_cut_and_flipped_envelopes() -> None:
    raw = sealed(ALICE, 9)
    for n in range(len(raw) - 120, len(raw) + 1):
        cut = raw[:n]
        for f in range(8):
            b = cut[:1] + bytes([f]) + cut[2:]
            try:
                env = Envelope.decode(b)
            except ValueError:
                env = None
            fast = hinted_fields(b)
            want = None if env is None or env.hint is None else (env.epoch, env.hint.sender, env.hint.nonce)
            assert fast == want, (n, f)


# ---------------------------------------------------------------------------- the check
def test_an_unsigned_hint_is_refused_with_what_to_do() -> None:
    old = seal(b"tx", EPOCH_PUB, CHAIN, 0, hint_of(ALICE)).envelope.encode()  # the format before flag 4
    with pytest.raises(HintAuthError, match=r"routing hint not authenticated.*upgrade"):
        verifier().check(old)
    no_hint = seal(b"view", EPOCH_PUB, CHAIN, 0).envelope.encode()
    assert verifier().check(no_hint) is None  # the mempool refuses it with its own reason


def test_a_hint_under_someone_elses_address_is_refused() -> None:
    forged = sealed(MALLORY, hint=hint_of(ALICE))  # Alice's address, Mallory's signature
    with pytest.raises(HintAuthError, match=f"names sender {ALICE.address} but is signed by {MALLORY.address}"):
        verifier().check(forged)


def test_a_signature_moved_to_other_bytes_is_refused() -> None:
    raw = bytearray(sealed(ALICE))
    good = verifier()
    for at in (10, 60, len(raw) - 1):  # ephemeral key, hint nonce, ciphertext
        bad = bytearray(raw)
        bad[at] ^= 1
        with pytest.raises(HintAuthError, match=r"signed by|does not recover"):
            good.check(bytes(bad))
    with pytest.raises(HintAuthError, match=r"signed by|does not recover"):
        HintVerifier(CHAIN + 1, DOMAIN).check(bytes(raw))  # another chain
    high_s = bytearray(raw)
    s = int.from_bytes(raw[83 + 32 : 83 + 64], "big")
    high_s[83 + 32 : 83 + 64] = (0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 - s).to_bytes(32, "big")
    with pytest.raises(HintAuthError, match="lower half"):
        good.check(bytes(high_s))


def _delegation(account: SigningKey, session: SigningKey, expiry: int, by: SigningKey | None = None) -> HintSigner:
    stmt = (by or account).sign(session_digest(DOMAIN, account.address, session.address, expiry))
    return HintSigner.delegated(session.secret, address_bytes(session.address), expiry, stmt)


def test_a_session_key_the_sender_authorised_may_sign_its_hints() -> None:
    sk = SigningKey.generate()
    now = [1_000.0]
    v = verifier(clock=lambda: now[0])
    raw = sealed(ALICE, signer=_delegation(ALICE, sk, 2_000))
    assert v.check(raw) == address_bytes(ALICE.address)
    assert v.check(sealed(ALICE, 1, signer=_delegation(ALICE, sk, 2_000))) is not None  # cached statement
    with pytest.raises(HintAuthError, match=r"session statement .* signed by"):
        v.check(sealed(ALICE, signer=_delegation(ALICE, sk, 2_000, by=MALLORY)))
    other = SigningKey.generate()  # Alice's statement, but the envelope signed by another key
    d = _delegation(ALICE, sk, 2_000)
    forged = HintSigner(other.secret, d.prefix)
    with pytest.raises(HintAuthError, match="not by the session key"):
        v.check(sealed(ALICE, signer=forged))
    now[0] = 2_000.0
    with pytest.raises(HintAuthError, match="expired"):
        v.check(raw)


# ---------------------------------------------------------------------------- the JSON-RPC method
class Node(RpcNode):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, rate_tx_per_sender=1.0)


def serving(data_dir: Path) -> AbstractAsyncContextManager[tuple[RpcNode, TestClient[Any, Any]]]:
    return rpc_serving(data_dir, rate_tx_per_sender=1.0)


async def send(client: TestClient[Any, Any], raw: bytes) -> Any:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": ["0x" + raw.hex()]}
    r = await client.post("/", data=json.dumps(body))
    return await r.json()


def test_forged_hints_are_refused_and_cost_the_named_sender_nothing(tmp_path: Path) -> None:
    """Mallory floods envelopes under Alice's address: each is refused (-32007, saying why), the node
    keeps serving, nothing is queued, and Alice's own per-sender quota (1 per second here) is intact."""

    async def go() -> None:
        async with serving(tmp_path) as (node, client):
            for n in range(20):
                out = await send(client, sealed(MALLORY, n, hint=hint_of(ALICE, n)))
                assert out["error"]["code"] == HINT_UNAUTHENTICATED, out
                assert f"names sender {ALICE.address} but is signed by {MALLORY.address}" in out["error"]["message"]
            old = await send(client, seal(b"tx", EPOCH_PUB, CHAIN, 0, hint_of(ALICE)).envelope.encode())
            assert old["error"]["code"] == HINT_UNAUTHENTICATED and "not authenticated" in old["error"]["message"]
            assert len(node.mempool) == 0 and node.store.read_pending() in (None, [])
            assert node.rate_limiters["tx_per_sender"].refused == 0
            ok = await send(client, sealed(ALICE, 0))  # Alice's quota was not spent by the forgeries
            assert "result" in ok, ok
            assert len(node.mempool) == 1 and node.mempool.entries()[0].sender == address_bytes(ALICE.address)

    asyncio.run(go())


def test_an_unsigned_forward_is_checked_a_members_forward_is_not(tmp_path: Path) -> None:
    async def go() -> None:
        node = Node(tmp_path)
        forged, good = sealed(MALLORY, hint=hint_of(ALICE)), sealed(ALICE, 0)
        out = await node.ingress.on_txs({"envelopes": [forged, good]}, remote="10.0.0.9")
        assert out == {"added": 1} and node.mempool.entries()[0].raw == good
        assert node.mempool.entries()[0].group.startswith("peer:")
        node2 = Node(tmp_path / "b")  # a member's forward: its ingress checked; its groups are kept
        out = await node2.ingress.on_txs({"envelopes": [good], "groups": ["g1"]}, trusted=True)
        assert out == {"added": 1} and node2.mempool.entries()[0].group == "g1"

    asyncio.run(go())


# ---------------------------------------------------------------------------- fairness
def _raw(key: SigningKey, nonce: int) -> bytes:
    return seal(b"x", EPOCH_PUB, CHAIN, 0, hint_of(key, nonce)).envelope.encode()


def test_batch_selection_takes_turns_between_clients() -> None:
    mp = Mempool(max_per_origin=10_000)
    spam = [SigningKey.generate() for _ in range(300)]
    for k in spam:
        mp.add(_raw(k, 0), group="spammer")
    honest = SigningKey.generate()
    for n in range(3):
        mp.add(_raw(honest, n), group="honest")
    first = mp.select(4, 1)
    assert [e.group for e in first] == ["spammer", "honest", "spammer", "honest"]
    assert [e.nonce for e in first if e.group == "honest"] == [0, 1]  # one sender's run stays in nonce order
    rest = mp.select(1000, 2)
    assert len(rest) == 299 and [e.nonce for e in rest if e.group == "honest"] == [2]
    one = Mempool()  # one client: the plain FIFO across senders
    for k in spam[:5]:
        one.add(_raw(k, 0), group="g")
    assert [e.sender for e in one.select(5, 1)] == [address_bytes(k.address) for k in spam[:5]]


def test_a_full_queue_still_admits_a_client_below_its_fair_share() -> None:
    adm = Admission(queue_s=1.0, min_batches=2, batch_size=lambda: 10)  # limit 20
    with pytest.raises(RpcError, match="busy"):
        adm.check(25)  # no fair share given: busy
    with pytest.raises(RpcError, match="busy"):
        adm.check(25, mine=25, groups=1)  # the flooding client itself
    adm.check(25, mine=0, groups=1)  # a newcomer: its share is 20 // 2
    adm.check(25, mine=9, groups=2)
    with pytest.raises(RpcError, match="busy"):
        adm.check(25, mine=10, groups=2)
    with pytest.raises(RpcError, match="busy"):
        adm.check(40, mine=0, groups=1)  # twice the limit: busy for everyone


def test_forwards_are_signed_by_a_key_the_members_enclave_delegated_and_believed_only_then(tmp_path: Path) -> None:
    """node/peerauth.py TxsSigner: one peer_auth ecall per delegation (not per burst); a receiver
    believes a burst signed under an active member's delegation, nothing else."""
    from enclavenet.crypto.peer import peer_request_digest
    from enclavenet.node.peerauth import TxsSigner, txs_trusted

    member = SigningKey.generate()

    class Host:
        calls = 0

        async def call(self, name: str, req: dict[str, Any]) -> dict[str, Any]:
            assert name == "peer_auth"
            Host.calls += 1
            d = peer_request_digest(31337, ZERO, "0x" + bytes(req["to"]).hex(), req["op"], req["body_hash"], req["expiry"])
            return {"signature": member.sign(d)}

    class Member(Node):
        def members(self) -> list[str]:
            return [member.address]

    async def go() -> None:
        sender, receiver = Member(tmp_path / "a"), Member(tmp_path / "b")
        sender.host, sender.address = Host(), member.address  # type: ignore[assignment]
        signer = TxsSigner()
        bodies = [b"burst %d" % i for i in range(5)]
        headers = [await signer.header(sender, b) for b in bodies]
        assert Host.calls == 1 and all(h is not None for h in headers)
        assert all(txs_trusted(receiver, b, h) for b, h in zip(bodies, headers, strict=True))
        assert not txs_trusted(receiver, b"another body", headers[0])  # the burst signature binds the body
        stranger = Node(tmp_path / "c")  # members() is empty: not an active member
        assert not txs_trusted(stranger, bodies[0], headers[0])
        forged = ":".join([*headers[0].split(":")[:3], SigningKey.generate().address, headers[0].split(":")[4]])
        assert not txs_trusted(receiver, bodies[0], forged)  # a host key the enclave did not delegate
        assert not txs_trusted(receiver, bodies[0], None) and not txs_trusted(receiver, bodies[0], "junk")

    asyncio.run(go())
