"""The contracts' Python side: QC encoding, simulated quotes, deploy/attach on the embedded L1.

The refusal suite runs on both backends in tests/integration/test_contracts_l1.py."""

from __future__ import annotations

import os
import re

import pytest
from web3 import Web3

from enclavenet.chain import EmbeddedL1
from enclavenet.contracts import (
    compact_signature,
    deploy_contracts,
    expand_signature,
    qc_signatures,
)
from enclavenet.contracts.deploy import DeployError, attach
from enclavenet.contracts.simulate import SimEnclave, SimPlatform, pick_qc, spread_types
from enclavenet.crypto.hashing import address_bytes
from enclavenet.crypto.quote import quote_digest
from enclavenet.crypto.secp256k1 import SECP256K1_N, SigningKey, recover_address


def test_compact_signature_round_trips_and_refuses_bad_input() -> None:
    key = SigningKey.generate()
    for _ in range(20):  # both recovery ids show up
        digest = os.urandom(32)
        sig = key.sign(digest)
        r, vs = compact_signature(sig)
        assert len(r) == len(vs) == 32 and expand_signature((r, vs)) == sig
        assert (vs[0] >> 7) == sig[64] - 27
    sig = key.sign(os.urandom(32))
    with pytest.raises(ValueError, match="65 bytes"):
        compact_signature(sig[:64])
    with pytest.raises(ValueError, match="v must be 27 or 28"):
        compact_signature(sig[:64] + b"\x01")
    high_s = (SECP256K1_N - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big")
    with pytest.raises(ValueError, match="malleable"):
        compact_signature(sig[:32] + high_s + sig[64:])


def test_qc_signatures_sorts_by_signer_and_drops_duplicates() -> None:
    keys = [SigningKey.generate() for _ in range(6)]
    digest = os.urandom(32)
    pairs = [(k.address, k.sign(digest)) for k in keys]
    out = qc_signatures(pairs + pairs[:2])
    assert len(out) == 6
    signers = [address_bytes(recover_address(digest, expand_signature(s))) for s in out]
    assert signers == sorted(signers) and len(set(signers)) == 6
    assert qc_signatures([s for _, s in pairs], digest) == out
    with pytest.raises(ValueError, match="need the digest"):
        qc_signatures([pairs[0][1]])


def test_simulated_quotes_use_the_shared_digest() -> None:
    p = SimPlatform(2)
    e = SimEnclave(2)
    q = p.quote(e, b"\x07" * 32, 1_900_000_000)
    d = quote_digest(2, b"\x07" * 32, e.address, q.enc_key_hash, q.expiry)
    assert recover_address(d, q.signature) == p.root_address
    assert "secret" not in repr(p) and "secret" not in repr(e)
    members = [SimEnclave(t) for t in spread_types(10)]
    assert [m.tee_type for m in members[:5]] == [1, 2, 3, 4, 1]
    qc = pick_qc(members, 7, 3)
    assert len(qc) == 7 and len({m.tee_type for m in qc}) >= 3 and len(set(map(id, qc))) == 7
    with pytest.raises(ValueError, match="not enough"):
        pick_qc(members[:2], 3, 1)


def test_deploy_checks_its_arguments() -> None:
    w3 = Web3()
    with pytest.raises(ValueError, match=re.escape("quorum must be in 1..32")):
        deploy_contracts(w3, "0x" + "11" * 20, 0, 1)
    with pytest.raises(ValueError, match=re.escape("min_types must be in 1..quorum")):
        deploy_contracts(w3, "0x" + "11" * 20, 3, 4)
    with pytest.raises(ValueError, match="no platform root"):
        deploy_contracts(w3, "0x" + "11" * 20, 3, 2, measurements={1: [b"\x01" * 32]})
    with pytest.raises(TypeError, match=re.escape("needs a web3.Web3 or a sender")):
        deploy_contracts(object(), "0x" + "11" * 20, 3, 2)  # type: ignore[arg-type]


def test_deploy_with_unlocked_accounts_and_attach() -> None:
    with EmbeddedL1() as l1:
        w3 = l1.w3
        owner = l1.accounts[3].address
        root = SigningKey.generate().address
        m = os.urandom(32)
        dep = deploy_contracts(w3, owner, 2, 1, platform_roots={4: root}, measurements={4: [m]})
        f = dep.rollup.functions
        assert dep.registry is dep.rollup and dep.registry_address == dep.rollup_address
        assert f.owner().call() == owner  # handed over by the deployer (account 0)
        assert (f.quorum().call(), f.minTypes().call(), f.platformRoot(4).call()) == (2, 1, root)
        assert list(f.measurementInfo(4, m).call()) == [1, False]
        # event scans may start at block_number: the contract was created in it
        assert w3.eth.get_code(dep.rollup_address, dep.block_number - 1) == b""
        assert w3.eth.get_code(dep.rollup_address, dep.block_number) != b""
        again = attach(w3, dep.rollup_address, dep.block_number)
        assert again.as_dict() == dep.as_dict()
        with pytest.raises(DeployError, match="not this EnclaveNet Rollup"):
            attach(w3, owner)
