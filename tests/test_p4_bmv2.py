"""BMv2 simple_switch against the model: the v1model program compiled by p4c, started on
a veth pair, loaded and updated over Thrift while model vectors flow (learns, inserts,
two-phase pool updates with RECORD/FLIP/retire, a withdrawn VIP's DROPs); every exported
decision and every emitted frame must equal the model's.

Needs p4c, simple_switch, simple_switch_CLI (p4lang; not on PyPI), root and iproute2;
skips with the reason otherwise. The frame/decision codec runs everywhere."""

from __future__ import annotations

import dataclasses
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from codegen.p4 import INGRESS, default_images, render_v1model
from l4lb.bmv2 import Runtime, Switch, compile_v1model, unavailable, veth_pair
from l4lb.bmv2_replay import (
    DECISION_STRUCT,
    expected_output,
    frame_of,
    parse_output,
    replay,
)
from model.config import Config, load_config
from model.layout import Action, Phase, memory_specs, unpack_vip_state
from model.vectors import Scenario, Step, build_scenario, withdraw_vip
from tests.test_p4 import _csum16_replace

ROOT = Path(__file__).resolve().parent.parent


def _scenario(cfg: Config, connections: int = 150) -> Scenario:
    return withdraw_vip(build_scenario(cfg, connections=connections, updates=2), vip_id=0)


# ---- the codec (no BMv2 needed) ---------------------------------------------------------

@pytest.mark.parametrize("example", ["default", "small"])
def test_frames_and_expected_outputs_check_out_with_scapy(example):
    from scapy.all import IP, TCP, UDP, Ether

    cfg = load_config(ROOT / "examples" / f"{example}.toml")
    scen = _scenario(cfg, connections=40)
    actions = Counter()
    for seq, st in enumerate(scen.packets):
        p, d = st.packet, st.decision
        sent = frame_of(p, seq)
        pkt = Ether(sent)
        for layer in (IP, TCP, UDP):
            if layer in pkt and pkt[layer].chksum:
                want = pkt[layer].chksum
                del pkt[layer].chksum
                assert Ether(bytes(pkt))[layer].chksum == want, (seq, layer)
                pkt = Ether(sent)
        actions[d.action] += 1
        out = expected_output(sent, d)
        if d.action == Action.DROP:
            assert out is None
            continue
        got_seq, dec, frame = parse_output(out)
        assert (got_seq, dec) == (seq, d.as_dict())
        if d.action != Action.LB:
            assert frame == sent
            continue
        ip = Ether(frame)[IP]
        assert (ip.dst, ip.payload.dport) == (str(_ipaddr(d.dip_ip)), d.dip_port)
        l4 = TCP if p.proto == 6 else UDP
        old = Ether(sent)[l4].chksum
        if l4 is UDP and old == 0:
            assert ip[UDP].chksum == 0  # "no checksum" stays so
            continue
        # the program's incremental update (RFC 1624) equals the full recompute here
        inc = _csum16_replace(old, p.dst_ip, p.dst_port, d.dip_ip, d.dip_port)
        assert ip[l4].chksum == (0xFFFF if l4 is UDP and inc == 0 else inc)
    assert set(actions) == {Action.FORWARD, Action.LB, Action.DROP}


def _ipaddr(v: int):
    import ipaddress
    return ipaddress.IPv4Address(v)


def test_scenario_has_full_two_phase_updates_and_drops(default_cfg):
    scen = _scenario(default_cfg)
    phases = Counter(unpack_vip_state(default_cfg.geometry, w.word)[0]
                     for w in scen.writes if w.mem == "vip_state")
    assert phases[Phase.RECORD] >= 2 and phases[Phase.FLIP] >= 2 and phases[Phase.IDLE] >= 2
    retired = [w for w in scen.writes if w.mem == "slot_map" and w.word == 0]
    assert retired, "no version retired"
    assert any(st.decision.action == Action.DROP for st in scen.packets)


# ---- against a running simple_switch ----------------------------------------------------

def _skip_without_bmv2() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """p4c output per config name (compiled once per module)."""
    cache: dict[str, Path] = {}

    def get(cfg: Config) -> Path:
        if cfg.name not in cache:
            d = tmp_path_factory.mktemp(f"p4c-{cfg.name}")
            src = d / "l4lb_v1model.p4"
            src.write_text(render_v1model(cfg))
            cache[cfg.name] = compile_v1model(src, d)
        return cache[cfg.name]
    return get


def _run(cfg: Config, scen: Scenario, json_path: Path, tmp: Path, tag: str):
    log = tmp / "switch.log"
    with veth_pair(tag) as (sw_if, host_if), \
            Switch(json_path, {0: sw_if}, log, log_level="info") as sw:
        rt = Runtime(sw.thrift_port)
        try:
            return replay(scen, sw, rt, host_if), log
        finally:
            rt.close()


@pytest.mark.parametrize("example", ["default", "small"])
def test_bmv2_decides_and_rewrites_like_the_model(example, tmp_path, compiled):
    _skip_without_bmv2()
    cfg = load_config(ROOT / "examples" / f"{example}.toml")
    scen = _scenario(cfg)
    report, log = _run(cfg, scen, compiled(cfg), tmp_path, f"l4t{example[:3]}")
    bad = "\n".join(str(m) for m in report.mismatches[:10])
    assert not report.mismatches, (f"{len(report.mismatches)} mismatches "
                                   f"(switch log kept: {log}):\n{bad}")
    assert report.packets == len(scen.packets) and report.drops > 0
    assert report.frames_received == report.frames_expected


