"""``l4lb synth``: its arguments and its handler (``l4lb/cli.py`` registers them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .errors import SynthError
from .flow import synthesize
from .targets import TARGETS


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``l4lb synth`` (``cli.py`` calls this from ``_synth_args``)."""
    p.add_argument("config", nargs="?",
                   default=str(Path(__file__).resolve().parents[2] / "examples"
                               / "default.toml"),
                   help="TOML config (default: examples/default.toml) or a Verilog file")
    p.add_argument("-t", "--target", default="ecp5-85k", choices=sorted(TARGETS),
                   help="device (default ecp5-85k); xilinx gives resource counts only")
    p.add_argument("-o", "--output", default=None,
                   help="keep intermediate files and synth_report.json in this directory")
    p.add_argument("-f", "--freq", type=float, default=None,
                   help="requested clock in MHz for timing-driven place and route "
                        "(default: 200 for ECP5, 48 for iCE40)")
    p.add_argument("--hash-stages", type=int, default=None,
                   help="register stages of the hash unit (hdl.export, 1..4; default "
                        "hdl.core.DEFAULT_HASH_STAGES)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placer seed")
    p.add_argument("--frames", type=int, default=None, metavar="W",
                   help="synthesise the whole AXI4-Stream frame datapath (parser, frame "
                        "buffer, core, rewriter; docs/datapath.md) with W-byte beats "
                        "(8, 16, 32 or 64) instead of the core")
    p.add_argument("--max-frame", type=int, default=1536,
                   help="with --frames: longest frame in bytes (sizes the frame buffer)")
    p.add_argument("--json", default=None, help="also write the report as JSON here")


def cli_synth(args: argparse.Namespace) -> int:
    """``l4lb synth [CONFIG] --target T [-o DIR] [--freq MHZ] [--frames W]``."""
    from model.config import load_config

    src: Any = args.config
    cfg = None
    if str(src).endswith(".toml"):
        cfg = load_config(src)
        src = cfg
    try:
        rep = synthesize(src, args.target, clock_mhz=getattr(args, "freq", None),
                         workdir=getattr(args, "output", None),
                         hash_stages=getattr(args, "hash_stages", None),
                         seed=getattr(args, "seed", 1) or 1, cfg=cfg,
                         frames=getattr(args, "frames", None),
                         max_frame=getattr(args, "max_frame", 1536))
    except SynthError as e:
        print(f"l4lb synth: error: {e}", file=sys.stderr)
        return 1
    print(rep.format())
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
    return 0
