"""Regenerate the committed P4 programs and table entries in p4/ for the default
config (examples/default.toml); tests/test_p4.py fails when they are stale.

    python scripts/regen_p4.py [CONFIG] [-o OUTDIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codegen.p4 import write_p4  # noqa: E402
from model.config import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(ROOT / "examples" / "default.toml"))
    ap.add_argument("-o", "--output", default=str(ROOT / "p4"))
    a = ap.parse_args(argv)
    for path in write_p4(load_config(a.config), a.output):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
