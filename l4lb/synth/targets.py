"""The devices synthesis can target, their resources, and the block-RAM arithmetic.

:data:`TARGETS` maps a target name to its :class:`Target` (family, device, yosys
command, nextpnr command and arguments, default clock, resource counts). The memory
roles and the block-RAM bounds here decide, before any tool runs, whether a config's
tables can fit a device (:func:`precheck_config`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ResourceOverflowError

#: Bits on the wire per minimum-size packet: 64-byte frame + 8 preamble/SFD + 12 IFG.
WIRE_BITS_PER_PACKET = (64 + 8 + 12) * 8

#: Memory roles that must be in block RAM (they grow with the geometry).
TABLE_ROLES = ("conn", "maglev")

#: Memory roles of the data path (each an ``hdl.bram.PipelinedRam``): on ECP5 they are
#: all put in block RAM, whose output register keeps them off the critical path (a
#: 64-word LUT-RAM DIP table with its 4:1 read multiplexer did not make 200 MHz).
DATAPATH_ROLES = ("conn", "maglev", "dip", "slot_map", "transit")

#: Memory roles of the frame datapath (``l4lb synth --frames W``): the frame buffer and
#: the record and packet queues, each an ``hdl.fifo.BlockRamFifo`` whose ring is put in
#: block RAM on every family (its output queue in LUT RAM). The frame buffer's ring must
#: land in block RAM (it grows with ``max_frame`` and the core's latency).
FRAME_ROLES = ("frame_buffer", "frame_queue")

#: nextpnr-ecp5's placer: the electrostatic "static" placer, not the default "heap".
#: Measured on the same netlists (2026-11-30, 200 MHz requested): the W = 8 datapath,
#: seeds 1..4, 194.9 / 191.3 / 189.8 / 181.0 MHz against heap's 167.8 / 151.5 / 168.3 /
#: 162.8; the core, seeds 1..5, worst 210.7 against heap's 187.8. Heap spread modules
#: over the die (4.6-5.1 ns routes between neighbouring registers). docs/datapath.md
#: "Timing" has the runs.
ECP5_PLACER = ("--placer", "static")

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
        ("--85k", "--package", "CABGA381") + ECP5_PLACER, 200.0,
        {"lut": 83640, "ff": 83640, "bram": 208, "dsp": 156}, 18432,
        "DP16KD (EBR)", "MULT18X18D", "LUT4 (TRELLIS_COMB)"),
    "ecp5-25k": Target(
        "ecp5-25k", "ecp5", "LFE5U-25F CABGA381", "synth_ecp5", "nextpnr-ecp5",
        ("--25k", "--package", "CABGA381") + ECP5_PLACER, 200.0,
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
