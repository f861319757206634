"""The ``[network]`` table in the P4 programs (model/network.py, codegen/p4_network.py):
the return path (rev_table, REVERSE with the source rewrite), forwarding (LPM
route_table, port_mac, egress port and MAC rewrite), their table entries, and a BMv2
replay on one veth per port in which every frame must leave on the model's port, equal
byte for byte to the model's frame.

The TNA program has no packet-level test (no Tofino model here): its tables, actions
and decision logic are compared with the v1model program's, its entries with
v1model's, and its checksum arithmetic (parser residual + deparser update) with the
model's rewrite; tests/test_p4_compilers.py compiles it with p4test and bf-p4c.

The BMv2 tests need p4c, simple_switch, simple_switch_CLI, root and iproute2, and skip
with the reason otherwise; the rest runs everywhere."""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from codegen.p4 import (
    RegisterWrite,
    TableAdd,
    default_images,
    entries,
    entry_for_word,
    lint_p4,
    render_entries_bfrt,
    render_entries_bmv2,
    render_tna,
    render_v1model,
    tna_entry,
    write_p4,
)
from l4lb.bmv2 import Runtime, Switch, compile_v1model, unavailable, veth_ports
from l4lb.bmv2_replay import Codec, NetState, expected_output, frame_of, parse_output, replay
from model.config import Config, load_config
from model.frame import FrameDataPlane, csum16_replace
from model.layout import Action
from model.network import format_mac, pack_rev, pack_route, unpack_rev, unpack_route
from model.pipeline import DataPlane, Packet, decision_fields
from model.vectors import Scenario, Step, Write, build_scenario, load_memories, withdraw_vip

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def net_cfg() -> Config:
    return load_config(ROOT / "examples" / "network.toml")


def _scenario(cfg: Config, connections: int = 150) -> Scenario:
    return withdraw_vip(build_scenario(cfg, connections=connections, updates=2), vip_id=0)


def continued(scen: Scenario, ops: list[Write | Packet]) -> Scenario:
    """``scen`` continued with control-plane writes and packets, decided by the model
    from the state the scenario leaves (TransitTable bits included)."""
    cfg = scen.cfg
    mem = load_memories(cfg, scen.initial)
    dp = DataPlane(cfg, mem)
    for op in scen.ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
        elif isinstance(op, Step):
            dp.process(op.packet)
    out = Scenario(cfg, scen.initial, list(scen.ops))
    for op in ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
            out.ops.append(op)
        else:
            out.ops.append(Step(op, dp.process(op)))
    return out


# ---- program and entries (no BMv2 needed) ------------------------------------------------

def test_network_program_has_the_tables(net_cfg, tmp_path):
    text = render_v1model(net_cfg)
    for needle in ("table rev_table", "table route_table", "hdr.ipv4.dst_addr : lpm",
                   "register<bit<48>>(PORT_CAPACITY) port_mac;",
                   "standard_metadata.egress_spec = port;", "ACTION_REVERSE = 3w6"):
        assert needle in text, needle
    assert "egress_spec = standard_metadata.ingress_port" not in text
    names = {p.name for p in write_p4(net_cfg, tmp_path)}
    assert names == {"l4lb_v1model.p4", "l4lb_tna.p4", "entries_bmv2.txt", "entries_bfrt.py"}


# ---- the TNA program: the v1model program's logic, line by line ---------------------------

def _block(text: str, kind: str, name: str) -> str:
    """The body of ``action name(...) { ... }`` or ``table name { ... }`` in ``text``."""
    m = re.search(rf"^\s*{kind} {name}\b[^{{]*\{{", text, re.M)
    assert m, f"{kind} {name} not found"
    depth, i = 1, m.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.start():i]


def _norm(block: str) -> list[str]:
    """``block``'s statements, comments and blank lines dropped, v1model's names spelt
    as TNA's (``meta`` -> ``ig_md``, ``egress_spec`` -> ``ucast_egress_port``)."""
    block = re.sub(r"//[^\n]*", "", block)
    block = block.replace("meta.", "ig_md.").replace(
        "standard_metadata.egress_spec", "ig_tm_md.ucast_egress_port")
    return [ln.strip() for ln in block.splitlines() if ln.strip()]


