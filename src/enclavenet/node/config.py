"""A node's configuration: one JSON file per node (``enclavenet node --config FILE``).

Example (what ``Devnet`` writes)::

    {
      "name": "node0",
      "data_dir": "/tmp/enclavenet-devnet/node0",
      "rpc_port": 0,                              # 0: pick a free port (printed when ready)
      "l1_rpc": "http://127.0.0.1:8545",
      "l1_key": "0x...",                          # the operator's L1 account (pays gas); secret
      "rollup": "0x...", "registry": "0x...", "l1_chain_id": 31337, "start_block": 0,
      "chain_id": 1337,                           # EnclaveNet chain id
      "platform": {"tee": "sgx", ...},            # simulated machine (tee.SimulatedPlatform.boot_spec())
      "enclave": {...},                           # EnclaveProgram config (same on every member)
      "peers": ["http://127.0.0.1:9001", ...],
      "expected_members": 4,                      # bootstrap: create epoch 0 once this many are registered
      "batch_size": 500, "batch_interval": 0.2, "proposer_timeout": 3.0,
      "confirmations": 0, "pipeline": 2, "persist": "sign"
    }

The operator key and the platform secrets are secrets of the host / the simulated hardware:
they are never logged and never appear in a repr.
"""

from __future__ import annotations

