// The developer flow with viem, unmodified, through the EnclaveNet gateway.
// Usage: node gateway_viem.mjs <gateway http url> <artifact.json> <private key> <recipient address> <amount>
// Prints one JSON line with what it observed; exits non-zero on any failure.
import { readFileSync } from "node:fs";
import {
  createPublicClient, createWalletClient, decodeEventLog, defineChain, http, parseEventLogs, webSocket,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";

const [url, artifactPath, key, bob, amountArg] = process.argv.slice(2);
const amount = BigInt(amountArg);
const art = JSON.parse(readFileSync(artifactPath, "utf8"));
const out = {};
const step = (s) => process.stderr.write(`[${new Date().toISOString()}] ${s}\n`);
const probe = createPublicClient({ transport: http(url) });
const id = await probe.getChainId();
const chain = defineChain({
  id, name: "EnclaveNet devnet", nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [url], webSocket: [url.replace("http://", "ws://")] } },
});
const account = privateKeyToAccount(key);
const pub = createPublicClient({ chain, transport: http(url), pollingInterval: 200 });
const wallet = createWalletClient({ chain, transport: http(url), account });

out.chainId = id;
out.balance = (await pub.getBalance({ address: account.address })).toString();
out.nonce = await pub.getTransactionCount({ address: account.address, blockTag: "pending" });

step("deploy");
const deployHash = await wallet.deployContract({ abi: art.abi, bytecode: art.bytecode, args: ["Viem", "VIEM", 1000000n] });
const deployRc = await pub.waitForTransactionReceipt({ hash: deployHash, pollingInterval: 200, timeout: 90000 });
out.token = deployRc.contractAddress;
out.deployStatus = deployRc.status;

step("transfer");
const hash = await wallet.writeContract({ address: out.token, abi: art.abi, functionName: "transfer", args: [bob, amount] });
step("wait " + hash);
const rc = await pub.waitForTransactionReceipt({ hash, pollingInterval: 200, timeout: 90000 });
out.txHash = hash;
out.receiptHash = rc.transactionHash;
out.status = rc.status;
out.blockNumber = Number(rc.blockNumber);
out.transferLog = parseEventLogs({ abi: art.abi, logs: rc.logs, eventName: "Transfer" })
  .map((e) => ({ from: e.args.from ?? e.args[0], to: e.args.to ?? e.args[1], value: String(e.args.value ?? e.args[2]) }));
step("views");
out.balanceOf = (await pub.readContract({
  address: out.token, abi: art.abi, functionName: "balanceOf", args: [account.address], account: account.address,
})).toString();
out.estimate = (await pub.estimateContractGas({
  address: out.token, abi: art.abi, functionName: "transfer", args: [bob, 1n], account: account.address,
})).toString();
try {
  await pub.simulateContract({
    address: out.token, abi: art.abi, functionName: "transfer", args: [bob, 10n ** 30n], account: account.address,
  });
  out.revert = "no revert";
} catch (e) {
  out.revert = e.cause?.reason ?? e.shortMessage ?? String(e);
}
step("latest block");
const latest = await pub.getBlock({ blockTag: "latest" });
out.latestBlock = { number: Number(latest.number), hash: latest.hash, parentHash: latest.parentHash };
const logs = await pub.getContractEvents({ address: out.token, abi: art.abi, eventName: "Transfer", fromBlock: 0n });
out.events = logs.map((l) => String(l.args.value ?? l.args[2]));

step("subscribe");
// newHeads over the WebSocket
const wsClient = createPublicClient({ chain, transport: webSocket(url.replace("http://", "ws://")) });
const heads = await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error("no new head within 30 s")), 30000);
  const unwatch = wsClient.watchBlocks({
    onBlock: (b) => { clearTimeout(timer); unwatch(); resolve([Number(b.number)]); },
    onError: reject,
  });
  wallet.writeContract({ address: out.token, abi: art.abi, functionName: "transfer", args: [bob, 1n] }).catch(reject);
});
out.heads = heads;
out.decodeCheck = decodeEventLog({ abi: art.abi, data: rc.logs[0].data, topics: rc.logs[0].topics }).eventName;
const transport = await wsClient.transport.getRpcClient?.();
transport?.close?.();
console.log(JSON.stringify(out));
process.exit(0);
