"""HLS C++ target: a Vitis-HLS-style kernel of the data plane, and its C simulation.

The output follows hls4ml's layout: a hand-written, config-independent library header
(``l4lb_core.h``, every function templated on a config struct), a generated config
(``l4lb_config.h``: geometry, memory map, word fields, hash roles, all named from the
:class:`~model.config.Config`), the generated top function (``l4lb_kernel.cpp`` with its
pragmas) and a C-simulation testbench (``l4lb_tb.cpp``) that replays a vector directory
of :mod:`model.vectors`. ``run_hls.tcl`` takes the same files into Vitis HLS
(csim, csynth, cosim). See docs/hls.md.

C simulation needs only g++ and Xilinx's ``ap_int.h`` / ``hls_stream.h``, which hls4ml
ships (:func:`hls_include_dir`); :func:`build_csim` and :func:`run_csim` drive it.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from model.config import Config, clog2
from model.hashing import FIELD_ORDERS
from model.layout import memory_specs
from model.lifecycle import AUTH_TAG_BITS
from model.network import PORT_BITS
from model.pipeline import decision_fields
from model.vectors import manifest, vector_format

__all__ = [
    "TEMPLATE_DIR",
    "LIBRARY_FILES",
    "NETWORK_LIBRARY_FILES",
    "DEFAULT_PART",
    "DEFAULT_CLOCK_NS",
    "CXXFLAGS",
    "FILTERED_WARNINGS",
    "CsimError",
    "CsimBuild",
    "CsimResult",
    "hls_context",
    "render_hls",
    "write_hls",
    "hls_include_dir",
    "build_csim",
    "run_csim",
    "csim",
]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates" / "hls"

#: Hand-written library headers, copied verbatim (not templates).
LIBRARY_FILES = ("l4lb_core.h",)

#: Hand-written library headers copied only for a config with a ``[network]`` table.
NETWORK_LIBRARY_FILES = ("l4lb_network.h",)

#: Generated files and the Jinja2 template of each. (``l4lb_kernel.h`` renders to the
#: same text for every config without ``[network]``.)
TEMPLATES = {
    "l4lb_kernel.h": "l4lb_kernel.h.j2",
    "l4lb_config.h": "l4lb_config.h.j2",
    "l4lb_kernel.cpp": "l4lb_kernel.cpp.j2",
    "l4lb_tb.cpp": "l4lb_tb.cpp.j2",
    "run_hls.tcl": "run_hls.tcl.j2",
}

#: Sources of the C-simulation binary (the kernel and its testbench).
CSIM_SOURCES = ("l4lb_kernel.cpp", "l4lb_tb.cpp")

#: Default Vitis HLS target of run_hls.tcl (an Alveo U250 part) and clock period.
DEFAULT_PART = "xcu250-figd2104-2L-e"
DEFAULT_CLOCK_NS = 4.0

#: g++ flags of the C simulation (plus ``-I<ap_types>``).
CXXFLAGS = ("-std=c++14", "-Wall", "-O2")

#: Key field name (model.hashing.FIELDS) -> enumerator of l4lb_core.h.
_FIELD_ENUM = {"src_ip": "l4lb::SRC_IP", "dst_ip": "l4lb::DST_IP", "src_port": "l4lb::SRC_PORT",
               "dst_port": "l4lb::DST_PORT", "proto": "l4lb::PROTO"}

#: How each kind of memory is stored: (partition its first dimension completely,
#: BIND_STORAGE (type, impl) or None, the reason, which the kernel prints above it).
#: A kind with several instances (conn<i>, transit<j>) is one 2-D array whose first
#: dimension is the instance. Every RAM is simple dual-port: port 1 reads for packets,
#: port 2 takes the writes.
_STORAGE = {
    "conn": (True, ("ram_s2p", "bram"),
             "one BRAM per stage (partitioned), all stages read in the same cycle"),
    "vip": (True, None,
            "registers (partitioned, so no BIND_STORAGE): a CAM whose entries are all "
            "compared at once"),
    "vip_state": (False, ("ram_s2p", "lutram"),
                  "one read per packet: not partitioned; distributed RAM, as vip_capacity "
                  "words are too few for a BRAM"),
    "slot_map": (False, ("ram_s2p", "bram"), "one read per packet: not partitioned"),
    "maglev": (False, ("ram_s2p", "bram"), "one read per packet: not partitioned"),
    "dip": (False, ("ram_s2p", "bram"), "one read per packet: not partitioned"),
    "transit": (True, ("ram_s2p", "bram"),
                "one BRAM per Bloom hash (partitioned), all tested (FLIP) or set (RECORD) "
                "in the same cycle"),
    # the connection lifecycle (lifecycle configs only)
    "act": (True, ("ram_2p", "bram"),
            "activity bits, one BRAM per stage (partitioned): a hit sets its bit, the "
            "control plane reads and clears"),
    "vip_auth": (False, ("ram_s2p", "lutram"), "one read per TCP miss: not partitioned"),
    "auth": (True, ("ram_2p", "bram"),
             "verified sources, one BRAM per way (partitioned), both read per TCP miss; "
             "a verification or a verified SYN writes one"),
    "auth_key": (True, None, "two 64-bit keys in registers (partitioned)"),
    "auth_epoch": (True, None, "one bit in a register"),
    # the [network] table (network configs only)
    "rev": (True, None,
            "the return path, registers (partitioned, so no BIND_STORAGE): a CAM whose "
            "dip_capacity words are all compared with the packet's source at once"),
    "route": (True, None,
              "next-hop routes, registers (partitioned): every prefix compared with the "
              "destination at once, the longest (lowest index on a tie) chosen by a tree"),
    "port_mac": (False, ("ram_s2p", "lutram"),
                 "source MACs of the ports: written by the control plane, read by the "
                 "deparser outside the kernel, not by the decision"),
}


# ---- context ------------------------------------------------------------------------

def _kind(name: str) -> str:
    """Memory kind of a memory name: conn3 -> conn, transit0 -> transit."""
    return re.sub(r"\d+$", "", name)


def _role(salt: int, role: str) -> dict:
    return {"role": role, "salt": f"0x{salt:08x}u",
            "fields": [_FIELD_ENUM[f] for f in FIELD_ORDERS[role]]}


def hls_context(cfg: Config, *, part: str = DEFAULT_PART,
                clock_ns: float = DEFAULT_CLOCK_NS) -> dict:
    """Everything the templates read, derived from ``cfg`` and the model's memory map.

    ``kinds`` groups the memories of :func:`model.layout.memory_specs` by kind (conn<i>
    and transit<j> are one kind each, one C++ array); ``mems`` lists every memory in
    write-port id order. ``net`` is None without a ``[network]`` table, else the
    route memory's geometry (the kernel then implements the return path and
    forwarding, l4lb_network.h).
    """
    lc = cfg.lifecycle
    g, s = cfg.geometry, cfg.salts
    specs = memory_specs(g, cfg.lifecycle, cfg.network)
    mem_fields = {m["name"]: m["fields"] for m in manifest(cfg)["memories"]}
    count_names = {"conn": "n_stages", "transit": "transit_hashes", "act": "n_stages",
                   "auth": "auth_ways"}
    kinds: dict[str, dict] = {}
    for mem_id, spec in enumerate(specs):
        k = _kind(spec.name)
        if k in kinds:
            first = kinds[k]
            if (spec.width, spec.depth) != (first["width"], first["depth"]):
                raise ValueError(f"memory {spec.name}: {spec.width}x{spec.depth} differs from "
                                 f"{first['first']}")
            first["label"] = f"{k}0..{spec.name}"
            continue
        partition, storage, why = _STORAGE[k]
        kinds[k] = {
            "kind": k, "first": spec.name, "label": spec.name, "id": mem_id,
            "id_name": f"mem_{spec.name}", "count_name": count_names.get(k),
            "width": spec.width, "depth": spec.depth,
            "fields": [{"name": n, "lsb": lsb, "bits": bits}
                       for n, lsb, bits in mem_fields[spec.name]],
            "partition": partition, "storage": storage, "why": why,
        }
    mems = [{"name": spec.name, "kind": _kind(spec.name),
             "index": int(spec.name[len(_kind(spec.name)):] or -1),
             "counted": _kind(spec.name) in count_names} for spec in specs]
    roles = {
        "stage": [_role(s.stages[i], f"stage{i}") for i in range(g.stages)],
        "digest": _role(s.digest, "digest"),
        "maglev": _role(s.maglev, "maglev"),
        "transit": [_role(s.transit[j], f"transit{j}") for j in range(g.transit_hashes)],
    }
    return {
        "name": cfg.name,
        "source": Path(cfg.source).name if cfg.source != "<string>" else cfg.source,
        "geo": g,
        "stage_bits": clog2(g.stages),
        "slot_map_addr_bits": g.vip_bits + g.version_bits,
        "kinds": list(kinds.values()),
        "mems": mems,
        "mem_id_bits": clog2(len(specs)),
        "wr_addr_bits": max(spec.addr_bits for spec in specs),
        "wr_data_bits": max(spec.width for spec in specs),
        "roles": roles,
        "auth_tag_bits": AUTH_TAG_BITS,
        "auth_salts": [f"0x{x:08x}u" for x in s.auth],
        "decision_fields": list(decision_fields(cfg)),
        "lc": lc,
        "net": _network_context(cfg),
        "vectors_format": vector_format(cfg),
        "part": part,
        "clock_ns": clock_ns,
    }


def _network_context(cfg: Config) -> dict | None:
    net = cfg.network
    if not net.enabled:
        return None
    return {"ports": len(net.ports), "routes": len(net.routes),
            "route_capacity": net.route_capacity,
            "route_index_bits": clog2(net.route_capacity), "port_bits": PORT_BITS}


# ---- rendering ----------------------------------------------------------------------

def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_hls(cfg: Config, *, part: str = DEFAULT_PART,
               clock_ns: float = DEFAULT_CLOCK_NS) -> dict[str, str]:
    """All HLS files of ``cfg``: file name -> text (library headers included)."""
    ctx = hls_context(cfg, part=part, clock_ns=clock_ns)
    env = _environment()
    library = LIBRARY_FILES + (NETWORK_LIBRARY_FILES if ctx["net"] else ())
    out = {name: (TEMPLATE_DIR / name).read_text() for name in library}
    for name, template in TEMPLATES.items():
        out[name] = env.get_template(template).render(ctx)
    return out


def write_hls(cfg: Config, outdir: str | Path, **kwargs) -> list[Path]:
    """Write :func:`render_hls` into ``outdir`` (created); returns the paths written."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in render_hls(cfg, **kwargs).items():
        p = out / name
        p.write_text(text)
        paths.append(p)
    return paths


