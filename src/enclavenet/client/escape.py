"""When the committee fails: challenge, freeze, escape hatch, deposit reclaim (docs/CONTRACTS.md).

* :func:`challenge` -- put a signed transaction the committee ignores into the Rollup with a bond
  (an L1 message of kind 2): a header must consume it before its deadline. The enclaves settle
  the bond inside EnclaveNet: back to the challenger if the transaction executed, to the treasury
  if it was garbage or already executed.
* :func:`freeze` -- after an unresolved challenge's deadline, stop the Rollup for good.
* :func:`fetch_escape_leaf` -- ask a node's enclave for *your* balance leaf and proof, sealed to
  your key; keep it (:func:`save_escape_leaf`): after a freeze it is all you need, with every
  enclave dead.
* :func:`fetch_escape_from_daps` -- rebuild that leaf and proof from the DAPs alone (leaf hashes
  of the balances tree + your (balance, salt) sealed to your key), checked against L1.
* :func:`escape_withdraw` -- after the freeze, withdraw that balance on L1 with the proof against
  the last accepted header (read from L1 alone, :func:`last_accepted_header`).
* :func:`reclaim_deposit` -- get back the value of an L1 message no header consumed (a deposit,
  a submission with value, a challenge bond): proves the message by the L1 message chain.

Everything here except :func:`challenge` and :func:`fetch_escape_leaf` needs only the L1.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction

from ..contracts import load_artifact
from ..crypto.envelope import RoutingHint
from ..crypto.escape import EscapeError, EscapeLeaf, escape_request_digest, open_escape_leaf
from ..crypto.hashing import address_bytes, keccak256, to_checksum
from ..crypto.header import Header
from ..crypto.messages import MSG_GENESIS_ACC, L1Message
from ..crypto.secp256k1 import SigningKey
from ..crypto.smt import SparseMerkleTree, smt_key, smt_leaf
from .core import SentTx, _hex_bytes, _hex_int
from .errors import EnclaveNetError, NodeUnavailable
from .formats import create_address, sign_transaction
from .l1 import _client, _l1_transact, _make_request, _rollup_address

#: reclaim / proveMessages take at most this many messages per call (Rollup.vy MAX_SEGMENT)
MAX_SEGMENT = 256
_HEADER_INT_FIELDS = ("height", "epoch", "l1_block", "msg_count")


def _rollup(l1_w3: Web3, rollup: str) -> Any:
    return l1_w3.eth.contract(address=Web3.to_checksum_address(rollup), abi=load_artifact("Rollup")["abi"])


# ---------------------------------------------------------------------------- challenge


@dataclass(frozen=True)
class Challenge:
    index: int  # the challenge's L1 message index
    deadline: int  # L1 block: after it, an unconsumed challenge lets anyone freeze the Rollup
    bond: int
    receipt_id: str  # keccak256(envelope): w3.eth.wait_for_transaction_receipt(receipt_id)
    l1_receipt: Any
    envelope: bytes


def challenge(
    w3: Web3,
    l1_w3: Web3,
    call: ContractFunction | dict[str, Any] | None = None,
    *,
    envelope: bytes | None = None,
    bond: int | None = None,
    value: int = 0,
    gas: int = 1_000_000,
    sender: str | None = None,
    rollup: str | None = None,
    timeout: float = 60.0,
) -> Challenge:
    """Force the committee to execute a transaction: ``Rollup.challenge(envelope)`` with a bond.

    Give ``call`` (a contract function or ``{"to", "data", "value"}``: signed now with the
    account's next nonce and sealed as on the fast path) or ``envelope`` (an envelope already
    sent that the committee ignores: its receipt id stays the same). ``bond`` defaults to
    ``Rollup.challengeBond()``. The bond comes back inside EnclaveNet once the transaction
    executes; it is forfeited if the transaction is garbage or was already executed.
    """
    client = _client(w3)
    account = client.signer(sender)
    address = to_checksum(account.address)
    rollup_addr = _rollup_address(w3, rollup)
    contract = _rollup(l1_w3, rollup_addr)
    if bond is None:
        bond = int(contract.functions.challengeBond().call())
    if (call is None) == (envelope is None):
        raise EnclaveNetError("challenge needs exactly one of call= (a transaction to sign) or envelope=")
    nonce: int | None = None
    with client._lock:
        if envelope is None:
            assert call is not None
            mr = _make_request(w3)
            chain_id = client.ensure_chain_id(mr)
            if isinstance(call, dict):
                to = to_checksum(call["to"]) if call.get("to") else None
                data = _hex_bytes(call.get("data", b""))
                value = _hex_int(call.get("value", value))
            else:
                to = to_checksum(call.address)
                data = _hex_bytes(call._encode_transaction_data())
            nonce = client.next_nonce(mr, address)
            plaintext = sign_transaction(bytes(account.key), chain_id, nonce, to, data, value, gas, legacy=client.legacy)
            sealed = client.seal(mr, plaintext, RoutingHint(address_bytes(address), nonce))
            envelope = sealed.envelope.encode()
            client.remember(
                "0x" + keccak256(envelope).hex(),
                SentTx(
                    sealed.receipt_key, address, nonce, to, keccak256(plaintext),
                    create_address(address, nonce) if to is None else None,
                    2 if plaintext[:1] == b"\x02" else 0,
                ),
            )
        l1_receipt = _l1_transact(l1_w3, account, contract.functions.challenge(envelope), bond, timeout)
        if nonce is not None:
            client.set_nonce(address, nonce + 1)
    (ev,) = contract.events.ChallengeStarted().process_receipt(l1_receipt, errors=_discard())
    return Challenge(
        int(ev["args"]["index"]), int(ev["args"]["deadline"]), int(ev["args"]["bond"]),
        "0x" + keccak256(envelope).hex(), l1_receipt, envelope,
    )


@dataclass(frozen=True)
class ChallengeStatus:
    index: int
    deadline: int  # 0: no challenge at this index
    resolved: bool  # an accepted header consumed it
    expired: bool  # unresolved and past its deadline: freeze() is possible
    frozen: bool


def challenge_status(l1_w3: Web3, rollup: str, index: int) -> ChallengeStatus:
    f = _rollup(l1_w3, rollup).functions
    deadline = int(f.challengeDeadline(index).call())
    resolved = int(f.msgConsumed().call()) > index
    frozen = bool(f.frozen().call())
    expired = bool(deadline) and not resolved and int(l1_w3.eth.block_number) > deadline
    return ChallengeStatus(index, deadline, resolved, expired, frozen)


def freeze(l1_w3: Web3, account: LocalAccount, rollup: str, index: int, *, timeout: float = 60.0) -> Any:
    """``Rollup.freeze(index)``: challenge ``index`` passed its deadline unresolved. L1 receipt."""
    return _l1_transact(l1_w3, account, _rollup(l1_w3, rollup).functions.freeze(index), 0, timeout)


# ---------------------------------------------------------------------------- escape leaf


def escape_request(account: LocalAccount, chain_id: int, l1_chain_id: int, rollup: str, *, ttl: int = 3600,
                   now: float | None = None) -> dict[str, str]:
    """A signed request for ``account``'s own escape leaf (node JSON-RPC ``enclavenet_escapeLeaf``)."""
    expiry = int(now if now is not None else time.time()) + ttl
    address = to_checksum(account.address)
    digest = escape_request_digest(chain_id, l1_chain_id, rollup, address, expiry)
    sig = SigningKey(bytes(account.key)).sign(digest)
    return {"address": address, "expiry": hex(expiry), "signature": "0x" + sig.hex()}


