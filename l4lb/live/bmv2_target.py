"""``l4lb run --target bmv2``: the generated v1model program on ``simple_switch``, driven
live by the model's control plane (docs/live.md).

* The program is compiled with p4c and started on the ports' interfaces; the control
  plane's memories are :class:`MirroredMemories`: every :meth:`Memories.write` -- the
  code path the vector files record -- is applied to the switch over Thrift at once
  and in order (``l4lb.bmv2.TableLoader``: a register write, or a table entry replaced),
  so the switch holds the model's words after every write.
* What the data plane writes itself (TransitTable bits, activity bits, verified
  sources) the control plane reads back from the switch's registers.
* Learn and close reports arrive as ``digest<conn_event_t>`` samples on simple_switch's
  notifications socket (:mod:`l4lb.live.nanomsg`); each buffer is acknowledged so the
  switch's learn filter lets the key through again later.
* Digests arrive a little after their packets, so each phase of a pool update is held
  for :data:`RECORD_HOLD` seconds (``ControlPlane(record_hold=...)``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from model.config import Config
from model.hashing import FiveTuple
from model.layout import Memories
from model.pipeline import Decision

from .nanomsg import SubSocket, decode_learn
from .service import LiveService
from .switch import PortError

__all__ = ["Bmv2Target", "MirroredMemories", "RECORD_HOLD", "DATAPLANE_WRITTEN"]

#: Seconds each two-phase-commit phase waits for digests still in flight.
RECORD_HOLD = 0.2
#: Names (prefixes) of the memories the data plane writes: ``transit<j>``, ``act<i>``,
#: ``auth0``, ``auth1`` (the control plane reads them from the switch).
DATAPLANE_WRITTEN = ("transit", "act", "auth0", "auth1")


class MirroredMemories(Memories):
    """The model's memories with every write applied to a running switch as well, and
    control-plane reads of data-plane-written memories answered by the switch."""

    def __init__(self, cfg: Config, loader, runtime) -> None:
        super().__init__(cfg)
        self.loader, self.rt = loader, runtime
        self.thrift_writes = 0

    def write(self, name: str, addr: int, word: int) -> None:
        super().write(name, addr, word)
        self.loader.write(name, addr, word)
        self.thrift_writes += 1

    def cp_read(self, name: str, addr: int) -> int:
        if name.startswith(DATAPLANE_WRITTEN):
            self.arrays[name][addr] = self.rt.register_read(name, addr)
        return super().cp_read(name, addr)

    def __getitem__(self, name: str) -> np.ndarray:
        if name.startswith(DATAPLANE_WRITTEN):
            words = self.rt.register_read_all(name)
            self.arrays[name][:] = np.array(words, dtype=self.arrays[name].dtype)
        return self.arrays[name]


class Bmv2Target:
    """simple_switch on ``ports`` running ``cfg``'s v1model program, with the live
    control plane. Use :meth:`open`, :meth:`run`, :meth:`close`."""

    def __init__(self, cfg: Config, ports: dict[int, str], workdir: str | Path,
                 lock: threading.Lock | None = None, log=sys.stderr) -> None:
        from l4lb.bmv2 import unavailable

        why = unavailable(need_root=True)
        if why:
            raise PortError(f"--target bmv2: {why}")
        if not cfg.network.enabled:
            raise PortError(f"{cfg.source}: --target bmv2 needs a [network] table "
                            f"(ports, routes; docs/network.md)")
        known = {p.id for p in cfg.network.ports}
        if set(ports) != known:
            raise PortError(f"--port: ports {sorted(ports)} given, {cfg.source} has "
                            f"{sorted(known)}")
        self.cfg, self.ports, self.log = cfg, dict(ports), log
        self.work = Path(workdir)
        self.lock = lock or threading.Lock()
        self.device_id = 100 + os.getpid() % 10000
        self.notifications = f"ipc:///tmp/l4lb-bmv2-{self.device_id}-notifications.ipc"
        self.stopping = threading.Event()
        self.digests = 0
        self.service: LiveService | None = None

    def open(self) -> LiveService:
        """Compile, start the switch, load the tables; returns the live service."""
        from codegen.p4 import render_v1model
        from l4lb.bmv2 import Runtime, Switch, TableLoader, compile_v1model

        self.work.mkdir(parents=True, exist_ok=True)
        src = self.work / "l4lb_v1model.p4"
        src.write_text(render_v1model(self.cfg))
        print(f"l4lb run: compiling {src} with p4c ...", file=self.log, flush=True)
        js = compile_v1model(src, self.work)
        self.switch = Switch(js, self.ports, self.work / "switch.log",
                             extra_args=["--device-id", str(self.device_id),
                                         "--notifications-addr", self.notifications])
        self.switch.__enter__()
        try:
            self.rt = Runtime(self.switch.thrift_port)
            self.sub = SubSocket(self.notifications, timeout_ms=20)
            mem = MirroredMemories(self.cfg, TableLoader(self.cfg, self.rt), self.rt)
            self.service = LiveService(self.cfg, mem, record_hold=RECORD_HOLD)
        except BaseException:
            self.close()
            raise
        g = self.cfg.geometry
        self.widths = (32, 32, 16, 16, 8, g.vip_bits, g.version_bits, 1)
        return self.service

    def counters(self) -> dict:
        """The program's own counters (read over Thrift) and the digest count."""
        n = len(self.cfg.vips)
        out = {"switch": "simple_switch", "switch_log": str(self.switch.log_path),
               "digests": self.digests,
               "thrift_writes": self.service.mem.thrift_writes if self.service else 0,
               "packets": self.rt.counter("packets")}
        for name in ("vip_packets", "vip_misses", "vip_drops"):
            out[name] = {v.name: self.rt.counter(name, i)
                         for i, v in enumerate(self.cfg.vips[:n])}
        if self.cfg.network.enabled:
            out["no_route_drops"] = self.rt.counter("no_route_drops")
        return out

    def _samples(self) -> int:
        msg = self.sub.recv()
        if msg is None:
            return 0
        m = decode_learn(msg, self.widths)
        if m is None:
            return 0
        with self.lock:
            for src, dst, sport, dport, proto, vip, ver, close in m.samples:
                d = Decision(learn=int(not close), close=close, vip_id=vip, version=ver)
                self.service.event(FiveTuple(src, dst, sport, dport, proto), d)
            self.rt.client.bm_learning_ack_buffer(0, m.list_id, m.buffer_id)
            self.service.service()
        self.digests += len(m.samples)
        return len(m.samples)

    def run(self, duration: float | None = None) -> None:
        """Take digests and run the control plane until :meth:`stop`; raises
        ``Bmv2Error`` naming the cause when the switch dies (a Thrift call failing
        because simple_switch exited reports the exit, not the broken socket)."""
        from l4lb.bmv2 import Bmv2Error

        end = None if duration is None else time.monotonic() + duration
        try:
            while not self.stopping.is_set() and (end is None or time.monotonic() < end):
                if not self._samples():
                    with self.lock:
                        self.service.service()
                    self.switch.check_alive()
        except Bmv2Error:
            proc = self.switch.proc
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)  # a dying switch: let it finish exiting
            self.switch.check_alive()  # raises "simple_switch exited with ..." if it did
            raise

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        for closer in (lambda: self.sub.close(), lambda: self.rt.close(),
                       lambda: self.switch.__exit__(None, None, None)):
            try:
                closer()
            except (AttributeError, OSError):
                pass
