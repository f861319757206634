"""The live control plane and its management API without root: learn/close events from
the model's data plane, inserts and their latency, pool updates (add, drain, remove)
with the two-phase commit, bad requests, status and Prometheus metrics over HTTP."""

from __future__ import annotations

import copy
import re
import threading
import tomllib
from pathlib import Path

import pytest

from l4lb.live.api import ApiError, ManagementServer, prometheus, request
from l4lb.live.run import parse_ports
from l4lb.live.service import LiveService, ManagementError
from l4lb.live.switch import ModelSwitch, PortError
from model.config import parse_config
from model.layout import Action
from model.pipeline import TCP_ACK, TCP_FIN, TCP_SYN, DataPlane, Packet
from tests.test_network import NETWORK

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cfg():
    raw = tomllib.loads((ROOT / "examples" / "default.toml").read_text())
    raw["network"] = copy.deepcopy(NETWORK)
    raw["lifecycle"] = {"idle_timeout": 30, "close_grace": 1}
    return parse_config(raw, "live.toml")


def _traffic(svc: LiveService, n: int, flags: int = TCP_SYN, base: int = 0) -> list:
    dp = DataPlane(svc.cfg, svc.mem, svc.cp.hasher)
    v = svc.cfg.vips[0]
    out = []
    for k in range(n):
        pkt = Packet(0x0A010000 + base + k, v.address, 40000 + k, v.port, v.protocol, flags)
        d = dp.process(pkt)
        svc.event(pkt.key, d)
        out.append(d)
    return out


def test_learns_become_inserts_with_a_latency(cfg):
    svc = LiveService(cfg)
    ds = _traffic(svc, 20)
    assert all(d.action == Action.LB and d.learn for d in ds)
    assert svc.service() == 20
    assert svc.latency.count == 20 and len(svc.cp.conn_version) == 20
    again = _traffic(svc, 20, TCP_ACK)
    assert not any(d.learn for d in again) and all(d.hit for d in again)
    fins = _traffic(svc, 5, TCP_FIN | TCP_ACK)
    assert all(d.close for d in fins) and len(svc.cp.closing) == 5
    st = svc.status()
    assert st["conntable"]["entries"] == 20 and st["events"] == {"learn": 20, "close": 5}


def test_pool_updates_keep_established_connections(cfg):
    svc = LiveService(cfg)
    first = _traffic(svc, 40)
    svc.service()
    v = cfg.vips[0]
    old = f"{v.dips[0].address_str}:{v.dips[0].port}"
    res = svc.pool("drain", old, v.name)
    assert old not in res["pool"] and res["deleted_connections"] == 0
    hits = _traffic(svc, 40, TCP_ACK)
    assert [(d.dip_ip, d.dip_port) for d in hits] == [(d.dip_ip, d.dip_port) for d in first]
    new = _traffic(svc, 200, base=1000)
    assert (v.dips[0].address, v.dips[0].port) not in {(d.dip_ip, d.dip_port) for d in new}
    res = svc.pool("add", "10.9.9.9:80", v.name)
    assert res["pool"][-1] == "10.9.9.9:80" and svc.pool_ops["add"] == 1


def test_remove_deletes_the_connections_of_a_dead_server(cfg):
    svc = LiveService(cfg)
    first = _traffic(svc, 60)
    svc.service()
    v = cfg.vips[0]
    dead = v.dips[1]
    on_dead = sum((d.dip_ip, d.dip_port) == (dead.address, dead.port) for d in first)
    assert on_dead > 0
    res = svc.pool("remove", f"{dead.address_str}:{dead.port}", v.name)
    assert res["deleted_connections"] == on_dead
    assert len(svc.cp.conn_version) == 60 - on_dead


@pytest.mark.parametrize("op,dip,vip,field", [
    ("grow", "10.0.0.1:80", None, "op"),
    ("add", "10.0.0.1", None, "dip"),
    ("add", "10.0.0.1:0", None, "dip"),
    ("add", "10.0.0.300:80", None, "dip"),
    ("add", 17, None, "dip"),
    ("add", "10.0.0.1:80", None, "vip"),        # the config has several VIPs
    ("add", "10.0.0.1:80", "nope", "vip"),
    ("drain", "10.9.9.9:80", "web", "dip"),     # not in the pool
])
def test_bad_pool_requests_name_the_field_and_change_nothing(cfg, op, dip, vip, field):
    svc = LiveService(cfg)
    before = {k: v.copy() for k, v in svc.mem.arrays.items()}
    with pytest.raises(ManagementError, match=f"^{field}: "):
        svc.pool(op, dip, vip)
    assert all((svc.mem.arrays[k] == v).all() for k, v in before.items())
    assert svc.rejected == 1 and not svc.cp.updates


def test_the_last_dip_and_a_dip_of_another_vip_are_refused(cfg):
    svc = LiveService(cfg)
    web = cfg.vips[0]
    for d in web.dips[1:]:
        svc.pool("drain", f"{d.address_str}:{d.port}", web.name)
    last = web.dips[0]
    with pytest.raises(ManagementError, match="last DIP"):
        svc.pool("drain", f"{last.address_str}:{last.port}", web.name)
    other = cfg.vips[1].dips[0]
    with pytest.raises(ManagementError, match="serves VIP"):
        svc.pool("add", f"{other.address_str}:{other.port}", web.name)


