"""Benchmarks: model lookup rate, PCC violations vs pool-update rate, the colleagues'
Maglev and ConnTable benches, RTL simulation figures and the synthesis table.

``l4lb bench`` / ``python scripts/bench_model.py`` run :func:`run_all`, which writes
``docs/bench.json``, ``docs/bench.md`` and three figures (matplotlib, Agg backend):

* ``docs/bench_maglev_shares.png``: histogram of the per-DIP Maglev share divided by
  the ideal share, for several (M, N);
* ``docs/bench_load_vs_stages.png``: ConnTable load factor at the first failed insert
  (first stash) and when the stash is full, against the number of stages d (from
  ``scripts/bench_conntable.py --json``; a smaller measurement of our own if that
  script is absent);
* ``docs/bench_pcc.png``: connections that saw two DIPs (PCC violations) against the
  pool-update rate, with and without the two-phase commit.

Sections of ``bench.json``:

``model_lookup``
    :meth:`model.pipeline.DataPlane.process_batch` on ``packets`` packets (default 1M)
    after ``ControlPlane.install()`` and the insertion of ``connections`` connections:
    ``hit_fraction`` of the packets belong to inserted connections, the rest are new
    connections to the VIPs and ``non_vip_fraction`` other traffic. Timed in batches of
    ``batch`` packets; the figure is packets per second of wall time (one core).
``pcc``
    :func:`model.trace.replay` for each pool-update count, two-phase commit on and off.
    The update rate is given as updates per million packets. The sweep uses the
    config's geometry with ``pool_slots`` raised (``pcc_pool_slots``, default 64) so that
    few updates are rejected for lack of a free pool slot (``rejected`` is reported).
``maglev``, ``conntable``
    The JSON of ``scripts/bench_maglev.py --json`` and ``scripts/bench_conntable.py
    --json`` (run as subprocesses), plus our share histogram data.
``rtl``
    Read from the cocotb benches' ``stats.jsonl`` files (``build/cocotb/*/run-*/``):
    latency, cycles per packet of the back-to-back ``throughput`` test and the
    simulator's wall-clock rate. Absent until ``pytest cocotb_tests`` has run; the
    section then says so instead of holding numbers.
``synth``
    The rows of ``docs/synth.json`` (``scripts/synth_report.py``) if present.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DEFAULT_CONFIG = ROOT / "examples" / "default.toml"

__all__ = [
    "machine_info",
    "model_lookup_rate",
    "pcc_sweep",
    "maglev_shares",
    "conntable_load_vs_stages",
    "run_script_json",
    "rtl_results",
    "synth_rows",
    "make_figures",
    "markdown_tables",
    "run_all",
    "add_arguments",
    "cli_bench",
]


# ---- environment -----------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    """Where and when the numbers were taken."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


# ---- model lookup rate -----------------------------------------------------------------

def _packets(cfg, rng: np.random.Generator, n: int, keys: dict[str, np.ndarray],
             hit_fraction: float, non_vip_fraction: float) -> dict[str, np.ndarray]:
    """``n`` packets: hits on ``keys``, new connections to the VIPs, non-VIP traffic."""
    kind = rng.random(n)
    nk = len(keys["src_ip"])
    hit = (kind < hit_fraction) & (nk > 0)
    other = kind >= 1.0 - non_vip_fraction
    vips = cfg.vips
    vi = rng.integers(0, len(vips), n)
    out = {
        "src_ip": (0x64400000 + rng.integers(0, 1 << 22, n)).astype(np.int64),
        "dst_ip": np.array([v.address for v in vips], dtype=np.int64)[vi],
        "src_port": rng.integers(1024, 65536, n).astype(np.int64),
        "dst_port": np.array([v.port for v in vips], dtype=np.int64)[vi],
        "proto": np.array([v.protocol for v in vips], dtype=np.int64)[vi],
    }
    if nk:
        pick = rng.integers(0, nk, n)
        for f in out:
            out[f] = np.where(hit, keys[f][pick], out[f])
    out["dst_ip"] = np.where(other, rng.integers(0, 1 << 32, n), out["dst_ip"])
    out["tcp_flags"] = np.where(out["proto"] == 6, 0x10, 0).astype(np.int64)
    return out


