"""``l4lb generate``: every target's sources for one config, in one directory tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import Config, load_config

__all__ = ["generate_all", "cli_generate"]


def generate_all(cfg: Config, outdir: str | Path) -> dict[str, list[Path]]:
    """Write ``rtl/`` (the core's Verilog), ``p4/`` (v1model, TNA, entries) and ``hls/``
    (kernel, header, testbench). TNA is skipped with a note when the geometry cannot run
    on Tofino (see docs/p4.md) or the config has a connection lifecycle, which TNA does
    not implement yet (docs/lifecycle.md); everything else must succeed (every target
    implements the ``[network]`` table, docs/network.md)."""
    from codegen.hls import write_hls
    from codegen.p4 import write_p4
    from hdl.export import write_verilog

    out = Path(outdir)
    return {
        "rtl": [write_verilog(cfg, out / "rtl")],
        "p4": write_p4(cfg, out / "p4"),
        "hls": write_hls(cfg, out / "hls"),
    }


def cli_generate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    for target, paths in generate_all(cfg, args.output).items():
        for p in paths:
            print(f"{target:4s} {p}")
    return 0
