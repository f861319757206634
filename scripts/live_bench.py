#!/usr/bin/env python3
"""Benchmark a running load balancer with real Linux TCP (needs root and iproute2).

    python scripts/live_bench.py [--target model|bmv2] [--bulk-mb 8] [--short 400]

Builds the namespace topology of l4lb/live/netns.py (2 clients, 3 servers), starts
``l4lb run`` and measures, from the instance's own counters:

* bulk: 2 clients x 4 connections downloading ``--bulk-mb`` MB each as fast as they can:
  frames/s and Mbit/s through the data plane;
* churn: 2 clients x ``--short`` connections of 1 KB each, 50 at a time: connections/s,
  the control plane's insertions/s and learn-to-insert latency (p50, p99).

Prints one table and, with ``--json``, writes the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l4lb.live.netns import SERVER_PORT, VIP, VIP_PORT, Topology, need_root  # noqa: E402

TCP = str(ROOT / "l4lb" / "live" / "tcp.py")


def status(topo: Topology) -> dict:
    return json.loads(topo.l4lb("status").stdout)


def clients(topo: Topology, per_client: int, size: int, seed: int, batch: int = 0
            ) -> list[dict]:
    """Run the client program in every client namespace; ``batch`` > 0 splits each
    client's connections into rounds of that many."""
    out: list[dict] = []
    rounds = [per_client] if not batch else [batch] * (per_client // batch)
    for r, n in enumerate(rounds):
        procs = [subprocess.Popen(["ip", "netns", "exec", h.ns, sys.executable, TCP, "client",
                                   VIP, str(VIP_PORT), str(n), str(size),
                                   str(seed + 100_000 * k + 1000 * r)],
                                  stdout=subprocess.PIPE, text=True)
                 for k, h in enumerate(topo.hosts_c)]
        for p in procs:
            o, _ = p.communicate(timeout=600)
            out += [json.loads(line) for line in o.splitlines()]
    return out


BURST = """
import json, sys, time
from model.config import load_config
from model.hashing import FiveTuple
from model.pipeline import Decision
from l4lb.live.run import parse_ports
from l4lb.live.bmv2_target import Bmv2Target
cfg = load_config(sys.argv[1])
t = Bmv2Target(cfg, parse_ports(cfg, sys.argv[3:]), sys.argv[2])
svc = t.open()
try:
    n = 2000
    v = cfg.vips[0]
    for k in range(n):
        svc.event(FiveTuple(0x0B000000 + k, v.address, 1024 + k % 60000, v.port, v.protocol),
                  Decision(learn=1, vip_id=0, version=0))
    w0, t0 = svc.mem.thrift_writes, time.perf_counter()
    done = svc.service()
    dt = time.perf_counter() - t0
    same = all(t.rt.register_read_all(f"conn{i}") == [int(x) for x in svc.mem.arrays[f"conn{i}"]]
               for i in range(cfg.geometry.stages))
    print(json.dumps({"burst": n, "inserted": done, "seconds": dt,
                      "thrift_writes": svc.mem.thrift_writes - w0, "switch_matches": same}))
finally:
    t.close()
"""


def insert_burst(topo: Topology, cfg: Path, work: Path) -> dict:
    """The control plane's own insertion rate into a running simple_switch: 2,000
    learn reports at once, inserted with one Thrift register write each (plus moves)."""
    ports = [f"{h.lb_iface}={h.lb_iface}" for h in topo.hosts_c + topo.hosts_s]
    r = subprocess.run(["ip", "netns", "exec", topo.lb_ns, sys.executable, "-c", BURST,
                        str(cfg), str(work / "burst"), *ports], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--target", choices=["model", "bmv2"], default="model")
    ap.add_argument("--bulk-mb", type=int, default=8)
    ap.add_argument("--short", type=int, default=400)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    why = need_root()
    if why:
        print(f"live_bench: {why}", file=sys.stderr)
        return 2
    topo = Topology(tag="bench")
    work = Path(tempfile.mkdtemp(prefix="l4lb-live-"))
    try:
        topo.build()
        cfg = work / "live.toml"
        cfg.write_text(topo.config(dips=3))
        for i, h in enumerate(topo.hosts_s):
            topo.spawn(h.ns, [sys.executable, TCP, "server", str(i), str(SERVER_PORT)],
                       work / f"server{i}.log")
        ports = [x for h in topo.hosts_c + topo.hosts_s
                 for x in ("--port", f"{h.lb_iface}={h.lb_iface}")]
        topo.spawn(topo.lb_ns, [sys.executable, "-m", "l4lb.cli", "run", str(cfg), *ports,
                                "--target", a.target, "--workdir", str(work / "run"),
                                "--progress", "0"], work / "switch.log")
        for _ in range(600):
            try:
                s0 = status(topo)
                break
            except RuntimeError:
                time.sleep(0.1)
        else:
            raise RuntimeError((work / "switch.log").read_text())
        print(f"bulk: 2 clients x 4 connections x {a.bulk_mb} MB ...", file=sys.stderr)
        t0 = time.monotonic()
        bulk = clients(topo, 4, a.bulk_mb << 20, 1)
        t_bulk = time.monotonic() - t0
        s1 = status(topo)
        print(f"churn: 2 clients x {a.short} connections of 1 KB ...", file=sys.stderr)
        t0 = time.monotonic()
        short = clients(topo, a.short, 1024, 7, batch=50)
        t_short = time.monotonic() - t0
        s2 = status(topo)
        burst = None
        if a.target == "bmv2":
            topo.procs[-1].terminate()  # the instance; the burst starts its own switch
            topo.procs[-1].wait(20)
            print("insert burst: 2,000 learn reports into a fresh switch ...",
                  file=sys.stderr)
            burst = insert_burst(topo, cfg, work)
    finally:
        topo.close()
    bad = [r for r in bulk + short if not r["ok"] or r["error"]]

    def frames(s: dict) -> int:
        dp = s["dataplane"]
        return sum(dp["rx"].values()) if "rx" in dp else dp["packets"]

    nbytes = sum(r["bytes"] for r in bulk)
    ins = s2["control_plane"]["inserted"] - s1["control_plane"]["inserted"]
    fig = {
        "target": a.target,
        "bulk_connections": len(bulk), "bulk_bytes": nbytes, "bulk_seconds": round(t_bulk, 2),
        "bulk_frames": frames(s1) - frames(s0),
        "frames_per_second": round((frames(s1) - frames(s0)) / t_bulk),
        "mbit_per_second": round(nbytes * 8 / t_bulk / 1e6, 1),
        "short_connections": len(short), "short_seconds": round(t_short, 2),
        "connections_per_second": round(len(short) / t_short, 1),
        "insertions_per_second": round(ins / t_short, 1),
        "insert_latency_ms_p50": round(s2["insert_latency_s"]["p50"] * 1e3, 3),
        "insert_latency_ms_p99": round(s2["insert_latency_s"]["p99"] * 1e3, 3),
        "failed_transfers": len(bad),
    }
    if burst:
        fig["burst_insertions_per_second"] = round(burst["inserted"] / burst["seconds"], 1)
        fig["burst_thrift_writes"] = burst["thrift_writes"]
        fig["burst_switch_registers_equal_model"] = burst["switch_matches"]
    print("| figure | value |\n|---|---:|")
    for k, v in fig.items():
        print(f"| {k} | {v:,} |" if isinstance(v, (int, float)) and not isinstance(v, bool)
              else f"| {k} | {v} |")
    if a.json:
        Path(a.json).write_text(json.dumps(fig, indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
