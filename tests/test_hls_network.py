"""HLS C++ target with a ``[network]`` table: the return path (REVERSE) and forwarding
(route_hit, route, port) in the kernel, checked by C simulation against the model's
format-3 vectors (docs/hls.md, docs/network.md); and configs without ``[network]``
generating the same sources as before."""

import hashlib
import re
import shutil
import tomllib

import pytest

from codegen.hls import render_hls, run_csim
from model.config import load_config, parse_config
from model.layout import Action
from model.network import pack_rev, pack_route, unpack_rev, unpack_route
from model.pipeline import DataPlane, Packet, decision_fields
from model.vectors import Scenario, Step, Write, build_scenario, load_memories

from .conftest import EXAMPLES
from .test_hls import FILTERED_WARNINGS, _with_drops, needs_csim, prepare_all, prepare_csim
from .test_lifecycle import DNS, GEO, LC, WEB

#: "network": examples/network.toml. "lcnet": the lifecycle test config of
#: tests/test_lifecycle.py (SYN authentication: CHALLENGE is routed by the client's
#: address) with examples/network.toml's [network] table: format 3 with cookie and R lines.
CONFIGS = ("network", "lcnet")


def _load(name):
    if name == "network":
        return load_config(EXAMPLES / "network.toml")
    net = tomllib.loads((EXAMPLES / "network.toml").read_text())["network"]
    return parse_config({"name": "lcnet", "geometry": GEO, "vip": [WEB, DNS], "lifecycle": LC,
                         "network": net})


def _extended(scen: Scenario) -> Scenario:
    """The scenario, then the corners of the lookups build_scenario does not reach:
    a reply from every DIP with a valid ``rev`` word; a duplicate ``rev`` key at a
    higher index (the lowest index wins until it is invalidated); a duplicate route
    (same prefix and length) at a higher index, likewise; a default route (/0) and a
    host route (/32); a packet from a DIP to a VIP (the VIP match wins). Every decision
    is the model's, continuing from its state at the end of the scenario."""
    cfg = scen.cfg
    vb = cfg.geometry.vip_bits
    mem = load_memories(cfg, scen.initial)
    dp = DataPlane(cfg, mem)
    for op in scen.ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
        elif isinstance(op, Step):
            dp.process(op.packet)
    ops = list(scen.ops)

    def write(name, addr, word):
        mem.write(name, addr, word)
        ops.append(Write(name, addr, word))

    def send(pkt):
        ops.append(Step(pkt, dp.process(pkt)))

    client = (0x64400007, 40001)  # 100.64.0.7: in 100.64/10 and 100.64/12
    revs = [(i, unpack_rev(vb, int(w))) for i, w in enumerate(mem["rev"])]
    live = [(i, r) for i, r in revs if r[0]]
    free = [i for i, r in revs if not r[0]]
    assert live and len(free) >= 1
    for _, (_, proto, ip, port, *_rest) in live:
        send(Packet(ip, client[0], port, client[1], proto, 0x10))
    # a second rev word with the first one's key: the lower index keeps winning ...
    i0, (_, proto, ip, port, vip_id, vip_ip, vip_port) = live[0]
    dup = free[-1]
    write("rev", dup, pack_rev(vb, True, proto, ip, port, vip_id ^ 1, vip_ip ^ 0xFF,
                               vip_port ^ 1))
    reply = Packet(ip, client[0], port, client[1], proto, 0x10)
    send(reply)
    # ... until it is invalidated
    write("rev", i0, pack_rev(vb, False, proto, ip, port, vip_id, vip_ip, vip_port))
    send(reply)
    # a DIP that sends to a VIP is a client of that VIP
    v = cfg.vips[0]
    send(Packet(ip, v.address, port, 33333, v.protocol, 0x02))

    routes = [(i, unpack_route(int(w))) for i, w in enumerate(mem["route"])]
    used = [(i, r) for i, r in routes if r[0]]
    spare = [i for i, r in routes if not r[0]]
    assert len(spare) >= 3
    # a duplicate of the client route 100.64/12 (same prefix and length, another port)
    k, (_, prefix, length, port0, mac) = next((i, r) for i, r in used if r[2] == 12)
    write("route", spare[0], pack_route(True, prefix, length, 2, mac ^ 1))
    send(reply)                                   # still route k
    write("route", k, pack_route(False, prefix, length, port0, mac))
    send(reply)                                   # now spare[0]
    write("route", k, pack_route(True, prefix, length, port0, mac))
    # a default route and a host route
    unrouted = Packet(0x0B000001, 0x0C000001, 1234, 80, 17)  # 12.0.0.1: no route so far
    send(unrouted)
    write("route", spare[1], pack_route(True, 0, 0, 1, 0x020000000001))
    send(unrouted)
    write("route", spare[2], pack_route(True, 0x0C000001, 32, 3, 0x020000000002))
    send(unrouted)
    send(Packet(0x0B000001, 0x0C000002, 1234, 80, 17))  # the /0 again
    return Scenario(cfg, scen.initial, ops)


