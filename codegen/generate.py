"""``l4lb generate``: every target's sources for one config, in one directory tree."""

from __future__ import annotations

import argparse
from pathlib import Path

from model.config import Config, load_config

__all__ = ["generate_all", "cli_generate"]


def generate_all(cfg: Config, outdir: str | Path) -> dict[str, list[Path]]:
    """Write ``rtl/`` (Verilog), ``p4/`` (v1model, TNA, entries) and ``hls/`` (kernel,
    header, testbench). TNA is skipped with a note when the geometry cannot run on
    Tofino (see docs/p4.md) or the config has a connection lifecycle, which TNA does not
    implement yet (docs/lifecycle.md); RTL is skipped with a note for a config with a
    ``[network]`` table (docs/network.md); everything else must succeed."""
    from codegen.hls import write_hls
    from codegen.p4 import write_p4
    from hdl.export import write_verilog

    out = Path(outdir)
    return {
        "rtl": _or_note(cfg, out / "rtl", "RTL", lambda: [write_verilog(cfg, out / "rtl")]),
        "p4": write_p4(cfg, out / "p4"),
        "hls": write_hls(cfg, out / "hls"),
    }


def _or_note(cfg: Config, outdir: Path, target: str, write) -> list[Path]:
    """``write()``, or -- for a config with a ``[network]`` table, which this target
    does not implement yet (docs/network.md) -- ``<TARGET>_SKIPPED.txt`` saying why."""
    from model.network import network_unsupported

    why = network_unsupported(cfg, f"{target} generator")
    if why is None:
        return write()
    outdir.mkdir(parents=True, exist_ok=True)
    note = outdir / f"{target}_SKIPPED.txt"
    note.write_text(f"{target} sources not generated for config {cfg.name!r}:\n{why}\n")
    return [note]


def cli_generate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    for target, paths in generate_all(cfg, args.output).items():
        for p in paths:
            print(f"{target:4s} {p}")
    return 0