def test_tna_network_program_mirrors_v1model(net_cfg):
    """The return path and the route are the v1model program's, statement for
    statement: rev_table and set_reverse identical; route_table identical; set_route
    identical but for the port MAC, which TNA reads from port_mac_table (48-bit words
    exceed a Tofino register word) instead of the register port_mac."""
    v1, tna = render_v1model(net_cfg), render_tna(net_cfg)
    assert lint_p4(tna) == []
    for kind, name in (("action", "set_reverse"), ("table", "rev_table"),
                       ("table", "route_table")):
        assert _norm(_block(tna, kind, name)) == _norm(_block(v1, kind, name)), name
    v1_route = _norm(_block(v1, "action", "set_route"))
    assert v1_route[-2] == "port_mac.read(hdr.ethernet.src_addr, (bit<32>)port);"
    assert _norm(_block(tna, "action", "set_route")) == v1_route[:-2] + ["}"]
    assert _norm(_block(tna, "action", "set_src_mac")) == [
        "action set_src_mac(bit<48> mac) {", "hdr.ethernet.src_addr = mac;", "}"]
    assert _norm(_block(tna, "table", "port_mac_table")) == [
        "table port_mac_table {", "key = {", 'ig_md.dec.port : exact @name("port");', "}",
        "actions = { set_src_mac; }", "default_action = set_src_mac(0);",
        "size = PORT_CAPACITY;", "}"]
    # no route: counted and dropped (TNA: drop_ctl, v1model: mark_to_drop)
    assert _norm(_block(tna, "action", "no_route")) == [
        "action no_route() {", "no_route_drops.count(1w0);", "ig_dprsr_md.drop_ctl = 1;", "}"]
    # the egress port is the route's only; LB's destination address is rewritten in
    # set_dip, so that route_table matches it one stage later (an LB rewrite of the
    # v1model program's apply block moved into the action, nothing else)
    assert "ig_tm_md.ucast_egress_port = ig_intr_md.ingress_port" not in tna
    assert tna.count("ig_tm_md.ucast_egress_port =") == 1
    assert "hdr.ipv4.dst_addr = dip_ip;" in _block(tna, "action", "set_dip")
    assert re.sub(r"//[^\n]*", "", tna).count("hdr.ipv4.dst_addr =") == 1
    # the apply block: rev_table for a TCP/UDP non-VIP packet; the route for every
    # parsed frame but a DROP; port_mac_table on a route hit; unparsed frames dropped
    apply = _norm(tna[tna.index("    apply {\n        // the egress port"):])
    i = apply.index("} else if (hdr.tcp.isValid() || hdr.udp.isValid()) {")
    assert apply[i + 1:i + 3] == ["rev_table.apply();",
                                  "if (ig_md.dec.action_code == ACTION_REVERSE) {"]
    j = apply.index("if (!hdr.tcp.isValid() && !hdr.udp.isValid()) {")
    assert apply[j:j + 8] == [
        "if (!hdr.tcp.isValid() && !hdr.udp.isValid()) {", "ig_dprsr_md.drop_ctl = 1;",
        "} else if (ig_md.dec.action_code != ACTION_DROP) {", "route_table.apply();",
        "if (ig_md.dec.route_hit == 1) {", "port_mac_table.apply();", "}", "}"]
    assert apply[j + 8] == "decision_export.apply();"
    # the source rewrite: the VIP's address and port, checksums flagged as for LB
    rev = apply[i + 3:j]
    for stmt in ("ig_md.update_ipv4_csum = true;", "ig_md.update_tcp_csum = true;",
                 "hdr.tcp.src_port = ig_md.dec.dip_port;", "if (hdr.udp.checksum != 0) {",
                 "ig_md.update_udp_csum = true;", "hdr.udp.src_port = ig_md.dec.dip_port;",
                 "hdr.ipv4.src_addr = ig_md.dec.dip_ip;"):
        assert stmt in rev, stmt
    # checksums: the parser subtracts both addresses and ports, the deparser adds both
    for l4 in ("tcp", "udp"):
        for field in ("hdr.ipv4.src_addr", "hdr.ipv4.dst_addr", f"hdr.{l4}.src_port",
                      f"hdr.{l4}.dst_port", f"hdr.{l4}.checksum"):
            assert f"{l4}_csum.subtract({{ {field} }});" in tna, (l4, field)
        update = tna.split(f"hdr.{l4}.checksum = {l4}_csum.update(", 1)[1].split(";")[0]
        assert re.findall(r"hdr\.\w+\.\w+|ig_md\.\w+", update) == [
            "hdr.ipv4.src_addr", "hdr.ipv4.dst_addr", f"hdr.{l4}.src_port",
            f"hdr.{l4}.dst_port", "ig_md.l4_csum_residual"]