# ---- C simulation -------------------------------------------------------------------

def hls_include_dir() -> Path | None:
    """The directory holding Xilinx's ``ap_int.h`` and ``hls_stream.h``.

    hls4ml's copy (``hls4ml/templates/vivado/ap_types``), located with
    :func:`importlib.util.find_spec` so that hls4ml itself is not imported; failing
    that, a Vitis installation's ``$XILINX_HLS/include``. ``None`` if neither exists.
    """
    candidates = []
    try:
        spec = importlib.util.find_spec("hls4ml")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "templates" / "vivado" / "ap_types"
                       for p in spec.submodule_search_locations]
    if os.environ.get("XILINX_HLS"):
        candidates.append(Path(os.environ["XILINX_HLS"]) / "include")
    for c in candidates:
        if (c / "ap_int.h").is_file() and (c / "hls_stream.h").is_file():
            return c
    return None


class CsimError(RuntimeError):
    """The C simulation could not be built or run (not a mismatch: see CsimResult)."""


@dataclass
class CsimBuild:
    """A compiled csim binary and the compiler's warnings, sorted by origin.

    ``warnings`` are in the generated sources (a failure for the tests);
    ``header_warnings`` are in the Xilinx headers but of no known kind (also reported as
    failures by the tests, so that a new kind is looked at); ``filtered`` counts the
    known, justified warnings of each kind of :data:`FILTERED_WARNINGS`.
    """

    exe: Path
    command: list[str]
    warnings: list[str] = field(default_factory=list)
    header_warnings: list[str] = field(default_factory=list)
    filtered: Counter[str] = field(default_factory=Counter)


