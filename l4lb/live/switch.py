"""The model as a software switch: frames from AF_PACKET sockets through
:class:`model.frame.FrameDataPlane`, out of the port the decision names, with the live
control plane (:class:`~l4lb.live.service.LiveService`) taking the learn/close reports
between batches (docs/live.md).

It is slow -- every frame goes through the Python model -- but it makes exactly the
model's decisions, so it is the reference the other data planes are compared with and
a load balancer that runs where no BMv2 or FPGA is at hand.
"""

from __future__ import annotations

import selectors
import socket
import sys
import threading
import time

from model.config import Config
from model.frame import FrameDataPlane

from .offload import disable_offloads
from .service import LiveService

__all__ = ["ModelSwitch", "PortError"]

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
#: Frames taken from one port before the others and the control plane get a turn.
BATCH = 64


class PortError(ValueError):
    """A ``--port`` mapping that does not fit the config or the machine."""


class ModelSwitch:
    """Ports ``{port id: interface}`` of ``cfg.network`` served by the model."""

    def __init__(self, cfg: Config, ports: dict[int, str], service: LiveService,
                 lock: threading.Lock | None = None, log=sys.stderr) -> None:
        if not cfg.network.enabled:
            raise PortError(f"{cfg.source}: the model switch needs a [network] table "
                            f"(ports, routes; docs/network.md)")
        known = {p.id for p in cfg.network.ports}
        for pid, iface in ports.items():
            if pid not in known:
                raise PortError(f"--port {pid}={iface}: port {pid} is not a "
                                f"[[network.port]] of {cfg.source} (ports: {sorted(known)})")
        missing = known - set(ports)
        if missing:
            raise PortError(f"--port: no interface for port(s) {sorted(missing)} of "
                            f"{cfg.source}")
        self.cfg = cfg
        self.ports = dict(ports)
        self.service = service
        self.lock = lock or threading.Lock()
        self.log = log
        self.fdp = FrameDataPlane(cfg, service.mem)
        self.socks: dict[int, socket.socket] = {}
        self.rx = dict.fromkeys(self.ports, 0)
        self.tx = dict.fromkeys(self.ports, 0)
        self.tx_errors = dict.fromkeys(self.ports, 0)
        self.stopping = threading.Event()

    def open(self) -> None:
        """Bind one raw socket per port (offloads off: frames as on the wire)."""
        for pid, iface in self.ports.items():
            try:
                refused = disable_offloads(iface)
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
                s.bind((iface, 0))
            except OSError as e:
                self.close()
                raise PortError(f"--port {pid}={iface}: cannot open the interface "
                                f"({e.strerror or e})") from None
            if refused:
                print(f"l4lb: port {pid} ({iface}): could not turn off {', '.join(refused)}",
                      file=self.log)
            s.setblocking(False)
            self.socks[pid] = s

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()

    def counters(self) -> dict:
        """The data plane's counters (status and /metrics)."""
        return {"actions": dict(self.fdp.actions),
                "reasons": {r.key: n for r, n in self.fdp.reasons.items()},
                "rx": {str(k): v for k, v in self.rx.items()},
                "tx": {str(k): v for k, v in self.tx.items()},
                "tx_errors": {str(k): v for k, v in self.tx_errors.items()}}

    def _frame(self, pid: int, frame: bytes) -> None:
        r = self.fdp.decide(frame)
        d = r.decision
        if r.out is not None:
            try:
                self.socks[d.port].send(r.out)
                self.tx[d.port] += 1
            except (OSError, KeyError):
                self.tx_errors[d.port] = self.tx_errors.get(d.port, 0) + 1
        if r.packet is not None and (d.learn or d.close):
            self.service.event(r.packet.key, d)

    def run(self, duration: float | None = None) -> None:
        """Serve until :meth:`stop` (or ``duration`` seconds)."""
        sel = selectors.DefaultSelector()
        for pid, s in self.socks.items():
            sel.register(s, selectors.EVENT_READ, pid)
        end = None if duration is None else time.monotonic() + duration
        try:
            while not self.stopping.is_set() and (end is None or time.monotonic() < end):
                ready = sel.select(timeout=0.05)
                with self.lock:
                    for key, _ in ready:
                        pid, s = key.data, key.fileobj
                        for _ in range(BATCH):
                            try:
                                frame, addr = s.recvfrom(65535)
                            except BlockingIOError:
                                break
                            if addr[2] == PACKET_OUTGOING:  # our own transmissions
                                continue
                            self.rx[pid] += 1
                            self._frame(pid, frame)
                    self.service.service()
        finally:
            sel.close()

    def stop(self) -> None:
        self.stopping.set()
