#!/usr/bin/env python3
"""Run every l4lb benchmark and write docs/bench.json, docs/bench.md and the figures.

Same as ``l4lb bench``: the model's batch lookup rate (1M packets), PCC violations vs
pool-update rate with and without the two-phase commit, scripts/bench_maglev.py and
scripts/bench_conntable.py (their --json output, aggregated), the cocotb benches'
RTL figures if they have run, and docs/synth.json if present. See l4lb/bench.py.

    python scripts/bench_model.py [CONFIG] [-o docs] [--quick] [--packets N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l4lb.bench import add_arguments, cli_bench  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_arguments(ap)
    return cli_bench(ap.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
