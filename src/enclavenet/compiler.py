"""Compile users' confidential contracts (Vyper and Solidity) into deployable artifacts.

EnclaveNet runs ordinary, unmodified EVM contracts inside the enclaves' pyrevm. This module turns
contract source into an :class:`Artifact` (ABI, creation bytecode, runtime bytecode):

* Vyper through the ``vyper`` package (pinned in pyproject.toml, :data:`VYPER_VERSION`);
* Solidity through solc-js, the npm package ``solc`` (pinned in package.json,
  :data:`SOLC_VERSION`), run under the machine's ``node`` with solc's standard-JSON API.

Both target :data:`EVM_VERSION` (``shanghai``), the default spec of the enclaves' pyrevm 0.3.7:
PUSH0 is allowed, Cancun opcodes (MCOPY, TLOAD/TSTORE, BLOBHASH) are not emitted. The L1 test chain
(eth-tester, Prague) runs Shanghai bytecode unchanged, so one artifact serves both.

Compiled artifacts are cached as JSON next to the sources (``examples/*/artifacts/``) and
committed, so running a demo needs neither compiler; :func:`load_artifact` reads them back.

Usage::

    art = compile_file("examples/token_vyper/Token.vy")
    token = art.deploy(w3, "Token", "TOK", 18, 10**24, sender=w3.eth.accounts[0])
    token.functions.transfer(bob, 5).transact({"from": alice})
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "EVM_VERSION",
    "SOLC_VERSION",
    "VYPER_VERSION",
    "Artifact",
    "CompileError",
    "compile_file",
    "compile_solidity",
    "compile_vyper",
    "load_artifact",
    "solc_version",
]

#: EVM version every contract is compiled for: pyrevm 0.3.7's default spec ("SHANGHAI").
EVM_VERSION = "shanghai"
#: The pinned compilers; an artifact records which one built it.
VYPER_VERSION = "0.4.3"
SOLC_VERSION = "0.8.37"

_REPO_ROOT = Path(__file__).resolve().parents[2]

# Reads solc's standard-JSON input on stdin, prints {version, output} on stdout. solc.compile()
# never throws on bad source: errors come back inside the output's "errors" list.
_SOLC_DRIVER = r"""
const solc = require(process.argv[1]);
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const output = JSON.parse(solc.compile(input));
  process.stdout.write(JSON.stringify({ version: solc.version(), output: output }));
});
"""


# Key order of the artifact JSON files.
_JSON_FIELDS = (
    "name",
    "language",
    "compiler",
    "evm_version",
    "source_sha256",
    "abi",
    "bytecode",
    "runtime",
)


class CompileError(ValueError):
    """A contract failed to compile, or a compiler is missing; the message says which and why."""


@dataclass(frozen=True)
class Artifact:
    """A compiled contract: what web3.py, the L1 and the enclaves' pyrevm need to deploy and call it.

    ``bytecode`` is the creation code (constructor arguments are appended ABI-encoded),
    ``runtime`` the code that ends up at the contract's address.
    """

    name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    runtime: bytes
    language: str = "vyper"
    compiler: str = ""
    evm_version: str = EVM_VERSION
    source_sha256: str = ""

    def __repr__(self) -> str:
        return (
            f"Artifact(name={self.name!r}, language={self.language!r}, compiler={self.compiler!r}, "
            f"bytecode={len(self.bytecode)} B, runtime={len(self.runtime)} B)"
        )

    # --- (de)serialisation -------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (bytes as 0x-hex), the format of the committed artifact files."""
        out: dict[str, Any] = {}
        for key in _JSON_FIELDS:
            value = getattr(self, key)
            out[key] = "0x" + value.hex() if isinstance(value, bytes) else value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Artifact:
        """Inverse of :meth:`to_json`; raises ``ValueError`` naming the bad or missing field."""
        try:
            return cls(
                name=str(data["name"]),
                abi=list(data["abi"]),
                bytecode=_hex_to_bytes(data["bytecode"], "bytecode"),
                runtime=_hex_to_bytes(data["runtime"], "runtime"),
                language=str(data.get("language", "")),
                compiler=str(data.get("compiler", "")),
                evm_version=str(data.get("evm_version", EVM_VERSION)),
                source_sha256=str(data.get("source_sha256", "")),
            )
        except KeyError as e:
            raise ValueError(f"artifact JSON lacks the field {e.args[0]!r}") from None

    def save(self, path: str | Path) -> Path:
        """Write the artifact as pretty JSON (stable key order, trailing newline)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return p

    # --- deployment helpers --------------------------------------------------------------------

    def constructor_abi(self) -> dict[str, Any] | None:
        return next((e for e in self.abi if e.get("type") == "constructor"), None)

    def deploy_code(self, *args: Any) -> bytes:
        """Creation code with ABI-encoded constructor ``args`` appended (for raw EVMs: pyrevm)."""
        from eth_abi import encode

        ctor = self.constructor_abi()
        inputs = ctor["inputs"] if ctor else []
        if len(args) != len(inputs):
            raise TypeError(
                f"{self.name}: constructor takes {len(inputs)} argument(s), got {len(args)}"
            )
        return self.bytecode + encode([_abi_type(i) for i in inputs], list(args))

    def deploy(self, w3: Any, *args: Any, sender: str, value: int = 0) -> Any:
        """Deploy through a web3.py ``Web3`` (plain or wrapped) and return the bound contract.

        Raises ``RuntimeError`` if the deployment transaction fails.
        """
        factory = w3.eth.contract(abi=self.abi, bytecode=self.bytecode)
        tx_hash = factory.constructor(*args).transact({"from": sender, "value": value})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1 or not receipt["contractAddress"]:
            raise RuntimeError(f"{self.name}: deployment transaction failed")
        return self.at(w3, receipt["contractAddress"])

    def at(self, w3: Any, address: str) -> Any:
        """The web3.py contract object for this ABI at ``address``."""
        return w3.eth.contract(address=address, abi=self.abi)


# --- Vyper -----------------------------------------------------------------------------------------


def compile_vyper(
    source: str, name: str = "Contract", *, evm_version: str = EVM_VERSION
) -> Artifact:
    """Compile one Vyper contract. ``name`` labels the artifact and error messages."""
    import vyper
    from vyper.compiler.settings import Settings
    from vyper.exceptions import _BaseVyperException

    if vyper.__version__ != VYPER_VERSION:
        raise CompileError(
            f"vyper {vyper.__version__} is installed but EnclaveNet pins {VYPER_VERSION}; "
            "run `make install`"
        )
    if not source.strip():
        raise CompileError(f"{name}: the Vyper source is empty")
    try:
        out = vyper.compile_code(
            source,
            contract_path=f"{name}.vy",
            output_formats=["abi", "bytecode", "bytecode_runtime"],
            settings=Settings(evm_version=evm_version),
        )
    except _BaseVyperException as e:
        raise CompileError(f"{name}: Vyper compilation failed:\n{e}") from None
    return Artifact(
        name=name,
        abi=out["abi"],
        bytecode=_hex_to_bytes(out["bytecode"], "bytecode"),
        runtime=_hex_to_bytes(out["bytecode_runtime"], "runtime"),
        language="vyper",
        compiler=f"vyper {vyper.__version__}",
        evm_version=evm_version,
        source_sha256=_sha256(source),
    )


# --- Solidity (solc-js) ----------------------------------------------------------------------------


def _solcjs_dir() -> Path:
    """Where the npm ``solc`` package lives: $ENCLAVENET_SOLCJS, else the repo's node_modules."""
    env = os.environ.get("ENCLAVENET_SOLCJS")
    candidates = [Path(env)] if env else []
    candidates += [_REPO_ROOT / "node_modules" / "solc", Path.cwd() / "node_modules" / "solc"]
    for c in candidates:
        if (c / "soljson.js").is_file():
            return c
    raise CompileError(
        "solc-js (npm package `solc`) is not installed: run `make install` "
        f"(npm ci) in {_REPO_ROOT}, or point ENCLAVENET_SOLCJS at a node_modules/solc directory"
    )