def model_lookup_rate(cfg, packets: int = 1_000_000, connections: int | None = None,
                      batch: int = 1 << 16, hit_fraction: float = 0.9,
                      non_vip_fraction: float = 0.02, seed: int = 1) -> dict[str, Any]:
    """Packets per second of ``DataPlane.process_batch`` on an installed, populated table.

    ``connections`` defaults to half the ConnTable's slots (a typical operating load).
    """
    from model.controlplane import ControlPlane
    from model.hashing import FIELDS, FiveTuple
    from model.pipeline import DataPlane

    g = cfg.geometry
    if connections is None:
        connections = g.stages * g.slots // 2
    rng = np.random.default_rng(seed)
    cp = ControlPlane(cfg)
    cp.install()
    # distinct connection keys to the VIPs
    vi = rng.integers(0, len(cfg.vips), connections)
    keys = {
        "src_ip": (0x64400000 + rng.permutation(1 << 22)[:connections]).astype(np.int64),
        "dst_ip": np.array([v.address for v in cfg.vips], dtype=np.int64)[vi],
        "src_port": rng.integers(1024, 65536, connections).astype(np.int64),
        "dst_port": np.array([v.port for v in cfg.vips], dtype=np.int64)[vi],
        "proto": np.array([v.protocol for v in cfg.vips], dtype=np.int64)[vi],
    }
    t0 = time.perf_counter()
    for i in range(connections):
        key = FiveTuple(*(int(keys[f][i]) for f in FIELDS))
        cp.learn(key, int(vi[i]), cp.pools.current(int(vi[i])).version)
    cp.insert_pending()
    t_insert = time.perf_counter() - t0
    pk = _packets(cfg, rng, packets, keys, hit_fraction, non_vip_fraction)
    dp = DataPlane(cfg, cp.mem, cp.hasher)
    hits = lb = 0
    t0 = time.perf_counter()
    for lo in range(0, packets, batch):
        out = dp.process_batch({k: v[lo:lo + batch] for k, v in pk.items()})
        hits += int(out["hit"].sum())
        lb += int((out["action"] == 1).sum())
    dt = time.perf_counter() - t0
    return {
        "config": cfg.name, "packets": packets, "batch": batch,
        "connections": connections, "stashed": len(cp.table.stash),
        "load_factor": cp.table.load_factor, "insert_s": t_insert,
        "inserts_per_s": connections / t_insert if t_insert else None,
        "seconds": dt, "packets_per_s": packets / dt,
        "hit_fraction_measured": hits / packets, "lb_fraction": lb / packets,
    }


# ---- PCC violations vs update rate -----------------------------------------------------

def pcc_sweep(cfg, connections: int = 20_000, updates: tuple[int, ...] = (0, 10, 20, 50, 100,
                                                                          200, 400),
              pool_slots: int | None = 64, seed: int = 1) -> dict[str, Any]:
    """Replay the same churn trace with ``u`` pool updates for each ``u``, commit on/off."""
    from model.trace import TraceParams, make_trace, replay

    if pool_slots is not None and pool_slots > cfg.geometry.pool_slots:
        cfg = dataclasses.replace(
            cfg, geometry=dataclasses.replace(cfg.geometry, pool_slots=pool_slots))
    rows = []
    for u in updates:
        p0 = TraceParams(connections=connections, updates=u, seed=seed)
        trace = make_trace(cfg, p0)
        for two_phase in (True, False):
            p = dataclasses.replace(p0, two_phase=two_phase)
            t0 = time.perf_counter()
            r = replay(cfg, p, trace)
            rows.append({
                "updates_requested": u, "two_phase": two_phase,
                "updates_applied": r.updates_applied, "updates_rejected": r.updates_rejected,
                "packets": r.packets, "connections": r.connections,
                "updates_per_mpkt": 1e6 * r.updates_applied / r.packets,
                "violations": r.violations, "violating_packets": r.violating_packets,
                "violation_fraction": r.violations / r.connections,
                "peak_occupancy": r.peak_occupancy,
                "packets_per_s": r.packets_per_second,
                "seconds": time.perf_counter() - t0,
            })
    return {"config": cfg.name, "pool_slots": cfg.geometry.pool_slots,
            "connections": connections, "rows": rows}


