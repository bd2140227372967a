"""A bridged ERC20 on a live devnet: deposit on L1, a confidential transfer inside, the
receiver reads the incoming ``Transfer`` with ``eth_getLogs``, a withdrawal back to L1.

python -m examples.bridge.run       (starts a devnet of 4 members on anvil)

* ``TestToken`` is a plain L1 ERC20. Alice deposits it through the L1 ``Bridge``
  (``depositERC20``): the committee mints the token's canonical EnclaveNet ERC20 to her (at
  an address anyone computes: ``Bridge.l2TokenOf``).
* Inside, alice transfers to bob with an ordinary ``transfer`` through a confidential
  ``Web3``; nobody outside sees amount or receiver. Bob reads the incoming ``Transfer``
  (his address is an indexed topic); carol asking the same gets nothing.
* Bob calls ``withdraw(l1_recipient, amount)`` on the canonical token: it burns and sends an
  L2 -> L1 message; when the header carrying it is accepted, the node relays it and the Bridge
  pays bob the L1 tokens.
* A contract -> L1 message and an L1 -> contract call ride the same paths (tests:
  tests/integration/test_bridge_devnet.py).
"""

from __future__ import annotations

import time
from typing import Any

from eth_account.signers.local import LocalAccount

from enclavenet.client.bridge import bridged_token, deposit_erc20
from enclavenet.client.l1 import _l1_transact
from examples.common import artifact, send

SUPPLY = 1_000_000 * 10**6


def _wait(cond: Any, what: str, timeout: float = 90.0) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - t0


def run_live(w3: Any, l1: Any, bridge: str, alice: LocalAccount, bob: LocalAccount, carol: str) -> dict[str, Any]:
    """Everything above; returns what each party saw and the L1 gas of the bridge calls."""
    art = artifact("bridge", "TestToken")
    rc = _l1_transact(l1, alice, l1.eth.contract(abi=art.abi, bytecode=art.bytecode).constructor(SUPPLY), 0, 60)
    token = l1.eth.contract(address=rc["contractAddress"], abi=art.abi)
    amount, sent, back = 1000 * 10**6, 400 * 10**6, 150 * 10**6
    dep = deposit_erc20(l1, alice, bridge, token.address, amount)
    inside = bridged_token(w3, token.address)
    def credited() -> bool:
        try:
            return bool(inside.functions.balanceOf(alice.address).call({"from": alice.address}) == amount)
        except Exception:  # no token yet: empty output until the first deposit deployed it
            return False

    credit_s = _wait(credited, "the deposit to be credited inside EnclaveNet")
    rc_t = send(w3, inside.functions.transfer(bob.address, sent), alice.address)
    height = int(rc_t["blockNumber"])
    mk = w3.manager.provider.make_request

    def seen(who: str) -> list[Any]:
        res = w3.enclavenet.get_logs(mk, height, height, address=inside.address, sender=who, full=True)
        return [] if res.missing else list(res.logs)

    _wait(lambda: bool(seen(bob.address)), "bob's log query to find the Transfer", timeout=30)
    bob_logs, carol_logs = seen(bob.address), seen(carol)
    before = token.functions.balanceOf(bob.address).call()
    send(w3, inside.functions.withdraw(bob.address, back), bob.address)
    paid_s = _wait(lambda: token.functions.balanceOf(bob.address).call() == before + back,
                   "the withdrawal to be relayed and paid on L1")
    relays = token.events.Transfer().get_logs(from_block=dep["blockNumber"], argument_filters={"receiver": bob.address})
    relay_rc = l1.eth.get_transaction_receipt(relays[-1].transactionHash)
    return {
        "l1_token": token.address,
        "l2_token": inside.address,
        "deposit_gas": int(dep["gasUsed"]),
        "credited_after_s": round(credit_s, 2),
        "alice_inside": inside.functions.balanceOf(alice.address).call({"from": alice.address}),
        "bob_inside": inside.functions.balanceOf(bob.address).call({"from": bob.address}),
        "bob_transfer_logs": len(bob_logs),
        "bob_log_value": int(str(bob_logs[0]["data"]), 16) if bob_logs else None,
        "carol_transfer_logs": len(carol_logs),
        "bob_l1_received": token.functions.balanceOf(bob.address).call() - before,
        "withdrawn_after_s": round(paid_s, 2),
        "relay_gas": int(relay_rc["gasUsed"]),
        "locked_on_l1": token.functions.balanceOf(bridge).call(),
    }


def main() -> int:
    from enclavenet.devnet import Devnet

    with Devnet(n=4, l1="anvil", batch_interval=0.05, log_level="WARNING") as net:
        from web3 import Web3

        from enclavenet.client import wrap

        alice, bob, carol = net.accounts[0], net.accounts[1], net.accounts[2]
        w3 = wrap(Web3(Web3.HTTPProvider(net.rpc_urls[0], request_kwargs={"timeout": 60})), [alice, bob, carol], l1=net.w3)
        out = run_live(w3, net.w3, net.bridge.address, alice, bob, carol.address)
    for k, v in out.items():
        print(f"{k:22} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
