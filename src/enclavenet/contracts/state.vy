# pragma version 0.4.3
# @license MIT
"""
@title The Rollup's hot storage slot (a module shared by Rollup.vy and registry.vy)
@notice Everything a header submission and a deposit read and write, except the two
        256-bit hashes, lives in ONE slot, so each pays one SLOAD and one SSTORE for it:

            bits   0..39   msg_total     L1 messages appended so far (deposits + submissions)
            bits  40..79   msg_consumed  msg_count of the last accepted header
            bits  80..119  height        last accepted height (0 = genesis)
            bits 120..159  l1_block      l1_block of the last accepted header
            bits 160..191  epoch         epoch of the last accepted header
            bits 192..197  quorum        signatures a QC needs (1..32)
            bits 198..203  min_types     distinct TEE types a QC needs (1..quorum)
            bits 204..235  rgen          revocation generation: bumped by every type or
                                         measurement revocation (see registry.vy)
            bits 236..241  dap_t         storage receipts a header needs (dap.vy; 0 = off)
            bit  255       frozen        set by the challenge game (later issue)
"""

hot: uint256

W40: constant(uint256) = 2**40 - 1
W32: constant(uint256) = 2**32 - 1
W6: constant(uint256) = 2**6 - 1

CONSUMED_SHIFT: constant(uint256) = 40
HEIGHT_SHIFT: constant(uint256) = 80
L1BLOCK_SHIFT: constant(uint256) = 120
EPOCH_SHIFT: constant(uint256) = 160
QUORUM_SHIFT: constant(uint256) = 192
MINTYPES_SHIFT: constant(uint256) = 198
RGEN_SHIFT: constant(uint256) = 204
DAPT_SHIFT: constant(uint256) = 236
FROZEN_BIT: constant(uint256) = 2**255

# the bits a header rewrites: consumed, height, l1_block, epoch
HEADER_FIELDS: constant(uint256) = (2**192 - 1) ^ W40
POLICY_FIELDS: constant(uint256) = W6 << QUORUM_SHIFT | W6 << MINTYPES_SHIFT
