"""The nextpnr step: timing-driven place and route, and its failures made readable."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import _RESOURCE_NAMES, ResourceOverflowError, SynthError
from .report import _critical_path
from .targets import _PNR_RESOURCE, TARGETS, Target
from .tools import _run, find_tool


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
    out = read_pnr_report(wd / f"pnr_report{tag}.json", mhz)
    out.update(seed=seed, seconds=dt)
    return out


def read_pnr_report(path: str | Path, clock_mhz: float) -> dict[str, Any]:
    """Fmax, whether ``clock_mhz`` was met, the critical path and the utilisation from a
    nextpnr ``--report`` JSON (also used to reuse a kept seed run without re-routing)."""
    path = Path(path)
    rep = json.loads(path.read_text())
    util = {k: {"used": int(v["used"]), "available": int(v["available"])}
            for k, v in rep.get("utilization", {}).items() if v.get("used")}
    clocks = rep.get("fmax", {})
    if not clocks:
        raise SynthError(f"nextpnr reported no clock (see {path})")
    # the design has one clock; take the slowest if the tool reports more than one net
    _, fm = min(clocks.items(), key=lambda kv: kv[1]["achieved"])
    fmax = float(fm["achieved"])
    return {"fmax_mhz": fmax, "clock_mhz": float(clock_mhz), "timing_met": fmax >= clock_mhz,
            "critical_path": _critical_path(rep), "utilization": util}


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
