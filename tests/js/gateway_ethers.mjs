// The developer flow with ethers v6, unmodified, through the EnclaveNet gateway.
// Usage: node gateway_ethers.mjs <gateway http url> <artifact.json> <private key> <recipient address> <amount>
// Prints one JSON line with what it observed; exits non-zero on any failure.
import { readFileSync } from "node:fs";
import { ethers } from "ethers";

const [url, artifactPath, key, bob, amountArg] = process.argv.slice(2);
const amount = BigInt(amountArg);
const art = JSON.parse(readFileSync(artifactPath, "utf8"));
const out = {};
const step = (s) => process.stderr.write(`[${new Date().toISOString()}] ${s}\n`);
const provider = new ethers.JsonRpcProvider(url, undefined, { pollingInterval: 200 });
const wallet = new ethers.Wallet(key, provider);

out.chainId = Number((await provider.getNetwork()).chainId);
out.balance = (await provider.getBalance(wallet.address)).toString();
out.nonce = await provider.getTransactionCount(wallet.address, "pending");

step("deploy");
const factory = new ethers.ContractFactory(art.abi, art.bytecode, wallet);
const token = await factory.deploy("Ethers", "ETH", 1000000n);
await token.waitForDeployment();
out.token = await token.getAddress();
out.deployReceiptStatus = (await token.deploymentTransaction().wait()).status;

step("transfer");
const tx = await token.transfer(bob, amount);
step("wait " + tx.hash);
const rc = await tx.wait();
out.txHash = tx.hash;
out.receiptHash = rc.hash;
out.status = rc.status;
out.blockNumber = rc.blockNumber;
const parsed = rc.logs.map((l) => token.interface.parseLog(l)).filter((e) => e && e.name === "Transfer");
out.transferLog = parsed.map((e) => ({ from: e.args[0], to: e.args[1], value: e.args[2].toString() }));
step("views");
out.balanceOf = (await token.balanceOf(wallet.address)).toString();
out.estimate = (await token.transfer.estimateGas(bob, 1n)).toString();
try {
  await token.transfer.estimateGas(bob, 10n ** 30n);
  out.revert = "no revert";
} catch (e) {
  out.revert = e.reason ?? e.shortMessage ?? String(e);
  out.revertCode = e.code;
}
step("latest block");
const latest = await provider.getBlock("latest");
out.latestBlock = { number: latest.number, hash: latest.hash, parentHash: latest.parentHash };
out.events = (await token.queryFilter(token.filters.Transfer(), 0, "latest")).map((e) => e.args[2].toString());

step("subscribe");
// newHeads over the WebSocket
const ws = new ethers.WebSocketProvider(url.replace("http://", "ws://"));
const heads = [];
let mined = null;
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("no new head within 30 s")), 30000);
  ws.on("block", (n) => {
    heads.push(n);
    if (heads.length >= 1) { clearTimeout(timer); resolve(); }
  });
  // a transaction makes the committee produce a header
  mined = token.transfer(bob, 1n).then((t) => t.wait());
  mined.catch(reject);
});
out.heads = heads;
// the head can arrive before this transfer's receipt: destroying the provider
// with the receipt poll still in flight rejects it, so let it finish first
out.lastStatus = (await mined).status;
await ws.destroy();
provider.destroy();
console.log(JSON.stringify(out));
