"""The whole flow: Verilog -> rewrite + shim -> yosys -> checks -> nextpnr -> report."""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

from ..bram_outreg import absorb_bram_output_registers
from .errors import MemoryMappingError, ResourceOverflowError, SynthError
from .nextpnr import _place_and_route
from .report import SynthReport, _save
from .shim import _vid, make_shim
from .targets import (
    DATAPATH_ROLES,
    FF_MEMORY_LIMIT_BITS,
    TABLE_ROLES,
    TARGETS,
    Target,
    _blocks,
    bram_lower_bound,
    precheck_config,
)
from .tools import _run, find_tool
from .verilog import parse_memories, parse_ports, rewrite_verilog
from .yosys import _NOMAP_RE, _apply_mapping, _count, _yosys_script

_ELAB_LOCK = threading.Lock()


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