def test_the_management_api_over_http(cfg):
    svc = LiveService(cfg)
    lock = threading.Lock()
    api = ManagementServer(svc, lock, "127.0.0.1:0", lambda: {"actions": {"lb": 3}})
    api.start()
    try:
        _traffic(svc, 10)
        svc.service()
        code, st = request(api.address, "GET", "/status")
        assert code == 200 and st["conntable"]["entries"] == 10
        code, text = request(api.address, "GET", "/metrics")
        assert code == 200
        samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
        name = r"[a-z_][a-z0-9_]*"
        assert all(re.fullmatch(rf'{name}(\{{{name}="[^"]*"(,{name}="[^"]*")*\}})? '
                                r'[-0-9.e+]+', ln) for ln in samples), samples
        assert "l4lb_insert_latency_seconds_count 10" in samples
        assert "l4lb_conntable_entries 10" in samples
        assert 'l4lb_frames_total{action="lb"} 3' in samples
        web = cfg.vips[0]
        d = web.dips[0]
        code, res = request(api.address, "POST", "/pool",
                            {"op": "drain", "dip": f"{d.address_str}:{d.port}", "vip": "web"})
        assert code == 200 and res["op"] == "drain"
        code, res = request(api.address, "POST", "/pool", {"op": "add"})
        assert code == 400 and res["error"].startswith("dip: ")
        code, res = request(api.address, "POST", "/pool", {"op": "add", "dip": "1.2.3.4:5",
                                                           "bad": 1})
        assert code == 400 and "unknown keys" in res["error"]
        code, res = request(api.address, "GET", "/nothing")
        assert code == 404 and "path" in res["error"]
    finally:
        api.stop()
    with pytest.raises(ApiError, match="no l4lb instance answers"):
        request(api.address, "GET", "/status", timeout=2)


def test_the_api_only_listens_on_loopback(cfg):
    with pytest.raises(ManagementError, match="loopback"):
        ManagementServer(LiveService(cfg), threading.Lock(), "0.0.0.0:9180")


def test_port_mappings_are_checked(cfg):
    assert parse_ports(cfg, ["0=veth0", "servers=veth3"]) == {0: "veth0", 3: "veth3"}
    for bad, msg in ((["0"], "PORT=INTERFACE"), (["x=veth0"], "neither a port id"),
                     (["0=a", "clients=b"], "mapped twice")):
        with pytest.raises(PortError, match=msg):
            parse_ports(cfg, bad)
    svc = LiveService(cfg)
    with pytest.raises(PortError, match="port 7 is not"):
        ModelSwitch(cfg, {0: "a", 3: "b", 7: "c"}, svc)
    with pytest.raises(PortError, match=r"no interface for port\(s\) \[3\]"):
        ModelSwitch(cfg, {0: "a"}, svc)


def test_prometheus_escapes_label_values(cfg):
    st = LiveService(cfg).status()
    st["vips"][0]["name"] = 'we"b\\'
    assert 'vip="we\\"b\\\\"' in prometheus(st)


def test_record_hold_keeps_each_commit_phase_for_one_digest_latency(cfg):
    """A data plane with late learn reports (BMv2 digests): RECORD and FLIP each last at
    least record_hold seconds of the control plane's clock, even with nothing pending."""
    from model.controlplane import ControlPlane
    from model.layout import Phase

    cp = ControlPlane(cfg, record_hold=0.5)
    cp.install()
    web = cfg.vips[0]
    cp.update_pool(0, list(web.dips[1:]))
    assert cp.updates[0].phase == Phase.RECORD
    cp.tick(0.4)
    assert cp.updates[0].phase == Phase.RECORD
    cp.tick(0.5)
    assert cp.updates[0].phase == Phase.FLIP
    cp.tick(0.9)
    assert cp.updates and cp.updates[0].phase == Phase.FLIP
    cp.tick(1.0)
    assert not cp.updates
    now = ControlPlane(cfg)  # the default: no hold, as in the vector files
    now.install()
    now.update_pool(0, list(web.dips[1:]))
    assert not now.updates


def test_bmv2_learn_messages_decode():
    """The LEA| notification of simple_switch: packed header, big-endian fields."""
    import struct

    from l4lb.live.nanomsg import LEARN_HEADER, decode_learn

    widths = (32, 32, 16, 16, 8, 3, 6, 1)
    samples = [(0x0A000001, 0x0A630001, 40000, 80, 6, 2, 5, 0), (1, 2, 3, 4, 17, 7, 63, 1)]
    body = b"".join(v.to_bytes((w + 7) // 8, "big")
                    for s in samples for v, w in zip(s, widths, strict=True))
    msg = LEARN_HEADER.pack(b"LEA|", 0, 0, 1, 42, len(samples)) + body
    m = decode_learn(msg, widths)
    assert (m.list_id, m.buffer_id, m.samples) == (1, 42, samples)
    assert decode_learn(b"PRT|" + bytes(36), widths) is None
    with pytest.raises(ValueError, match="sample bytes"):
        decode_learn(msg[:-1], widths)
    assert LEARN_HEADER.size == 32 and struct.calcsize("<4sQIiQI") == 32


def test_a_full_table_keeps_serving_and_counts(cfg):
    """More connections than the ConnTable and its stash hold: the rest are unplaced
    (they keep the data plane's miss decision), counted, never a crash."""
    import dataclasses

    g = dataclasses.replace(cfg.geometry, stages=1, log2_slots=2, stash_size=2)
    small = dataclasses.replace(cfg, geometry=g)
    svc = LiveService(small)
    ds = _traffic(svc, 12)
    assert all(d.action == Action.LB for d in ds)
    svc.service()
    st = svc.status()
    ct = st["conntable"]
    assert ct["entries"] + ct["unplaced"] == 12 and ct["unplaced"] > 0
    assert st["control_plane"]["table_full"] == ct["unplaced"]
    again = _traffic(svc, 12, TCP_ACK)  # their packets still get a decision
    assert all(d.action == Action.LB for d in again)
    assert 'l4lb_conntable_unplaced' in prometheus(st)
