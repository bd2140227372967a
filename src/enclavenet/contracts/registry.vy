# pragma version 0.4.3
# @license MIT
"""
@title EnclaveNet committee registry (a module of the Rollup contract)
@notice Platform roots (one secp256k1 root address per TEE type), allowed enclave
        measurements, registered enclaves, the committee policy, and the quorum
        certificate (QC) check -- one SLOAD per signer, nothing else.
@dev    The quote digest is exactly `enclavenet.crypto.quote.quote_digest`. This module
        is compiled into Rollup.vy (`initializes: registry`) so a header's QC check needs
        no external call; docs/CONTRACTS.md explains why and documents the storage.

        Revocation of a TEE type or a measurement sets a bit in a bitmap (the source of
        truth, read at registration) AND bumps the revocation generation `rgen` kept in
        the hot slot. Every enclave record carries the generation it was last checked
        against the bitmaps. A QC signer whose record is current needs no bitmap read;
        a stale one is re-checked against the bitmaps on the spot (refused if revoked,
        else its record is brought up to date). So a QC reads no bitmap in the steady
        state, and a revocation takes effect at once.
"""

import state

uses: state

# enclavenet.crypto.quote.QUOTE_DOMAIN
QUOTE_DOMAIN: constant(bytes32) = keccak256("EnclaveNet.Quote.v1")

# Most signatures a QC may carry, hence the largest quorum.
MAX_QC: constant(uint256) = 32
MAX_TYPE: constant(uint256) = 255

# secp256k1 group order / 2: a larger s is the malleable twin of a valid signature
HALF_N: constant(uint256) = 57896044618658097711785492504343953926418782870149553404541318813166107729152
LOW_255: constant(uint256) = 2**255 - 1

# An enclave record is ONE storage slot:
#   bits   0..7    TEE type (0 = never registered)
#   bits   8..39   measurement id (from 1)
#   bits  40..103  expiry (unix seconds; zeroed on revocation)
#   bit  104       revoked
#   bits 224..255  rgen: the revocation generation the record was last checked against
TYPE_MASK: constant(uint256) = 2**8 - 1
MID_SHIFT: constant(uint256) = 8
MID_MASK: constant(uint256) = 2**32 - 1
EXP_SHIFT: constant(uint256) = 40
EXP_MASK: constant(uint256) = 2**64 - 1
REVOKED_BIT: constant(uint256) = 2**104
GEN_SHIFT: constant(uint256) = 224
NOT_GEN: constant(uint256) = 2**224 - 1



struct Signature:
    # EIP-2098 compact signature: r, and s with the recovery bit (v - 27) as its top bit
    r: bytes32
    vs: bytes32


struct EnclaveInfo:
    tee_type: uint256
    measurement: bytes32
    expiry: uint256
    revoked: bool
    enc_key_hash: bytes32
    active: bool


event OwnershipTransferred:
    previous_owner: indexed(address)
    new_owner: indexed(address)


event PolicySet:
    quorum: uint256
    min_types: uint256


event PlatformRootSet:
    tee_type: indexed(uint256)
    root: address


event TeeTypeRevoked:
    tee_type: indexed(uint256)


event MeasurementAllowed:
    measurement: indexed(bytes32)
    tee_type: indexed(uint256)
    measurement_id: uint256


event MeasurementRevoked:
    measurement: indexed(bytes32)
    tee_type: indexed(uint256)
    measurement_id: uint256


event EnclaveRegistered:
    enclave: indexed(address)
    tee_type: indexed(uint256)
    measurement: bytes32
    enc_key_hash: bytes32
    expiry: uint256


event EnclaveRevoked:
    enclave: indexed(address)


owner: public(address)
# bit (id % 256) of word (id / 256): measurement `id` revoked
_revoked: HashMap[uint256, uint256]
# bit t: TEE type t revoked
_revoked_types: uint256
platformRoot: public(HashMap[uint256, address])
# TEE type -> measurement -> measurement id (0 = not allowed); a measurement is allowed
# per TEE type (the same program measured on two platforms is two entries)
_measurements: HashMap[uint256, HashMap[bytes32, uint256]]
measurementById: public(HashMap[uint256, bytes32])
measurementCount: public(uint256)
# packed enclave records, see above
_enclaves: HashMap[address, uint256]
encKeyHash: public(HashMap[address, bytes32])