@dataclass
class CsimResult:
    """Outcome of one csim run over a vector directory."""

    returncode: int
    packets: int | None
    mismatches: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.mismatches == 0


#: The warnings a ``-Wall`` g++ build of correct HLS C++ gives, and why each is expected.
FILTERED_WARNINGS = {
    # Generated sources: HLS syntax that g++ does not know.
    "hls-pragma": "'#pragma HLS ...' is a directive for the HLS tool; g++ ignores it "
                  "(-Wunknown-pragmas). Any other unknown pragma is still reported.",
    "hls-loop-label": "loop labels name loops in HLS reports and directives (hls4ml style); "
                      "no goto uses them (-Wunused-label)",
    # Xilinx headers (ap_private.h), whatever the code that instantiates them.
    "xilinx-int-in-bool-context": "ap_private.h tests enum constants such as excess_bits "
                                  "in ?: conditions (-Wint-in-bool-context)",
    "xilinx-clear-unused-bits": "ap_private::clearUnusedBits() re-normalises the word it "
                                "belongs to, also from the default constructor, which has "
                                "not set it yet (-Wmaybe-uninitialized / -Wuninitialized)",
}

_WARNING = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+)(?::\d+)?: warning: (?P<msg>.*)$")
_NOTE = re.compile(r"^[^:\s][^:]*:\d+(?::\d+)?: note: |^\s+\d* *\|")
_HLS_PRAGMA = re.compile(r"^ignoring '#pragma HLS [^']*' \[-Wunknown-pragmas\]$")
_UNUSED_LABEL = re.compile(r"^label '\w+' defined but not used \[-Wunused-label\]$")
_UNINITIALIZED = re.compile(r"\[-W(maybe-)?uninitialized\]$")
_SUMMARY = re.compile(r"^csim: (\d+) packets, (\d+) mismatches$", re.MULTILINE)


