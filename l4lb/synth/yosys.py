"""The yosys step: the synthesis script, the cell counts, and where memories landed.

:func:`_yosys_script` writes ``synth.ys``; :func:`_count` turns yosys's
``num_cells_by_type`` into the report's resource classes; :func:`_apply_mapping` reads
the ``memory_libmap`` / ``memory_map`` messages of the log into :class:`MemoryInfo`.
"""

from __future__ import annotations

import re

from .shim import SHIM_TOP
from .targets import Target
from .verilog import MemoryInfo


def _yosys_script(t: Target, files: list[str], top: str, core_path: str = "core",
                  keep: tuple[str, ...] = ()) -> str:
    """``synth.ys`` for module ``top`` inside the shim; ``core_path`` is the L4LBCore's
    instance path below ``top`` (``core`` in ``l4lb_core``, ``datapath.core`` in
    ``l4lb_datapath``), whose hash networks are kept modules of their own, as are the
    modules named in ``keep`` (the queues and the rewriter,
    :func:`~l4lb.synth.verilog.kept_modules`)."""
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
        f"setattr -mod -set keep_hierarchy 1 {top}.{core_path}.hash.*",
        # the queues and the rewriter too: flattened, abc maps their handshakes for the
        # depth of the design's longest paths, and chains three LUTs where one or two do
        *([f"setattr -mod -set keep_hierarchy 1 {' '.join(keep)}"] if keep else []),
        f"{synth} -top {SHIM_TOP} -run :{label}",
        # hdl.fifo.BlockRamFifo never uses a ring word read in the cycle it is written,
        # so such a collision may give any value: no bypass logic behind the block RAM
        "setparam -set RD_COLLISION_X_MASK 1'1 */*ring_c*",
        "tee -q -o pre_map_stat.json stat -json",
        f"{synth} -top {SHIM_TOP} -run {label}:{json_out}",
        "tee -q -o stat.json stat -json",
    ]) + "\n"


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
