"""The untrusted node: enclave host, L1 follower, mempool, proposer/voter, QC and submitter.

One node per enclave, its own OS process (``enclavenet node --config FILE``). The host is a
courier and a scheduler; a bug here may cost liveness, never safety or secrecy: every header
that reaches L1 carries a QC of enclave signatures, and every enclave re-executes what it signs.

``Node`` is a thin composition of roles over a shared state (``core.NodeCore``); the map of
which module owns which protocol step is in docs/NODE.md:

* ``committee.py``  propose, vote, QC assembly, takeover of a stalled height (the protocol)
* ``sync.py``       accepted headers -> enclave (apply / announce / restore / resync); serves peers' catch-up
* ``epochs.py``     membership (peer identities, the enclave's committee) and epoch keys (genesis, rotation, push/fetch)
* ``ingress.py``    mempool admission and forwarding of envelopes
* ``l1.py``         the L1 loop: connect, register, poll, submit headers, resubmit, reorgs
* ``store.py``      ``data_dir``: sealed snapshot, pending.log, receipts.log
* ``batch.py``      the batch record and its wire forms (pure)

This module: start/stop, the enclave's start and sealed restore, the HTTP server (JSON-RPC and
the peer ops, each routed to its role) and ``status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from typing import Any

import aiohttp
import cbor2
from aiohttp import web

from ..crypto.hashing import to_checksum
from ..crypto.quote import TEE_NAMES
from ..tee.boundary import EnclaveError
from . import peerauth
from .api import install_rpc_methods
from .batch import (
    BatchRecord,
    Refused,
    data_commitment_of,
    msg_to_wire,
    routing_hints,
    split_batch_data,
)
from .committee import Committee
from .config import NodeConfig
from .core import NodeCore
from .epochs import Epochs
from .host import EnclaveHost
from .ingress import Ingress
from .l1 import L1Link
from .peers import AUTH_OPS, MAX_PEER_BODY, PEER_AUTH_HEADER, PeerClient
from .sync import Sync
from .timeouts import TICK

log = logging.getLogger("enclavenet.node")

__all__ = ["BatchRecord", "Node", "Refused", "data_commitment_of", "msg_to_wire", "routing_hints", "run_node",
           "split_batch_data"]


class Node(NodeCore):
    """One node: the shared state plus its roles, wired together (each role gets the roles it calls)."""

    def __init__(self, cfg: NodeConfig, *, enclave: Any = None) -> None:
        super().__init__(cfg)
        self._enclave_obj = enclave
        self._runner: web.AppRunner | None = None
        self.ingress = Ingress(self)
        self.sync = Sync(self)
        self.epochs = Epochs(self, poll_l1=self._poll_l1)
        self.l1 = L1Link(self, self.sync, self.epochs)
        self.committee = Committee(self, self.epochs, self.l1)

    async def _poll_l1(self) -> None:
        await self.l1.poll()

    async def start(self) -> None:
        self.store.ensure()
        self._load_receipts()
        await self._start_enclave()
        if n := self.load_signed():
            log.info("%s: %d signed batches above height %d kept from before the restart", self.cfg.name, n,
                     self.finalized)
        self.ingress.reload_pending()
        await self._start_server()
        self.session = aiohttp.ClientSession()
        self.peers = [PeerClient(u, self.session, self.link_faults) for u in self.cfg.peers if u.rstrip("/") != self.url]
        for p in self.peers:  # costly peer ops carry our enclave's signature (issue 14 M4)
            p.authenticate = functools.partial(peerauth.sign_request, self)
        await self.l1.connect()
        await self.l1.register()
        await self.daps.start()
        await self.l1.poll()
        self.tasks = [
            asyncio.create_task(self.l1.run(), name="l1"),
            asyncio.create_task(self.epochs.run(), name="peers"),
            asyncio.create_task(self.committee.run(), name="proposer"),
            asyncio.create_task(self.ingress.run(), name="forward"),
            asyncio.create_task(self._stall_monitor(), name="stalls"),
        ]

    async def _stall_monitor(self) -> None:
        """Ticks the timeout policy: a late tick is a stall of this process (node/timeouts.py)."""
        while not self.stopping.is_set():
            self.timeouts.tick()
            await asyncio.sleep(TICK)

    async def run(self) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.stopping.set)
        print(f'{{"ready": true, "name": "{self.cfg.name}", "url": "{self.url}", "address": "{self.address}"}}', flush=True)
        try:
            await self.stopping.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        self.stopping.set()
        for t in self.tasks:
            t.cancel()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        with contextlib.suppress(Exception):
            await self.daps.close()
        if self.session is not None:
            await self.session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.host is not None:
            self.host.close()
        self.l1.close()

    async def _start_enclave(self) -> None:
        from ..tee.boundary import ProcessEnclave
        from ..tee.platform import platform_from_spec

        enclave = self._enclave_obj
        if enclave is None:
            platform = platform_from_spec(self.cfg.platform)
            loop = asyncio.get_running_loop()
            enclave = await loop.run_in_executor(
                None,
                lambda: ProcessEnclave(
                    platform, self.cfg.program, self.cfg.enclave, allow_faults=self.cfg.allow_faults,
                    timeout=self.cfg.enclave_timeout,
                ),
            )
        self.host = EnclaveHost(enclave, timeout=self.cfg.enclave_timeout)
        blob = self.store.read_sealed()
        if blob is not None:
            try:
                st = await self.host.call("restore", {"blob": blob})
                log.info("%s: restored the enclave from its sealed snapshot (height %d)", self.cfg.name, st["height"])
                if int(st.get("amnesia", 0)) > int(st["finalized_height"]):
                    log.warning("%s: the sealed snapshot is older than the platform's monotonic counter: the enclave "
                                "signs nothing up to height %d until that height is finalised", self.cfg.name,
                                int(st["amnesia"]))
            except EnclaveError as exc:
                log.warning("%s: could not restore the sealed snapshot (%s); starting fresh", self.cfg.name, exc)
        ident = await self.host.call("identity")
        self.address = to_checksum(ident["address"])
        self.tee_type = int(ident["tee_type"])
        self.quote = bytes(ident["quote"])
        self.enc_pub = bytes(ident["enc_pub"])
        self.quotes[self.address] = self.quote
        await self.refresh_status()
        log.info("%s: enclave %s (%s) up", self.cfg.name, self.address, TEE_NAMES.get(self.tee_type, self.tee_type))

    async def _start_server(self) -> None:
        install_rpc_methods(self, submit_envelope=self.ingress.submit_envelope, node_status=self.status)
        app = web.Application(client_max_size=max(self.cfg.max_body, MAX_PEER_BODY) + 1024)
        self.rpc.app(app)
        app.router.add_post("/peer/{op}", self._peer_http)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.rpc_host, self.cfg.rpc_port)
        await site.start()
        if self.port == 0 and site._server is not None:
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined,union-attr,unused-ignore]
        log.info("%s: JSON-RPC on %s", self.cfg.name, self.url)

    async def _peer_http(self, request: web.Request) -> web.Response:
        op = request.match_info["op"]
        try:
            body = await request.read()
            if op in AUTH_OPS:
                await peerauth.check_request(self, op, body, request.headers.get(PEER_AUTH_HEADER), self._poll_l1)
            try:
                msg = cbor2.loads(body) if body else {}
            except Exception as exc:  # cbor2's decode errors are not all ValueErrors (e.g. CBORDecodeEOF)
                raise Refused(f"a peer request is a CBOR map: the body is not valid CBOR ({type(exc).__name__})") from None
            if not isinstance(msg, dict):
                raise Refused("a peer request is a CBOR map")
            if op == "txs":  # hints checked by a member's ingress, or here (node/ingress.py)
                trusted = peerauth.txs_trusted(self, body, request.headers.get(PEER_AUTH_HEADER))
                out = await self.ingress.on_txs(msg, trusted=trusted, remote=request.remote or "")
                return web.Response(body=cbor2.dumps(out), content_type="application/cbor")
            handler = {
                "identity": self.epochs.on_identity,
                "epoch_bundle": self.epochs.on_epoch_bundle,
                "txs": self.ingress.on_txs,
                "propose": self.committee.on_propose,
                "batch": self.sync.on_batch,
                "snapshot": self.sync.on_snapshot,
                "epoch_push": self.epochs.on_epoch_push,
                "announce": self.sync.on_announce,
                "committee_sign": self.epochs.on_committee_sign,
                "timeout": self.committee.view.on_timeout,
            }.get(op)
            if handler is None:
                raise Refused(f"unknown peer op {op[:32]!r}")
            out = await handler(msg)
            return web.Response(body=cbor2.dumps(out), content_type="application/cbor")
        # int(inf): OverflowError; cbor2's decode errors (CBORError) are no ValueErrors
        except (Refused, EnclaveError, ValueError, KeyError, TypeError, OverflowError, cbor2.CBORError) as exc:
            text = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            return web.Response(status=400, body=cbor2.dumps({"error": text[:2000]}), content_type="application/cbor")
        except Exception as exc:  # pragma: no cover - bug guard: keep serving
            log.exception("%s: peer op %s failed", self.cfg.name, op)
            return web.Response(status=500, body=cbor2.dumps({"error": f"internal error ({type(exc).__name__})"}),
                                content_type="application/cbor")

    def status(self) -> dict[str, Any]:
        members = self.members()
        nxt = self.l1_height + 1
        proposer = members[self.committee.proposer_slot(nxt) % len(members)] if members else None
        return {
            "name": self.cfg.name,
            "height": self.l1_height,
            "finalized": self.finalized,
            "finalizedHash": "0x" + self.chain[self.finalized].hex() if self.finalized in self.chain else None,
            "head": self.head_height,
            "epoch": self.epoch,
            "role": "frozen" if self.frozen else ("proposer" if proposer == self.address else "voter"),
            "proposer": proposer,
            "members": members,
            "mempool": self.mempool.stats(),
            # routing hints checked here (node/hintauth.py) and forwards believed / checked (ingress.py)
            "hintAuth": {"checked": self.hint_verifier.checked, "refused": self.hint_verifier.refused,
                         **self.ingress.forwards},
            "peers": [{"url": p.url, "address": p.address, "up": p.failures == 0 and p.address is not None} for p in self.peers],
            "l1Block": self.watcher.latest_block if self.watcher else None,
            "address": self.address,
            "teeType": TEE_NAMES.get(self.tee_type, str(self.tee_type)),
            "counters": dict(self.counters),
            "rounds": self.committee.view.status(),
            "ecalls": self.host.stats_summary() if self.host else {},
            "lastError": self.last_error,
            "timeouts": self.timeouts.to_dict(),  # node/timeouts.py
            "dapSnapshot": self.daps.restored_from,  # height of a DAP snapshot this node restored (node/daps.py)
            **self._fault_status(),
        }

    def _load_receipts(self) -> None:
        loaded = self.store.load_receipts()
        if loaded is None:
            return
        for frame in loaded:
            self.receipts.add_frame(frame)
        log.info("%s: %d receipts reloaded from %s", self.cfg.name, len(self.receipts), self.store.dir)
        for frame in self.store.load_logs() or []:
            self.log_index.add_frame(frame)

    def _fault_status(self) -> dict[str, Any]:
        w = self.watcher
        out: dict[str, Any] = {
            "frozen": self.frozen,
            "epochsHeld": list(self.epochs_held),
            "rotationDue": self.rotation_due(),
            "l1Reorgs": w.reorgs if w else 0,
        }
        if self.cfg.allow_faults:
            out["faults"] = {
                "links": self.link_faults.to_dict(),
                "enclaveLink": self.host.faults.to_dict() if self.host and self.host.faults else None,
                "l1": self.l1_faults.to_dict(),
            }
        return out


def run_node(config_path: str) -> None:
    """Entry point of ``enclavenet node --config FILE`` (blocks until SIGINT/SIGTERM)."""
    cfg = NodeConfig.load(config_path)
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO),
        format=f"%(asctime)s {cfg.name} %(levelname)s %(name)s: %(message)s",
    )
    node = Node(cfg)
    asyncio.run(node.run())