def _classify(stderr: str, srcdir: Path, incdir: Path, build: CsimBuild) -> None:
    """Sort g++'s warnings into ``build`` (see :class:`CsimBuild`)."""
    context: list[str] = []  # the "In function ... / inlined from ..." lines of a warning
    for line in stderr.splitlines():
        m = _WARNING.match(line)
        if m is None:
            if not _NOTE.match(line):
                context.append(line)
            continue
        path = (srcdir / m["file"]).resolve()
        msg = m["msg"]
        if path.is_relative_to(incdir):
            if msg.endswith("[-Wint-in-bool-context]"):
                build.filtered["xilinx-int-in-bool-context"] += 1
            elif _UNINITIALIZED.search(msg) and any("clearUnusedBits" in c for c in context):
                build.filtered["xilinx-clear-unused-bits"] += 1
            else:
                build.header_warnings.append(line)
        elif _HLS_PRAGMA.match(msg):
            build.filtered["hls-pragma"] += 1
        elif _UNUSED_LABEL.match(msg):
            build.filtered["hls-loop-label"] += 1
        else:
            build.warnings.append(line)
        context = []


def build_csim(srcdir: str | Path, exe: str | Path | None = None, *,
               include_dir: str | Path | None = None, cxx: str = "g++") -> CsimBuild:
    """Compile the kernel and testbench in ``srcdir`` (from :func:`write_hls`) with
    ``g++ -std=c++14 -Wall -O2 -I<ap_types>``. Raises :class:`CsimError` when the
    compiler or the headers are missing or the build fails."""
    src = Path(srcdir).resolve()
    inc = Path(include_dir) if include_dir is not None else hls_include_dir()
    if inc is None:
        raise CsimError("ap_int.h/hls_stream.h not found: install hls4ml (pip install "
                        "'l4lb[hls]') or set XILINX_HLS")
    if shutil.which(cxx) is None:
        raise CsimError(f"C++ compiler {cxx!r} not found on PATH")
    out = Path(exe).resolve() if exe is not None else src / "l4lb_csim"
    cmd = [cxx, *CXXFLAGS, f"-I{inc}", *CSIM_SOURCES, "-o", str(out)]
    # LC_ALL=C: plain ASCII quotes in diagnostics, so that they can be classified.
    env = {**os.environ, "LC_ALL": "C"}
    proc = subprocess.run(cmd, cwd=src, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise CsimError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr}")
    build = CsimBuild(exe=out, command=cmd)
    _classify(proc.stderr, src, inc.resolve(), build)
    return build


def run_csim(exe: str | Path, vecdir: str | Path, timeout: float = 600) -> CsimResult:
    """Run a csim binary on a vector directory and parse its summary line."""
    proc = subprocess.run([str(exe), str(vecdir)], capture_output=True, text=True,
                          timeout=timeout)
    output = proc.stdout + proc.stderr
    m = _SUMMARY.search(proc.stdout)
    packets, mismatches = (int(m[1]), int(m[2])) if m else (None, None)
    return CsimResult(proc.returncode, packets, mismatches, output)


def csim(cfg: Config, vecdir: str | Path, workdir: str | Path) -> tuple[CsimBuild, CsimResult]:
    """Generate ``cfg``'s kernel into ``workdir``, build it and run it on ``vecdir``."""
    write_hls(cfg, workdir)
    build = build_csim(workdir)
    return build, run_csim(build.exe, vecdir)
