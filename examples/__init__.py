"""EnclaveNet's example confidential contracts, each with a script ``run(w3, accounts) -> dict``.

Every example lives in ``examples/<name>/``: the contract source(s), the compiled artifacts
(``artifacts/*.json``, committed, rebuilt with ``python -m examples.build``) and ``run.py``, whose
``run(w3, accounts)`` deploys the contracts through any web3.py ``Web3`` and returns the results.
Run one on the embedded L1 with ``python -m examples.<name>.run``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The examples, in the order the demo shows them.
EXAMPLES: tuple[str, ...] = (
    "token_vyper",
    "token_solidity",
    "dex",
    "auction",
    "kmeans",
    "counter",
    "vote",
)


def load(name: str) -> ModuleType:
    """The ``run`` module of example ``name``; it has ``run(w3, accounts) -> dict``."""
    if name not in EXAMPLES:
        raise ValueError(f"no example named {name!r}; choose one of {', '.join(EXAMPLES)}")
    return importlib.import_module(f"examples.{name}.run")