def fetch_escape_leaf(
    w3: Web3, *, sender: str | None = None, save_to: str | Path | None = None, ttl: int = 3600
) -> EscapeLeaf:
    """Ask the node (its enclave) for the account's balance leaf and proof, sealed to its key.

    The leaf is checked against the root it names (the enclave's head). With ``save_to``, it is
    written there (:func:`save_escape_leaf`): keep the latest one, it is what the escape hatch
    needs once every enclave is gone.
    """
    client = _client(w3)
    account = client.signer(sender)
    mr = _make_request(w3)
    chain_id = client.ensure_chain_id(mr)
    contracts = client.rpc(mr, "enclavenet_contracts", [])
    if not isinstance(contracts, dict) or "rollup" not in contracts or "l1ChainId" not in contracts:
        raise NodeUnavailable("enclavenet_contracts returned no rollup address / L1 chain id")
    rollup = to_checksum(client.rollup or contracts["rollup"])
    req = escape_request(account, chain_id, _hex_int(contracts["l1ChainId"]), rollup, ttl=ttl)
    res = client.rpc(mr, "enclavenet_escapeLeaf", [req])
    if not isinstance(res, dict) or "sealed" not in res:
        raise NodeUnavailable("enclavenet_escapeLeaf returned no sealed leaf")
    try:
        leaf = open_escape_leaf(_hex_bytes(res["sealed"]), bytes(account.key))
    except EscapeError as exc:
        raise EnclaveNetError(f"the node's escape leaf is unusable: {exc}") from None
    if leaf.address != to_checksum(account.address):
        raise EnclaveNetError(f"the escape leaf is for {leaf.address}, not {account.address}")
    if leaf.has_leaf and not leaf.verify():
        raise EnclaveNetError("the escape leaf's proof does not match the balances root it names")
    if save_to is not None:
        save_escape_leaf(leaf, save_to)
    return leaf


