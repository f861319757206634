"""The ``[network]`` table in the P4 programs (model/network.py, codegen/p4_network.py):
the return path (rev_table, REVERSE with the source rewrite), forwarding (LPM
route_table, port_mac, egress port and MAC rewrite), their table entries, and a BMv2
replay on one veth per port in which every frame must leave on the model's port, equal
byte for byte to the model's frame.

The BMv2 tests need p4c, simple_switch, simple_switch_CLI, root and iproute2, and skip
with the reason otherwise; the rest runs everywhere."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path

import pytest

from codegen.p4 import (
    TableAdd,
    default_images,
    entries,
    entry_for_word,
    render_entries_bmv2,
    render_tna,
    render_v1model,
    write_p4,
)
from l4lb.bmv2 import Runtime, Switch, compile_v1model, unavailable, veth_ports
from l4lb.bmv2_replay import Codec, NetState, expected_output, frame_of, parse_output, replay
from model.config import Config, load_config
from model.frame import FrameDataPlane
from model.layout import Action
from model.network import NetworkUnsupported, pack_rev, pack_route, unpack_rev, unpack_route
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

def test_network_program_has_the_tables_and_tna_refuses_it(net_cfg, tmp_path):
    text = render_v1model(net_cfg)
    for needle in ("table rev_table", "table route_table", "hdr.ipv4.dst_addr : lpm",
                   "register<bit<48>>(PORT_CAPACITY) port_mac;",
                   "standard_metadata.egress_spec = port;", "ACTION_REVERSE = 3w6"):
        assert needle in text, needle
    assert "egress_spec = standard_metadata.ingress_port" not in text
    with pytest.raises(NetworkUnsupported, match=r"P4 TNA generator: network .*3 ports, "
                                                 r"6 routes"):
        render_tna(net_cfg)
    with pytest.warns(UserWarning, match="TNA program not generated: P4 TNA generator"):
        names = {p.name for p in write_p4(net_cfg, tmp_path)}
    assert names == {"l4lb_v1model.p4", "entries_bmv2.txt", "TNA_SKIPPED.txt"}


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