def test_bmv2_mismatch_names_the_packet_and_the_field(tmp_path, compiled, small_cfg):
    """The harness can fail: a model decision altered on purpose is reported."""
    _skip_without_bmv2()
    scen = build_scenario(small_cfg, connections=20, updates=0)
    steps = [i for i, op in enumerate(scen.ops) if isinstance(op, Step)]
    n = next(n for n, i in enumerate(steps) if scen.ops[i].decision.action == Action.LB)
    at = steps[n]
    op = scen.ops[at]
    scen.ops[at] = Step(op.packet, dataclasses.replace(op.decision,
                                                        dip_port=op.decision.dip_port ^ 1))
    report, log = _run(small_cfg, scen, compiled(small_cfg), tmp_path, "l4tmis")
    assert [m.packet for m in report.mismatches] == [n]
    assert f"dip_port: BMv2 {op.decision.dip_port}, model {op.decision.dip_port ^ 1}" in \
        str(report.mismatches[0])
    assert log.exists() and log.stat().st_size > 0


def test_committed_entries_file_loads_through_simple_switch_cli(tmp_path, compiled,
                                                                default_cfg):
    """The user's path: p4/entries_bmv2.txt piped into simple_switch_CLI leaves every
    register word of the default image in the switch."""
    _skip_without_bmv2()
    images = default_images(default_cfg)
    with veth_pair("l4tcli") as (sw_if, _), \
            Switch(compiled(default_cfg), {0: sw_if}, tmp_path / "switch.log") as sw:
        r = subprocess.run(["simple_switch_CLI", "--thrift-port", str(sw.thrift_port)],
                           input=(ROOT / "p4" / "entries_bmv2.txt").read_text(),
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "Error" not in r.stdout, r.stdout[-2000:]
        rt = Runtime(sw.thrift_port)
        try:
            for spec in memory_specs(default_cfg.geometry):
                if spec.name in ("vip", "dip"):
                    continue
                for addr in range(0, spec.depth, max(1, spec.depth // 64)):
                    assert rt.register_read(spec.name, addr) == images[spec.name][addr], \
                        (spec.name, addr)
        finally:
            rt.close()
    assert f"{INGRESS}.vip_table" in (ROOT / "p4" / "entries_bmv2.txt").read_text()


def test_decision_header_is_twenty_bytes():
    assert DECISION_STRUCT.size == 20


# ---- the connection lifecycle (docs/lifecycle.md) -----------------------------------------

def _lifecycle_cfg() -> Config:
    from tests.test_lifecycle import LC, _cfg
    return _cfg(LC)


def test_challenge_frames_decode_as_replies():
    """A CHALLENGE's expected output is the model's SYN-ACK after a decision header
    with the cookie; the harness identifies the untagged reply by its key."""
    from scapy.all import TCP, Ether

    from l4lb.bmv2_replay import Codec, reply_key

    cfg = _lifecycle_cfg()
    codec = Codec.of(cfg)
    assert codec.fields[-1] == "cookie" and codec.struct.size == 24
    scen = build_scenario(cfg, connections=30, seed=5)
    n = 0
    for seq, st in enumerate(scen.packets):
        if st.decision.action != Action.CHALLENGE:
            continue
        sent = frame_of(st.packet, seq, tcp_numbers=True)
        out = expected_output(sent, st.decision, codec)
        key, dec, frame = parse_output(out, codec)
        p = st.packet
        assert key == reply_key(frame) == (p.src_ip, p.src_port, p.dst_port,
                                           st.decision.cookie)
        assert dec == st.decision.as_dict(codec.fields)
        assert Ether(frame)[TCP].flags == "SA" and Ether(sent)[TCP].seq == p.seq
        n += 1
    assert n > 10


def test_bmv2_runs_the_lifecycle_like_the_model(tmp_path, compiled):
    """SYN authentication (challenges, verifying RSTs, drops, unusual flag mixes),
    activity bits read back by the aging scans, verified-source words read back by the
    key rotations, 64-bit keys written over Thrift: every decision, frame and register
    read equal to the model's."""
    _skip_without_bmv2()
    cfg = _lifecycle_cfg()
    scen = build_scenario(cfg, connections=150, seed=3)
    acts = Counter(st.decision.action for st in scen.packets)
    assert all(acts[a] for a in (Action.CHALLENGE, Action.VERIFY, Action.UNVERIFIED,
                                 Action.LB))
    report, log = _run(cfg, scen, compiled(cfg), tmp_path, "l4tlc")
    bad = "\n".join(str(m) for m in report.mismatches[:10])
    assert not report.mismatches, (f"{len(report.mismatches)} mismatches "
                                   f"(switch log kept: {log}):\n{bad}")
    assert report.reads > 100 and report.frames_received == report.frames_expected


def test_bmv2_lifecycle_mismatch_in_a_read_is_reported(tmp_path, compiled):
    """The harness can fail on a control-plane read: an activity bit flipped in the
    vectors is reported at its line."""
    _skip_without_bmv2()
    from model.layout import Read

    cfg = _lifecycle_cfg()
    scen = build_scenario(cfg, connections=40, seed=4)
    at = next(i for i, op in enumerate(scen.ops)
              if isinstance(op, Read) and op.mem.startswith("act"))
    r = scen.ops[at]
    scen.ops[at] = Read(r.mem, r.addr, r.word ^ 1)
    report, _ = _run(cfg, scen, compiled(cfg), tmp_path, "l4tlr")
    assert [m.op for m in report.mismatches] == [at]
    assert f"{r.mem}[{r.addr}]: BMv2 {r.word:#x}, model {r.word ^ 1:#x}" in \
        str(report.mismatches[0])
