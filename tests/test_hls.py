"""HLS C++ target: generate, compile with g++ against Xilinx's ap_types headers and run
the C simulation on the model's vectors; every decision must match (docs/hls.md)."""

import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from codegen.hls import (
    FILTERED_WARNINGS,
    build_csim,
    hls_include_dir,
    render_hls,
    run_csim,
    write_hls,
)
from model.config import load_config
from model.layout import Action, Read, pack_slot
from model.pipeline import DataPlane, Packet
from model.vectors import Scenario, Step, Write, build_scenario, load_memories, write_vectors

from .conftest import EXAMPLES

needs_csim = pytest.mark.skipif(
    shutil.which("g++") is None or hls_include_dir() is None,
    reason="C simulation needs g++ and Xilinx's ap_int.h/hls_stream.h (pip install hls4ml)",
)

FULL_KEY_TOML = """\
name = "fullkey"

[geometry]
stages = 3
log2_slots = 7
digest_bits = "full"
version_bits = 5
maglev_size = 127
pool_slots = 4
vip_capacity = 4
dip_capacity = 16
transit_log2_bits = 8
transit_hashes = 4

[[vip]]
name = "web"
address = "10.9.0.1"
port = 80
protocol = "tcp"
dips = [{ address = "10.20.0.1" }, { address = "10.20.0.2" }, { address = "10.20.0.3" }]

[[vip]]
name = "dns"
address = "10.9.0.53"
port = 53
protocol = "udp"
dips = [{ address = "10.20.1.1" }, { address = "10.20.1.2" }]
"""

CONFIGS = ("default", "small", "fullkey", "lifecycle")


def _config_path(name, tmp_dir):
    if name == "fullkey":
        path = tmp_dir / "fullkey.toml"
        path.write_text(FULL_KEY_TOML)
        return path
    return EXAMPLES / f"{name}.toml"


def _load(name, tmp_dir):
    """``lifecycle``: the small config with the whole connection lifecycle that
    tests/test_lifecycle.py and the BMv2 tests use (aging, FIN grace, SYN authentication
    with a 16-entry verified-source table, short epochs)."""
    if name == "lifecycle":
        from .test_lifecycle import LC, _cfg
        return _cfg(LC)
    return load_config(_config_path(name, tmp_dir))


def _with_drops(scen: Scenario) -> Scenario:
    """The scenario, then: VIP 0 loses its live pool slots (slot_map writes) and a few
    of its packets follow, which the model drops (build_scenario never drops)."""
    cfg = scen.cfg
    g = cfg.geometry
    mem = load_memories(cfg, scen.initial)
    dp = DataPlane(cfg, mem)
    for op in scen.ops:  # the model's state at the end of the scenario
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
        elif isinstance(op, Step):
            dp.process(op.packet)
    v = cfg.vips[0]
    mine = [op for op in scen.packets if op.packet.dst_ip == v.address
            and op.packet.dst_port == v.port and op.packet.proto == v.protocol]
    # packets of established connections (hits), which a lifecycle config's SYN
    # authentication does not intercept
    old = [op.packet for op in mine if op.decision.hit][-3:] or \
        [op.packet for op in mine][-3:]
    new = [Packet(0x0A7F0000 + i, v.address, 50000 + i, v.port, v.protocol) for i in range(2)]
    ops = list(scen.ops)
    for version in range(1 << g.version_bits):
        w = Write("slot_map", version, pack_slot(g, False, 0))  # vip_id 0: addr = version
        mem.write(w.mem, w.addr, w.word)
        ops.append(w)
    for pkt in old + new:
        ops.append(Step(pkt, dp.process(pkt)))
    return Scenario(cfg, scen.initial, ops)


def prepare_csim(cfg, scen, work) -> dict:
    """Vectors of ``scen``, generated sources and the compiled csim binary of ``cfg``
    in ``work``."""
    vecdir = work / "vectors"
    write_vectors(scen, vecdir)
    srcdir = work / "hls"
    write_hls(cfg, srcdir)
    return {"cfg": cfg, "scen": scen, "vectors": vecdir, "src": srcdir,
            "build": build_csim(srcdir)}


