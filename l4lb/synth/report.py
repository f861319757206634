"""The synthesis report: resources, Fmax, throughput and the critical path."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .targets import TARGETS, WIRE_BITS_PER_PACKET
from .verilog import MemoryInfo


@dataclass
class SynthReport:
    """Resources, Fmax and throughput of one synthesis run (JSON via :meth:`to_dict`).

    ``frames`` is the beat width in bytes when the run was the frame datapath
    (``l4lb_datapath``), None for the core; ``packets_per_cycle`` is then the number of
    64-byte frames per clock at one beat per clock (``min(1, W / 64)``).
    """

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
    packets_per_cycle: float = 1
    latency_cycles: int | None = None
    hash_stages: int | None = None
    lutram: int = 0
    frames: int | None = None
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

        what = (f"frame datapath {self.top!r}, {self.frames}-byte beats" if self.frames
                else f"module {self.top!r}")
        lines = [f"l4lb synth: config {self.config!r} on {self.target} ({self.device}), "
                 f"{what}"]
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
                f"({self.packets_per_cycle:g} {'64 B frame' if self.frames else 'packet'}"
                f"/cycle x Fmax)",
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
