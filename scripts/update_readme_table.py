#!/usr/bin/env python3
"""Regenerate the benchmark table of README.md from docs/bench.json.

The table (machine, date, model rate, Maglev, ConnTable, PCC, RTL and -- when
docs/synth.json exists -- the synthesis rows) replaces whatever is between the markers
``<!-- bench-table -->`` and ``<!-- /bench-table -->``. If README.md has no markers it
is left untouched and the table is printed instead.

    python scripts/update_readme_table.py [--json docs/bench.json] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from l4lb.bench import markdown_tables, synth_rows  # noqa: E402

BEGIN = "<!-- bench-table -->"
END = "<!-- /bench-table -->"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench.json")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    args = ap.parse_args(argv)
    if not args.json.exists():
        print(f"{args.json}: not found; run `l4lb bench` or scripts/bench_model.py first",
              file=sys.stderr)
        return 1
    res = json.loads(args.json.read_text())
    # pick up a newer synthesis report than the one the bench saw
    syn = synth_rows(args.json.parent / "synth.json")
    if syn.get("available"):
        res["synth"] = syn
    table = markdown_tables(res)
    text = args.readme.read_text() if args.readme.exists() else ""
    b, e = text.find(BEGIN), text.find(END)
    if b < 0 or e < b:
        print(f"{args.readme}: no {BEGIN} ... {END} markers; the table is:\n")
        print(table)
        return 0
    new = text[:b + len(BEGIN)] + "\n" + table + text[e:]
    if new != text:
        args.readme.write_text(new)
        print(f"updated the table in {args.readme}")
    else:
        print(f"{args.readme}: table already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