def prepare_all(names, root, prepare) -> dict:
    """``prepare(name, root / name)`` for every config, concurrently (g++ dominates)."""
    def one(name):
        work = root / name
        work.mkdir()
        return prepare(name, work)

    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {name: pool.submit(one, name) for name in names}
        return {name: f.result() for name, f in futures.items()}


def _prepare(name, work):
    cfg = _load(name, work)
    return prepare_csim(cfg, _with_drops(build_scenario(cfg)), work)


@pytest.fixture(scope="module")
def csim_runs(tmp_path_factory):
    """All configs generated and compiled once."""
    return prepare_all(CONFIGS, tmp_path_factory.mktemp("hls"), _prepare)


# ---- rendering (no compiler needed) ---------------------------------------------------

def test_render_names_every_file(default_cfg):
    files = render_hls(default_cfg)
    assert set(files) == {"l4lb_core.h", "l4lb_kernel.h", "l4lb_config.h", "l4lb_kernel.cpp",
                          "l4lb_tb.cpp", "run_hls.tcl"}
    for name, text in files.items():
        assert "{{" not in text and "{%" not in text, name
        assert text.endswith("\n") and "\t" not in text, name
        assert all(len(line) <= 100 for line in text.splitlines()), name


def test_config_constants_come_from_the_config(small_cfg):
    cfg_h = render_hls(small_cfg)["l4lb_config.h"]
    g = small_cfg.geometry
    for name, value in [("n_stages", g.stages), ("log2_slots", g.log2_slots),
                        ("digest_bits", g.digest_bits), ("maglev_size", g.maglev_size),
                        ("transit_hashes", g.transit_hashes), ("mem_vip", g.stages),
                        ("conn_width", g.conn_word_bits), ("maglev_depth", g.maglev_depth)]:
        assert f"static const unsigned {name} = {value};" in cfg_h
    assert "static const bool maglev_pow2 = false;" in cfg_h  # 251 is prime
    assert f"{small_cfg.salts.stages[1]:#010x}u" in cfg_h
    # model.hashing.FIELD_ORDERS["stage1"] = (dst_port, src_ip, proto, src_port, dst_ip)
    assert ("{l4lb::DST_PORT, l4lb::SRC_IP, l4lb::PROTO, l4lb::SRC_PORT, l4lb::DST_IP}"
            in cfg_h)
    assert cfg_h.count("// transit") == g.transit_hashes


def test_full_key_digest_is_the_packed_key(tmp_path):
    cfg = load_config(_config_path("fullkey", tmp_path))
    files = render_hls(cfg)
    assert "digest_role" not in files["l4lb_kernel.cpp"]
    assert "l4lb::pack_key(key)" in files["l4lb_kernel.cpp"]
    assert "static const unsigned digest_bits = 104;" in files["l4lb_config.h"]
    assert "static const unsigned wr_data_bits = 110;" in files["l4lb_config.h"]  # 1+5+104


def test_write_hls_writes_what_render_returns(default_cfg, tmp_path):
    paths = write_hls(default_cfg, tmp_path / "out")
    rendered = render_hls(default_cfg)
    assert {p.name for p in paths} == set(rendered)
    for p in paths:
        assert p.read_text() == rendered[p.name]


def test_include_dir_is_found_without_importing_hls4ml():
    before = "hls4ml" in sys.modules
    inc = hls_include_dir()
    if inc is None:
        pytest.skip("hls4ml is not installed and XILINX_HLS is not set")
    assert (inc / "ap_int.h").is_file() and (inc / "hls_stream.h").is_file()
    assert ("hls4ml" in sys.modules) == before


# ---- C simulation -----------------------------------------------------------------------

@needs_csim
@pytest.mark.parametrize("name", CONFIGS)
def test_csim_compiles_clean(csim_runs, name):
    build = csim_runs[name]["build"]
    assert build.warnings == [], "warnings in the generated code"
    assert build.header_warnings == [], "new kind of warning in the Xilinx headers"
    assert set(build.filtered) <= set(FILTERED_WARNINGS)
    assert "-Wall" in build.command