def _prepare(name, work):
    cfg = _load(name)
    return prepare_csim(cfg, _with_drops(_extended(build_scenario(cfg))), work)


@pytest.fixture(scope="module")
def csim_runs(tmp_path_factory):
    return prepare_all(CONFIGS, tmp_path_factory.mktemp("hls_network"), _prepare)


# ---- rendering (no compiler needed) ---------------------------------------------------

def test_network_config_renders_the_network_kernel():
    cfg = _load("network")
    files = render_hls(cfg)
    assert set(files) == {"l4lb_core.h", "l4lb_network.h", "l4lb_kernel.h", "l4lb_config.h",
                          "l4lb_kernel.cpp", "l4lb_tb.cpp", "run_hls.tcl"}
    for name, text in files.items():
        assert "{{" not in text and "{%" not in text, name
        assert text.endswith("\n") and "\t" not in text, name
        assert all(len(line) <= 100 for line in text.splitlines()), name
    cfg_h = files["l4lb_config.h"]
    assert "#define L4LB_NETWORK 1" in cfg_h and '#include "l4lb_network.h"' in cfg_h
    # memory ids follow model.layout.memory_specs: base memories, then rev, route, port_mac
    assert "static const unsigned mem_rev = 10;" in cfg_h
    assert "static const unsigned mem_port_mac = 12;" in cfg_h
    assert "static const unsigned route_depth = 16;" in cfg_h
    assert "static const unsigned route_index_bits = 4;" in cfg_h
    assert "static const unsigned rev_width = 107;" in cfg_h  # 105 + vip_bits
    assert "routed_decision_t<l4lb_config> decision_t;" in files["l4lb_kernel.h"]
    kernel = files["l4lb_kernel.cpp"]
    for pragma in ("ARRAY_PARTITION variable=rev complete", "ARRAY_PARTITION variable=route "
                   "complete", "BIND_STORAGE variable=port_mac type=ram_s2p impl=lutram"):
        assert pragma in kernel, pragma
    tb = files["l4lb_tb.cpp"]
    assert "const unsigned VECTORS_FORMAT = 3;" in tb
    for f in ("route_hit", "route", "port"):
        assert f'    "{f}",' in tb


#: SHA-256 (first 16 hex digits) of every generated file of the shipped configs without
#: [network], as generated before the kernel implemented [network]: such configs must
#: keep their sources byte for byte. Update deliberately, with the reason in the commit.
SHIPPED = {
    "default": {
        "l4lb_config.h": "ae8e7de92a30a0fa",
        "l4lb_core.h": "2ed82a7bf6bac4ed",
        "l4lb_kernel.cpp": "a3781635acaf03a5",
        "l4lb_kernel.h": "c492c7a183436322",
        "l4lb_tb.cpp": "984f5f8487a6bb44",
        "run_hls.tcl": "ec4938ff46061b43",
    },
    "small": {
        "l4lb_config.h": "1e49655b1cc7b910",
        "l4lb_core.h": "2ed82a7bf6bac4ed",
        "l4lb_kernel.cpp": "e8f58b2ae0db4f82",
        "l4lb_kernel.h": "c492c7a183436322",
        "l4lb_tb.cpp": "dc59924bd5324509",
        "run_hls.tcl": "f6faebedeca54531",
    },
    "large": {
        "l4lb_config.h": "0b28232531f6f539",
        "l4lb_core.h": "2ed82a7bf6bac4ed",
        "l4lb_kernel.cpp": "dafd758b42c5cd38",
        "l4lb_kernel.h": "c492c7a183436322",
        "l4lb_tb.cpp": "d7fd501e324940ba",
        "run_hls.tcl": "9b058c85546721da",
    },
    "lifecycle": {
        "l4lb_config.h": "e9145dc0f758266b",
        "l4lb_core.h": "2ed82a7bf6bac4ed",
        "l4lb_kernel.cpp": "0a7f89cb081714a3",
        "l4lb_kernel.h": "c492c7a183436322",
        "l4lb_tb.cpp": "809bf7d363611634",
        "run_hls.tcl": "5135e7066277daf0",
    },
    "load_aware": {
        "l4lb_config.h": "2904edc06bea2249",
        "l4lb_core.h": "2ed82a7bf6bac4ed",
        "l4lb_kernel.cpp": "a203c28ca0501eef",
        "l4lb_kernel.h": "c492c7a183436322",
        "l4lb_tb.cpp": "563816bc576dbebf",
        "run_hls.tcl": "74fe230bd406a554",
    },
}


