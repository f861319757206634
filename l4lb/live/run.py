"""``l4lb run``, ``l4lb pool`` and ``l4lb status`` (docs/live.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from model.config import load_config

from .api import DEFAULT_API, ApiError, ManagementServer, request
from .service import POOL_OPS, LiveService, ManagementError
from .switch import ModelSwitch, PortError

__all__ = ["add_run_arguments", "add_pool_arguments", "add_status_arguments", "cli_run",
           "cli_pool", "cli_status", "parse_ports"]

TARGETS = ("model", "bmv2")


def parse_ports(cfg, specs: list[str]) -> dict[int, str]:
    """``["0=veth0", "servers=veth1"]`` -> {port id: interface}; a port is named by its
    id or by its ``name`` in ``[[network.port]]``."""
    names = {p.name: p.id for p in cfg.network.ports if p.name}
    out: dict[int, str] = {}
    for spec in specs:
        port, sep, iface = spec.partition("=")
        if not sep or not port or not iface:
            raise PortError(f"--port {spec!r}: expected PORT=INTERFACE, e.g. 0=veth0")
        if port in names:
            pid = names[port]
        else:
            try:
                pid = int(port)
            except ValueError:
                raise PortError(f"--port {spec!r}: {port!r} is neither a port id nor a "
                                f"port name (names: {sorted(names) or 'none'})") from None
        if pid in out:
            raise PortError(f"--port {spec!r}: port {pid} is mapped twice")
        out[pid] = iface
    return out


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="TOML config with a [network] table")
    p.add_argument("--target", choices=TARGETS, default="model",
                   help="data plane: the Python model on AF_PACKET sockets, or the "
                        "v1model program on BMv2 simple_switch")
    p.add_argument("--workdir", default=None,
                   help="bmv2: where the compiled program and the switch log go "
                        "(default: a new temporary directory)")
    p.add_argument("--port", action="append", default=[], metavar="PORT=IFACE",
                   help="serve config port PORT (id or name) on interface IFACE; repeat")
    p.add_argument("--api", default=DEFAULT_API,
                   help=f"management API address (default {DEFAULT_API})")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: run until SIGINT/SIGTERM)")
    p.add_argument("--progress", type=float, default=5.0,
                   help="seconds between progress lines on stderr (0: none)")


def cli_run(a: argparse.Namespace) -> int:
    cfg = load_config(a.config)
    lock = threading.Lock()
    try:
        ports = parse_ports(cfg, a.port)
        if a.target == "bmv2":
            import tempfile

            from .bmv2_target import Bmv2Target

            work = a.workdir or tempfile.mkdtemp(prefix="l4lb-run-")
            sw = Bmv2Target(cfg, ports, work, lock)
            svc = sw.open()
        else:
            svc = LiveService(cfg)
            sw = ModelSwitch(cfg, ports, svc, lock)
            sw.open()
        api = ManagementServer(svc, lock, a.api, sw.counters)
    except (PortError, ManagementError, OSError, RuntimeError) as e:
        if "sw" in locals():
            sw.close()
        print(f"l4lb run: {e}", file=sys.stderr)
        return 2
    stop = sw.stop
    old = {s: signal.signal(s, lambda *_: stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    api.start()
    print(f"l4lb run: config {cfg.name}, target {a.target}, ports "
          + ", ".join(f"{p}={i}" for p, i in sorted(ports.items()))
          + f", management API http://{api.address}", file=sys.stderr, flush=True)

    def counters() -> dict:
        try:
            return sw.counters()
        except Exception as e:  # noqa: BLE001 -- a dead switch must not stop the report
            return {"error": str(e)}

    def progress() -> None:
        while not sw.stopping.wait(a.progress):
            with lock:
                c, st = counters(), svc.cp.stats
                n = len(svc.cp.conn_version)
            print(f"l4lb run: {_traffic(c)}, {n:,} connections, {st['inserted']:,} "
                  f"inserted, {st['deleted']:,} deleted, {st['updates']} pool updates",
                  file=sys.stderr, flush=True)

    if a.progress > 0:
        threading.Thread(target=progress, daemon=True).start()
    last: dict = {}
    rc = 0
    try:
        sw.run(a.duration)
    except RuntimeError as e:  # the data plane died (e.g. simple_switch killed)
        print(f"l4lb run: data plane failed: {e}; stopping", file=sys.stderr, flush=True)
        rc = 1
    finally:
        sw.stop()
        api.stop()
        with lock:
            last = counters()
        sw.close()
        for s, h in old.items():
            signal.signal(s, h)
        print(f"l4lb run: stopped; {_traffic(last)}", file=sys.stderr, flush=True)
    return rc


def _traffic(c: dict) -> str:
    """One progress phrase from a data plane's counters."""
    if "error" in c:
        return f"counters unavailable ({c['error']})"
    if "rx" in c:
        return (f"rx {sum(c['rx'].values()):,} tx {sum(c['tx'].values()):,} frames, "
                f"actions {c['actions']}")
    return f"{c.get('packets', 0):,} packets, {c.get('digests', 0):,} digest samples"


def add_pool_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="the running instance's config (checks names locally)")
    p.add_argument("op", choices=POOL_OPS)
    p.add_argument("dip", help="ADDRESS:PORT")
    p.add_argument("--vip", default=None, help="VIP name (needed when the config has several)")
    p.add_argument("--api", default=DEFAULT_API)
    p.add_argument("--wait", action="store_true",
                   help="wait until the two-phase update has finished")


def cli_pool(a: argparse.Namespace) -> int:
    load_config(a.config)
    try:
        code, res = request(a.api, "POST", "/pool", {"op": a.op, "dip": a.dip, "vip": a.vip})
    except ApiError as e:
        print(f"l4lb pool: {e}", file=sys.stderr)
        return 1
    if code != 200:
        print(f"l4lb pool: refused: {res.get('error', res) if isinstance(res, dict) else res}",
              file=sys.stderr)
        return 1
    print(json.dumps(res))
    while a.wait:
        code, st = request(a.api, "GET", "/status")
        if code == 200 and not st["updates_in_progress"]:
            break
        time.sleep(0.1)
    return 0


def add_status_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api", default=DEFAULT_API)
    p.add_argument("--metrics", action="store_true",
                   help="print the Prometheus metrics instead of the JSON status")


def cli_status(a: argparse.Namespace) -> int:
    try:
        code, res = request(a.api, "GET", "/metrics" if a.metrics else "/status")
    except ApiError as e:
        print(f"l4lb status: {e}", file=sys.stderr)
        return 1
    print(res if isinstance(res, str) else json.dumps(res, indent=1), end="" if
          isinstance(res, str) else "\n")
    return 0 if code == 200 else 1
