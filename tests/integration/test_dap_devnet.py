"""DAPs wired into a real devnet (node processes, enclave processes, DAP processes, an L1):

* every header on L1 carries >= t storage receipts (the Rollup refuses fewer), the DAPs hold
  every accepted batch;
* a new node -- a fresh enclave on a new machine, no local state -- joins: it is attested and
  registered, gets the epoch keys from the committee, loads the newest snapshot from the DAPs,
  replays the rest and proposes; on both storage backends (SQLite, PostgreSQL);
* every node restarted at once from stale sealed state (no peer holds the missing batches)
  catches up from the DAPs with nothing lost.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from enclavenet.client import deposit
from enclavenet.dap.client import DapPool, run
from enclavenet.devnet import Devnet

pytestmark = pytest.mark.integration


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def make_heights(net: Devnet, n: int, account: int = 0) -> int:
    """n L1 deposits, each waited for in an accepted header: the chain grows by about n heights."""
    assert net.w3 is not None
    for _ in range(n):
        before = net.l1_height()
        deposit(net.w3, net.accounts[account], net.rollup.address, 10**15)
        wait_for(lambda b=before: net.l1_height() > b, 60, "a header consuming the deposit")
    return net.l1_height()


def receipts_on_l1(net: Devnet) -> list[int]:
    """How many DAP receipts each accepted header's submitHeader carried."""
    assert net.w3 is not None
    out = []
    logs = net.rollup.events.HeaderAccepted().get_logs(from_block=net.deploy_block)
    for ev in logs:
        tx = net.w3.eth.get_transaction(ev.transactionHash)
        _, args = net.rollup.decode_function_input(tx["input"])
        out.append(len(args.get("receipts", [])))
    return out


def dap_pool(net: Devnet) -> DapPool:
    return DapPool({d.address: d.url for d in net.dap_procs}, net.l1_chain_id, net.rollup.address)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_new_node_recovers_from_the_daps_and_proposes(store: str, tmp_path: Path) -> None:
    with Devnet(n=4, daps=2, dap_threshold=2, dap_store=store, batch_interval=0.05, proposer_timeout=1.0,
                node_options={"dap_snapshot_every": 3}, base_dir=tmp_path / "net") as net:
        assert net.rollup.functions.dapThreshold().call() == 2
        h = make_heights(net, 7)
        # every header carried 2 receipts; both DAPs hold every accepted batch
        assert receipts_on_l1(net)[1:] == [2] * (len(receipts_on_l1(net)) - 1)

        async def held() -> list[int]:
            async with dap_pool(net) as pool:
                return [len(await c.headers(1, h)) for c in pool.clients]

        assert all(n >= h for n in run(held()))
        # node 3's machine is replaced: a fresh enclave (new platform), no data dir
        k = 3
        old_enclave = net.addresses[k]
        net.kill(k)
        make_heights(net, 5)  # the chain moves on without it (3 of 4 still make a QC)
        shutil.rmtree(net.configs[k].data_dir)
        tee = net.tee_types[k]
        net.configs[k] = replace(net.configs[k], platform=net.vendors[tee].new_platform().boot_spec())
        net.configs[k].save(net.config_paths[k])
        net.restart(k, wait=False)
        assert net.addresses[k] != old_enclave  # a new enclave identity, registered on L1 by the node
        wait_for(lambda: net.registry.functions.isActive(net.addresses[k]).call(), 60, "the new enclave's registration")
        target = net.l1_height()
        wait_for(lambda: (net.status(k) or {}).get("finalized", 0) >= target, 120, "the new node to catch up")
        st = net.status(k)
        assert st is not None and st["dapSnapshot"] is not None and st["dapSnapshot"] >= 3, st
        # ...and it takes its turn: within a bounded number of heights a header it proposed is accepted
        proposed_before = st["counters"]["proposed"]
        for _ in range(12):
            make_heights(net, 1)
            st = net.status(k) or {}
            if st.get("counters", {}).get("proposed", 0) > proposed_before:
                break
        assert st["counters"]["proposed"] > proposed_before, st
        wait_for(lambda: (net.status(k) or {}).get("finalized", 0) >= net.l1_height(), 60, "the new node to follow")


def test_all_nodes_restarted_from_stale_state_catch_up_from_the_daps(tmp_path: Path) -> None:
    with Devnet(n=4, daps=2, dap_threshold=1, batch_interval=0.05, proposer_timeout=1.0,
                base_dir=tmp_path / "net") as net:
        make_heights(net, 2)
        stale = {i: Path(c.data_dir, "enclave.sealed").read_bytes() for i, c in enumerate(net.configs)}
        # the hosts' signed batches (node/store.py signed/) as of the same moment: a stale backup
        # of the data dir holds nothing above the stale height either
        stale_signed = {i: {f.name: f.read_bytes() for f in Path(c.data_dir, "signed").glob("*.cbor")}
                        for i, c in enumerate(net.configs)}
        stale_height = net.l1_height()
        h = make_heights(net, 5)
        assert h >= stale_height + 5
        last = bytes(net.rollup.functions.lastHeaderHash().call())
        for i in range(net.n):
            net.kill(i)
        for i, blob in stale.items():  # every host comes back with an old sealed enclave state
            Path(net.configs[i].data_dir, "enclave.sealed").write_bytes(blob)
            signed = Path(net.configs[i].data_dir, "signed")
            shutil.rmtree(signed, ignore_errors=True)
            signed.mkdir()
            for name, data in stale_signed[i].items():
                (signed / name).write_bytes(data)
        net.restart_all()  # no peer holds heights stale+1..h in memory: they come from the DAPs
        for i in range(net.n):
            wait_for(lambda i=i: (net.status(i) or {}).get("finalized", 0) >= h, 120, f"node{i} to catch up")
        hdr = [net.rpc(i, "enclavenet_getHeader", hex(h)) for i in range(net.n)]
        assert all(bytes.fromhex(x["hash"][2:]) == last for x in hdr)
        logs = [Path(net.base_dir, f"node{i}.log").read_text(errors="replace") for i in range(net.n)]
        # nobody had those batches but the DAPs (a node that fetched them may then serve its peers)
        assert any("from the DAPs" in text for text in logs)
        # nothing lost: the chain goes on from the same state
        make_heights(net, 2, account=1)
