"""The TNA program through the Tofino back end of p4c (``bf-p4c``): compile a config for
Tofino 1 or 2, read what the compiler placed (stages, SRAM/TCAM/map RAM blocks, hash bits
and units, PHV containers) from its resource logs, and find the largest ConnTable that
still places (``l4lb p4-report``; docs/p4.md, "Tofino resources").

The numbers come from the compiler's own outputs in ``<out>/pipe/logs`` (written with
``-g``): ``metrics.json`` (totals: SRAM/TCAM/map RAM blocks, logical tables, crossbar and
action-bus bytes, latency, PHV) and ``resources.json`` (per stage: the stages holding a
logical table, hash bits, hash distribution units, gateways), as p4c 1.2.5's Tofino back
end (compiler 9.13.4) writes them. bf-p4c is not on
PyPI; :func:`unavailable` says so when it is missing.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from codegen.p4 import render_tna
from model.config import Config

__all__ = ["TARGETS", "TofinoResult", "unavailable", "compile_tna", "read_resources",
           "with_geometry", "largest_conn_table"]

#: bf-p4c target -> (architecture, __TARGET_TOFINO__)
TARGETS = {"tofino": ("tna", 1), "tofino2": ("t2na", 2)}


def unavailable() -> str | None:
    """Why bf-p4c cannot run here, or None."""
    if shutil.which("bf-p4c") is None:
        return "bf-p4c not on PATH (the Tofino back end of p4c is not on PyPI)"
    return None


@dataclass
class TofinoResult:
    """One bf-p4c run: whether it produced a binary, its log, and what it placed."""

    target: str
    ok: bool
    outdir: Path
    log: str
    seconds: float
    resources: dict = field(default_factory=dict)

    @property
    def error(self) -> str:
        """The compiler's first error line (empty when it compiled)."""
        lines = self.log.strip().splitlines()
        errors = [ln.strip() for ln in lines if "error" in ln.lower()
                  and not re.search(r"\d+ errors?, \d+ warnings? generated", ln)]
        if errors:
            return errors[0]
        return lines[-1] if lines and not self.ok else ""


def compile_tna(cfg: Config, outdir: str | Path, target: str = "tofino",
                timeout: float = 3600) -> TofinoResult:
    """``bf-p4c --target T --arch A -D__TARGET_TOFINO__=N -g`` on the config's TNA
    program; ``ok`` when the assembler wrote the binary. Raises
    :class:`~model.lifecycle.LifecycleUnsupported` for a config with SYN
    authentication on Tofino 1 (:func:`codegen.p4_tna_auth.tna_auth_unsupported`)."""
    import time

    from codegen.p4_tna_auth import tna_auth_unsupported
    from model.lifecycle import LifecycleUnsupported

    why = tna_auth_unsupported(cfg, target)
    if why is not None:
        raise LifecycleUnsupported(why)
    arch, n = TARGETS[target]
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    src = out / "l4lb_tna.p4"
    src.write_text(render_tna(cfg))
    t0 = time.perf_counter()
    r = subprocess.run(["bf-p4c", "--target", target, "--arch", arch,
                        f"-D__TARGET_TOFINO__={n}", "-g", "-o", str(out / "build"), str(src)],
                       capture_output=True, text=True, timeout=timeout)
    log = r.stdout + r.stderr
    (out / "bf-p4c.log").write_text(log)
    binary = list((out / "build").rglob("*.bin"))
    res = TofinoResult(target, r.returncode == 0 and bool(binary), out, log,
                       time.perf_counter() - t0)
    if res.ok:
        res.resources = read_resources(out / "build")
    return res


def _find(root: Path, name: str) -> Path | None:
    hits = sorted(root.rglob(name))
    return hits[0] if hits else None


def read_resources(build: str | Path) -> dict:
    """What the compiler placed, from its logs: totals from ``metrics.json``, the stages
    used from ``resources.json`` (or ``context.json``)."""
    build = Path(build)
    out: dict = {}
    metrics = _find(build, "metrics.json")
    if metrics is not None:
        m = json.loads(metrics.read_text())
        mau = m.get("mau", {})
        for k in ("srams", "tcams", "map_rams", "logical_tables", "action_bus_bytes",
                  "exact_crossbar_bytes", "ternary_crossbar_bytes"):
            if k in mau:
                out[k] = mau[k]
        for lat in mau.get("latency", []):
            out[f"{lat['gress']}_latency_cycles"] = lat["cycles"]
        phv = m.get("phv", {})
        for kind in ("normal", "mocha", "dark", "tagalong"):
            used = phv.get(kind)
            if used:
                out[f"phv_{kind}_bits"] = sum(x.get("bits_occupied", 0) for x in used)
                out[f"phv_{kind}_containers"] = sum(x.get("containers_occupied", 0)
                                                    for x in used)
    ctx = _find(build, "context.json")
    if ctx is not None:
        c = json.loads(ctx.read_text())
        stages = set()
        for t in c.get("tables", []):
            for s in t.get("stage_tables", []) or []:
                if "stage_number" in s:
                    stages.add(s["stage_number"])
        if stages:
            out["stages"] = max(stages) + 1
    res = _find(build, "resources.json")
    if res is not None:
        mau = json.loads(res.read_text()).get("resources", {}).get("mau", {})
        stages = mau.get("mau_stages", [])
        used = [st["stage_number"] for st in stages
                if st.get("logical_tables", {}).get("ids")]
        if used:
            out["stages"] = max(used) + 1
        if "nStages" in mau:
            out["stages_available"] = mau["nStages"]
        for key, part, items in (("hash_bits", "hash_bits", "bits"),
                                 ("hash_distribution_units", "hash_distribution_units",
                                  "units"),
                                 ("gateways", "gateways", "gateways")):
            out[key] = sum(len(st.get(part, {}).get(items, []) or []) for st in stages)
    return out


