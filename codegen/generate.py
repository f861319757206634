"""``l4lb generate``: every target's sources for one config, in one directory tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import Config, load_config

__all__ = ["generate_all", "cli_generate"]


def generate_all(cfg: Config, outdir: str | Path) -> dict[str, list[Path]]:
    """Write ``rtl/`` (Verilog), ``p4/`` (v1model, TNA, entries) and ``hls/`` (kernel,
    header, testbench). TNA is skipped with a note when the geometry cannot run on
    Tofino (see docs/p4.md), TNA and RTL when the config has a connection lifecycle they
    do not implement yet (docs/lifecycle.md); everything else must succeed."""
    import warnings

    from codegen.hls import write_hls
    from codegen.p4 import write_p4
    from hdl.export import write_verilog
    from model.lifecycle import lifecycle_unsupported

    out = Path(outdir)
    why = lifecycle_unsupported(cfg, "RTL core")
    if why is None:
        rtl = [write_verilog(cfg, out / "rtl")]
    else:  # the RTL core does not implement the connection lifecycle yet
        warnings.warn(f"RTL not generated: {why}", stacklevel=2)
        (out / "rtl").mkdir(parents=True, exist_ok=True)
        skipped = out / "rtl" / "RTL_SKIPPED.txt"
        skipped.write_text(f"rtl/ not generated for config {cfg.name!r}:\n{why}\n")
        rtl = [skipped]
    written = {
        "rtl": rtl,
        "p4": write_p4(cfg, out / "p4"),
        "hls": write_hls(cfg, out / "hls"),
    }
    return written


def cli_generate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    for target, paths in generate_all(cfg, args.output).items():
        for p in paths:
            print(f"{target:4s} {p}")
    return 0