def _digests(name):
    files = render_hls(load_config(EXAMPLES / f"{name}.toml"))
    return {f: hashlib.sha256(t.encode()).hexdigest()[:16] for f, t in sorted(files.items())}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_configs_without_network_generate_the_same_sources(name):
    assert _digests(name) == SHIPPED[name]


# ---- C simulation -----------------------------------------------------------------------

@needs_csim
@pytest.mark.parametrize("name", CONFIGS)
def test_network_csim_compiles_clean(csim_runs, name):
    build = csim_runs[name]["build"]
    assert build.warnings == [], "warnings in the generated code"
    assert build.header_warnings == [], "new kind of warning in the Xilinx headers"
    assert set(build.filtered) <= set(FILTERED_WARNINGS)


@needs_csim
@pytest.mark.parametrize("name", CONFIGS)
def test_network_csim_matches_the_model(csim_runs, name):
    run = csim_runs[name]
    cfg, scen = run["cfg"], run["scen"]
    result = run_csim(run["build"].exe, run["vectors"])
    assert result.ok, result.output[-3000:]
    assert f"csim: {len(scen.packets)} packets, 0 mismatches" in result.output
    header = (run["vectors"] / "vectors.txt").read_text().splitlines()[1]
    assert header.endswith(" ".join(decision_fields(cfg)))
    decisions = [s.decision for s in scen.packets]
    kinds = {d.action for d in decisions}
    assert kinds >= {Action.FORWARD, Action.LB, Action.REVERSE}
    if cfg.lifecycle.auth:
        # (as in tests/test_hls.py: _with_drops' packets meet SYN authentication there)
        assert {Action.VERIFY, Action.UNVERIFIED} <= kinds
        assert Action.CHALLENGE in kinds
        assert any(d.action == Action.CHALLENGE and d.route_hit for d in decisions)
        assert any(d.action == Action.CHALLENGE and not d.route_hit for d in decisions)
    else:
        assert Action.DROP in kinds
    for action in (Action.FORWARD, Action.REVERSE):
        assert {d.route_hit for d in decisions if d.action == action} == {0, 1}, action
    assert any(d.action == Action.LB and d.route_hit for d in decisions)
    # every route was chosen at least once, the extra ones included (lcnet's DIPs,
    # 192.168/16, leave by 128/1: its 10.10/16 routes stay unused)
    routes = {d.route for d in decisions if d.route_hit}
    unused = {2, 3} if name == "lcnet" else set()
    assert routes >= set(range(len(cfg.network.routes))) - unused | {6, 7, 8}
    assert {d.port for d in decisions if d.route_hit} == {1, 2, 3}
    assert not any(d.route_hit or d.route or d.port for d in decisions
                   if d.action in (Action.DROP, Action.VERIFY, Action.UNVERIFIED))
    # the duplicate rev word took over once the first was invalidated
    assert len({d.dip for d in decisions if d.action == Action.REVERSE}) > 1


@needs_csim
@pytest.mark.parametrize("field", ["port", "route_hit"])
def test_network_csim_reports_an_altered_route_field(csim_runs, tmp_path, field):
    """One expected field of one REVERSE packet altered: the testbench names exactly
    that packet, its line and the field with both values."""
    run = csim_runs["network"]
    cfg = run["cfg"]
    bad = tmp_path / "vectors"
    shutil.copytree(run["vectors"], bad)
    lines = (bad / "vectors.txt").read_text().splitlines()
    p_lines = [i for i, line in enumerate(lines) if line.startswith("P ")]
    column = 1 + 6 + decision_fields(cfg).index(field)  # P, six packet fields, decision
    rev = [n for n, i in enumerate(p_lines) if lines[i].split()[7] == "6"
           and lines[i].split()[column] != "0"]
    packet = rev[len(rev) // 2]
    tok = lines[p_lines[packet]].split()
    got = int(tok[column], 16)
    want = got ^ 1
    tok[column] = f"{want:x}"
    lines[p_lines[packet]] = " ".join(tok)
    (bad / "vectors.txt").write_text("\n".join(lines) + "\n")

    result = run_csim(run["build"].exe, bad)
    assert result.returncode == 1
    assert (result.packets, result.mismatches) == (len(run["scen"].packets), 1)
    assert f"mismatch in packet {packet} (" in result.output
    assert f"vectors.txt:{p_lines[packet] + 1})" in result.output
    rows = re.findall(r"^  (\S+) +(\S+) +(\S+)$", result.output, re.MULTILINE)
    assert rows == [("field", "expected", "got"), (field, f"{want:x}", f"{got:x}")]