@deploy
def __init__(owner: address, quorum: uint256, min_types: uint256):
    assert owner != empty(address), "Registry: owner is the zero address"
    self.owner = owner
    self._set_policy(quorum, min_types)
    log OwnershipTransferred(previous_owner=empty(address), new_owner=owner)


# ---------------------------------------------------------------- administration


@internal
@view
def _only_owner():
    assert msg.sender == self.owner, "Registry: caller is not the owner"


@internal
def _set_policy(quorum: uint256, min_types: uint256):
    assert quorum >= 1 and quorum <= MAX_QC, "Registry: quorum must be in 1..32"
    assert min_types >= 1 and min_types <= quorum, "Registry: min_types must be in 1..quorum"
    state.hot = (
        (state.hot & ~state.POLICY_FIELDS)
        | (quorum << state.QUORUM_SHIFT)
        | (min_types << state.MINTYPES_SHIFT)
    )
    log PolicySet(quorum=quorum, min_types=min_types)


@internal
def _bump_rgen():
    """A type or measurement was revoked: every record must be re-checked once."""
    hot: uint256 = state.hot
    gen: uint256 = (hot >> state.RGEN_SHIFT) & state.W32
    assert gen < state.W32, "Registry: revocation generation exhausted"
    state.hot = hot + (1 << state.RGEN_SHIFT)


@internal
@view
def _mid_revoked(mid: uint256) -> bool:
    return self._revoked[mid >> 8] & (1 << (mid & 255)) != 0


@external
def transferOwnership(new_owner: address):
    """@notice Hand the registry (and so the Rollup's administration) to a new owner."""
    self._only_owner()
    assert new_owner != empty(address), "Registry: new owner is the zero address"
    log OwnershipTransferred(previous_owner=self.owner, new_owner=new_owner)
    self.owner = new_owner


@external
def setPolicy(quorum: uint256, min_types: uint256):
    """@notice Signatures (`quorum`) and distinct TEE types (`min_types`) a QC needs."""
    self._only_owner()
    self._set_policy(quorum, min_types)


@external
def setPlatformRoot(tee_type: uint256, root: address):
    """
    @notice Add a TEE type (sgx 1, tdx 2, sev-snp 3, csv 4, ... up to 255) or rotate its
            root, the key that signs its quotes. Enclaves registered under the old root
            stay registered until they expire or are revoked.
    """
    self._only_owner()
    assert tee_type >= 1 and tee_type <= MAX_TYPE, "Registry: TEE type must be in 1..255"
    assert root != empty(address), "Registry: platform root is the zero address"
    assert self._revoked_types & (1 << tee_type) == 0, "Registry: TEE type is revoked"
    self.platformRoot[tee_type] = root
    log PlatformRootSet(tee_type=tee_type, root=root)


@external
def allowMeasurement(tee_type: uint256, measurement: bytes32):
    """@notice Allow enclaves of `tee_type` running the program `measurement` to register."""
    self._only_owner()
    assert tee_type >= 1 and tee_type <= MAX_TYPE, "Registry: TEE type must be in 1..255"
    assert self.platformRoot[tee_type] != empty(address), "Registry: unknown TEE type"
    assert self._revoked_types & (1 << tee_type) == 0, "Registry: TEE type is revoked"
    assert measurement != empty(bytes32), "Registry: measurement is zero"
    assert self._measurements[tee_type][measurement] == 0, "Registry: measurement already allowed (or revoked) for this TEE type"
    mid: uint256 = self.measurementCount + 1
    assert mid <= MID_MASK, "Registry: too many measurements"
    self.measurementCount = mid
    self._measurements[tee_type][measurement] = mid
    self.measurementById[mid] = measurement
    log MeasurementAllowed(measurement=measurement, tee_type=tee_type, measurement_id=mid)


@external
def revokeMeasurement(tee_type: uint256, measurement: bytes32):
    """@notice Revoke a measurement: its enclaves stop counting and it cannot register."""
    self._only_owner()
    mid: uint256 = self._measurements[tee_type][measurement]
    assert mid != 0, "Registry: measurement is not allowed for this TEE type"
    assert not self._mid_revoked(mid), "Registry: measurement already revoked"
    self._revoked[mid >> 8] |= 1 << (mid & 255)
    self._bump_rgen()
    log MeasurementRevoked(measurement=measurement, tee_type=tee_type, measurement_id=mid)