# ---- Maglev share histogram ------------------------------------------------------------

def maglev_shares(cases: tuple[tuple[int, int], ...] = ((4093, 100), (65537, 100),
                                                        (65537, 1000))) -> dict[str, Any]:
    """Per-DIP share / ideal share of a Maglev table, for synthetic pools of N DIPs."""
    from model.config import Dip, Salts
    from model.maglev import build_table, imbalance, shares

    salts = Salts.default()
    out = []
    for m, n in cases:
        dips = [Dip(address=0x0A000000 + i, port=80) for i in range(n)]
        t = build_table(dips, m, salts)
        s = shares(t, n) * n
        out.append({"M": m, "N": n, "ratio": [float(x) for x in s],
                    "imbalance": imbalance(t, n), "min_ratio": float(s.min()),
                    "max_ratio": float(s.max())})
    return {"cases": out}


# ---- ConnTable load factor vs stages (fallback when bench_conntable is absent) ---------

def conntable_load_vs_stages(log2_slots: int = 9, stages: tuple[int, ...] = (2, 3, 4, 5, 6, 8),
                             digest: int | str = 16, seed: int = 1) -> dict[str, Any]:
    """Load factor at the first insert that goes to the stash, for each d (own, small)."""
    from model.config import parse_config
    from model.conntable import ConnTable
    from model.hashing import FiveTuple, Hasher
    from model.layout import Memories

    rows = []
    rng = np.random.default_rng(seed)
    for d in stages:
        cfg = parse_config({
            "geometry": {"stages": d, "log2_slots": log2_slots, "digest_bits": digest,
                         "stash_size": 1 << 16},
            "vip": [{"name": "b", "address": "10.0.0.1", "port": 80, "protocol": "tcp",
                     "dips": [{"address": "10.1.0.1", "port": 80}]}]})
        t = ConnTable(cfg, Hasher(cfg), Memories(cfg))
        cap = d << log2_slots
        first = None
        for _ in range(cap):
            key = FiveTuple(int(rng.integers(0, 1 << 32)), 0x0A000001,
                            int(rng.integers(0, 1 << 16)), 80, 6)
            if t.insert(key, 0).stashed:
                first = t.load_factor
                break
        rows.append({"stages": d, "digest_bits": digest, "first_failure_load":
                     first if first is not None else 1.0})
    return {"source": "l4lb.bench (fallback)", "log2_slots": log2_slots, "first_failure": rows}


# ---- colleagues' scripts ---------------------------------------------------------------

def run_script_json(script: str, args: list[str] | None = None,
                    timeout: float = 1800) -> dict[str, Any]:
    """Run ``scripts/<script> --json TMP [args]`` and return its JSON, or
    ``{"error": ...}`` with a clear message when the script is absent or fails."""
    path = ROOT / "scripts" / script
    if not path.exists():
        return {"error": f"scripts/{script} not found (not written yet); section left empty"}
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "out.json"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")]))
        t0 = time.perf_counter()
        try:
            r = subprocess.run([sys.executable, str(path), "--json", str(out), *(args or [])],
                               cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                               env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"scripts/{script} timed out after {timeout:.0f} s"}
        dt = time.perf_counter() - t0
        if r.returncode != 0 or not out.exists():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            return {"error": f"scripts/{script} failed (exit {r.returncode}): "
                             + " | ".join(tail)}
        data = json.loads(out.read_text())
    return {"source": f"scripts/{script}", "args": args or [], "seconds": dt, "data": data}


# ---- RTL (cocotb) ----------------------------------------------------------------------

