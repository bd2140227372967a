"""Deploy (or attach to) the EnclaveNet L1 contracts: the Rollup, and optionally the Bridge.

``deploy_contracts`` takes either a ``web3.Web3`` whose node holds unlocked accounts
(eth-tester, anvil), or a transaction sender: anything with ``w3``, ``address``,
``deploy(abi, bytecode, *args) -> address`` and ``transact(fn) -> receipt`` -- such as
``enclavenet.chain.TxSender`` (imported nowhere here: contracts/ stays free of chain/).

The registry is compiled into the Rollup (one contract, see docs/CONTRACTS.md), so a
:class:`Deployment` has ``registry`` and ``rollup`` at the same address; use whichever
name reads better at the call site. The ``Bridge`` (ERC20s and L1 <-> L2 messages,
contracts/Bridge.vy) is a separate contract bound to the Rollup: ``deploy_contracts(...,
bridge=True)`` or :func:`deploy_bridge` for an existing Rollup; ``Deployment.bridge``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from web3 import Web3
from web3.contract import Contract

from . import load_artifact


@runtime_checkable
class Sender(Protocol):
    """What deploy_contracts needs from a transaction sender (chain.TxSender has it)."""

    w3: Web3

    @property
    def address(self) -> str: ...

    def deploy(self, abi: Any, bytecode: Any, *args: Any) -> str: ...

    def transact(self, fn: Any) -> Any: ...


class DeployError(RuntimeError):
    """A deployment or configuration transaction failed."""


@dataclass(frozen=True)
class Deployment:
    """Where the contract lives, and web3 contract objects bound to it."""

    w3: Web3
    rollup: Contract
    owner: str
    chain_id: int
    block_number: int  # no later than the deployment's L1 block: event scans start here
    bridge: Contract | None = None  # the L1 Bridge, if deployed / attached

    @property
    def registry(self) -> Contract:
        """The registry part (the same contract as ``rollup``)."""
        return self.rollup

    @property
    def rollup_address(self) -> str:
        return str(self.rollup.address)

    @property
    def registry_address(self) -> str:
        return self.rollup_address

    @property
    def bridge_address(self) -> str | None:
        return str(self.bridge.address) if self.bridge is not None else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able description (what a node's config file holds)."""
        out: dict[str, Any] = {
            "chain_id": self.chain_id,
            "rollup": self.rollup_address,
            "registry": self.registry_address,
            "owner": self.owner,
            "block_number": self.block_number,
        }
        if self.bridge is not None:
            out["bridge"] = self.bridge_address
        return out


class _UnlockedSender:
    """Send from an account the node holds unlocked (eth-tester, anvil)."""

    def __init__(self, w3: Web3, address: str) -> None:
        self.w3 = w3
        self._address = Web3.to_checksum_address(address)

    @property
    def address(self) -> str:
        return self._address

    def _wait(self, what: str, tx_hash: Any) -> Any:
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise DeployError(f"{what} failed in transaction {receipt['transactionHash'].hex()}")
        return receipt

    def deploy(self, abi: Any, bytecode: Any, *args: Any) -> str:
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        tx_hash = factory.constructor(*args).transact({"from": self._address})
        return str(self._wait("deployment", tx_hash)["contractAddress"])

    def transact(self, fn: Any) -> Any:
        return self._wait(fn.fn_name, fn.transact({"from": self._address}))


def _as_sender(w3_or_sender: Web3 | Sender, deployer: str | None) -> Sender:
    if isinstance(w3_or_sender, Web3):
        w3 = w3_or_sender
        if deployer is None:
            default = w3.eth.default_account
            deployer = str(default) if default else str(w3.eth.accounts[0])
        return _UnlockedSender(w3, deployer)
    if isinstance(w3_or_sender, Sender):
        if deployer is not None and Web3.to_checksum_address(deployer) != w3_or_sender.address:
            raise ValueError("deployer must be the sender's own address")
        return w3_or_sender
    raise TypeError(
        "deploy_contracts needs a web3.Web3 or a sender with .w3, .address, .deploy, .transact"
    )


def contract_at(w3: Web3, address: str) -> Contract:
    """A web3 contract object for the Rollup (and registry) at ``address``."""
    art = load_artifact("Rollup")
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=art["abi"])