import json
import re
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The node configuration is missing a field or has a bad value; the message says which."""


@dataclass
class NodeConfig:
    name: str
    data_dir: str
    l1_rpc: str
    rollup: str
    registry: str
    l1_chain_id: int
    chain_id: int
    platform: dict[str, Any] = field(repr=False)
    enclave: dict[str, Any] = field(repr=False)
    l1_key: str = field(default="", repr=False)
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 0
    start_block: int = 0
    peers: list[str] = field(default_factory=list)
    expected_members: int = 0
    program: str = "enclavenet.enclave.program:EnclaveProgram"
    # batching
    batch_size: int = 500
    batch_interval: float = 0.2
    proposer_timeout: float = 3.0
    pipeline: int = 2  # how many heights a proposer may run ahead of the last header on L1
    proposer_run: int = 1  # consecutive heights per proposer: proposer(h) = members[(h // run) % n]
    confirmations: int = 0
    l1_poll_interval: float = 0.05
    # mempool
    mempool_max_total: int = 200_000
    mempool_max_per_sender: int = 10_000
    mempool_max_per_origin: int = 0  # per JSON-RPC client IP (0: half of mempool_max_total)
    # admission control (node/admission.py): refuse new transactions ("busy", retryable) while the
    # queue holds more than admission_queue_s seconds of measured capacity (0: off), never fewer
    # than admission_min_batches full batches
    admission_queue_s: float = 1.5
    admission_min_batches: int = 4
    # public JSON-RPC rate limits (node/ratelimit.py; requests per second, burst 2x; 0: off):
    # raw transactions per client IP and per routing-hint sender, views/estimates per client IP
    rate_tx_per_ip: float = 20_000.0
    rate_tx_per_sender: float = 5_000.0
    rate_view_per_ip: float = 500.0
    # what to persist of the enclave (sealed local snapshot): "sign" (before every signature
    # leaves the host: the never-sign-twice record survives a crash), "accept" (after each
    # accepted header) or "none"
    persist: str = "sign"
    enclave_timeout: float = 120.0
    allow_faults: bool = False  # fault hooks: enclave crash/hang/compromise, hostile links (enclavenet_adminFaults)
    epoch_every: int = 0  # rotate the epoch keys every N accepted headers (0: only on revocation)
    max_body: int = 8 * 1024 * 1024
    admin_rpc: bool = False  # enclavenet_admin* methods (benchmarks on a devnet): never on a shared node
    log_level: str = "INFO"
    log_format: str = "text"  # "json": one JSON object per line (enclavenet.logs)
    # data availability (node/daps.py, docs/DAP.md): the DapManager whose active DAPs get every
    # batch; a snapshot goes with every Nth height and each new epoch's first; upload timeout
    dap_manager: str = ""
    dap_snapshot_every: int = 16
    dap_timeout: float = 10.0
    # the L1 Bridge (docs/BRIDGE.md): this node relays the L2 -> L1 messages of the headers it
    # gets accepted; "" = no bridge
    bridge: str = ""
    # fees (docs/FEES.md): where the tips of this node's proposals go; "" = the treasury
    fee_recipient: str = ""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        if self.batch_interval <= 0 or self.proposer_timeout <= 0:
            raise ConfigError("batch_interval and proposer_timeout must be > 0 seconds")
        if self.persist not in ("sign", "accept", "none"):
            raise ConfigError(f"persist must be 'sign', 'accept' or 'none', got {self.persist!r}")
        if self.epoch_every < 0:
            raise ConfigError("epoch_every must be >= 0 (0: rotate only on revocation)")
        if self.pipeline < 1:
            raise ConfigError("pipeline must be >= 1")
        if self.proposer_run < 1:
            raise ConfigError("proposer_run must be >= 1 (consecutive heights per proposer)")
        for k in ("rate_tx_per_ip", "rate_tx_per_sender", "rate_view_per_ip"):
            v = getattr(self, k)
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{k} must be a number of requests per second >= 0 (0: no limit)")
        if not isinstance(self.admission_queue_s, int | float) or isinstance(self.admission_queue_s, bool) \
                or self.admission_queue_s < 0:
            raise ConfigError("admission_queue_s must be a number of seconds >= 0 (0: no admission control)")
        if not isinstance(self.admission_min_batches, int) or self.admission_min_batches < 1:
            raise ConfigError("admission_min_batches must be an integer >= 1")
        if not isinstance(self.platform, dict) or "tee" not in self.platform:
            raise ConfigError("platform must be a map with at least 'tee' (sgx, tdx, sev-snp, csv)")
        check_values(self)

    def secrets(self) -> list[Any]:
        """What must never reach a log line: the operator key and the simulated machine's secrets."""
        return [self.l1_key, {k: v for k, v in self.platform.items() if k != "tee"}]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown node config field(s): {', '.join(unknown)}")
        missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"node config lacks field(s): {', '.join(missing)}")
        check_types(d)
        d = dict(d)
        d["platform"] = from_jsonable(d.get("platform"))
        d["enclave"] = normalize_enclave_config(from_jsonable(d.get("enclave") or {}))
        try:
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"bad node config: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> NodeConfig:
        p = Path(path)
        try:
            d = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"node config {p} does not exist") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"node config {p} is not valid JSON: {exc}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"node config {p} must be a JSON object")
        return cls.from_dict(d)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def save(self, path: str | Path) -> None:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(_jsonable(self.to_dict()), indent=1))
        tmp.chmod(0o600)
        tmp.replace(p)


_TYPE_NAMES = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "list[str]": "a list of strings", "dict[str, Any]": "a map (JSON object)"}


def check_types(d: dict[str, Any]) -> None:
    """Each field's JSON type, named in the error (values of secret fields are never echoed)."""
    for f in fields(NodeConfig):
        if f.name not in d:
            continue
        v = d[f.name]
        t = str(f.type)
        ok = {
            "int": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, int | float) and not isinstance(v, bool),
            "str": isinstance(v, str),
            "bool": isinstance(v, bool),
            "list[str]": isinstance(v, list) and all(isinstance(x, str) for x in v),
            "dict[str, Any]": isinstance(v, dict),
        }.get(t, True)
        if not ok:
            shown = "(secret, not shown)" if f.name in SECRET_FIELDS else repr(v)[:60]
            raise ConfigError(f"node config field {f.name!r} must be {_TYPE_NAMES.get(t, t)}, got {shown} "
                              f"({type(v).__name__})")