def rtl_results(root: Path = ROOT / "build" / "cocotb") -> dict[str, Any]:
    """Latency, cycles/packet and simulation rate from the cocotb benches' statistics.

    The benches (cocotb_tests/test_core.py) append one JSON line per cocotb test to
    ``build/cocotb/summary.jsonl`` (and keep ``run-*/stats.jsonl`` while a run is in
    progress). The file accumulates over runs, so the latest line of each (config,
    test) is used."""
    files = []
    if root.exists():
        files = ([root / "summary.jsonl"] if (root / "summary.jsonl").exists() else [])
        files += sorted(root.glob("*/run-*/stats.jsonl"))
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for f in files:
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            try:
                s = json.loads(line)
            except ValueError:
                continue
            latest[(str(s.get("config", "?")), str(s.get("test", "?")))] = s
    if not latest:
        return {"available": False,
                "todo": "TODO: no cocotb results found (build/cocotb/summary.jsonl); run "
                        "`pytest cocotb_tests` (Verilator) and re-run the bench. No RTL "
                        "numbers are reported until then."}
    per_cfg: dict[str, dict[str, Any]] = {}
    for (cfg, test), s in latest.items():
        c = per_cfg.setdefault(cfg, {"latency_cycles": None, "packets": 0, "cycles": 0,
                                     "wall_s": 0.0, "tests": [], "cycles_per_packet": None})
        c["packets"] += int(s.get("packets", 0))
        c["cycles"] += int(s.get("cycles", 0))
        c["wall_s"] += float(s.get("wall", 0.0))
        c["tests"].append(test)
        if test == "throughput":
            c["cycles_per_packet"] = s.get("cycles_per_packet")
            c["throughput_packets"] = s.get("packets")
            c["latency_cycles"] = s.get("latency")
        elif c["latency_cycles"] is None:
            c["latency_cycles"] = s.get("latency")
    for c in per_cfg.values():
        c["tests"].sort()
        w = c["wall_s"]
        c["sim_cycles_per_s"] = c["cycles"] / w if w else None
        c["sim_packets_per_s"] = c["packets"] / w if w else None
    return {"available": True, "configs": per_cfg,
            "source": [str(f.relative_to(ROOT)) if f.is_relative_to(ROOT) else str(f)
                       for f in files],
            "note": "latest line of each (config, test); simulation rates are Verilator "
                    "wall-clock rates of the cocotb bench (Python in the loop)"}


def synth_rows(path: Path = DOCS / "synth.json") -> dict[str, Any]:
    if not path.exists():
        return {"available": False,
                "note": "docs/synth.json not found: run scripts/synth_report.py"}
    data = json.loads(path.read_text())
    return {"available": True, "rows": data.get("rows", []), "date": data.get("date"),
            "machine": data.get("machine"), "seed_sweep": data.get("seed_sweep") or {},
            "seed_spread": data.get("seed_spread") or {}}


# ---- figures ---------------------------------------------------------------------------

def _load_rows(conntable: dict[str, Any]) -> tuple[list[dict], str]:
    if "data" in conntable and "first_failure" in conntable["data"]:
        return conntable["data"]["first_failure"], conntable["source"]
    fb = conntable.get("fallback") or {}
    return fb.get("first_failure", []), fb.get("source", "")


