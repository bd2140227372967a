"""Data availability formats: DAP storage receipts and Merkle pieces of the batch data.

**Storage receipt.** A DAP signs, once a header's data is durably stored,

    dap_receipt_digest = keccak256(abi.encode(keccak("EnclaveNet.DapReceipt.v1"),
                                   l1_chain_id, rollup, data_commitment))

with its secp256k1 key (65-byte ``r || s || v``, as ``crypto.secp256k1``). On L1 the receipts
travel as EIP-2098 compact signatures ordered by strictly increasing signer address
(``contracts.qc_signatures`` orders them), in ``Rollup.submitHeader``'s ``receipts`` argument
and in ``DapManager.requestData``.

**Pieces.** The batch data is a list of items committed by ``data_commitment =
merkle_root([keccak256(item) ...])`` (``crypto.merkle``: 0x00 leaves, 0x01 inner nodes, an
odd node promoted unchanged). The penalty game names a piece by its *path* from the root:
bit ``k`` of ``path`` is the branch taken at depth ``k`` (1 = right child). Because a promoted
node has a single child, following a path from the root reaches exactly one leaf, and the
hash domains make a proof that stops early or goes deeper a hash collision: a path binds one
item without the contract knowing how many items there are. ``piece_path(index, n)`` gives an
item's path; ``piece_index(path, n)`` the item a path reaches; ``verify_piece`` is the
contract's check (``DapManager.answerData``).
"""

from __future__ import annotations

from .hashing import addr_word, b32, domain_tag, keccak256, u256
from .merkle import merkle_proof, merkle_root

DAP_RECEIPT_DOMAIN = domain_tag("EnclaveNet.DapReceipt.v1")
MAX_PIECE_DEPTH = 32  # DapManager.MAX_DEPTH
MAX_PIECE_BYTES = 131072  # DapManager.MAX_PIECE


def dap_receipt_digest(l1_chain_id: int, rollup: str, data_commitment: bytes) -> bytes:
    """What a DAP signs for a header whose batch data it stores."""
    return keccak256(DAP_RECEIPT_DOMAIN, u256(l1_chain_id), addr_word(rollup), b32(data_commitment))


def data_commitment(items: list[bytes]) -> bytes:
    """``merkle_root`` over the items' keccak256 (the header's ``data_commitment``)."""
    return merkle_root([keccak256(x) for x in items])


def piece_path(index: int, n: int) -> tuple[int, int]:
    """``(path, depth)`` of item ``index`` among ``n`` items."""
    if not 0 <= index < n:
        raise IndexError(f"piece index {index} outside 0..{n - 1}")
    bits = [is_left for _, is_left in merkle_proof([b"\x00" * 32] * n, index)]
    # proof pairs run from the leaf up; the sibling is on the left when we went right
    depth = len(bits)
    path = sum(1 << (depth - 1 - j) for j, went_right in enumerate(bits) if went_right)
    return path, depth


def piece_index(path: int, n: int) -> int:
    """The item a ``path`` reaches among ``n`` items (bits beyond the leaf's depth are ignored)."""
    if n <= 0:
        raise ValueError("no items")
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    i, bit = 0, 0
    for level in range(len(sizes) - 1, 0, -1):  # from the root's level down to the leaves'
        below = sizes[level - 1]
        if 2 * i + 1 < below:  # two children: the path chooses
            i = 2 * i + ((path >> bit) & 1)
            bit += 1
        else:  # a promoted node: its only child, no choice
            i = 2 * i
    return i


def piece_proof(items: list[bytes], index: int) -> tuple[int, list[bytes]]:
    """``(path, siblings from the leaf up)`` for item ``index`` (``DapManager.answerData``)."""
    leaves = [keccak256(x) for x in items]
    proof = merkle_proof(leaves, index)
    path, _ = piece_path(index, len(items))
    return path, [sib for sib, _ in proof]


def piece_root(item: bytes, path: int, siblings: list[bytes]) -> bytes:
    """The root above ``item`` reached by ``path`` with these siblings (the contract's rule)."""
    h = keccak256(b"\x00", keccak256(item))
    d = len(siblings)
    for j, sib in enumerate(siblings):
        if (path >> (d - 1 - j)) & 1:
            h = keccak256(b"\x01", sib, h)
        else:
            h = keccak256(b"\x01", h, sib)
    return h


def verify_piece(root: bytes, item: bytes, path: int, siblings: list[bytes]) -> bool:
    return len(siblings) <= MAX_PIECE_DEPTH and piece_root(item, path, siblings) == root



__all__ = [
    "DAP_RECEIPT_DOMAIN",
    "MAX_PIECE_BYTES",
    "MAX_PIECE_DEPTH",
    "dap_receipt_digest",
    "data_commitment",
    "piece_index",
    "piece_path",
    "piece_proof",
    "piece_root",
    "verify_piece",
]
