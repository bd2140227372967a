"""Shared pytest fixtures: L1 chains.

* ``embedded_l1`` -- a fresh in-process chain per test (~15 ms to make).
* ``anvil_l1`` -- one anvil process for the whole session; each test runs inside an
  ``evm_snapshot`` that is reverted afterwards, so tests do not see each other's blocks
  (if a test rolled the chain back below that snapshot, anvil is restarted instead).
* ``l1`` -- parametrised over ``embedded`` and ``anvil``: a test using it runs on both
  backends (``test_x[embedded]``, ``test_x[anvil]``); the anvil variant carries the
  ``integration`` mark, so ``-m "not integration"`` keeps only the embedded one.
* ``anvil_available`` -- the anvil executable's path; FAILS the test (never skips) when anvil is
  missing: ``make install`` installs it.

Both chains fund the same development accounts (``l1.accounts``), have chain id 31337 and a
60M block gas limit; ``l1.sender(i)`` gives a TxSender for account ``i``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from enclavenet.chain import (
    L1,
    AnvilError,
    ChainError,
    EmbeddedL1,
    RpcL1,
    find_anvil,
    start_anvil,
)

# Hypothesis (the fuzz targets, tests/unit/test_fuzz_*.py; docs/SECURITY.md "Fuzzing"). The default
# profile "ci" is deterministic: derandomize=True draws the same examples on every run and machine,
# so a failure in `make test` fails again when re-run, and its minimal input is printed
# (print_blob: `@reproduce_failure(...)` too); database=None keeps no state between runs. Profile
# "explore" (HYPOTHESIS_PROFILE=explore) draws fresh random examples, 10x as many, and prints the
# seed of a failing run: re-run it with `pytest --hypothesis-seed=SEED`. FUZZ_EXAMPLES=N scales
# every target's example count (tests/unit/_fuzz.py; each target's own count is its share of the
# ~2 minute budget).
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "explore",
    derandomize=False,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))



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


class _SessionAnvil:
    """One anvil for the session, restarted when a test left it unrecoverable (anvil cannot
    revert to a snapshot whose block a test rolled back or reorganised away)."""

    def __init__(self) -> None:
        self.l1 = start_anvil()

    def restart(self) -> None:
        self.l1.close()
        self.l1 = start_anvil()


@pytest.fixture(scope="session")
def _anvil_session(anvil_available: str) -> Iterator[_SessionAnvil]:
    session = _SessionAnvil()
    yield session
    session.l1.close()


@pytest.fixture
def anvil_l1(_anvil_session: _SessionAnvil) -> Iterator[RpcL1]:
    chain = _anvil_session.l1
    snapshot = chain.snapshot()
    yield chain
    try:
        chain.revert(snapshot)
    except ChainError:
        _anvil_session.restart()


@pytest.fixture(params=["embedded", pytest.param("anvil", marks=pytest.mark.integration)])
def l1(request: pytest.FixtureRequest) -> L1:
    """The test runs once per backend."""
    chain: L1 = request.getfixturevalue(f"{request.param}_l1")
    return chain
