"""What routing-hint authentication costs the node per admitted envelope (issue 13 item 2).

    .venv/bin/python benchmarks/hint_auth.py [--n 5000] [--repeat 5]

Seals ``--n`` token-transfer envelopes (a signed EIP-1559 transaction of ~200 bytes, session
envelopes as the client seals them) from 100 senders, then times, in one thread, CPU time
(``time.process_time``), best of ``--repeat`` rounds:

1. ``HintVerifier.check`` (node/hintauth.py: decode, keccak over the envelope, one secp256k1
   recovery with coincurve), kind 0 (signed by the sender) -- **the number this prints as
   ``hint_auth_us_per_tx``**, what the ingress node pays once per envelope; a member receiving
   the envelope in a signed forward pays nothing;
2. the same for kind 1 (a gateway's session key; the sender's statement is verified once and
   cached, so this is also one recovery per envelope);
3. for scale: ``Mempool.add`` of the same envelopes (what every node pays per envelope anyway),
   and the sealing client's extra cost (one signature per envelope).

Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from enclavenet.crypto.envelope import HintSigner, RoutingHint, SessionKeys, seal
from enclavenet.crypto.hashing import address_bytes
from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.tx import sign_tx
from enclavenet.enclave.views import ViewDomain, session_digest
from enclavenet.node.hintauth import HintVerifier
from enclavenet.node.mempool import Mempool

CHAIN = 1337
DOMAIN = ViewDomain(CHAIN, 31337, "0x" + "11" * 20)
TRANSFER = bytes.fromhex("a9059cbb") + bytes(12) + b"\xab" * 20 + (1).to_bytes(32, "big")


def best_us(n: int, repeat: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    pub = X25519PrivateKey.generate().public_key().public_bytes_raw()
    keys = [SigningKey.generate() for _ in range(100)]
    sessions = SessionKeys()
    plain: list[tuple[bytes, RoutingHint]] = []
    for i in range(a.n):
        k = keys[i % len(keys)]
        nonce = i // len(keys)
        raw = sign_tx(k.secret, CHAIN, nonce, "0x" + "cd" * 20, TRANSFER, 0, 100_000)
        plain.append((raw, RoutingHint(address_bytes(k.address), nonce)))
    signers = {k.address: HintSigner(k.secret) for k in keys}
    delegated = {}
    for k in keys:
        sk = SigningKey.generate()
        stmt = k.sign(session_digest(DOMAIN, k.address, sk.address, 2**40))
        delegated[k.address] = HintSigner.delegated(sk.secret, address_bytes(sk.address), 2**40, stmt)

    def seal_all(with_signer: dict[str, HintSigner] | None) -> list[bytes]:
        out = []
        for i, (raw, hint) in enumerate(plain):
            k = keys[i % len(keys)]
            s = with_signer[k.address] if with_signer is not None else None
            out.append(seal(raw, pub, CHAIN, 0, hint, sessions.for_hint(hint, pub), s).envelope.encode())
        return out

    t = time.process_time()
    unsigned = seal_all(None)
    seal_plain_us = (time.process_time() - t) / a.n * 1e6
    t = time.process_time()
    kind0 = seal_all(signers)
    seal_signed_us = (time.process_time() - t) / a.n * 1e6
    kind1 = seal_all(delegated)

    v0 = HintVerifier(CHAIN, DOMAIN)
    v1 = HintVerifier(CHAIN, DOMAIN)
    for e in kind1[: len(keys)]:
        v1.check(e)  # statements cached, as after each sender's first envelope

    def check(v: HintVerifier, envs: list[bytes]) -> Callable[[], None]:
        def go() -> None:
            for e in envs:
                v.check(e)
        return go

    def add_all() -> None:
        mp = Mempool(max_total=10 * a.n, max_per_sender=10 * a.n)
        for e in kind0:
            mp.add(e, epochs=(0,), origin="127.0.0.1", group="g")

    res = {
        "n": a.n,
        "envelope_bytes": len(kind0[0]),
        "auth_bytes": len(kind0[0]) - len(unsigned[0]),
        "hint_auth_us_per_tx": round(best_us(a.n, a.repeat, check(v0, kind0)), 1),
        "hint_auth_delegated_us_per_tx": round(best_us(a.n, a.repeat, check(v1, kind1)), 1),
        "mempool_add_us_per_tx": round(best_us(a.n, a.repeat, add_all), 1),
        "client_sign_us_per_tx": round(seal_signed_us - seal_plain_us, 1),
    }
    print(f"{'envelope (transfer), bytes / of which authentication':52s} {res['envelope_bytes']:6d} / {res['auth_bytes']}")
    print(f"{'hint check, kind 0 (sender signs)':52s} {res['hint_auth_us_per_tx']:8.1f} us CPU per envelope")
    print(f"{'hint check, kind 1 (session key, statement cached)':52s} {res['hint_auth_delegated_us_per_tx']:8.1f} us")
    print(f"{'for scale: Mempool.add (every node, per envelope)':52s} {res['mempool_add_us_per_tx']:8.1f} us")
    print(f"{'client: signing the hint (extra per envelope)':52s} {res['client_sign_us_per_tx']:8.1f} us")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