@needs_csim
def test_warnings_in_generated_code_are_reported(csim_runs, tmp_path):
    src = tmp_path / "hls"
    shutil.copytree(csim_runs["small"]["src"], src)
    kernel = src / "l4lb_kernel.cpp"
    kernel.write_text(kernel.read_text() + "\n#pragma HSL PIPELINE\n"
                      "static int probe() {\n    int unused = 0;\n    return 1;\n}\n")
    build = build_csim(src)
    assert any("#pragma HSL" in w for w in build.warnings)  # only HLS pragmas are expected
    assert any("'unused'" in w and "l4lb_kernel.cpp" in w for w in build.warnings)
    assert any("'int probe()' defined but not used" in w for w in build.warnings)
    assert build.header_warnings == []


@needs_csim
@pytest.mark.parametrize("name", CONFIGS)
def test_csim_matches_the_model(csim_runs, name):
    run = csim_runs[name]
    scen = run["scen"]
    result = run_csim(run["build"].exe, run["vectors"])
    assert result.ok, result.output[-3000:]
    assert result.packets == len(scen.packets)
    assert f"csim: {len(scen.packets)} packets, 0 mismatches" in result.output
    # the vectors reach every kind of decision the kernel makes
    decisions = [s.decision for s in scen.packets]
    kinds = {d.action for d in decisions}
    if run["cfg"].lifecycle.auth:
        # (DROP is covered by the other configs: the lifecycle scenario's connections
        # are aged out by its end, so _with_drops' packets meet SYN authentication)
        assert kinds >= {Action.FORWARD, Action.LB, Action.CHALLENGE, Action.VERIFY,
                         Action.UNVERIFIED}
        reads = sum(isinstance(op, Read) for op in scen.ops)
        assert reads > 100 and f"{reads} R lines checked" in result.output
    else:
        assert kinds == {Action.FORWARD, Action.LB, Action.DROP}
    flags = ("hit", "learn", "close") + (() if run["cfg"].lifecycle.enabled
                                         else ("transit_hit",))
    for flag in flags:
        assert any(getattr(d, flag) for d in decisions), flag
    assert any(d.stage > 0 for d in decisions)


@needs_csim
def test_csim_reports_exactly_a_corrupted_expectation(csim_runs, tmp_path):
    run = csim_runs["small"]
    bad = tmp_path / "vectors"
    shutil.copytree(run["vectors"], bad)
    lines = (bad / "vectors.txt").read_text().splitlines()
    # the 100th load-balanced packet: claim the model chose another DIP index
    p_lines = [i for i, line in enumerate(lines) if line.startswith("P ")]
    lb = [n for n, i in enumerate(p_lines) if lines[i].split()[7] == "1"]
    packet = lb[100]
    tok = lines[p_lines[packet]].split()
    got = int(tok[14], 16)  # P + 6 inputs + decision field 7 (dip)
    tok[14] = f"{got ^ 1:x}"
    lines[p_lines[packet]] = " ".join(tok)
    (bad / "vectors.txt").write_text("\n".join(lines) + "\n")

    result = run_csim(run["build"].exe, bad)
    assert result.returncode == 1
    assert (result.packets, result.mismatches) == (len(run["scen"].packets), 1)
    assert f"mismatch in packet {packet} (" in result.output
    assert f"vectors.txt:{p_lines[packet] + 1})" in result.output
    rows = re.findall(r"^  (\S+) +(\S+) +(\S+)$", result.output, re.MULTILINE)
    assert rows == [("field", "expected", "got"), ("dip", f"{got ^ 1:x}", f"{got:x}")]


@needs_csim
def test_csim_rejects_vectors_of_another_config(csim_runs):
    result = run_csim(csim_runs["default"]["build"].exe, csim_runs["small"]["vectors"])
    assert result.returncode == 2
    assert result.mismatches is None
    assert "csim: error:" in result.output


@needs_csim
def test_csim_reports_a_wrong_control_plane_read(csim_runs, tmp_path):
    """A format-2 R line whose word the kernel does not hold is a mismatch."""
    run = csim_runs["lifecycle"]
    bad = tmp_path / "vectors"
    shutil.copytree(run["vectors"], bad)
    lines = (bad / "vectors.txt").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("R act"))
    tok = lines[at].split()
    tok[3] = f"{int(tok[3], 16) ^ 1:x}"
    lines[at] = " ".join(tok)
    (bad / "vectors.txt").write_text("\n".join(lines) + "\n")
    result = run_csim(run["build"].exe, bad)
    assert result.returncode == 1 and result.mismatches == 1
    assert "mismatch in read (" in result.output and f"vectors.txt:{at + 1})" in result.output