@external
def revokeType(tee_type: uint256):
    """
    @notice Revoke a whole TEE type: its enclaves stop counting in QCs, and it cannot
            register, get new measurements or a new root. (Re-admit a fixed platform
            under a new type id.)
    """
    self._only_owner()
    assert tee_type >= 1 and tee_type <= MAX_TYPE, "Registry: TEE type must be in 1..255"
    assert self.platformRoot[tee_type] != empty(address), "Registry: unknown TEE type"
    bit: uint256 = 1 << tee_type
    assert self._revoked_types & bit == 0, "Registry: TEE type already revoked"
    self._revoked_types |= bit
    self._bump_rgen()
    log TeeTypeRevoked(tee_type=tee_type)


@external
def revokeEnclave(enclave: address):
    """@notice Revoke one enclave for good (it may not register again)."""
    self._only_owner()
    rec: uint256 = self._enclaves[enclave]
    assert rec != 0, "Registry: enclave is not registered"
    assert rec & REVOKED_BIT == 0, "Registry: enclave already revoked"
    # the expiry is zeroed too, so a QC's single expiry test also catches revocation
    self._enclaves[enclave] = (rec & ~(EXP_MASK << EXP_SHIFT)) | REVOKED_BIT
    log EnclaveRevoked(enclave=enclave)


# ---------------------------------------------------------------- registration


@external
def register(
    tee_type: uint256,
    measurement: bytes32,
    enclave: address,
    enc_key_hash: bytes32,
    expiry: uint256,
    signature: Bytes[65],
):
    """
    @notice Register (or re-attest) an enclave with a quote: the platform root of
            `tee_type` signs quote_digest(tee_type, measurement, enclave, enc_key_hash,
            expiry). Anyone may submit a quote. Re-attestation needs a later expiry, so
            replaying a quote is refused.
    """
    assert tee_type >= 1 and tee_type <= MAX_TYPE, "Registry: TEE type must be in 1..255"
    root: address = self.platformRoot[tee_type]
    assert root != empty(address), "Registry: unknown TEE type"
    assert self._revoked_types & (1 << tee_type) == 0, "Registry: TEE type is revoked"
    mid: uint256 = self._measurements[tee_type][measurement]
    assert mid != 0, "Registry: measurement is not allowed for this TEE type"
    assert not self._mid_revoked(mid), "Registry: measurement is revoked"
    assert enclave != empty(address), "Registry: enclave is the zero address"
    assert expiry > block.timestamp, "Registry: quote expired"
    assert expiry <= EXP_MASK, "Registry: expiry out of range"
    assert len(signature) == 65, "Registry: quote signature must be 65 bytes"

    digest: bytes32 = keccak256(
        abi_encode(QUOTE_DOMAIN, tee_type, measurement, enclave, enc_key_hash, expiry)
    )
    r: uint256 = convert(slice(signature, 0, 32), uint256)
    s: uint256 = convert(slice(signature, 32, 32), uint256)
    v: uint256 = convert(slice(signature, 64, 1), uint256)
    assert v == 27 or v == 28, "Registry: quote signature v must be 27 or 28"
    assert s != 0 and s <= HALF_N, "Registry: quote signature s is zero or malleable"
    signer: address = ecrecover(digest, v, r, s)
    assert signer != empty(address) and signer == root, "Registry: bad quote signature"

    old: uint256 = self._enclaves[enclave]
    if old != 0:
        assert old & REVOKED_BIT == 0, "Registry: enclave is revoked"
        assert old & TYPE_MASK == tee_type, "Registry: enclave registered under another TEE type"
        assert expiry > (old >> EXP_SHIFT) & EXP_MASK, "Registry: quote replayed or not newer than the registered one"

    gen: uint256 = (state.hot >> state.RGEN_SHIFT) & state.W32
    self._enclaves[enclave] = (
        tee_type | (mid << MID_SHIFT) | (expiry << EXP_SHIFT) | (gen << GEN_SHIFT)
    )
    if self.encKeyHash[enclave] != enc_key_hash:
        self.encKeyHash[enclave] = enc_key_hash
    log EnclaveRegistered(
        enclave=enclave,
        tee_type=tee_type,
        measurement=measurement,
        enc_key_hash=enc_key_hash,
        expiry=expiry,
    )