def save_escape_leaf(leaf: EscapeLeaf, path: str | Path) -> None:
    """Write a leaf as JSON (hex of ``EscapeLeaf.encode()``): private to its owner; keep it safe."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps({"v": 1, "height": leaf.height, "leaf": "0x" + leaf.encode().hex()}))
    tmp.replace(p)


def load_escape_leaf(path: str | Path) -> EscapeLeaf:
    try:
        obj = json.loads(Path(path).read_text())
        return EscapeLeaf.decode(_hex_bytes(obj["leaf"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EnclaveNetError(f"{path}: not a saved escape leaf ({exc})") from None


def fetch_escape_from_daps(
    l1_w3: Web3,
    account: LocalAccount,
    rollup: str,
    daps: Mapping[str, str] | Iterable[str],
    *,
    from_block: int = 0,
    timeout: float = 30.0,
) -> EscapeLeaf:
    """Rebuild ``account``'s escape leaf from DAP data alone (every node and enclave may be dead).

    Reads the last accepted header from L1, asks the DAPs (``{address: url}`` or URLs) for the
    balances tree's leaf hashes at its height and rebuilds the tree: a DAP whose tree does not
    come out at the header's ``balances_root`` is skipped (the next one is asked). Then opens the
    account's newest sealed (balance, salt) record that matches its leaf in that tree and builds
    the proof. Give the result to :func:`escape_withdraw`.
    """
    from ..dap.client import DapError, DapPool, run

    header = last_accepted_header(l1_w3, rollup, from_block=from_block)
    if header is None:
        raise EnclaveNetError("the Rollup never accepted a header: reclaim deposits instead")
    me = to_checksum(account.address)
    key = smt_key(me)
    l1_chain_id = int(l1_w3.eth.chain_id)

    async def gather() -> tuple[SparseMerkleTree, list[bytes], list[str]]:
        problems: list[str] = []
        tree: SparseMerkleTree | None = None
        sealed: list[tuple[int, bytes]] = []
        async with DapPool(daps, l1_chain_id, rollup, timeout=timeout) as pool:
            if not pool.clients:
                raise EnclaveNetError("no DAPs given")
            for c in pool.clients:
                try:
                    lf = await c.leaf(me, header.height)
                    if lf is not None:
                        sealed.append((lf.height, lf.sealed))
                    if tree is not None:
                        continue
                    leaves = await c.leaf_set(header.height, header.balances_root)
                except DapError as exc:
                    problems.append(f"{c.url}: {exc}")
                    continue
                if leaves is None:
                    problems.append(f"{c.url}: no leaf hashes up to height {header.height}")
                    continue
                t = SparseMerkleTree()
                t.update(dict(leaves))
                if t.root != header.balances_root:
                    problems.append(f"{c.url}: its leaf hashes do not give the accepted balances root")
                    continue
                tree = t
        if tree is None:
            raise EnclaveNetError(
                f"no DAP has the balances tree of the last accepted header (height {header.height}): "
                + "; ".join(problems[:6]))
        return tree, [s for _, s in sorted(sealed, key=lambda x: -x[0])], problems

    tree, records, problems = run(gather())
    leaf_hash = tree.get(key)
    if leaf_hash is None:
        raise EnclaveNetError(f"{me} has no balance leaf at height {header.height}: nothing to withdraw")
    for blob in records:
        try:
            rec = open_escape_leaf(blob, bytes(account.key))
        except EscapeError:
            continue
        if rec.address == me and rec.has_leaf and smt_leaf(key, rec.balance, rec.salt) == leaf_hash:
            leaf = EscapeLeaf(me, rec.balance, rec.salt, tuple(tree.proof(key)), header.height, header.hash(),
                              header.balances_root)
            if leaf.verify():
                return leaf
    raise EnclaveNetError(
        f"no DAP holds a sealed (balance, salt) record of {me} matching its leaf at height {header.height} "
        f"({len(records)} record(s) found)" + ("; " + "; ".join(problems[:3]) if problems else ""))


# ---------------------------------------------------------------------------- L1 reads


def last_accepted_header(l1_w3: Web3, rollup: str, *, from_block: int = 0) -> Header | None:
    """The last header the Rollup accepted, from L1 alone (its ``submitHeader`` calldata)."""
    contract = _rollup(l1_w3, rollup)
    height = int(contract.functions.lastHeight().call())
    if height == 0:
        return None
    want = bytes(contract.functions.lastHeaderHash().call())
    logs = contract.events.HeaderAccepted().get_logs(from_block=from_block, argument_filters={"height": height})
    for lg in reversed(list(logs)):
        if bytes(lg["args"]["header_hash"]) != want:
            continue
        tx = l1_w3.eth.get_transaction(lg["transactionHash"])
        _, params = contract.decode_function_input(tx["input"])
        header = _decode_header(params["header"])
        if header.hash() == want:
            return header
    raise EnclaveNetError(f"no submitHeader transaction on L1 carries the last accepted header (height {height})")


def _decode_header(obj: Any) -> Header:
    names = [f for f in Header.__dataclass_fields__]
    vals = [obj[k] for k in names] if isinstance(obj, dict) else list(obj)
    return Header(*[int(v) if n in _HEADER_INT_FIELDS else bytes(HexBytes(v)) for n, v in zip(names, vals, strict=True)])


def l1_messages(l1_w3: Web3, rollup: str, *, from_block: int = 0) -> list[L1Message]:
    """Every L1 message of the Rollup, by index (from its ``L1Message`` events)."""
    contract = _rollup(l1_w3, rollup)
    out: dict[int, L1Message] = {}
    for lg in contract.events.L1Message().get_logs(from_block=from_block):
        a = lg["args"]
        out[int(a["index"])] = L1Message(
            int(a["index"]), int(a["kind"]), to_checksum(a["sender"]), int(a["value"]), int(a["l1_block"]),
            bytes(a["payload"]),
        )
    msgs = [out[i] for i in sorted(out)]
    if [m.index for m in msgs] != list(range(len(msgs))):
        raise EnclaveNetError("L1Message events are not contiguous from index 0: give from_block= the deployment block")
    return msgs


# ---------------------------------------------------------------------------- escape


@dataclass(frozen=True)
class EscapeResult:
    l1_receipt: Any
    recipient: str
    amount: int


def escape_withdraw(
    l1_w3: Web3,
    account: LocalAccount,
    rollup: str,
    leaf: EscapeLeaf | str | Path,
    *,
    recipient: str | None = None,
    from_block: int = 0,
    timeout: float = 60.0,
) -> EscapeResult:
    """After the freeze: withdraw ``account``'s balance with its leaf (or a saved leaf's path).

    Needs the L1 only. The leaf must prove against the last accepted header's balances root.
    """
    if not isinstance(leaf, EscapeLeaf):
        leaf = load_escape_leaf(leaf)
    me = to_checksum(account.address)
    if leaf.address != me:
        raise EnclaveNetError(f"the escape leaf is {leaf.address}'s, not {me}'s")
    if not leaf.has_leaf:
        raise EnclaveNetError(f"{me} had no balance at height {leaf.height}: nothing to withdraw")
    contract = _rollup(l1_w3, rollup)
    if not contract.functions.frozen().call():
        raise EnclaveNetError("the Rollup is not frozen: withdraw normally (the escape hatch opens after a freeze)")
    header = last_accepted_header(l1_w3, rollup, from_block=from_block)
    if header is None:
        raise EnclaveNetError("the Rollup never accepted a header: reclaim deposits instead")
    if header.hash() != leaf.header_hash:
        raise EnclaveNetError(
            f"the escape leaf is for the header at height {leaf.height}, but the last accepted header is "
            f"at height {header.height}: fetch a leaf for that header (or from a data availability provider)"
        )
    if not leaf.verify(header.balances_root):
        raise EnclaveNetError("the escape leaf does not prove against the last accepted balances root")
    to = to_checksum(recipient) if recipient else me
    fn = contract.functions.escape(*leaf.escape_args(header.as_tuple(), to))
    receipt = _l1_transact(l1_w3, account, fn, 0, timeout)
    return EscapeResult(receipt, to, leaf.balance)


# ---------------------------------------------------------------------------- reclaim


@dataclass(frozen=True)
class ReclaimResult:
    l1_receipt: Any
    index: int
    sender: str
    amount: int
    paid: bool  # False: the push failed; the sender calls Rollup.claim()
    checkpoints: int  # proveMessages calls made first (segments longer than 256 messages)


def _message_args(msgs: list[L1Message]) -> list[tuple[int, str, int, int, bytes]]:
    return [(m.kind, m.sender, m.value, m.l1_block, m.payload_hash) for m in msgs]


def reclaim_deposit(
    l1_w3: Web3,
    account: LocalAccount,
    rollup: str,
    index: int,
    *,
    from_block: int = 0,
    timeout: float = 60.0,
) -> ReclaimResult:
    """Pay back L1 message ``index`` (deposit, submission value or challenge bond) that no header
    consumed, to its sender; ``account`` only pays the gas.

    Allowed once the Rollup is frozen, or when the message is past its deadline
    (``l1_block + challengePeriod``; this freezes the Rollup). The message is proven by the
    segment of the L1 message chain from it to the current accumulator; a segment longer than
    256 messages is first shortened with ``proveMessages`` checkpoints.
    """
    contract = _rollup(l1_w3, rollup)
    f = contract.functions
    msgs = l1_messages(l1_w3, rollup, from_block=from_block)
    total = int(f.msgCount().call())
    if len(msgs) < total:
        raise EnclaveNetError(f"the L1 node returned {len(msgs)} of the Rollup's {total} messages")
    msgs = msgs[:total]
    if not 0 <= index < total:
        raise EnclaveNetError(f"no L1 message {index}: the Rollup has {total}")
    consumed = int(f.msgConsumed().call())
    if index < consumed:
        raise EnclaveNetError(
            f"L1 message {index} was consumed by an accepted header (msg_count {consumed}): its value is "
            "in EnclaveNet; after a freeze use escape_withdraw"
        )
    m = msgs[index]
    if m.value == 0:
        raise EnclaveNetError(f"L1 message {index} carries no value")
    accs = [MSG_GENESIS_ACC]
    for x in msgs:
        accs.append(x.next_acc(accs[-1]))
    if accs[-1] != bytes(f.msgAcc().call()):
        raise EnclaveNetError("the L1 messages read do not lead to the Rollup's accumulator (a reorg? retry)")
    end, checkpoints = total, 0
    while end - index > MAX_SEGMENT:
        start = end - MAX_SEGMENT
        _l1_transact(l1_w3, account, f.proveMessages(accs[start], _message_args(msgs[start:end])), 0, timeout)
        end, checkpoints = start, checkpoints + 1
    fn = f.reclaim(accs[index], _message_args(msgs[index:end]), 0)
    receipt = _l1_transact(l1_w3, account, fn, 0, timeout)
    (ev,) = contract.events.Reclaimed().process_receipt(receipt, errors=_discard())
    return ReclaimResult(receipt, index, m.sender, m.value, bool(ev["args"]["paid"]), checkpoints)


def _discard() -> Any:
    from web3.logs import DISCARD

    return DISCARD


__all__ = [
    "Challenge",
    "ChallengeStatus",
    "EscapeResult",
    "ReclaimResult",
    "challenge",
    "challenge_status",
    "escape_request",
    "escape_withdraw",
    "fetch_escape_from_daps",
    "fetch_escape_leaf",
    "freeze",
    "l1_messages",
    "last_accepted_header",
    "load_escape_leaf",
    "reclaim_deposit",
    "save_escape_leaf",
]
