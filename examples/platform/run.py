"""Platform calls in two small confidential apps, on the enclave executor (no L1 needed).

python -m examples.platform.run

* **Lottery**: players enter; ``draw()`` picks the winner with ``EnclaveNet.randomBytes``:
  private randomness nobody (not even the committee's hosts) can predict or re-roll.
* **Wallet**: the contract generates a secp256k1 key inside the enclave (nobody ever sees the
  secret), and signs an L1 EIP-155 legacy transaction it builds itself (RLP in Solidity); the
  signed transaction recovers to the wallet's address with eth_account.

The contracts use the platform library (``enclavenet/contracts/lib/EnclaveNet.sol``), so they
run only on EnclaveNet's enclave EVM (PLATFORM is not on the L1 test chain); this example drives
an ``Executor`` in-process, as the enclave program does (``run()``), or a live devnet through
any confidential ``Web3`` (``run_live(w3, accounts, l1, fund_l1)``: what ``make demo`` shows,
down to the wallet's L1 transaction being mined on the L1).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib.resources import files
from typing import Any

import coincurve
import rlp
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account

from enclavenet.compiler import Artifact, compile_solidity
from enclavenet.crypto.hashing import keccak256, to_checksum
from enclavenet.enclave.executor import BlockInfo, Executor, Receipt
from enclavenet.enclave.tx import decode_tx, sign_tx

CHAIN = 4242
L1_CHAIN = 31337

CONTRACTS = """
contract Lottery {
    address[] public players;
    address public winner;

    function enter() external {
        require(winner == address(0), "drawn");
        players.push(msg.sender);
    }

    function draw() external returns (address) {
        require(winner == address(0) && players.length > 0, "nothing to draw");
        uint256 r = uint256(bytes32(EnclaveNet.randomBytes(32, "lottery")));
        winner = players[r % players.length];
        return winner;
    }
}