# ---------------------------------------------------------------- views


@external
@view
def quorum() -> uint256:
    return (state.hot >> state.QUORUM_SHIFT) & state.W6


@external
@view
def minTypes() -> uint256:
    return (state.hot >> state.MINTYPES_SHIFT) & state.W6


@external
@view
def revocationGeneration() -> uint256:
    """@notice Bumped by every TEE type or measurement revocation."""
    return (state.hot >> state.RGEN_SHIFT) & state.W32


@external
@view
def typeRevoked(tee_type: uint256) -> bool:
    if tee_type > MAX_TYPE:
        return False
    return self._revoked_types & (1 << tee_type) != 0


@external
@view
def measurementInfo(tee_type: uint256, measurement: bytes32) -> (uint256, bool):
    """@notice (id, revoked) of a measurement on a TEE type; id 0 = never allowed."""
    mid: uint256 = self._measurements[tee_type][measurement]
    if mid == 0:
        return 0, False
    return mid, self._mid_revoked(mid)


@internal
@view
def _active(rec: uint256) -> bool:
    if rec == 0 or rec & REVOKED_BIT != 0:
        return False
    if (rec >> EXP_SHIFT) & EXP_MASK <= block.timestamp:
        return False
    if self._revoked_types & (1 << (rec & TYPE_MASK)) != 0:
        return False
    return not self._mid_revoked((rec >> MID_SHIFT) & MID_MASK)


@external
@view
def enclaveInfo(enclave: address) -> EnclaveInfo:
    """@notice The enclave's record; `active` = registered, unexpired and unrevoked."""
    rec: uint256 = self._enclaves[enclave]
    return EnclaveInfo(
        tee_type=rec & TYPE_MASK,
        measurement=self.measurementById[(rec >> MID_SHIFT) & MID_MASK],
        expiry=(rec >> EXP_SHIFT) & EXP_MASK,
        revoked=rec & REVOKED_BIT != 0,
        enc_key_hash=self.encKeyHash[enclave],
        active=self._active(rec),
    )


@external
@view
def isActive(enclave: address) -> bool:
    """@notice Registered, unexpired, unrevoked (enclave, measurement and TEE type)."""
    return self._active(self._enclaves[enclave])


@internal
def _slow_signer(signer: address, prev: uint256, rec: uint256, gen: uint256) -> uint256:
    """
    A QC signer failed the one-test fast path: raise the reason, or -- when its record
    merely predates the last revocation -- re-check it against the bitmaps and bring the
    record up to date. Returns the (updated) record.
    """
    addr: uint256 = convert(signer, uint256)
    if addr == 0:
        raise "Registry: QC signature does not recover"
    if addr <= prev:
        raise "Registry: QC signers not strictly increasing (duplicate signer?)"
    if rec == 0:
        raise "Registry: QC signer is not a registered enclave"
    if rec & REVOKED_BIT != 0:
        raise "Registry: QC signer is a revoked enclave"
    if (rec >> EXP_SHIFT) & EXP_MASK <= block.timestamp:
        raise "Registry: QC signer's attestation expired"
    if self._revoked_types & (1 << (rec & TYPE_MASK)) != 0:
        raise "Registry: QC signer's TEE type is revoked"
    if self._mid_revoked((rec >> MID_SHIFT) & MID_MASK):
        raise "Registry: QC signer's measurement is revoked"
    fresh: uint256 = (rec & NOT_GEN) | (gen << GEN_SHIFT)
    self._enclaves[signer] = fresh
    return fresh


@internal
@pure
def _popcount(x: uint256) -> uint256:
    """The number of set bits (distinct TEE types in a QC's type bitmap)."""
    n: uint256 = 0
    t: uint256 = x
    for i: uint256 in range(256):
        if t == 0:
            break
        t &= unsafe_sub(t, 1)
        n = unsafe_add(n, 1)
    return n
