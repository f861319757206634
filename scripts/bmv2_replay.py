#!/usr/bin/env python3
"""Replay a model vector set through BMv2 simple_switch and report mismatches and rate.

    python scripts/bmv2_replay.py [CONFIG] [--packets 100000] [--updates 20]
    python scripts/bmv2_replay.py CONFIG --vectors DIR      # a set from `l4lb vectors`

The v1model program of CONFIG is compiled with p4c, simple_switch is started on a fresh
veth pair (root and iproute2 needed), the initial images are loaded and every write of
the vectors is applied over Thrift between the same two packets as in the model run
(l4lb/bmv2_replay.py says how). A config with a [network] table gets one veth pair per
port, and every frame is checked on the port the model names. The switch is stopped and
the veth pairs deleted on exit, also on failure; the switch log and p4c output stay in
--workdir. Exit status 1 when any packet differs from the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.p4 import render_v1model  # noqa: E402
from l4lb.bmv2 import (  # noqa: E402
    Runtime,
    Switch,
    compile_v1model,
    unavailable,
    veth_pair,
    veth_ports,
)
from l4lb.bmv2_replay import replay  # noqa: E402
from model.config import load_config  # noqa: E402
from model.vectors import build_scenario, read_vectors, withdraw_vip  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "examples" / "default.toml"))
    ap.add_argument("--packets", type=int, default=100_000,
                    help="packets of the generated scenario, at least (default 100000)")
    ap.add_argument("--updates", type=int, default=20, help="two-phase pool updates")
    ap.add_argument("--vectors", help="replay this vector directory instead")
    ap.add_argument("--workdir", help="keep p4c output and the switch log here")
    ap.add_argument("--log-level", help="simple_switch packet log level (slow), e.g. info")
    ap.add_argument("--json", help="write the report as JSON to this file")
    a = ap.parse_args(argv)

    reason = unavailable()
    if reason:
        print(f"bmv2_replay: cannot run: {reason}", file=sys.stderr)
        return 2
    cfg = load_config(a.config)
    t0 = time.perf_counter()
    if a.vectors:
        scen = read_vectors(cfg, a.vectors)
    else:
        # about 3.2 packets per connection: grow the connection count until the
        # scenario has at least --packets packets
        connections = max(10, a.packets * 10 // 32)
        while True:
            scen = withdraw_vip(build_scenario(cfg, connections=connections,
                                               updates=a.updates), vip_id=0)
            if len(scen.packets) >= a.packets:
                break
            connections = connections * a.packets // max(1, len(scen.packets)) + 10
    print(f"scenario: {len(scen.packets)} packets, {len(scen.writes)} writes "
          f"({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    work = Path(a.workdir or tempfile.mkdtemp(prefix="l4lb-bmv2-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "l4lb_v1model.p4"
    src.write_text(render_v1model(cfg))
    json_path = compile_v1model(src, work)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 2 or done == total:
            last[0] = now
            print(f"\r  {done:,}/{total:,} packets", end="", file=sys.stderr, flush=True)

    if cfg.network.enabled:
        veths = veth_ports("l4rp", [p.id for p in cfg.network.ports])
    else:
        veths = veth_pair("l4rply")
    with veths as (sw_if, host_if):
        sw_ports = sw_if if isinstance(sw_if, dict) else {0: sw_if}
        with Switch(json_path, sw_ports, work / "switch.log", a.log_level) as sw:
            rt = Runtime(sw.thrift_port)
            try:
                report = replay(scen, sw, rt, host_if, progress=progress)
            finally:
                rt.close()
    print(file=sys.stderr)
    print(f"config {cfg.name}: {report.summary()}")
    for m in report.mismatches[:20]:
        print(f"  {m}")
    print(f"switch log: {work / 'switch.log'}")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "config": cfg.name, "packets": report.packets, "writes": report.writes,
            "drops": report.drops, "frames_expected": report.frames_expected,
            "frames_received": report.frames_received,
            "mismatches": len(report.mismatches), "seconds": round(report.seconds, 2),
            "packets_per_second": round(report.packets_per_second),
        }, indent=2) + "\n")
    return 1 if report.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
