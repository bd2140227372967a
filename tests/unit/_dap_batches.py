"""Headers and batch data for the DAP tests (unit and integration)."""

from __future__ import annotations

import os

import cbor2

from enclavenet.crypto.dap import data_commitment
from enclavenet.crypto.header import EMPTY_WITHDRAWALS_HASH, Header
from enclavenet.crypto.smt import SparseMerkleTree


def tree_batch(height: int, leaves: dict[bytes, bytes], prev: bytes) -> tuple[Header, bytes]:
    """A header whose balances_root is the tree of ``leaves`` (and batch data matching it)."""
    tree = SparseMerkleTree()
    tree.update(dict(leaves))
    items = [cbor2.dumps({"v": 1, "height": height}), os.urandom(64)]
    h = Header(height, prev, 0, os.urandom(32), height, 0, os.urandom(32), os.urandom(32), os.urandom(32),
               os.urandom(32), tree.root, EMPTY_WITHDRAWALS_HASH, data_commitment(items))
    return h, cbor2.dumps(items)
