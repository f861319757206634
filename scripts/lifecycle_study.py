#!/usr/bin/env python3
"""The lifecycle study: a spoofed SYN flood during pool updates, and ConnTable occupancy
under churn with and without idle aging (docs/lifecycle.md).

Writes docs/lifecycle.json and docs/lifecycle_occupancy.png (needs the ``plot`` extra).
About 1 minute on one core with the defaults.

    python scripts/lifecycle_study.py [--duration 300] [--rate 10] [--flood 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from model.config import load_config  # noqa: E402
from model.lifecycle_sim import LifecycleParams, LifecycleReport, run  # noqa: E402

CONFIG = ROOT / "examples" / "lifecycle.toml"


def _row(r: LifecycleReport, seconds: float) -> dict:
    d = sorted(r.first_syn_delay)
    return {
        "packets": r.packets, "spoofed_syns": r.spoofed_syns,
        "legit_connections": r.legit_connections, "admitted": r.admitted,
        "gave_up": r.gave_up, "legit_dropped": r.legit_dropped,
        "pcc_violations": r.violations, "spoofed_learns": r.spoofed_learns,
        "spoofed_load_balanced": r.spoofed_admitted,
        "spoofed_digest_false_positives": r.spoofed_digest_hits,
        "handshake_delay_s": {"median": d[len(d) // 2] if d else 0.0,
                              "p99": d[min(len(d) - 1, int(len(d) * 0.99))] if d else 0.0,
                              "max": d[-1] if d else 0.0,
                              "delayed_fraction": sum(x > 0 for x in d) / max(len(d), 1)},
        "decisions": {k: v for k, v in r.actions.items() if v},
        "peak_occupancy": r.peak_occupancy,
        "final_occupancy": r.occupancy[-1][1] if r.occupancy else 0,
        "updates_applied": r.updates_applied, "control_plane": r.stats,
        "model_packets_per_second": round(r.packets_per_second),
        "wall_seconds": round(seconds, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(CONFIG))
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--rate", type=float, default=10.0)
    ap.add_argument("--flood", type=float, default=100.0)
    ap.add_argument("--updates", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "docs"))
    a = ap.parse_args()
    cfg = load_config(a.config)
    lc = cfg.lifecycle
    base = LifecycleParams(duration=a.duration, conn_rate=a.rate, updates=a.updates,
                           sources=200, gap=2.0, vanish=0.2, seed=a.seed)
    runs = {
        "flood_aging": (cfg, dataclasses.replace(base, flood=a.flood)),
        "churn_aging": (cfg, dataclasses.replace(base, flood=0.0)),
        "churn_no_aging": (dataclasses.replace(cfg, lifecycle=dataclasses.replace(
            lc, idle_timeout=0.0)), dataclasses.replace(base, flood=0.0)),
    }
    out: dict = {"config": cfg.name, "lifecycle": dataclasses.asdict(lc),
                 "params": dataclasses.asdict(base) | {"flood": a.flood},
                 "date": datetime.now(UTC).strftime("%Y-%m-%d"),
                 "machine": f"{platform.machine()}, Python {platform.python_version()}",
                 "runs": {}}
    series = {}
    for name, (c, p) in runs.items():
        print(f"{name}: {p.duration:g} s, {p.conn_rate:g} connections/s, "
              f"flood x{p.flood:g}, idle_timeout {c.lifecycle.idle_timeout:g} s ...",
              flush=True)
        t0 = time.perf_counter()
        r = run(c, p, progress=lambda f: print(f"  ... {f:.0%}", flush=True)
                if int(f * 100) % 25 == 0 else None)
        out["runs"][name] = _row(r, time.perf_counter() - t0)
        series[name] = r.occupancy
        print("  " + r.summary(), flush=True)
    dest = Path(a.out)
    (dest / "lifecycle.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest / 'lifecycle.json'}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing (pip install -e '.[plot]'): no plot")
        return 0
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, label in (("churn_no_aging", "no aging"),
                        ("churn_aging", f"aging, idle_timeout {lc.idle_timeout:g} s"),
                        ("flood_aging", f"aging + {a.flood:g}x spoofed SYN flood")):
        pts = series[name][::10]
        ax.plot([t for t, _ in pts], [n for _, n in pts], label=label)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("connections held (table + stash + pending)")
    ax.set_title(f"{cfg.name}: {a.rate:g} new connections/s, 20 % vanish without FIN")
    ax.legend()
    fig.tight_layout()
    fig.savefig(dest / "lifecycle_occupancy.png", dpi=110)
    print(f"wrote {dest / 'lifecycle_occupancy.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