contract Wallet {
    address public owner;
    address public l1Address;
    bytes private secretKey; // confidential state: only this contract, inside the enclave

    constructor() {
        owner = msg.sender;
        bytes memory pub;
        (pub, secretKey, l1Address) = EnclaveNet.generateSecp256k1Key(EnclaveNet.randomBytes(32, "wallet"));
    }

    /// An EIP-155 legacy transaction for L1, signed by the wallet's key: returns the raw signed
    /// transaction, ready for eth_sendRawTransaction.
    function signL1Transfer(uint256 nonce, uint256 gasPrice, uint256 gasLimit, address to, uint256 value,
                            bytes calldata data, uint256 chainId) external view returns (bytes memory) {
        require(msg.sender == owner, "not the owner");
        bytes memory head = bytes.concat(_u(nonce), _u(gasPrice), _u(gasLimit), _b(abi.encodePacked(to)), _u(value), _b(data));
        bytes32 digest = keccak256(_list(bytes.concat(head, _u(chainId), _u(0), _u(0))));
        bytes memory sig = EnclaveNet.sign(EnclaveNet.SECP256K1, secretKey, digest);
        bytes32 r; bytes32 s; uint8 v;
        assembly { r := mload(add(sig, 32)) s := mload(add(sig, 64)) v := byte(0, mload(add(sig, 96))) }
        require(ecrecover(digest, v, r, s) == l1Address, "signature check");
        uint256 eip155V = chainId * 2 + 35 + (v - 27);
        return _list(bytes.concat(head, _u(eip155V), _u(uint256(r)), _u(uint256(s))));
    }

    // --- minimal RLP ---
    function _u(uint256 x) private pure returns (bytes memory) {
        if (x == 0) return hex"80";
        uint256 n; for (uint256 t = x; t > 0; t >>= 8) n++;
        bytes memory b = new bytes(n);
        for (uint256 i = 0; i < n; i++) b[n - 1 - i] = bytes1(uint8(x >> (8 * i)));
        return _b(b);
    }
    function _len(uint256 n, uint8 short, uint8 long) private pure returns (bytes memory) {
        if (n < 56) return abi.encodePacked(uint8(short + n));
        uint256 k; for (uint256 t = n; t > 0; t >>= 8) k++;
        bytes memory b = new bytes(k);
        for (uint256 i = 0; i < k; i++) b[k - 1 - i] = bytes1(uint8(n >> (8 * i)));
        return bytes.concat(abi.encodePacked(uint8(long + k)), b);
    }
    function _b(bytes memory b) private pure returns (bytes memory) {
        if (b.length == 1 && uint8(b[0]) < 0x80) return b;
        return bytes.concat(_len(b.length, 0x80, 0xb7), b);
    }
    function _list(bytes memory payload) private pure returns (bytes memory) {
        return bytes.concat(_len(payload.length, 0xc0, 0xf7), payload);
    }
}
"""


def source() -> str:
    return files("enclavenet.contracts").joinpath("lib/EnclaveNet.sol").read_text() + CONTRACTS


_ARTIFACTS: dict[str, Artifact] = {}
SIGN_L1 = "signL1Transfer(uint256,uint256,uint256,address,uint256,bytes,uint256)"


def artifacts() -> dict[str, Artifact]:
    """Lottery and Wallet compiled with the platform library (solc-js, once per process)."""
    if not _ARTIFACTS:
        _ARTIFACTS.update({n: compile_solidity(source(), n, filename="Platform.sol") for n in ("Lottery", "Wallet")})
    return _ARTIFACTS




def run_live(w3: Any, accounts: list[str], l1: Any = None,
             fund_l1: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """The same two apps on a live EnclaveNet through a confidential ``w3`` (``client.wrap``):
    four players and a draw; a wallet whose key was generated inside the enclaves signs an L1
    transfer. With ``l1`` and ``fund_l1(address, wei)`` the wallet's L1 address is funded and
    the signed transaction is sent to the L1 and mined there."""
    from examples.common import send

    arts = artifacts()
    alice, bob = accounts[0], accounts[1]
    lottery = arts["Lottery"].deploy(w3, sender=alice)
    for a in accounts[:4]:
        send(w3, lottery.functions.enter(), a)
    send(w3, lottery.functions.draw(), alice)
    winner = lottery.functions.winner().call({"from": alice})
    wallet = arts["Wallet"].deploy(w3, sender=alice)
    l1_address = wallet.functions.l1Address().call({"from": alice})
    chain_id = l1.eth.chain_id if l1 is not None else L1_CHAIN
    gas_price = 2 * l1.eth.gas_price if l1 is not None else 10**9
    value = 10**16
    nonce = l1.eth.get_transaction_count(l1_address) if l1 is not None else 0
    raw = bytes(wallet.functions.signL1Transfer(nonce, gas_price, 21_000, bob, value, b"", chain_id)
                .call({"from": alice}))
    out: dict[str, Any] = {
        "players": list(accounts[:4]),
        "winner": winner,
        "wallet_l1_address": l1_address,
        "recovered_sender": Account.recover_transaction(raw),
        "not_owner": _refused(lambda: wallet.functions.signL1Transfer(
            nonce, gas_price, 21_000, bob, value, b"", chain_id).call({"from": bob})),
    }
    if l1 is not None and fund_l1 is not None:
        fund_l1(l1_address, value + 21_000 * gas_price)
        before = l1.eth.get_balance(bob)
        rc = l1.eth.wait_for_transaction_receipt(l1.eth.send_raw_transaction(raw), timeout=60)
        out["l1_status"] = int(rc["status"])
        out["l1_sender"] = l1.eth.get_transaction(rc["transactionHash"])["from"]
        out["l1_received"] = l1.eth.get_balance(bob) - before
    return out


def _refused(call: Callable[[], Any]) -> str | None:
    try:
        call()
    except Exception as exc:  # the contract's revert, as the client raises it
        return str(exc.args[0] if exc.args else exc).removeprefix("execution reverted: ")
    return None


def _sel(sig: str) -> bytes:
    return keccak256(sig.encode())[:4]


class _User:
    def __init__(self, name: str) -> None:
        self.sk = keccak256(b"examples.platform." + name.encode())
        self.address = keccak256(coincurve.PublicKey.from_secret(self.sk).format(False)[1:])[12:]
        self.nonce = 0


def run() -> dict[str, Any]:
    arts = artifacts()
    ex = Executor(CHAIN)
    users = [_User(n) for n in ("alice", "bob", "carol", "dave")]
    height = 0

    def batch(calls: list[tuple[_User, bytes | None, bytes]]) -> list[Receipt]:
        nonlocal height
        height += 1
        ex.begin_batch(BlockInfo(height, 1_700_000_000 + height))
        out = []
        for u, to, data in calls:
            out.append(ex.execute(decode_tx(sign_tx(u.sk, CHAIN, u.nonce, to, data, 0, 3_000_000), CHAIN)))
            u.nonce += 1
        ex.end_batch()
        assert all(r.success for r in out), [r.error for r in out]
        return out

    alice = users[0]
    lottery, wallet = (r.contract_address for r in batch([(alice, None, arts["Lottery"].bytecode),
                                                          (alice, None, arts["Wallet"].bytecode)]))
    assert lottery is not None and wallet is not None
    batch([(u, lottery, _sel("enter()")) for u in users])
    (drawn,) = batch([(alice, lottery, _sel("draw()"))])
    winner = abi_decode(["address"], drawn.output)[0]

    l1_address = abi_decode(["address"], ex.call(alice.address, wallet, _sel("l1Address()")).output)[0]
    tx = {"nonce": 0, "gasPrice": 10**9, "gas": 21_000, "to": to_checksum(users[1].address), "value": 10**16,
          "data": b"", "chainId": L1_CHAIN}
    args = abi_encode(["uint256", "uint256", "uint256", "address", "uint256", "bytes", "uint256"],
                      [tx["nonce"], tx["gasPrice"], tx["gas"], tx["to"], tx["value"], tx["data"], tx["chainId"]])
    res = ex.call(alice.address, wallet, _sel(SIGN_L1) + args)
    assert res.success, res.error
    raw = abi_decode(["bytes"], res.output)[0]
    fields = rlp.decode(raw)
    return {
        "players": [to_checksum(u.address) for u in users],
        "winner": to_checksum(winner),
        "wallet_l1_address": to_checksum(l1_address),
        "signed_l1_tx": "0x" + raw.hex(),
        "recovered_sender": Account.recover_transaction(raw),
        "eip155_v": int.from_bytes(fields[6], "big"),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