SECRET_FIELDS = ("l1_key", "platform")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _is_url(u: str) -> bool:
    return bool(re.fullmatch(r"https?://[^\s/:]+(:\d{1,5})?(/\S*)?", u))


def _is_address(a: str) -> bool:
    return bool(re.fullmatch(r"0x[0-9a-fA-F]{40}", a))


def check_values(cfg: NodeConfig) -> None:
    """Values a node cannot run with: the error names the field and what to write instead."""
    if not cfg.name.strip():
        raise ConfigError("node config field 'name' must not be empty (e.g. \"node0\")")
    if not cfg.data_dir.strip():
        raise ConfigError("node config field 'data_dir' must be a directory path")
    if not _is_url(cfg.l1_rpc):
        raise ConfigError(f"node config field 'l1_rpc' must be an http(s) URL such as http://127.0.0.1:8545, got {cfg.l1_rpc!r}")
    for i, p in enumerate(cfg.peers):
        if not _is_url(p):
            raise ConfigError(f"node config field 'peers' entry {i} must be an http(s) URL, got {p!r}")
    for name in ("rollup", "registry"):
        if not _is_address(getattr(cfg, name)):
            raise ConfigError(f"node config field {name!r} must be a 0x-prefixed 20-byte hex address, got {getattr(cfg, name)!r}")
    if cfg.fee_recipient and not _is_address(cfg.fee_recipient):
        raise ConfigError(f"node config field 'fee_recipient' must be empty or a 20-byte hex address, got {cfg.fee_recipient!r}")
    if cfg.bridge and not _is_address(cfg.bridge):
        raise ConfigError(f"node config field 'bridge' must be empty or a 20-byte hex address, got {cfg.bridge!r}")
    if cfg.dap_manager and not _is_address(cfg.dap_manager):
        raise ConfigError(f"node config field 'dap_manager' must be empty or a 20-byte hex address, got {cfg.dap_manager!r}")
    if cfg.l1_key and not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", cfg.l1_key):
        raise ConfigError("node config field 'l1_key' must be a 32-byte hex private key (value not shown)")
    from ..hosts import REFUSAL, private_bind_host

    if not private_bind_host(cfg.rpc_host):
        raise ConfigError(f"node config field 'rpc_host': a node {REFUSAL}, got {cfg.rpc_host!r}")
    if not 0 <= cfg.rpc_port <= 65535:
        raise ConfigError(f"node config field 'rpc_port' must be in 0..65535 (0 picks a free port), got {cfg.rpc_port}")
    if cfg.l1_chain_id < 1 or cfg.chain_id < 1:
        raise ConfigError("node config fields 'l1_chain_id' and 'chain_id' must be positive integers")
    if cfg.log_level.upper() not in LOG_LEVELS:
        raise ConfigError(f"node config field 'log_level' must be one of {', '.join(LOG_LEVELS)}, got {cfg.log_level!r}")
    if cfg.log_format not in ("text", "json"):
        raise ConfigError(f"node config field 'log_format' must be 'text' or 'json', got {cfg.log_format!r}")
    for name in ("expected_members", "confirmations", "start_block", "mempool_max_total", "mempool_max_per_sender"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"node config field {name!r} must be >= 0, got {getattr(cfg, name)}")


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return {"$hex": v.hex()}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def from_jsonable(v: Any) -> Any:
    """Undo ``_jsonable``: ``{"$hex": ...}`` back to bytes, recursively."""
    if isinstance(v, dict):
        if set(v) == {"$hex"}:
            return bytes.fromhex(v["$hex"])
        return {k: from_jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [from_jsonable(x) for x in v]
    return v


def normalize_enclave_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The enclave config as the enclave gets it (JSON turns int keys into strings: undo that).

    The enclave's measurement hashes this config, so the devnet measures exactly this form.
    """
    out = dict(cfg)
    roots = out.get("platform_roots")
    if isinstance(roots, dict):
        out["platform_roots"] = {int(k): v for k, v in roots.items()}
    return out