def with_geometry(cfg: Config, **geometry) -> Config:
    """``cfg`` with some geometry fields replaced (VIPs and salts kept)."""
    return dataclasses.replace(cfg, geometry=dataclasses.replace(cfg.geometry, **geometry))


def largest_conn_table(cfg: Config, target: str = "tofino", lo: int = 10, hi: int = 22,
                       stages: int | None = None, workdir: str | Path | None = None,
                       progress=print) -> tuple[int, TofinoResult | None, TofinoResult | None]:
    """The largest ``log2_slots`` in ``[lo, hi]`` whose program places (binary search;
    placement is monotone in the table size). Returns it with the result of that size
    and of the next one up (its error is the evidence)."""
    base = Path(workdir or tempfile.mkdtemp(prefix="l4lb-tofino-"))
    g = {"stages": stages} if stages else {}
    best, best_res, fail_res = lo - 1, None, None
    while lo <= hi:
        mid = (lo + hi) // 2
        res = compile_tna(with_geometry(cfg, log2_slots=mid, **g),
                          base / f"{target}-s{stages or cfg.geometry.stages}-k{mid}", target)
        progress(f"  {target}: {stages or cfg.geometry.stages} x 2^{mid} words: "
                 f"{'places' if res.ok else 'does not place'} ({res.seconds:.0f} s)"
                 + ("" if res.ok else f": {res.error[:160]}"))
        if res.ok:
            best, best_res, lo = mid, res, mid + 1
        else:
            fail_res, hi = res, mid - 1
    return best, best_res, fail_res



# ---- l4lb p4-report ------------------------------------------------------------------

_ROWS = (("stages", "MAU stages"), ("stages_available", "MAU stages available"),
         ("srams", "SRAM blocks"), ("map_rams", "map RAM blocks"),
         ("tcams", "TCAM blocks"), ("logical_tables", "logical tables"),
         ("hash_bits", "hash bits"), ("hash_distribution_units", "hash distribution units"),
         ("gateways", "gateway rows"),
         ("exact_crossbar_bytes", "exact-match crossbar bytes"),
         ("action_bus_bytes", "action data bus bytes"),
         ("phv_normal_containers", "PHV containers"), ("phv_normal_bits", "PHV bits"),
         ("ingress_latency_cycles", "ingress latency (cycles)"))


def format_report(results: list[TofinoResult]) -> str:
    """A Markdown table of what each compile placed (one column per target)."""
    head = "| resource | " + " | ".join(r.target for r in results) + " |"
    lines = [head, "|---|" + "---:|" * len(results)]
    for key, label in _ROWS:
        if any(key in r.resources for r in results):
            lines.append(f"| {label} | " + " | ".join(
                f"{r.resources[key]:,}" if key in r.resources else "" for r in results) + " |")
    return "\n".join(lines)


def add_arguments(p) -> None:
    p.add_argument("config", help="TOML config file")
    p.add_argument("--target", choices=sorted(TARGETS), action="append",
                   help="bf-p4c target (repeatable; default: tofino)")
    p.add_argument("--keep", help="keep the compiler's outputs in this directory")
    p.add_argument("--largest", action="store_true",
                   help="also search the largest log2_slots that still places")


def cli_p4_report(a) -> int:
    """``l4lb p4-report``: compile the TNA program and print what it uses."""
    import sys

    from model.config import load_config

    why = unavailable()
    if why:
        print(f"l4lb p4-report: {why}", file=sys.stderr)
        return 2
    cfg = load_config(a.config)
    from codegen.p4 import P4GenError, render_tna
    from codegen.p4_tna_auth import tna_auth_unsupported
    from model.lifecycle import LifecycleUnsupported

    try:
        render_tna(cfg)
        for target in a.target or ["tofino"]:
            why = tna_auth_unsupported(cfg, target)
            if why is not None:
                raise LifecycleUnsupported(why)
    except (P4GenError, LifecycleUnsupported) as e:
        print(f"l4lb p4-report: no TNA program for this config: {e}", file=sys.stderr)
        return 2
    work = Path(a.keep or tempfile.mkdtemp(prefix="l4lb-p4-report-"))
    results = []
    for target in a.target or ["tofino"]:
        print(f"bf-p4c --target {target}: {cfg.name} ...", file=sys.stderr)
        res = compile_tna(cfg, work / target, target)
        print(f"  {'compiled' if res.ok else 'failed'} in {res.seconds:.0f} s "
              f"(log: {res.outdir / 'bf-p4c.log'})", file=sys.stderr)
        if not res.ok:
            print(res.log[-3000:], file=sys.stderr)
            return 1
        results.append(res)
    print(f"config {cfg.name}: {cfg.geometry.stages} ConnTable stages x "
          f"{cfg.geometry.slots} words")
    print(format_report(results))
    if a.largest:
        for target in a.target or ["tofino"]:
            k, ok, bad = largest_conn_table(cfg, target, workdir=work / "largest",
                                            progress=lambda s: print(s, file=sys.stderr))
            n = cfg.geometry.stages << k
            print(f"{target}: largest ConnTable that places: {cfg.geometry.stages} x 2^{k} "
                  f"= {n:,} connections; 2^{k + 1} fails: {bad.error if bad else 'n/a'}")
    return 0