def _run_solcjs(
    standard_input: dict[str, Any], timeout: float = 120.0
) -> tuple[str, dict[str, Any]]:
    """Run solc-js on a standard-JSON input; identical inputs are compiled once per process."""
    version, output_json = _run_solcjs_cached(json.dumps(standard_input, sort_keys=True), timeout)
    return version, json.loads(output_json)


@lru_cache(maxsize=64)
def _run_solcjs_cached(standard_input: str, timeout: float) -> tuple[str, str]:
    node = shutil.which("node")
    if node is None:
        raise CompileError("`node` is not on PATH; solc-js needs Node.js (apt-get install nodejs)")
    solc_dir = _solcjs_dir()
    try:
        proc = subprocess.run(
            [node, "-e", _SOLC_DRIVER, str(solc_dir)],
            input=standard_input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise CompileError(f"solc-js did not finish within {timeout:.0f} s") from None
    if proc.returncode != 0:
        raise CompileError(
            f"solc-js failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    try:
        reply = json.loads(proc.stdout)
        return str(reply["version"]), json.dumps(reply["output"])
    except (ValueError, KeyError) as e:
        raise CompileError(f"solc-js gave unreadable output ({e}): {proc.stdout[:500]!r}") from None


@lru_cache(maxsize=1)
def solc_version() -> str:
    """The full version string of the installed solc-js, e.g. ``0.8.37+commit.f401782d...``."""
    version, _ = _run_solcjs({"language": "Solidity", "sources": {}, "settings": {}})
    return version


def compile_solidity(
    source: str,
    name: str | None = None,
    *,
    filename: str | None = None,
    evm_version: str = EVM_VERSION,
    optimize: bool = True,
    optimize_runs: int = 200,
) -> Artifact:
    """Compile Solidity ``source`` with the pinned solc-js and return contract ``name``.

    ``name`` may be omitted when the file holds exactly one deployable contract; ``filename``
    (default ``Contract.sol``) is the source's name in error messages and in the metadata hash.
    Imports are not resolved: put interfaces in the same file.
    """
    if not source.strip():
        raise CompileError(f"{name or filename or 'contract'}: the Solidity source is empty")
    filename = filename or "Contract.sol"
    standard_input = {
        "language": "Solidity",
        "sources": {filename: {"content": source}},
        "settings": {
            "evmVersion": evm_version,
            "optimizer": {"enabled": optimize, "runs": optimize_runs},
            "outputSelection": {
                filename: {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
            },
        },
    }
    version, output = _run_solcjs(standard_input)
    if not version.startswith(SOLC_VERSION + "+"):
        raise CompileError(
            f"solc-js {version} is installed but EnclaveNet pins {SOLC_VERSION}; run `make install`"
        )
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        msgs = "\n".join(str(e.get("formattedMessage") or e.get("message")) for e in errors)
        raise CompileError(f"{filename}: Solidity compilation failed:\n{msgs}")
    contracts: dict[str, Any] = output.get("contracts", {}).get(filename, {})
    deployable = {n: c for n, c in contracts.items() if c["evm"]["bytecode"]["object"]}
    if name is None:
        if len(deployable) != 1:
            raise CompileError(
                f"{filename}: holds {len(deployable)} deployable contracts "
                f"({', '.join(sorted(deployable)) or 'none'}); say which one with name="
            )
        name = next(iter(deployable))
    if name not in contracts:
        raise CompileError(
            f"{filename}: no contract named {name!r} (found: {', '.join(sorted(contracts)) or 'none'})"
        )
    if name not in deployable:
        raise CompileError(f"{filename}: {name!r} is abstract or an interface; it has no bytecode")
    c = deployable[name]
    return Artifact(
        name=name,
        abi=c["abi"],
        bytecode=bytes.fromhex(c["evm"]["bytecode"]["object"]),
        runtime=bytes.fromhex(c["evm"]["deployedBytecode"]["object"]),
        language="solidity",
        compiler=f"solc {version}",
        evm_version=evm_version,
        source_sha256=_sha256(source),
    )


# --- files -----------------------------------------------------------------------------------------


def compile_file(path: str | Path, name: str | None = None) -> Artifact:
    """Compile a ``.vy`` or ``.sol`` file; ``name`` defaults to the file's stem."""
    p = Path(path)
    if not p.is_file():
        raise CompileError(f"no contract source at {p}")
    source = p.read_text()
    if p.suffix == ".vy":
        return compile_vyper(source, name or p.stem)
    if p.suffix == ".sol":
        return compile_solidity(source, name or p.stem, filename=p.name)
    raise CompileError(f"{p}: unknown contract language (expected a .vy or .sol file)")


def load_artifact(path: str | Path) -> Artifact:
    """Read a cached artifact JSON written by :meth:`Artifact.save`."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no compiled artifact at {p}; build it with `python -m examples.build`"
        ) from None
    except ValueError as e:
        raise ValueError(f"{p}: not valid artifact JSON ({e})") from None
    return Artifact.from_json(data)


# --- helpers ---------------------------------------------------------------------------------------


def _hex_to_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a hex string")
    try:
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    except ValueError:
        raise ValueError(f"{what} is not valid hex") from None


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _abi_type(param: Mapping[str, Any]) -> str:
    """The canonical ABI type of an ABI input, tuples included."""
    t = str(param["type"])
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in param["components"])
        return f"({inner}){t[5:]}"
    return t