def _ones(*words: int) -> int:
    """Ones'-complement sum of 16-bit words (end-around carry)."""
    s = sum(words)
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def test_tna_checksum_residual_equals_the_models_rewrite():
    """The TNA arithmetic -- residual = checksum and old addresses and ports subtracted
    in the parser, checksum = ~(new addresses + ports + residual) in the deparser --
    equals model.frame's RFC 1624 update for the destination (LB) and the source
    (REVERSE) rewrite, TCP and UDP (zeros_as_ones: a computed 0 is sent as 0xFFFF)."""
    rng = random.Random(7)

    def words(ip: int, port: int) -> tuple[int, int, int]:
        return ip >> 16, ip & 0xFFFF, port

    cases = 0
    for _ in range(3000):
        src, dst = rng.getrandbits(32), rng.getrandbits(32)
        sport, dport = rng.getrandbits(16), rng.getrandbits(16)
        csum = rng.getrandbits(16)
        new_ip, new_port = rng.getrandbits(32), rng.getrandbits(16)
        residual = _ones(*(~w & 0xFFFF for w in (csum, *words(src, sport),
                                                  *words(dst, dport))))
        for source in (False, True):
            old = words(src, sport) if source else words(dst, dport)
            want = csum16_replace(csum, old, words(new_ip, new_port))
            out_src = words(new_ip, new_port) if source else words(src, sport)
            out_dst = words(dst, dport) if source else words(new_ip, new_port)
            got = ~_ones(*out_src, *out_dst, residual) & 0xFFFF
            assert got == want, (hex(src), hex(dst), source)
            udp = got or 0xFFFF                     # zeros_as_ones = true
            assert udp == (want or 0xFFFF)
            cases += 1
    assert cases == 6000


def test_tna_entries_equal_v1model_entries(net_cfg):
    """rev_table and route_table entries of the TNA program are v1model's, call for
    call; each port_mac register word is a port_mac_table entry (port, mac)."""
    images = default_images(net_cfg)
    es = entries(net_cfg, images)
    for e in es:
        if isinstance(e, TableAdd):
            assert tna_entry(net_cfg, e) == e
    macs = [e for e in es if isinstance(e, RegisterWrite) and e.register == "port_mac"]
    assert [(e.index, e.value) for e in macs] == [(p.id, p.mac) for p in net_cfg.network.ports]
    tna_macs = [tna_entry(net_cfg, e) for e in macs]
    assert [(e.table, e.action, e.keys, e.params) for e in tna_macs] == [
        ("port_mac_table", "set_src_mac", (("port", p.id, 9),), (("mac", p.mac, 48),))
        for p in net_cfg.network.ports]
    text = render_entries_bfrt(net_cfg, images)
    assert ("bfrt.l4lb_tna.pipe.SwitchIngress.rev_table.add_with_set_reverse("
            "src_ip=0x0a0a0001, src_port=8080, proto=6, vip_id=0, dip=0, vip_ip=0xac10000a, "
            "vip_port=80)") in text
    assert ("bfrt.l4lb_tna.pipe.SwitchIngress.route_table.add_with_set_route("
            "dst_ip=0x64400000, route=1, port=3, mac=0x020000000301, "
            "dst_ip_p_length=12)") in text
    p = net_cfg.network.ports[0]
    assert (f"bfrt.l4lb_tna.pipe.SwitchIngress.port_mac_table.add_with_set_src_mac("
            f"port={p.id}, mac=0x{p.mac:012x})  # port {p.id}: source MAC "
            f"{format_mac(p.mac)}") in text
    assert "port_mac.mod(" not in text
    for table, n in (("rev_table", 5), ("route_table", 6), ("port_mac_table", 3)):
        assert text.count(f".{table}.add_with_") == n, table
    compile(text, "entries_bfrt.py", "exec")


def test_decision_header_follows_the_model_fields(net_cfg):
    codec = Codec.of(net_cfg)
    assert codec.fields == decision_fields(net_cfg)
    assert codec.fields[-3:] == ("route_hit", "route", "port") and codec.struct.size == 25


