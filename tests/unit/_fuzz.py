"""Shared pieces of the fuzz targets (tests/unit/test_fuzz_*.py; docs/SECURITY.md "Fuzzing").

The Hypothesis profiles are registered in tests/conftest.py ("ci": deterministic, the default;
"explore": random, 10x the examples). ``examples(n)`` is a target's example count.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st


def examples(n: int) -> int:
    """A target's example count: ``n`` (its share of the ~2 minute budget of `make test`), times
    10 under ``HYPOTHESIS_PROFILE=explore``, or ``FUZZ_EXAMPLES`` when that is set."""
    if os.environ.get("FUZZ_EXAMPLES"):
        return max(1, int(os.environ["FUZZ_EXAMPLES"]))
    return n * 10 if os.environ.get("HYPOTHESIS_PROFILE") == "explore" else n


def assert_no_secret(message: str, secrets: Iterable[bytes | str]) -> None:
    """``message`` holds none of ``secrets`` (bytes: as hex, either case; text: as is)."""
    low = message.lower()
    for s in secrets:
        text = s.hex() if isinstance(s, bytes | bytearray) else str(s).lower().removeprefix("0x")
        if len(text) >= 16:  # short strings would match by chance
            assert text not in low, f"a secret appears in the error message: {message[:200]!r}"


# random CBOR/JSON-like values: every type CBOR carries, small and huge, nested
_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**63, 2**64 - 1, 2**64, 2**256 - 1, 2**256, -(2**256)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=24),
    st.binary(max_size=80),
    st.sampled_from([b"", bytes(20), bytes(32), bytes(65), b"\xff" * 32]).map(bytes),
)

cbor_values: st.SearchStrategy[Any] = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.dictionaries(st.text(max_size=12), inner, max_size=5),
    ),
    max_leaves=20,
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**300), max_value=2**300),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
        st.sampled_from(["0x", "0x0", "0x" + "ff" * 32, "0x" + "0" * 80, "0xzz", "latest", "0X1"]),
        st.binary(max_size=60).map(lambda b: "0x" + b.hex()),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=15,
)


@st.composite
def mutated(draw: Any, data: bytes) -> bytes:
    """``data`` with a few bit flips, byte overwrites, truncation, extension or a spliced chunk."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "truncate", "extend", "delete", "dup"]))
        if op in ("flip", "set") and b:
            i = draw(st.integers(0, len(b) - 1))
            if op == "flip":
                b[i] ^= 1 << draw(st.integers(0, 7))
            else:
                b[i] = draw(st.integers(0, 255))
        elif op == "truncate" and b:
            del b[draw(st.integers(0, len(b) - 1)):]
        elif op == "extend":
            b += draw(st.binary(min_size=1, max_size=40))
        elif op == "delete" and b:
            i = draw(st.integers(0, len(b) - 1))
            del b[i : i + draw(st.integers(1, 16))]
        elif op == "dup" and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i:i] = b[i : i + draw(st.integers(1, 16))]
    out = bytes(b)
    return out if out != data else out + b"\x00"