def bridge_at(w3: Web3, address: str) -> Contract:
    """A web3 contract object for the Bridge at ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact("Bridge")["abi"])


def attach(w3: Web3, rollup: str, block_number: int = 0, bridge: str | None = None) -> Deployment:
    """Bind to contracts deployed earlier (e.g. from a node's config file)."""
    contract = contract_at(w3, rollup)
    code = bytes(w3.eth.get_code(contract.address))
    if code != bytes.fromhex(load_artifact("Rollup")["deployedBytecode"][2:]):
        raise DeployError(f"the code at {contract.address} is not this EnclaveNet Rollup")
    bridge_contract = None
    if bridge is not None:
        bridge_contract = bridge_at(w3, bridge)
        if not bytes(w3.eth.get_code(bridge_contract.address)):
            raise DeployError(f"no contract at the bridge address {bridge_contract.address}")
        if Web3.to_checksum_address(bridge_contract.functions.ROLLUP().call()) != contract.address:
            raise DeployError(f"the Bridge at {bridge_contract.address} is not bound to {contract.address}")
    return Deployment(
        w3=w3, rollup=contract, owner=str(contract.functions.owner().call()),
        chain_id=int(w3.eth.chain_id), block_number=block_number, bridge=bridge_contract,
    )


def deploy_bridge(w3_or_sender: Web3 | Sender, rollup: str, *, deployer: str | None = None) -> Contract:
    """Deploy a Bridge bound to the Rollup at ``rollup`` (it has no owner: nothing to configure)."""
    sender = _as_sender(w3_or_sender, deployer)
    art = load_artifact("Bridge")
    address = sender.deploy(art["abi"], art["bytecode"], Web3.to_checksum_address(rollup))
    return bridge_at(sender.w3, address)


def deploy_contracts(
    w3_or_sender: Web3 | Sender,
    owner: str,
    quorum: int,
    min_types: int,
    *,
    platform_roots: Mapping[int, str] | None = None,
    measurements: Mapping[int, Iterable[bytes]] | None = None,
    deployer: str | None = None,
    bridge: bool = False,
) -> Deployment:
    """Deploy the Rollup (registry included), configure it, and hand it to ``owner``; with
    ``bridge``, deploy the Bridge bound to it too (``Deployment.bridge``).

    ``platform_roots`` maps TEE type ids (sgx 1, tdx 2, sev-snp 3, csv 4, ...) to the root
    address that signs that platform's quotes; ``measurements`` maps a TEE type id to the
    enclave program measurements allowed to register on it. The deployer configures the
    contract, then transfers ownership to ``owner`` if that is someone else.
    """
    if not 1 <= quorum <= 32:
        raise ValueError(f"quorum must be in 1..32, got {quorum}")
    if not 1 <= min_types <= quorum:
        raise ValueError(f"min_types must be in 1..quorum ({quorum}), got {min_types}")
    roots = dict(platform_roots or {})
    allowed = {t: [bytes(m) for m in ms] for t, ms in (measurements or {}).items()}
    for t in allowed:
        if t not in roots:
            raise ValueError(f"measurements given for TEE type {t}, which has no platform root")
    sender = _as_sender(w3_or_sender, deployer)
    w3 = sender.w3
    me = Web3.to_checksum_address(sender.address)
    owner = Web3.to_checksum_address(owner)

    art = load_artifact("Rollup")
    block_number = int(w3.eth.block_number) + 1  # no later than the deployment's block
    address = sender.deploy(art["abi"], art["bytecode"], me, quorum, min_types)
    rollup = contract_at(w3, address)
    for tee_type, root in sorted(roots.items()):
        sender.transact(rollup.functions.setPlatformRoot(tee_type, Web3.to_checksum_address(root)))
    for tee_type, ms in sorted(allowed.items()):
        for m in ms:
            sender.transact(rollup.functions.allowMeasurement(tee_type, m))
    if owner != me:
        sender.transact(rollup.functions.transferOwnership(owner))
    return Deployment(
        w3=w3, rollup=rollup, owner=owner, chain_id=int(w3.eth.chain_id),
        block_number=block_number, bridge=deploy_bridge(sender, address) if bridge else None,
    )
