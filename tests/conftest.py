"""Shared pytest fixtures: L1 chains.

* ``embedded_l1`` -- a fresh in-process chain per test (~15 ms to make).
* ``anvil_l1`` -- one anvil process for the whole session; each test runs inside an
  ``evm_snapshot`` that is reverted afterwards, so tests do not see each other's blocks.
* ``l1`` -- parametrised over ``embedded`` and ``anvil``: a test using it runs on both
  backends (``test_x[embedded]``, ``test_x[anvil]``); the anvil variant carries the
  ``integration`` mark, so ``-m "not integration"`` keeps only the embedded one.
* ``anvil_available`` -- the anvil executable's path; FAILS the test (never skips) when anvil is
  missing: ``make install`` installs it.

Both chains fund the same development accounts (``l1.accounts``), have chain id 31337 and a
60M block gas limit; ``l1.sender(i)`` gives a TxSender for account ``i``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from enclavenet.chain import L1, AnvilError, EmbeddedL1, RpcL1, find_anvil, start_anvil


@pytest.fixture(scope="session")
def anvil_available() -> str:
    """Path of the anvil executable; fails loudly if there is none."""
    try:
        return find_anvil()
    except AnvilError as exc:
        pytest.fail(f"{exc}. Tests that need anvil fail rather than skip.", pytrace=False)


@pytest.fixture
def embedded_l1() -> Iterator[EmbeddedL1]:
    with EmbeddedL1() as chain:
        yield chain


@pytest.fixture(scope="session")
def anvil_session(anvil_available: str) -> Iterator[RpcL1]:
    """The session's anvil process (use ``anvil_l1`` in tests: it isolates them)."""
    with start_anvil() as chain:
        yield chain


@pytest.fixture
def anvil_l1(anvil_session: RpcL1) -> Iterator[RpcL1]:
    snapshot = anvil_session.snapshot()
    try:
        yield anvil_session
    finally:
        anvil_session.revert(snapshot)


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.integration)])
def l1(request: pytest.FixtureRequest) -> L1:
    """The test runs once per backend."""
    chain: L1 = request.getfixturevalue(f"{request.param}_l1")
    return chain
