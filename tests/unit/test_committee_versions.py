"""Committee certificates when members are at different versions of the same committee.

Members that joined at different times hold the same committee at different versions (one took
the first committee whole, another got the last member by a certificate). Each used to sign only
its own ``version + 1``, so a certificate for the next committee never had a QC of one version
and the new member was never admitted (tests/integration/test_dap_devnet.py stalled on it). A
signer asked for a version signs at ``max(own + 1, asked)``: one round at the highest version
gathers a QC every member accepts, and no version is ever used twice downward.
"""

from __future__ import annotations

import pytest

from enclavenet.crypto.secp256k1 import SigningKey
from enclavenet.enclave.committee import Committee, CommitteeContext
from enclavenet.enclave.errors import EnclaveRefusal
from enclavenet.tee.platform import QuoteClaims

CTX = CommitteeContext(chain_id=1337, l1_chain_id=31337, rollup="0x" + "11" * 20, min_quorum=2, min_types=1)


def _claims(key: SigningKey, tee_type: int) -> QuoteClaims:
    return QuoteClaims(tee_type=tee_type, measurement=b"\x01" * 32, enclave=key.address,
                       enc_key_hash=key.address.encode().ljust(32, b"\0")[:32], expiry=2**40, tcb_level=0, fields={})


def test_members_at_different_versions_certify_one_next_committee() -> None:
    keys = [SigningKey.generate() for _ in range(4)]
    claims = [_claims(k, 1 + i % 2) for i, k in enumerate(keys)]
    three, four = claims[:3], claims
    late, early = Committee(), Committee()
    early.update(three, 2, 1, CTX)  # genesis of three, then the fourth certified: version 1
    v, digest = early.proposal(four, 2, 1, CTX)
    early.update(four, 2, 1, CTX, version=v, signatures=[keys[0].sign(digest), keys[1].sign(digest)])
    late.update(four, 2, 1, CTX)  # joined later: took the four as its first committee, version 0
    assert (early.version, late.version) == (1, 0) and early.members == late.members

    nxt = claims[:3]  # member 3 left; then a new member 4 joins (needs a certificate)
    k4 = SigningKey.generate()
    nxt = [*nxt, _claims(k4, 2)]
    # each at its own next version: two different digests, no QC of either for the other
    (ve, de), (vl, dl) = early.proposal(nxt, 2, 1, CTX), late.proposal(nxt, 2, 1, CTX)
    assert (ve, vl) == (2, 1) and de != dl
    with pytest.raises(EnclaveRefusal, match="needs a version above the current 1"):
        early.update(nxt, 2, 1, CTX, version=vl, signatures=[keys[1].sign(dl), keys[2].sign(dl)])
    # asked at the highest version seen, both sign the same digest; both adopt the certificate
    (ve, de), (vl, dl) = early.proposal(nxt, 2, 1, CTX, at=2), late.proposal(nxt, 2, 1, CTX, at=2)
    assert (ve, de) == (vl, dl) == (2, de)
    cert = [keys[0].sign(de), keys[1].sign(de)]
    for c in (early, late):
        assert c.update(nxt, 2, 1, CTX, version=2, signatures=cert) == "certified"
        assert c.version == 2
    # a version is never used downward: asked for an old one, a member signs above its own
    assert early.proposal(claims[:3], 2, 1, CTX, at=1)[0] == 3
