"""Verilog export of the core and the ``l4lb rtl CONFIG -o DIR`` subcommand.

:func:`write_verilog` writes ``l4lb_core.v`` (module ``l4lb_core``, the flat ports of
:class:`~hdl.top.L4LBTop`) and ``l4lb_core.json``: the latency, the port list and the
write interface's memory map, for benches and integrators that should not hard-code
them.
"""

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from amaranth.back import verilog

from model.config import Config, load_config

from .core import DEFAULT_HASH_STAGES
from .layouts import config_summary, memory_map
from .lifecycle import readable
from .top import L4LBTop, port_widths

__all__ = ["MODULE_NAME", "write_verilog", "describe", "cli_rtl"]

#: Name of the generated Verilog module.
MODULE_NAME = "l4lb_core"


_MEM_DECL = re.compile(r"^  reg \[(\d+):0\] (\S+|\\\S+ ) \[(\d+):0\];$")
_INIT_WORD = re.compile(r"^    (\S+|\\\S+ )\[(\d+)\] = (\d+)'h([0-9a-fA-F]+);$")


def compact_memory_inits(text: str) -> str:
    """Shrink Yosys' word-by-word memory ``initial`` blocks: a zero-fill ``for`` loop, then
    only the non-zero words. Semantics are unchanged (same power-on contents); a
    2**16-word all-zero stage goes from 65536 lines to 4.

    Only blocks that assign every word ``0 .. depth-1`` of the memory declared on the
    line before, in order, are rewritten; anything else is left as emitted.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    n_blocks = 0
    while i < len(lines):
        line = lines[i]
        decl = _MEM_DECL.match(out[-1]) if out and line == "  initial begin" else None
        if decl:
            name, depth = decl.group(2), int(decl.group(3)) + 1
            words: list[tuple[str, str]] = []
            j = i + 1
            ok = True
            while j < len(lines) and lines[j] != "  end":
                w = _INIT_WORD.match(lines[j])
                if not w or w.group(1) != name or int(w.group(2)) != len(words):
                    ok = False
                    break
                words.append((w.group(3), w.group(4)))
                j += 1
            if ok and len(words) == depth and j < len(lines):
                width = words[0][0]
                label = f"l4lb_meminit_{n_blocks}"
                n_blocks += 1
                out += [f"  initial begin : {label}",
                        "    integer i;",
                        f"    for (i = 0; i < {depth}; i = i + 1)",
                        f"      {name}[i] = {width}'h0;"]
                out += [f"    {name}[{k}] = {wd}'h{v};" for k, (wd, v) in enumerate(words)
                        if int(v, 16) != 0]
                out.append("  end")
                i = j + 1
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def describe(top: L4LBTop) -> dict:
    """The JSON-able interface description of a top level (latency, ports, memories)."""
    core = top.core
    cfg = core.cfg
    return {
        "module": MODULE_NAME,
        "config": cfg.name,
        "latency": top.latency,
        "hash_stages": core.hash_stages,
        "meta_width": core.meta_width,
        "ports": {n: {"dir": d, "width": w}
                  for n, (d, w) in port_widths(cfg, core.meta_width,
                                               len(core.counters.packets)).items()},
        "memories": [{"id": i.id, "name": i.name, "width": i.width, "depth": i.depth,
                      "addr_bits": i.addr_bits}
                     for i in memory_map(cfg.geometry, cfg.lifecycle).values()],
    } | ({"readable": [i.name for i in memory_map(cfg.geometry, cfg.lifecycle).values()
                       if readable(i.name)]}
         if cfg.lifecycle.enabled else {})


def write_verilog(cfg: Config, outdir: str | Path,
                  init_images: Mapping[str, Sequence[int]] | None = None, *,
                  hash_stages: int = DEFAULT_HASH_STAGES, meta_width: int = 32) -> Path:
    """Write ``l4lb_core.v`` and ``l4lb_core.json`` into ``outdir``.

    Parameters
    ----------
    cfg : Config
        Configuration.
    outdir : str or Path
        Output directory (created if missing).
    init_images : mapping of str to sequence of int, optional
        Power-on memory contents by name (e.g. ``read_vectors(...).initial``).
    hash_stages, meta_width : int
        Passed to :class:`~hdl.core.L4LBCore`.

    Returns
    -------
    Path
        The path of ``l4lb_core.v``.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`~model.config.Config`.
    """
    if not isinstance(cfg, Config):
        raise TypeError(f"cfg must be a model.config.Config, not {cfg!r}")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    top = L4LBTop(cfg, hash_stages=hash_stages, meta_width=meta_width,
                  init_images=init_images)
    info = describe(top)
    text = compact_memory_inits(verilog.convert(top, name=MODULE_NAME, emit_src=False))
    header = (f"// {MODULE_NAME}: l4lb data-plane core, generated by hdl/export.py "
              f"(Amaranth). Do not edit.\n// {config_summary(cfg)}\n"
              f"// latency {top.latency} cycles, 1 packet/cycle; ports and memory map: "
              f"{MODULE_NAME}.json, docs/rtl.md\n")
    path = out / f"{MODULE_NAME}.v"
    path.write_text(header + text)
    (out / f"{MODULE_NAME}.json").write_text(json.dumps(info, indent=2) + "\n")
    return path


def cli_rtl(args: argparse.Namespace) -> int:
    """``l4lb rtl CONFIG -o DIR [--frames W]``: write the Verilog of the core for CONFIG,
    and with ``--frames`` also the AXI4-Stream frame datapath (``l4lb_datapath``) with
    W-byte beats (docs/datapath.md)."""
    cfg = load_config(args.config)
    path = write_verilog(cfg, args.output)
    top_info = json.loads(path.with_suffix(".json").read_text())
    print(f"wrote {path} ({path.stat().st_size} bytes): module {MODULE_NAME}, "
          f"latency {top_info['latency']} cycles, {len(top_info['ports'])} ports + clk/rst")
    width = getattr(args, "frames", None)
    if width:
        from .datapath_top import DATAPATH_MODULE, write_datapath_verilog

        dp = write_datapath_verilog(cfg, args.output, width,
                                    max_frame=getattr(args, "max_frame", 1536))
        info = json.loads(dp.with_suffix(".json").read_text())
        print(f"wrote {dp} ({dp.stat().st_size} bytes): module {DATAPATH_MODULE}, "
              f"{width}-byte beats, latency {info['latency']} cycles (one-beat frame), "
              f"buffer {info['buffer_beats']} beats, {len(info['ports'])} ports + clk/rst")
    return 0