def _save(fig: Any, path: Path, note: str) -> Path:
    """Stamp ``note`` in the corner, write the figure as a PNG and free it."""
    import matplotlib.pyplot as plt

    fig.text(0.99, 0.01, note, ha="right", fontsize=6, color="gray")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def make_figures(results: dict[str, Any], outdir: Path) -> list[Path]:
    """Write the three PNG figures; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    date = results["machine"]["date"]

    # Maglev shares
    cases = results["maglev"]["shares"]["cases"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    lo = min(c["min_ratio"] for c in cases)
    hi = max(c["max_ratio"] for c in cases)
    pad = max(1e-3, (hi - lo) * 0.05)
    bins = np.linspace(lo - pad, hi + pad, 41)
    for c in cases:
        ax.hist(c["ratio"], bins=bins, alpha=0.6,
                label=f"M={c['M']}, N={c['N']} (max {c['max_ratio']:.4f})")
    ax.axvline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("DIP share / ideal share")
    ax.set_ylabel("DIPs")
    ax.set_title("Maglev table share per DIP")
    ax.legend(fontsize=8)
    paths.append(_save(fig, outdir / "bench_maglev_shares.png", date))

    # load factor vs stages
    rows, source = _load_rows(results["conntable"])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    series: dict[str, list[tuple[int, float, float | None]]] = {}
    for r in rows:
        d = r.get("stages", r.get("d"))
        series.setdefault(str(r.get("digest_bits", r.get("digest", "?"))), []).append(
            (int(d), float(r["first_failure_load"]), r.get("full_load")))
    for dig, pts in sorted(series.items()):
        pts.sort()
        x = [p[0] for p in pts]
        label = "full key" if dig == "full" else f"{dig}-bit digest"
        ax.plot(x, [p[1] for p in pts], "o-", label=f"{label}: first stash")
        if all(p[2] is not None for p in pts):
            ax.plot(x, [p[2] for p in pts], "s--", label=f"{label}: stash full")
    ax.set_xlabel("stages d")
    ax.set_ylabel("load factor")
    lows = [p[1] for pts in series.values() for p in pts] or [0.0]
    ax.set_ylim(max(0.0, min(lows) - 0.05), 1.01)
    ax.set_title("ConnTable load factor vs stages")
    ax.legend(fontsize=8)
    paths.append(_save(fig, outdir / "bench_load_vs_stages.png", f"{source}, {date}"))

    # PCC violations vs update rate
    pcc = results["pcc"]
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for tp, style, label in ((False, "o-", "commit disabled"), (True, "s-", "two-phase commit")):
        pts = sorted((r["updates_per_mpkt"], r["violations"]) for r in pcc["rows"]
                     if r["two_phase"] == tp)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
    ax.set_xlabel("pool updates per million packets")
    ax.set_ylabel(f"PCC violations (of {pcc['connections']} connections)")
    ax.set_title(f"PCC violations vs pool-update rate ({pcc['config']})")
    ax.legend(fontsize=8)
    paths.append(_save(fig, outdir / "bench_pcc.png", date))
    return paths


# ---- markdown --------------------------------------------------------------------------

def _f(x: Any, fmt: str = ",.0f") -> str:
    return "n/a" if x is None else format(x, fmt)


def markdown_tables(results: dict[str, Any]) -> str:
    """The headline tables (also what scripts/update_readme_table.py puts in README)."""
    m = results["machine"]
    L = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores), Python {m['python']}, "
         f"numpy {m['numpy']}.", ""]
    ml = results.get("model_lookup")
    L += ["| benchmark | result |", "|---|---|"]
    if ml:
        L.append(f"| model `process_batch` ({ml['config']}, {ml['packets']:,} packets, "
                 f"load {ml['load_factor']:.0%}) | {_f(ml['packets_per_s'])} packets/s |")
    mg = results.get("maglev", {}).get("script", {})
    if "data" in mg and "build" in mg["data"]:
        b = mg["data"]["build"]
        L.append(f"| Maglev build M={b['M']}, N={b['N']} | "
                 f"{b['build_table_median_s'] * 1e3:.1f} ms |")
    ct = results.get("conntable", {})
    if "data" in ct:
        lk = ct["data"].get("lookup", {})
        if lk:
            L.append(f"| ConnTable `lookup_batch` (d=4, k={lk.get('log2_slots')}) | "
                     f"{_f(lk.get('lookups_per_s'))} lookups/s |")
        for r in ct["data"].get("first_failure", []):
            if r.get("d", r.get("stages")) == 4:
                dig = r.get("digest_bits", r.get("digest"))
                dig = "full-key" if dig == "full" else f"{dig}-bit"
                L.append(f"| ConnTable d=4, {dig} digest: load at first stash | "
                         f"{r['first_failure_load']:.3f} |")
    pcc = results.get("pcc")
    if pcc:
        worst = {tp: max((r for r in pcc["rows"] if r["two_phase"] == tp),
                         key=lambda r: r["updates_per_mpkt"]) for tp in (True, False)}
        for tp, label in ((False, "commit disabled"), (True, "two-phase commit")):
            r = worst[tp]
            L.append(f"| PCC violations, {label}, {r['updates_per_mpkt']:.0f} updates/Mpkt | "
                     f"{r['violations']} of {r['connections']:,} connections |")
    rtl = results.get("rtl", {})
    if rtl.get("available"):
        for name, c in rtl["configs"].items():
            L.append(f"| RTL ({name}): latency / cycles per packet / Verilator rate | "
                     f"{c['latency_cycles']} cycles / {_f(c['cycles_per_packet'], '.3f')} / "
                     f"{_f(c['sim_cycles_per_s'])} cycles/s |")
    else:
        L.append("| RTL simulation rate, cycles/packet, latency | TODO: no cocotb results yet |")
    syn = results.get("synth", {})
    if syn.get("available") and syn.get("rows"):
        L += ["", "| target | design | config | LUT | FF | BRAM | DSP | Fmax MHz | Mpps | "
              "Gbit/s @64 B |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in syn["rows"]:
            des = r.get("design", "core")
            if r.get("error"):
                L.append(f"| {r['target']} | {des} | {r['config']} | {r['error']} |||||||")
                continue
            fmax = _f(r["fmax_mhz"], ".1f") + (f" ({r['fmax_of']})" if r.get("fmax_of") else "")
            L.append(f"| {r['target']} | {des} | {r['config']} | {r['luts']:,} | "
                     f"{r['ffs']:,} | {r['bram']} | {r['dsp']} | {fmax} | "
                     f"{_f(r['mpps'], '.1f')} | {_f(r['gbps_64b'], '.1f')} |")
        L.append("")
        L.append("Gbit/s at 64-byte frames counts 84 bytes per packet on the wire (64 B frame "
                 "+ 8 B preamble/SFD + 12 B inter-frame gap): 1 packet per clock for the core, "
                 "W / 64 frames per clock for the datapath at W-byte beats.")
        sp = [d for d in (syn.get("seed_spread") or {}).get("designs", []) if d.get("runs")]
        ss = syn.get("seed_sweep") or {}
        runs = [r for r in ss.get("runs") or [] if r.get("fmax_mhz")]
        if sp:
            L.append("")
            L.append("Fmax depends on the placement; the claim is the worst placer seed. "
                     + " ".join(
                         f"{d['design']} on {d['target']}, seeds 1..{len(d['runs'])}: "
                         + ", ".join(_f(r.get("fmax_mhz"), ".1f") for r in d["runs"])
                         + f" MHz (worst {d['worst_mhz']:.1f}, median {d['median_mhz']:.1f}; "
                         f"{d['clock_mhz']:.0f} MHz requested: "
                         f"{'met by every seed' if d['target_met'] else 'NOT met by every seed'})."
                         for d in sp)
                     + " Seeds and critical paths: docs/synth.md.")
        elif len(runs) > 1:
            fs = sorted(r["fmax_mhz"] for r in runs)
            best = max(runs, key=lambda r: r["fmax_mhz"])
            each = ", ".join(f"{r['fmax_mhz']:.1f}" for r in runs)
            L.append("")
            L.append(f"Fmax depends on the placement: the same {ss.get('target')} netlist "
                     f"placed and routed with seeds "
                     f"{', '.join(str(r['seed']) for r in runs)} reaches "
                     f"{each} MHz (median "
                     f"{fs[len(fs) // 2]:.1f}, best {best['fmax_mhz']:.1f} with seed "
                     f"{best['seed']}: `l4lb synth --seed {best['seed']}`); the table "
                     f"shows seed 1.")
    return "\n".join(L) + "\n"


def _bench_md(results: dict[str, Any]) -> str:
    L = ["# Benchmarks", "",
         "Generated by `l4lb bench` / `python scripts/bench_model.py` (l4lb/bench.py) into "
         "`docs/bench.json`; do not edit by hand. `scripts/update_readme_table.py` copies "
         "the first table into README.md.", "", markdown_tables(results)]
    ml = results.get("model_lookup")
    if ml:
        L += ["## Model lookup rate", "",
              f"`DataPlane.process_batch` on {ml['packets']:,} packets in batches of "
              f"{ml['batch']:,} after `ControlPlane.install()` and {ml['connections']:,} "
              f"inserted connections (load factor {ml['load_factor']:.3f}, "
              f"{ml['stashed']} stashed; inserts {_f(ml['inserts_per_s'])}/s). "
              f"{ml['hit_fraction_measured']:.1%} of the packets hit the ConnTable, "
              f"{ml['lb_fraction']:.1%} are load-balanced: "
              f"**{_f(ml['packets_per_s'])} packets/s** on one core.", ""]
    pcc = results.get("pcc")
    if pcc:
        L += ["## PCC violations vs pool-update rate", "",
              f"`model.trace.replay` of one trace of {pcc['connections']:,} connections per "
              f"update count, config `{pcc['config']}` with pool_slots = "
              f"{pcc['pool_slots']}. A violation is a connection whose packets saw more "
              f"than one DIP.", "",
              "An update is *rejected* when the VIP has no free pool slot for the new "
              "version (old versions stay live while connections use them; with the "
              "commit, updates are also serialised).", "",
              "| updates requested | commit off: applied (rejected) | updates/Mpkt | "
              "violations | two-phase: applied (rejected) | updates/Mpkt | violations |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
        by: dict[int, dict[bool, dict]] = {}
        for r in pcc["rows"]:
            by.setdefault(r["updates_requested"], {})[r["two_phase"]] = r
        for u, d in sorted(by.items()):
            cells = []
            for tp in (False, True):
                r = d.get(tp)
                cells += ([f"{r['updates_applied']} ({r['updates_rejected']})",
                           f"{r['updates_per_mpkt']:.0f}", str(r["violations"])]
                          if r else ["n/a"] * 3)
            L.append(f"| {u} | " + " | ".join(cells) + " |")
        L += ["", "![PCC violations](bench_pcc.png)", ""]
    sh = results.get("maglev", {}).get("shares")
    if sh:
        L += ["## Maglev balance", "",
              "Synthetic pools of N DIPs (weight 1). Maglev gives every DIP either "
              "floor(M/N) or ceil(M/N) entries, so each (M, N) shows two bars.", "",
              "| M | N | min share/ideal | max share/ideal |",
              "|---:|---:|---:|---:|"]
        for c in sh["cases"]:
            L.append(f"| {c['M']} | {c['N']} | {c['min_ratio']:.4f} | {c['max_ratio']:.4f} |")
        L += ["", "![Maglev shares](bench_maglev_shares.png)", ""]
        mg = results["maglev"].get("script", {})
        if "error" in mg:
            L += [f"bench_maglev: {mg['error']}", ""]
    ct = results.get("conntable", {})
    L += ["## ConnTable load factor vs stages", ""]
    rows, source = _load_rows(ct)
    if "error" in ct:
        L += [f"bench_conntable: {ct['error']}", ""]
    if rows:
        L += [f"Source: {source}.", "", "| d | digest | load at first stash | load when the "
              "stash is full |", "|---:|---|---:|---:|"]
        for r in rows:
            L.append(f"| {r.get('d', r.get('stages'))} | "
                     f"{r.get('digest_bits', r.get('digest'))} | "
                     f"{r['first_failure_load']:.4f} | {_f(r.get('full_load'), '.4f')} |")
        L += ["", "![load vs stages](bench_load_vs_stages.png)", ""]
    rtl = results.get("rtl", {})
    L += ["## RTL (cocotb on Verilator)", ""]
    if rtl.get("available"):
        L += ["| config | latency (cycles) | cycles/packet (back to back) | sim cycles/s | "
              "sim packets/s | tests |", "|---|---:|---:|---:|---:|---|"]
        for name, c in rtl["configs"].items():
            L.append(f"| {name} | {c['latency_cycles']} | {_f(c['cycles_per_packet'], '.3f')} "
                     f"| {_f(c['sim_cycles_per_s'])} | {_f(c['sim_packets_per_s'])} | "
                     f"{', '.join(c['tests'])} |")
    else:
        L.append(rtl.get("todo", "not available"))
    L.append("")
    return "\n".join(L)


# ---- everything ------------------------------------------------------------------------

def run_all(config: str | Path = DEFAULT_CONFIG, outdir: Path = DOCS, *, quick: bool = False,
            packets: int | None = None, scripts: bool = True, figures: bool = True,
            rtl_root: Path | None = None, log=print) -> dict[str, Any]:
    """Run every benchmark and write ``bench.json``, ``bench.md`` and the figures.

    ``quick`` shrinks every size (for smoke tests); ``scripts=False`` skips the
    colleagues' bench scripts (their sections then say so)."""
    from model.config import load_config

    cfg = load_config(config)
    res: dict[str, Any] = {"machine": machine_info(), "config": cfg.name, "quick": quick}
    t0 = time.perf_counter()
    n = packets or (20_000 if quick else 1_000_000)
    cap = cfg.geometry.stages * cfg.geometry.slots
    log(f"model lookup rate: {n:,} packets ...")
    res["model_lookup"] = model_lookup_rate(
        cfg, packets=n, connections=(min(256, cap // 2) if quick else None), batch=1 << 16)
    log(f"  {res['model_lookup']['packets_per_s']:,.0f} packets/s")
    log("PCC sweep ...")
    res["pcc"] = pcc_sweep(cfg, connections=min(500, cap // 4) if quick else 20_000,
                           updates=(0, 4) if quick else (0, 10, 20, 50, 100, 200, 400))
    for r in res["pcc"]["rows"]:
        log(f"  updates {r['updates_requested']:4d} (applied {r['updates_applied']:4d}), "
            f"two_phase={r['two_phase']!s:5s}: {r['violations']} violations")
    log("Maglev ...")
    res["maglev"] = {"shares": maglev_shares(((251, 10), (4093, 100)) if quick else
                                             ((4093, 100), (65537, 100), (65537, 1000)))}
    if scripts:
        res["maglev"]["script"] = run_script_json("bench_maglev.py",
                                                  ["--repeats", "1"] if quick else [])
        log("  " + res["maglev"]["script"].get("error", "scripts/bench_maglev.py ok"))
        log("ConnTable (scripts/bench_conntable.py) ...")
        ct_args = (["--log2-slots", "8", "--lookup-log2-slots", "10", "--lookup-keys", "10000"]
                   if quick else [])
        res["conntable"] = run_script_json("bench_conntable.py", ct_args)
        log("  " + res["conntable"].get("error", "ok"))
    else:
        res["maglev"]["script"] = {"error": "skipped (scripts=False)"}
        res["conntable"] = {"error": "skipped (scripts=False)"}
    if "data" not in res["conntable"]:
        res["conntable"]["fallback"] = conntable_load_vs_stages(
            log2_slots=6 if quick else 9, stages=(2, 4) if quick else (2, 3, 4, 5, 6, 8))
    res["rtl"] = rtl_results(rtl_root) if rtl_root is not None else rtl_results()
    if not res["rtl"]["available"]:
        log("  " + res["rtl"]["todo"])
    res["synth"] = synth_rows(outdir / "synth.json")
    res["seconds"] = time.perf_counter() - t0
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "bench.json").write_text(json.dumps(res, indent=1, default=_json_default) + "\n")
    if figures:
        for p in make_figures(res, outdir):
            log(f"wrote {p}")
    (outdir / "bench.md").write_text(_bench_md(res))
    log(f"wrote {outdir / 'bench.json'}, {outdir / 'bench.md'} ({res['seconds']:.0f} s)")
    return res


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {o!r}")


# ---- command line ----------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``l4lb bench`` (``cli.py`` calls this from ``_bench_args``)."""
    p.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                   help="TOML config (default: examples/default.toml)")
    p.add_argument("-o", "--output", default=str(DOCS),
                   help="directory for bench.json, bench.md and the figures (default docs/)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    p.add_argument("--packets", type=int, default=None,
                   help="packets for the model lookup rate (default 1,000,000)")
    p.add_argument("--no-scripts", action="store_true",
                   help="skip scripts/bench_maglev.py and scripts/bench_conntable.py")
    p.add_argument("--no-figures", action="store_true", help="skip the PNG figures")


def cli_bench(args: argparse.Namespace) -> int:
    """``l4lb bench [CONFIG] [-o DIR] [--quick]``."""
    res = run_all(args.config, Path(args.output), quick=args.quick, packets=args.packets,
                  scripts=not args.no_scripts, figures=not args.no_figures)
    print()
    print(markdown_tables(res))
    return 0
