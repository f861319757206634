"""Benchmark Maglev table construction and measure balance and disruption.

Usage: python scripts/bench_maglev.py [--json PATH]

* build time of ``build_table`` for M = 65537, N = 1000 (median of 5 runs), of the
  literal pure-Python Pseudocode 1 (``populate_reference``, one run) and their ratio;
* imbalance (max share / ideal share) and the fraction of table entries whose DIP
  changes when one DIP is removed (the middle one) or one is added (at the end),
  for several (M, N). The ideal disruption is 1/N (removal) and 1/(N+1) (addition).

DIPs are synthetic: ``Dip(address=0x0A000000 + i, port=80)``; salts are the defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from model import maglev
from model.config import Dip, Salts
from model.maglev import (
    addition_disruption,
    build_table,
    imbalance,
    permutation_params,
    populate_reference,
    removal_disruption,
)

SALTS = Salts.default()

BUILD_CASE = (65537, 1000)
QUALITY_CASES = [(251, 10), (4093, 100), (65537, 100), (65537, 1000), (65536, 1000)]


def synthetic_dips(n: int) -> list[Dip]:
    """``n`` DIPs 10.0.0.0, 10.0.0.1, ... on port 80, weight 1."""
    return [Dip(address=0x0A000000 + i, port=80) for i in range(n)]


def bench_build(size: int, n: int, repeats: int = 5) -> dict:
    """Median build time of build_table, one run of populate_reference, and their ratio."""
    dips = synthetic_dips(n)
    times = []
    table = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        table = build_table(dips, size, SALTS)
        times.append(time.perf_counter() - t0)
    offsets, skips = permutation_params(dips, size, SALTS)
    t0 = time.perf_counter()
    ref = populate_reference(offsets, skips, size)
    ref_time = time.perf_counter() - t0
    if table is None or table.tolist() != ref:
        raise SystemExit("build_table and populate_reference disagree")
    median = statistics.median(times)
    return {
        "M": size,
        "N": n,
        "build_table_median_s": median,
        "build_table_runs_s": times,
        "populate_reference_s": ref_time,
        "speedup": ref_time / median,
        "identical": True,
    }


def quality(size: int, n: int) -> dict:
    """Imbalance and removal/addition disruption of one (M, N) configuration."""
    dips = synthetic_dips(n)
    t0 = time.perf_counter()
    table = build_table(dips, size, SALTS)
    build = time.perf_counter() - t0
    removed = n // 2
    rem = removal_disruption(dips, size, SALTS, removed)
    add = addition_disruption(dips, size, SALTS, Dip(address=0x0A000000 + n, port=80))
    counts = np.bincount(table, minlength=n)
    return {
        "M": size,
        "N": n,
        "path": "numpy" if n >= maglev._MIN_VECTOR_TURNS else "loop",
        "build_s": build,
        "imbalance": imbalance(table, n),
        "entries_min": int(counts.min()),
        "entries_max": int(counts.max()),
        "removed_index": removed,
        "removal_disruption": rem,
        "removal_vs_ideal": rem * n,
        "addition_disruption": add,
        "addition_vs_ideal": add * (n + 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, optionally write JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the figures to this JSON file")
    ap.add_argument("--repeats", type=int, default=5, help="build_table runs (median)")
    args = ap.parse_args(argv)

    size, n = BUILD_CASE
    b = bench_build(size, n, args.repeats)
    print(f"Maglev build, M={size}, N={n}")
    label = f"build_table (median of {args.repeats})"
    print(f"  {label:<30} {b['build_table_median_s'] * 1e3:9.1f} ms")
    print(f"  {'populate_reference (1 run)':<30} {b['populate_reference_s'] * 1e3:9.1f} ms")
    print(f"  {'speedup':<30} {b['speedup']:9.1f} x   (tables identical)")
    print()
    rows = [quality(m, k) for m, k in QUALITY_CASES]
    head = (f"{'M':>7} {'N':>5} {'path':>5} {'build ms':>9} {'imbalance':>9} "
            f"{'entries':>11} {'remove 1':>9} {'x 1/N':>6} {'add 1':>9} {'x 1/(N+1)':>9}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['M']:>7} {r['N']:>5} {r['path']:>5} {r['build_s'] * 1e3:>9.1f} "
              f"{r['imbalance']:>9.4f} {r['entries_min']:>5}..{r['entries_max']:<5} "
              f"{r['removal_disruption']:>9.5f} {r['removal_vs_ideal']:>6.2f} "
              f"{r['addition_disruption']:>9.5f} {r['addition_vs_ideal']:>9.2f}")
    print()
    print("imbalance = max share / ideal share (1.0 = perfect); remove/add = fraction of")
    print("entries whose DIP changes; x 1/N = that fraction in units of the ideal minimum.")
    if args.json:
        args.json.write_text(json.dumps({"build": b, "quality": rows}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
