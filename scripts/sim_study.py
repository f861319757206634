#!/usr/bin/env python3
"""The load-balancing study: textbook checks, then every policy against offered load.

Writes docs/sim.json, docs/sim.md and docs/sim_*.png. The full run (1M connections in
the main scenario, 2 worker processes) takes about 10-15 minutes on 2 cores;
``--connections`` scales it down.

    python scripts/sim_study.py [--connections 1000000] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.config import load_config  # noqa: E402
from model.sim import POLICIES, Scenario, make_workload, simulate  # noqa: E402
from model.textbook import (  # noqa: E402
    balls_into_bins,
    batch_means,
    fluid_max_load,
    mm1_split_mean,
    random_max_formula,
    two_choice_max_formula,
)

CONFIG = ROOT / "examples" / "load_aware.toml"
RHOS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
#: DIP 7 runs at half speed; DIP 6 stalls for 0.5 % of the run and comes back
HETERO = {"speeds": (1.0,) * 7 + (0.5,), "outage": (6, 0.40, 0.405), "sizes": "pareto"}


def scenarios(connections: int) -> dict[str, dict]:
    small = max(1000, connections // 5)
    return {
        "homogeneous": {"connections": small},
        "realistic": {"connections": connections, **HETERO},
        "bursty": {"connections": small, "arrivals": "bursty", **HETERO},
    }


def textbook(seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    bins = []
    for n in (10**3, 10**4, 10**5, 10**6):
        trials = 5 if n < 10**6 else 2
        for d in (1, 2):
            m = [int(balls_into_bins(n, d, rng).max()) for _ in range(trials)]
            bins.append({"n": n, "d": d, "max_loads": m,
                         "formula": random_max_formula(n) if d == 1
                         else two_choice_max_formula(n, d),
                         "fluid": fluid_max_load(n, d)})
            print(f"  balls into bins n={n:>8,} d={d}: max loads {m}, fluid limit "
                  f"{bins[-1]['fluid']}, formula {bins[-1]['formula']:.2f}", flush=True)
    cfg = load_config(CONFIG)
    n = len(cfg.vips[0].dips)
    mm1 = []
    for rho in (0.5, 0.8, 0.9):
        s = Scenario(connections=200_000, rho=rho, seed=seed)
        w = make_workload(cfg, s)
        row = {"rho": rho, "formula": mm1_split_mean(rho * n, n)}
        for pol in ("random", "jsq"):
            r = simulate(cfg, s, pol, workload=w, keep_responses=True)
            row[pol] = r.mean
            if pol == "random":  # batch-means standard error of the mean sojourn
                row["random_se"] = batch_means(r.responses)[1]
        mm1.append(row)
        print(f"  M/M/1 x {n}, rho={rho}: random split {row['random']:.3f} "
              f"(formula 1/(mu - lam/n) = {row['formula']:.3f}, SE {row['random_se']:.3f}),"
              f" JSQ {row['jsq']:.3f}", flush=True)
    return {"balls_into_bins": bins, "mm1": mm1}


def _job(args: tuple[str, dict, float, str, bool]) -> dict:
    name, kw, rho, policy, two_phase = args
    cfg = load_config(CONFIG)
    s = Scenario(rho=rho, **kw)
    r = simulate(cfg, s, policy, two_phase=two_phase)
    row = r.row() | {"scenario": name, "two_phase": two_phase}
    if r.stats:
        row["stats"] = r.stats
    print(f"  {name:12s} rho={rho:.2f} {policy:11s} mean {r.mean:9.3f} p99 {r.p99:9.2f} "
          f"p99.9 {r.p999:9.2f} active {r.active_mean:7.2f}/{r.active_max:7.2f} "
          f"PCC {r.pcc_violations} ({r.elapsed:.0f} s)", flush=True)
    return row


def run(connections: int, jobs: int) -> dict:
    t0 = time.perf_counter()
    print("textbook checks", flush=True)
    tb = textbook()
    todo = [(name, kw, rho, pol, True) for name, kw in scenarios(connections).items()
            for rho in RHOS for pol in POLICIES]
    # the PCC counter must bite: the same l4lb run with the two-phase commit disabled
    todo.append(("realistic", scenarios(connections)["realistic"], 0.9, "l4lb", False))
    todo.sort(key=lambda j: (j[3] != "l4lb", -j[1]["connections"]))  # longest first
    print(f"policy study: {len(todo)} runs on {jobs} processes", flush=True)
    with ProcessPoolExecutor(jobs) as ex:
        rows = list(ex.map(_job, todo))
    return {
        "machine": {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "cpu": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "elapsed_s": round(time.perf_counter() - t0, 1)},
        "config": str(CONFIG.relative_to(ROOT)),
        "scenarios": {k: {kk: list(v) if isinstance(v, tuple) else v
                          for kk, v in kw.items()} for k, kw in scenarios(connections).items()},
        "textbook": tb,
        "runs": rows,
    }


def _fmt(x: float) -> str:
    return f"{x:,.2f}" if x < 1000 else f"{x:,.0f}"


def table(rows: list[dict], scenario: str, rhos=RHOS) -> list[str]:
    out = ["| rho | policy | mean | p99 | p99.9 | active/server avg | busiest | peak | PCC |",
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for rho in rhos:
        for pol in POLICIES:
            r = next((r for r in rows if r["scenario"] == scenario and r["rho"] == rho
                      and r["policy"] == pol and r["two_phase"]), None)
            if r is None:
                continue
            pcc = str(r["pcc_violations"]) if pol == "l4lb" else "n/a"
            out.append(f"| {rho:.2f} | {pol} | {_fmt(r['mean'])} | {_fmt(r['p99'])} | "
                       f"{_fmt(r['p999'])} | {r['active_mean']:.2f} | {r['active_max']:.2f} | "
                       f"{r['active_peak']} | {pcc} |")
    return out


def write_docs(res: dict, docs: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs.mkdir(parents=True, exist_ok=True)
    (docs / "sim.json").write_text(json.dumps(res, indent=1) + "\n")
    paths = []
    rows = res["runs"]
    for scen in res["scenarios"]:
        fig, axes = plt.subplots(1, 4, figsize=(17, 4))
        for ax, key, label in zip(axes, ("mean", "p99", "p999", "active_max"),
                                  ("mean response", "p99 response", "p99.9 response",
                                   "active conns, busiest server (time avg)"), strict=True):
            for pol in POLICIES:
                pts = sorted((r["rho"], r[key]) for r in rows if r["scenario"] == scen
                             and r["policy"] == pol and r["two_phase"])
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", ms=3, label=pol,
                            lw=2.2 if pol == "l4lb" else 1.2)
            ax.set_yscale("log")
            ax.set_xlabel("offered load rho")
            ax.set_title(label, fontsize=9)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"scenario {scen!r} ({res['scenarios'][scen]['connections']:,} "
                     f"connections per run; times in mean service times)", fontsize=10)
        fig.tight_layout()
        p = docs / f"sim_{scen}.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    md = _markdown(res)
    (docs / "sim.md").write_text(md)
    return paths


def _markdown(res: dict) -> str:
    m = res["machine"]
    tb = res["textbook"]
    lines = ["# Load-balancing study (`l4lb sim`, scripts/sim_study.py)", "",
             f"Measured {m['date']} on {m['cpu']}, Python {m['python']}, numpy {m['numpy']}; "
             f"whole study {m['elapsed_s']:.0f} s. Model and method: docs/load_aware.md.",
             "", "## Textbook checks", "",
             "Balls into bins (n balls, n bins; max load per trial):", "",
             "| n | d | max loads | fluid-limit prediction | formula |", "|---:|---:|---|---:|---|"]
    for b in tb["balls_into_bins"]:
        f = "ln n/ln ln n" if b["d"] == 1 else "ln ln n/ln 2 (+O(1))"
        lines.append(f"| {b['n']:,} | {b['d']} | {b['max_loads']} | {b['fluid']} | "
                     f"{f} = {b['formula']:.2f} |")
    lines += ["", "Random split over n = 8 M/M/1 (processor-sharing) servers vs JSQ, "
              "200,000 connections:", "",
              "| rho | random split (sim) | 1/(mu - lam/n) | batch-means SE | deviation | JSQ |",
              "|---:|---:|---:|---:|---:|---:|"]
    for r in tb["mm1"]:
        dev = (r["random"] - r["formula"]) / r["formula"]
        lines.append(f"| {r['rho']} | {r['random']:.3f} | {r['formula']:.3f} | "
                     f"{r['random_se']:.3f} | {dev:+.1%} | {r['jsq']:.3f} |")
    for scen, kw in res["scenarios"].items():
        lines += ["", f"## Scenario `{scen}`", "", f"`{json.dumps(kw)}`", "",
                  f"![{scen}](sim_{scen}.png)", ""]
        lines += table(res["runs"], scen)
    off = [r for r in res["runs"] if not r["two_phase"]]
    if off:
        r = off[0]
        lines += ["", "## PCC counter check", "",
                  f"The l4lb policy with the two-phase commit **disabled** ({r['scenario']}, "
                  f"rho {r['rho']}): {r['pcc_violations']} of {r['connections']:,} "
                  f"connections saw a second DIP (with the commit: 0)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connections", type=int, default=1_000_000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--docs", type=Path, default=ROOT / "docs")
    a = ap.parse_args(argv)
    res = run(a.connections, a.jobs)
    for p in write_docs(res, a.docs):
        print(f"wrote {p}")
    print(f"wrote {a.docs / 'sim.json'}, {a.docs / 'sim.md'} "
          f"({res['machine']['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
