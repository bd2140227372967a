"""The committee across real network hops: every node (with its enclave), the DAP, the L1 and the
load generator in its own Linux network namespace, joined by veth links to a bridge, with a delay
on every link -- LAN 0.1 ms, WAN 25 ms +- 0.1 ms one way (TeeRollup's Fig. 4 setting).

    .venv/bin/python benchmarks/wan.py [--quick] [--members 4,7] [--batches 500,2000]    (as root)

Needs root (``ip netns``). Everything it creates is named ``enw<pid>...``: namespaces
``enw<pid>-hub`` (the bridge), ``enw<pid>-client``, ``-l1``, ``-dap0``, ``-node<i>``, with
private addresses in 10.213.0.0/16 inside them only. All of it is removed at the end -- also on
an error, Ctrl-C or SIGTERM (the processes still inside are killed by id, then the namespaces
go, and their veth ends with them).

The delay: ``tc qdisc ... netem delay 25ms 0.1ms`` on every namespace's link when the kernel has
netem. This machine's kernel has no ``sch_netem`` (only tbf/htb/pfifo), so then a delay relay in
the hub namespace stands on every link instead: each service binds its namespace's address
10.213.0.x and is reached at 10.213.1.x on the hub, where the relay holds each byte for the
delay in each direction (order kept, jitter +-0.1 ms) before forwarding it -- the same one-way
delay per link as netem on each sender, by a process (its CPU is counted in the machine's load).
LAN cells go through the same relay (0.1 ms), so LAN vs WAN differ by the delay only.

The nodes need nothing but URLs: no shared filesystem path crosses (each has its own data dir
and config), no shared loopback (each listens on its namespace's address only).

Per committee size one devnet is started (from the load generator's namespace); the delay is
switched on the running links between the LAN and the WAN cells. Per cell the load generator of
``benchmarks/throughput.py`` (``enclavenet.loadgen.run_cell``) floods ``rounds x batch``
confidential ERC20 transfers and measures TPS and p50/p99 latency (acknowledged -> header on
L1). Writes benchmarks/out/wan.png and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SUBNET = "10.213"  # services bind 10.213.0.x in their namespace; the relay answers on 10.213.1.x
DELAYS = {"lan": (0.0001, 0.0), "wan": (0.025, 0.0001)}  # one-way seconds, jitter
PORTS = {"l1": 8545, "dap0": 7100, "client": 0}  # node i: 9100 + i


def port_of(role: str) -> int:
    return PORTS[role] if role in PORTS else 9100 + int(role.removeprefix("node"))


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


class Namespaces:
    """The hub with its bridge and one namespace per role, each with one veth into the bridge."""

    def __init__(self, roles: list[str]) -> None:
        self.tag = f"enw{os.getpid()}"
        self.hub = f"{self.tag}-hub"
        self.roles = roles
        self.ns = {r: f"{self.tag}-{r}" for r in roles}
        self.addr = {r: f"{SUBNET}.0.{i + 2}" for i, r in enumerate(roles)}
        self.relay_addr = {r: f"{SUBNET}.1.{i + 2}" for i, r in enumerate(roles)}
        self.created: list[str] = []
        self.netem = False
        self.relay: subprocess.Popen[bytes] | None = None
        self.delay_file = Path(tempfile.mkdtemp(prefix="enclavenet-wan-relay-")) / "delay"

    def __enter__(self) -> Namespaces:
        try:
            self.create()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def create(self) -> None:
        sh("ip", "netns", "add", self.hub)
        self.created.append(self.hub)
        hub = ["ip", "netns", "exec", self.hub]
        sh(*hub, "ip", "link", "add", "br0", "type", "bridge")
        sh(*hub, "ip", "link", "set", "br0", "up")
        sh(*hub, "ip", "link", "set", "lo", "up")
        for k, role in enumerate(self.roles):
            ns = self.ns[role]
            sh("ip", "netns", "add", ns)
            self.created.append(ns)
            a, b = f"{self.tag}a{k}", f"{self.tag}b{k}"  # <= 15 characters
            sh("ip", "link", "add", a, "netns", ns, "type", "veth", "peer", "name", b, "netns", self.hub)
            ex = ["ip", "netns", "exec", ns]
            sh(*ex, "ip", "link", "set", a, "name", "eth0")
            sh(*ex, "ip", "addr", "add", f"{self.addr[role]}/16", "dev", "eth0")
            sh(*ex, "ip", "link", "set", "eth0", "up")
            sh(*ex, "ip", "link", "set", "lo", "up")
            sh(*hub, "ip", "link", "set", b, "master", "br0")
            sh(*hub, "ip", "link", "set", b, "up")
        first = ["ip", "netns", "exec", self.ns[self.roles[0]]]
        self.netem = sh(*first, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "0.1ms", check=False).returncode == 0
        if self.netem:
            for role in self.roles[1:]:
                sh("ip", "netns", "exec", self.ns[role], "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "0.1ms")
            self.relay_addr = dict(self.addr)  # no relay: services are reached where they bind
            return
        for role in self.roles:
            sh(*hub, "ip", "addr", "add", f"{self.relay_addr[role]}/16", "dev", "br0")
        self.delay_file.write_text(json.dumps(DELAYS["lan"]))
        pairs = [[self.relay_addr[r], port_of(r), self.addr[r], port_of(r)] for r in self.roles if r != "client"]
        spec = self.delay_file.parent / "relay.json"
        spec.write_text(json.dumps({"pairs": pairs, "delay_file": str(self.delay_file)}))
        self.relay = subprocess.Popen([*hub, sys.executable, __file__, "--relay", "--spec", str(spec)],
                                      stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert self.relay.stdout is not None
        if not self.relay.stdout.readline():
            raise RuntimeError("the delay relay did not start")

    def placement(self, role: str) -> Any:
        from enclavenet.devnet import Placement

        return Placement(("ip", "netns", "exec", self.ns[role]), self.addr[role], self.relay_addr[role], port_of(role))

    def set_delay(self, kind: str) -> str:
        delay, jitter = DELAYS[kind]
        if self.netem:
            args = ["delay", f"{delay * 1000:g}ms"] + ([f"{jitter * 1000:g}ms"] if jitter else [])
            for role in self.roles:
                sh("ip", "netns", "exec", self.ns[role], "tc", "qdisc", "change", "dev", "eth0", "root", "netem", *args)
            return "tc netem " + " ".join(args)
        tmp = self.delay_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([delay, jitter]))
        tmp.replace(self.delay_file)
        time.sleep(0.5)  # the relay reads it every 0.2 s
        return f"relay delay {delay * 1000:g} ms +- {jitter * 1000:g} ms one way"

    def ping_ms(self, a: str, b: str) -> float:
        """Round trip node a -> node b: a GET /health over a fresh TCP connection, through what
        the nodes use (handshake + request + answer: about 2 x RTT)."""
        code = ("import time,urllib.request as u;t=time.perf_counter();"
                f"u.urlopen('http://{self.relay_addr[b]}:{port_of(b)}/health',timeout=5).read();"
                "print((time.perf_counter()-t)*1000)")
        out = sh("ip", "netns", "exec", self.ns[a], sys.executable, "-c", code, check=False).stdout.strip()
        try:
            return float(out)
        except ValueError:
            return float("nan")

    def destroy(self) -> None:
        """Kill what still runs inside our namespaces (by pid), then delete them (veths go too)."""
        if self.relay is not None and self.relay.poll() is None:
            self.relay.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.relay.wait(5)
        for ns in reversed(self.created):
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for p in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(p), signal.SIGKILL)
        for ns in reversed(self.created):
            sh("ip", "netns", "del", ns, check=False)
        self.created = []
        shutil.rmtree(self.delay_file.parent, ignore_errors=True)


# ----------------------------------------------------------------------------- the delay relay


def relay(args: argparse.Namespace) -> int:
    """In the hub namespace: for each (listen host, port, target host, port) forward TCP both
    ways, each chunk held for the one-way delay (+ jitter, order kept) read from delay_file."""
    import asyncio
    import random

    spec = json.loads(Path(args.spec).read_text())
    delay_file = Path(spec["delay_file"])
    cur = {"delay": 0.0001, "jitter": 0.0}

    async def watch() -> None:
        while True:
            with contextlib.suppress(Exception):
                d, j = json.loads(delay_file.read_text())
                cur["delay"], cur["jitter"] = float(d), float(j)
            await asyncio.sleep(0.2)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await q.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    with contextlib.suppress(Exception):
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        task = asyncio.create_task(send())
        last = 0.0
        try:
            while True:
                data = await reader.read(256 * 1024)
                j = cur["jitter"]
                last = max(last, loop.time() + cur["delay"] + (random.uniform(-j, j) if j else 0.0))
                q.put_nowait((last, data))
                if not data:
                    break
            await task
        except Exception:
            task.cancel()
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def main() -> None:
        servers = []
        for lh, lp, th, tp in spec["pairs"]:
            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, th: str = th, tp: int = tp) -> None:
                await asyncio.sleep(cur["delay"])  # the SYN's way there
                try:
                    tr, tw = await asyncio.open_connection(th, tp)
                except OSError:
                    w.close()
                    return
                await asyncio.sleep(cur["delay"])  # and the SYN-ACK's way back
                await asyncio.gather(pipe(r, tw), pipe(tr, w))

            servers.append(await asyncio.start_server(handle, lh, lp, backlog=1024))
        asyncio.get_running_loop().create_task(watch())
        print("ready", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0


# ----------------------------------------------------------------------------- inner run


def inner(args: argparse.Namespace) -> int:
    """Runs inside the client namespace: one devnet placed in the namespaces, LAN then WAN cells."""
    from enclavenet.devnet import Devnet, Placement
    from enclavenet.loadgen import Chain, run_cell, setup_token

    spec = json.loads(Path(args.spec).read_text())

    def placement(role: str) -> Placement:
        prefix, bind, url_host, port = spec["placement"][role]
        return Placement(tuple(prefix), bind, url_host, port)

    batches = [int(x) for x in args.batches.split(",")]
    results: list[dict[str, Any]] = []
    with Devnet(n=int(args.members), l1=args.l1, batch_size=max(batches), batch_interval=0.25, proposer_timeout=20.0,
                persist="accept", start_timeout=300, daps=1, placement=placement, base_dir=spec["dir"],
                node_options={"admin_rpc": True, "mempool_max_total": 400_000, "proposer_run": 4, "pipeline": 4},
                log_level="WARNING") as net:
        chain = Chain(net)
        token, senders = setup_token(chain, 200, 0)
        nonces = {s.address: 0 for s in senders}
        for kind in args.order.split(","):
            # the outer process switches the links' delay: ask it, wait for the answer
            Path(spec["dir"], "want").write_text(kind)
            have = Path(spec["dir"], "have")
            deadline = time.monotonic() + 60
            while not (have.exists() and have.read_text() == kind):
                if time.monotonic() > deadline:
                    raise RuntimeError("the outer process did not switch the delay")
                time.sleep(0.1)
            for batch in batches:
                r = run_cell(chain, token, senders, nonces, batch, int(args.rounds * batch))
                r.update(net=kind)
                r.pop("cpu", None)
                results.append(r)
                print(f"{kind.upper()}  members {args.members}  batch {batch:4d}  txs {r['txs']:5d}  TPS {r['tps']:6.0f}  "
                      f"p50 {r['p50_s']:5.2f}s  p99 {r['p99_s']:5.2f}s", flush=True)
    Path(args.out).write_text(json.dumps(results))
    return 0


# ----------------------------------------------------------------------------- outer run


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for kind, style in (("lan", "-"), ("wan", "--")):
        for batch in sorted({r["batch"] for r in results}):
            rs = sorted((r for r in results if r["batch"] == batch and r["net"] == kind), key=lambda r: r["members"])
            if rs:
                lbl = f"{kind.upper()} batch {batch}"
                a.plot([r["members"] for r in rs], [r["tps"] for r in rs], style, marker="o", label=lbl)
                b.plot([r["members"] for r in rs], [r["p50_s"] for r in rs], style, marker="o", label=lbl)
    a.set_xlabel("committee members")
    a.set_ylabel("throughput (tx/s)")
    a.set_title("LAN 0.1 ms vs WAN 25 ms links")
    b.set_xlabel("committee members")
    b.set_ylabel("p50 latency (s)")
    b.set_title("Latency: acknowledged -> header on L1")
    for ax in (a, b):
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def outer(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("benchmarks/wan.py needs root (ip netns, tc)", file=sys.stderr)
        return 2
    for tool in ("ip",):
        if shutil.which(tool) is None:
            print(f"benchmarks/wan.py needs {tool} (apt-get install iproute2)", file=sys.stderr)
            return 2
    members = [int(x) for x in (args.members or ("4" if args.quick else "4,7")).split(",")]
    rounds = args.rounds or (2 if args.quick else 4)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    results: list[dict[str, Any]] = []
    rtts: dict[str, float] = {}
    print(f"# wan: committees {members}, batches {args.batches}, {rounds} x batch transactions per cell")
    for n in members:
        roles = ["client", "l1", "dap0", *[f"node{i}" for i in range(n)]]
        work = Path(tempfile.mkdtemp(prefix="enclavenet-wan-"))
        inner_proc: subprocess.Popen[str] | None = None
        try:
            with Namespaces(roles) as nets:
                spec = {"dir": str(work / "dn"),
                        "placement": {r: [list(p.prefix), p.bind, p.url_host, p.port] for r in roles
                                      if (p := nets.placement(r))}}
                (work / "dn").mkdir()
                (work / "spec.json").write_text(json.dumps(spec))
                out = work / "results.json"
                inner_proc = subprocess.Popen(
                    ["ip", "netns", "exec", nets.ns["client"], sys.executable, __file__, "--inner", "--spec",
                     str(work / "spec.json"), "--out", str(out), "--members", str(n), "--batches", args.batches,
                     "--rounds", str(rounds), "--l1", args.l1, "--order", args.order], text=True)
                want, have = work / "dn" / "want", work / "dn" / "have"
                deadline = time.monotonic() + args.timeout
                while inner_proc.poll() is None:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the {n}-member run took over {args.timeout:.0f}s")
                    if want.exists() and (not have.exists() or have.read_text() != want.read_text()):
                        kind = want.read_text()
                        how = nets.set_delay(kind)
                        rtts[f"rtt_ms_{kind}"] = round(nets.ping_ms("node0", "node1"), 3)
                        print(f"# {kind.upper()}: {how} on every link; node0 -> node1 GET /health on a new connection "
                              f"{rtts[f'rtt_ms_{kind}']} ms", flush=True)
                        have.write_text(kind)
                    time.sleep(0.1)
                if inner_proc.returncode != 0 or not out.exists():
                    raise RuntimeError(f"the {n}-member run failed (exit {inner_proc.returncode}); logs in {work / 'dn'}")
                results += json.loads(out.read_text())
        finally:
            if inner_proc is not None and inner_proc.poll() is None:
                inner_proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    inner_proc.wait(10)
            if not os.environ.get("ENCLAVENET_KEEP_DEVNET"):
                shutil.rmtree(work, ignore_errors=True)
    leftovers = [x for x in sh("ip", "netns", "list").stdout.split() if x.startswith(f"enw{os.getpid()}")]
    assert not leftovers, f"namespaces left behind: {leftovers}"
    print("\n| net | members | batch | TPS | p50 (s) | p99 (s) |\n|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['net'].upper()} | {r['members']} | {r['batch']} | {r['tps']:.0f} | {r['p50_s']:.2f} | {r['p99_s']:.2f} |")
    png = ROOT / "benchmarks" / "out" / "wan.png"
    plot(results, png)
    print(f"plot: {png}")

    def cell(kind: str, m: int, b: int, key: str) -> float | None:
        for r in results:
            if r["net"] == kind and r["members"] == m and r["batch"] == b:
                return round(float(r[key]), 3)
        return None

    summary: dict[str, Any] = {
        "tps_lan_4_members_batch_2000": cell("lan", 4, 2000, "tps"),
        "tps_wan_4_members_batch_2000": cell("wan", 4, 2000, "tps"),
        "p50_lan_s_batch_500": cell("lan", 4, 500, "p50_s"),
        "p50_wan_s_batch_500": cell("wan", 4, 500, "p50_s"),
        **rtts,
    }
    lan, wan = summary["tps_lan_4_members_batch_2000"], summary["tps_wan_4_members_batch_2000"]
    if lan and wan:
        summary["wan_tps_share_of_lan"] = round(wan / lan, 3)
    for r in results:
        k = f"{r['net']}_{r['members']}_members_batch_{r['batch']}"
        summary[f"tps_{k}"] = round(r["tps"], 1)
        summary[f"p50_s_{k}"] = round(r["p50_s"], 3)
        summary[f"p99_s_{k}"] = round(r["p99_s"], 3)
    print(json.dumps(summary))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 members only, 2 x batch transactions per cell")
    ap.add_argument("--members", default=None, help="comma-separated committee sizes (default 4,7)")
    ap.add_argument("--batches", default="500,2000")
    ap.add_argument("--rounds", type=float, default=None, help="transactions per cell = rounds x batch")
    ap.add_argument("--timeout", type=float, default=1500.0, help="seconds one committee size may take")
    ap.add_argument("--l1", choices=["anvil", "embedded"], default="anvil", help="the L1 (in its own namespace)")
    ap.add_argument("--order", default="lan,wan", help="which delay runs first (the machine's load drifts)")
    ap.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.relay:
        return relay(args)
    if args.inner:
        return inner(args)
    try:
        return outer(args)
    except KeyboardInterrupt:
        print("benchmarks/wan.py: interrupted; everything it created was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