def test_entries_of_the_network_memories(net_cfg):
    images = default_images(net_cfg)
    es = entries(net_cfg, images)
    rev = [e for e in es if isinstance(e, TableAdd) and e.table == "rev_table"]
    routes = [e for e in es if isinstance(e, TableAdd) and e.table == "route_table"]
    assert len(rev) == 5 and len(routes) == 6
    text = render_entries_bmv2(net_cfg, images)
    assert ("table_add SwitchIngress.rev_table SwitchIngress.set_reverse 10.10.0.1 8080 6 "
            "=> 0 0 172.16.0.10 80") in text
    assert ("table_add SwitchIngress.route_table SwitchIngress.set_route 100.64.0.0/12 "
            "=> 1 3 02:00:00:00:03:01") in text
    assert "register_write SwitchIngress.port_mac 2 2199023256064" in text
    # a route's host bits are not part of its key (the model masks them)
    e = entry_for_word(net_cfg, "route", 7, pack_route(True, 0x0A0A0005, 16, 2, 1))
    assert e.keys == (("dst_ip", 0x0A0A0000, 32),) and e.prefix_len == 16
    assert entry_for_word(net_cfg, "route", 7, pack_route(False, 1, 8, 2, 1)) is None


def test_duplicate_keys_keep_the_lowest_index(net_cfg):
    """Two valid rev (route) words with one key are one table entry, the lower
    index's -- the model's rule (DataPlane._tables)."""
    images = default_images(net_cfg)
    vb = net_cfg.geometry.vip_bits
    images["rev"][20] = images["rev"][0] ^ 1          # same DIP key, another VIP port
    images["route"][9] = pack_route(True, 0x0A0A0000, 16, 3, 0xAB)  # = route 2's prefix
    es = [e for e in entries(net_cfg, images) if isinstance(e, TableAdd)]
    assert [e.params[1][1] for e in es if e.table == "rev_table"
            and e.keys[0][1] == unpack_rev(vb, images["rev"][0])[2]] == [0]
    assert [e.params[0][1] for e in es if e.table == "route_table"
            and e.keys[0][1] == 0x0A0A0000 and e.prefix_len == 16] == [2]
    # the bfrt script holds the same single entries (TNA: one add per key too)
    bfrt = render_entries_bfrt(net_cfg, images)
    assert bfrt.count("dst_ip=0x0a0a0000, ") == 1 and "route=9," not in bfrt
    assert bfrt.count("add_with_set_reverse(src_ip=0x0a0a0001, src_port=8080,") == 1
    assert "dip=20," not in bfrt


def test_expected_frames_are_the_frame_models(net_cfg):
    """The harness's expected output of every packet is what FrameDataPlane emits for
    the same frame (it re-decides here: no writes happen in this short scenario)."""
    scen = build_scenario(net_cfg, connections=25, updates=0)
    fdp = FrameDataPlane(net_cfg, load_memories(net_cfg, scen.initial))
    codec = Codec.of(net_cfg)
    mem = fdp.dp.mem
    seen = Counter()
    seq = -1
    for op in scen.ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
            continue
        seq += 1
        fr = frame_of(op.packet, seq)
        out, d, _ = fdp.process_frame(fr)
        net = NetState.of(mem.snapshot())
        want = expected_output(fr, op.decision, codec, net)
        assert (want is None) == (out is None), seq
        if out is not None:
            assert d == op.decision and want == codec.pack(d) + out
            assert parse_output(want, codec)[0] == seq
            seen[d.action, d.port] += 1
    assert seen[Action.REVERSE, 1] and seen[Action.LB, 2] and seen[Action.LB, 3]


def test_scenario_has_replies_and_routed_and_unrouted_frames(net_cfg):
    acts = Counter((st.decision.action, st.decision.route_hit)
                   for st in _scenario(net_cfg).packets)
    for key in ((Action.REVERSE, 1), (Action.REVERSE, 0), (Action.FORWARD, 1),
                (Action.FORWARD, 0), (Action.LB, 1), (Action.DROP, 0)):
        assert acts[key], key


# ---- against a running simple_switch ----------------------------------------------------

def _skip_without_bmv2() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def net_json(tmp_path_factory, net_cfg):
    _skip_without_bmv2()
    d = tmp_path_factory.mktemp("p4c-network")
    src = d / "l4lb_v1model.p4"
    src.write_text(render_v1model(net_cfg))
    return compile_v1model(src, d)


def _run(scen: Scenario, json_path: Path, tmp: Path, tag: str):
    ports = [p.id for p in scen.cfg.network.ports]
    log = tmp / "switch.log"
    with veth_ports(tag, ports) as (sw_ifs, host_ifs), \
            Switch(json_path, sw_ifs, log) as sw:
        rt = Runtime(sw.thrift_port)
        try:
            return replay(scen, sw, rt, host_ifs), log
        finally:
            rt.close()


def _route_duplicates(scen: Scenario) -> Scenario:
    """The scenario continued with writes the control plane never makes but the model
    defines: a rev word and a route duplicating lower-index keys (ignored), then the
    lower words cleared (the duplicates take over), then restored."""
    cfg = scen.cfg
    vb = cfg.geometry.vip_bits
    mem = load_memories(cfg, scen.initial)
    for op in scen.ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
    rev0 = next(i for i in range(cfg.geometry.dip_capacity)
                if unpack_rev(vb, mem.read("rev", i))[0])
    _, proto, dip_ip, dip_port, vip_id, vip_ip, vip_port = unpack_rev(vb, mem.read("rev", rev0))
    route2 = mem.read("route", 2)
    _, prefix, length, _, _ = unpack_route(route2)
    free_rev = cfg.geometry.dip_capacity - 1
    reply = Packet(dip_ip, 0x64500001, dip_port, 40000, proto, 0x10 if proto == 6 else 0)
    to_servers = Packet(0xC6336407, prefix | 0x63, 1000, 2000, 17)   # a routed FORWARD
    probe = [reply, to_servers]
    return continued(scen, [
        Write("rev", free_rev, pack_rev(vb, True, proto, dip_ip, dip_port, vip_id,
                                        vip_ip ^ 0x100, vip_port + 1)),
        Write("route", 9, pack_route(True, prefix, length, 3, 0x02000000AAAA)), *probe,
        Write("rev", rev0, 0), Write("route", 2, 0), *probe,
        Write("rev", rev0, mem.read("rev", rev0)), Write("route", 2, route2), *probe,
        Write("rev", free_rev, 0), Write("route", 9, 0), *probe,
    ])


def test_bmv2_forwards_and_returns_like_the_model(tmp_path, net_json, net_cfg):
    """Client traffic, server replies (REVERSE), non-VIP frames with and without a
    route, over three ports, with pool updates, a withdrawn VIP and duplicate-key writes:
    every decision equal to the model's, every frame byte for byte on the model's port."""
    scen = _route_duplicates(_scenario(net_cfg))
    tail = [st.decision for st in scen.packets[-8:]]
    rev0, last = tail[0].dip, net_cfg.geometry.dip_capacity - 1
    assert {d.action for d in tail[0::2]} == {Action.REVERSE}
    assert [d.dip for d in tail[0::2]] == [rev0, last, rev0, rev0] and rev0 != last
    assert [d.port for d in tail[1::2]] == [2, 3, 2, 2]  # the duplicates took over, once
    report, log = _run(scen, net_json, tmp_path, "l4tn")
    bad = "\n".join(str(m) for m in report.mismatches[:10])
    assert not report.mismatches, (f"{len(report.mismatches)} mismatches "
                                   f"(switch log kept: {log}):\n{bad}")
    assert report.packets == len(scen.packets) and report.drops > 0
    assert report.frames_received == report.frames_expected > 500


def test_bmv2_network_mismatch_names_the_packet_and_the_field(tmp_path, net_json, net_cfg):
    """The harness can fail: a REVERSE decision's VIP port and an LB decision's port,
    altered on purpose, are reported at their packets and fields."""
    scen = build_scenario(net_cfg, connections=20, updates=0)
    steps = [i for i, op in enumerate(scen.ops) if isinstance(op, Step)]
    rev = next(n for n, i in enumerate(steps)
               if scen.ops[i].decision.action == Action.REVERSE and scen.ops[i].decision.route_hit)
    lb = next(n for n, i in enumerate(steps) if scen.ops[i].decision.action == Action.LB)
    d_rev, d_lb = scen.ops[steps[rev]].decision, scen.ops[steps[lb]].decision
    scen.ops[steps[rev]] = Step(scen.ops[steps[rev]].packet,
                                dataclasses.replace(d_rev, dip_port=d_rev.dip_port ^ 1))
    other = 1 if d_lb.port != 1 else 2
    scen.ops[steps[lb]] = Step(scen.ops[steps[lb]].packet,
                               dataclasses.replace(d_lb, port=other))
    report, _ = _run(scen, net_json, tmp_path, "l4tnm")
    problems = {m.packet: m.problem for m in report.mismatches}
    assert sorted(problems) == sorted([rev, lb])
    assert f"dip_port: BMv2 {d_rev.dip_port}, model {d_rev.dip_port ^ 1}" in problems[rev]
    assert f"out of port {d_lb.port}, model port {other}" in problems[lb]
