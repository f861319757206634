"""The [network] table in the model: config validation, routes, the return path, frames
(checksums against scapy), the pool manager's rev words and vector format 3."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from model.config import ConfigError, Dip, load_config, parse_config
from model.controlplane import ControlPlane
from model.frame import FrameDataPlane
from model.layout import Action, Memories
from model.network import (
    NetworkUnsupported,
    format_mac,
    pack_rev,
    pack_route,
    require_no_network,
    unpack_rev,
    unpack_route,
)
from model.pipeline import DataPlane, Packet, decision_fields
from model.vectors import build_scenario, read_vectors, replay_scenario, write_vectors

ROOT = Path(__file__).resolve().parent.parent
NETWORK = {
    "port": [{"id": 0, "mac": "02:00:00:00:00:10", "name": "clients"},
             {"id": 3, "mac": "02:00:00:00:00:13", "name": "servers"}],
    "route": [{"prefix": "10.1.0.0/16", "port": 0, "mac": "02:00:00:00:01:01"},
              {"prefix": "10.1.2.0/24", "port": 3, "mac": "02:00:00:00:01:02"},
              {"prefix": "192.168.0.0/16", "port": 3, "mac": "02:00:00:00:02:01"},
              {"prefix": "0.0.0.0/0", "port": 0, "mac": "02:00:00:00:00:ff"}],
}


def _raw(network: dict | None = None) -> dict:
    raw = tomllib.loads((ROOT / "examples" / "small.toml").read_text())
    raw["network"] = copy.deepcopy(NETWORK if network is None else network)
    return raw


@pytest.fixture
def cfg():
    return parse_config(_raw(), "net.toml")


def _installed(cfg):
    cp = ControlPlane(cfg)
    cp.install()
    return cp


@pytest.mark.parametrize("change,field", [
    (lambda n: n["port"][0].update(mac="02:00:00:00:00"), "network.port[0].mac"),
    (lambda n: n["port"][1].update(id=0), "network.port[1].id"),
    (lambda n: n["port"][1].update(id=512), "network.port[1].id"),
    (lambda n: n["route"][0].update(prefix="10.1.0.1/16"), "network.route[0].prefix"),
    (lambda n: n["route"][0].update(prefix="10.1.0.0/33"), "network.route[0].prefix"),
    (lambda n: n["route"][1].update(port=7), "network.route[1].port"),
    (lambda n: n["route"].append(dict(n["route"][0])), "network.route[4].prefix"),
    (lambda n: n.update(route_capacity=2), "network.route_capacity"),
    (lambda n: n.update(ports=[]), "network"),
    (lambda n: n.update(port=[]), "network.port"),
])
def test_bad_network_tables_name_the_field(change, field):
    net = copy.deepcopy(NETWORK)
    change(net)
    with pytest.raises(ConfigError, match=f"^{field.replace('[', '.').replace(']', '.')}"):
        parse_config(_raw(net), "net.toml")


def test_a_dip_serving_two_vips_is_refused_with_a_network():
    raw = _raw()
    raw["vip"][1]["dips"].append(dict(raw["vip"][0]["dips"][0]))
    parse_config({k: v for k, v in raw.items() if k != "network"})  # fine without one
    with pytest.raises(ConfigError, match="already serves VIP"):
        parse_config(raw, "net.toml")


def test_words_round_trip():
    vb = 3
    w = pack_rev(vb, True, 6, 0x0A000001, 8080, 5, 0x0A630001, 80)
    assert unpack_rev(vb, w) == (True, 6, 0x0A000001, 8080, 5, 0x0A630001, 80)
    assert w.bit_length() == 1 + 8 + 32 + 16 + vb + 32 + 16
    r = pack_route(True, 0x0A010200, 24, 3, 0x020000000102)
    assert unpack_route(r) == (True, 0x0A010200, 24, 3, 0x020000000102)
    assert format_mac(0x020000000102) == "02:00:00:00:01:02"


def test_routes_take_the_longest_prefix_then_the_lowest_index(cfg):
    cp = _installed(cfg)
    dp = DataPlane(cfg, cp.mem)
    assert dp.route_lookup(0x0A010203) == (1, 3)       # /24 beats /16
    assert dp.route_lookup(0x0A01FF01) == (0, 0)       # /16
    assert dp.route_lookup(0x08080808) == (3, 0)       # default route
    cp.mem.write("route", 3, 0)                        # withdraw the default
    assert dp.route_lookup(0x08080808) is None
    cp.mem.write("route", 5, pack_route(True, 0x0A010200, 24, 0, 1))  # same /24, later
    assert dp.route_lookup(0x0A010203) == (1, 3)       # the lower index wins


def test_the_return_path_rewrites_a_dips_reply_to_the_vip(cfg):
    cp = _installed(cfg)
    dp = DataPlane(cfg, cp.mem)
    vip = cfg.vips[0]
    dip = vip.dips[0]
    reply = Packet(dip.address, 0x0A010203, dip.port, 40000, vip.protocol, 0x12)
    d = dp.process(reply)
    assert d.action == Action.REVERSE and d.vip_id == 0
    assert (d.dip_ip, d.dip_port) == (vip.address, vip.port)
    assert (d.route_hit, d.route, d.port) == (1, 1, 3)
    other_proto = Packet(dip.address, 0x0A010203, dip.port, 40000, 23 - vip.protocol)
    assert dp.process(other_proto).action == Action.FORWARD
    client = Packet(0x0A010203, vip.address, 40000, vip.port, vip.protocol, 0x02)
    d = dp.process(client)
    assert d.action == Action.LB and d.route_hit == 1  # routed by the DIP's address


def test_frames_through_the_network(cfg):
    """Client -> VIP and the DIP's reply, as frames: MACs, ports, addresses and
    checksums (scapy recomputes them from scratch)."""
    cp = _installed(cfg)
    fdp = FrameDataPlane(cfg, dataplane=DataPlane(cfg, cp.mem))
    vip = cfg.vips[0]
    l4 = TCP if vip.protocol == 6 else UDP
    fwd = Ether(src="02:aa:00:00:00:01", dst="02:00:00:00:00:10") / IP(
        src="10.1.2.3", dst=vip.address_str) / l4(sport=40000, dport=vip.port) / b"hello"
    r = fdp.decide(bytes(fwd))
    assert r.decision.action == Action.LB and r.out is not None
    out = Ether(r.out)
    dip = next(d for d in vip.dips if d.address == int.from_bytes(bytes(out[IP])[16:20], "big"))
    want_route = fdp.dp.route_lookup(dip.address)
    assert r.decision.port == want_route[1]
    _, _, _, _, mac = unpack_route(cp.mem.read("route", want_route[0]))
    assert out.dst == format_mac(mac)
    assert out.src == format_mac(cp.mem.read("port_mac", r.decision.port))
    back = Ether(src="02:bb:00:00:00:01", dst=out.src) / IP(src=dip.address_str, dst="10.1.2.3") \
        / l4(sport=dip.port, dport=40000) / b"world"
    r = fdp.decide(bytes(back))
    assert r.decision.action == Action.REVERSE
    got = Ether(r.out)
    assert (got[IP].src, got[l4].sport) == (vip.address_str, vip.port)
    assert got.dst == "02:00:00:00:01:02" and got.src == "02:00:00:00:00:13"
    ref = got.copy()
    del ref[IP].chksum, ref[l4].chksum
    ref = Ether(bytes(ref))
    assert (got[IP].chksum, got[l4].chksum) == (ref[IP].chksum, ref[l4].chksum)
    assert fdp.actions["reverse"] == 1 and fdp.actions["lb"] == 1


def test_no_route_and_non_ipv4_frames_are_dropped():
    cfg = parse_config(_raw({"port": NETWORK["port"], "route": NETWORK["route"][:1]}))
    cp = _installed(cfg)
    fdp = FrameDataPlane(cfg, dataplane=DataPlane(cfg, cp.mem))
    nowhere = Ether() / IP(src="10.1.0.9", dst="8.8.8.8") / UDP(sport=1, dport=2)
    r = fdp.decide(bytes(nowhere))
    assert r.out is None and r.decision.route_hit == 0 and fdp.actions["no_route"] == 1
    arp = bytes(Ether(type=0x0806) / (b"\x00" * 28))
    assert fdp.decide(arp).out is None


def test_the_pool_manager_writes_rev_with_each_dip_and_clears_it_at_retire(cfg):
    cp = _installed(cfg)
    vb = cfg.geometry.vip_bits
    rev = {unpack_rev(vb, int(w))[2:4]: unpack_rev(vb, int(w))[4]
           for w in cp.mem["rev"] if unpack_rev(vb, int(w))[0]}
    assert rev == {(d.address, d.port): i for i, v in enumerate(cfg.vips) for d in v.dips}
    vip = cfg.vips[0]
    new = Dip(0x0A630101, 9000)
    gone = cp.pools.dip_index[(vip.dips[0].address, vip.dips[0].port)]
    cp.update_pool(0, list(vip.dips[1:]) + [new])
    idx = cp.pools.dip_index[(new.address, new.port)]
    assert unpack_rev(vb, cp.mem.read("rev", idx))[:4] == (True, vip.protocol, new.address,
                                                           new.port)
    cp.poll()
    assert not cp.busy() and cp.mem.read("rev", gone) == 0  # retired: no version uses it
    with pytest.raises(Exception, match="serves VIP"):
        cp.update_pool(1, [new])


def test_vector_format_3_round_trips_and_replays(cfg, tmp_path):
    scen = build_scenario(cfg, connections=60, updates=2)
    assert any(st.decision.route_hit for st in scen.packets)
    write_vectors(scen, tmp_path)
    back = read_vectors(cfg, tmp_path)
    assert back.ops == scen.ops
    assert replay_scenario(back) == []
    header = (tmp_path / "vectors.txt").read_text().splitlines()[1]
    assert header.endswith(" ".join(decision_fields(cfg))) and "route_hit route port" in header


def test_targets_refuse_a_network_config(cfg):
    """A target without the table refuses, naming it: the RTL frame datapath (the model,
    both P4 programs, HLS and the RTL core implement it; tests/test_hdl_network.py checks
    the core)."""
    from amaranth.hdl import Fragment

    from hdl.core import L4LBCore
    from hdl.datapath import FrameDatapath

    with pytest.raises(NetworkUnsupported, match=r"^X: network \(forwarding to 2 ports"):
        require_no_network(cfg, "X")
    with pytest.raises(NetworkUnsupported, match="RTL frame datapath"):
        FrameDatapath(cfg, 8)
    core = L4LBCore(cfg)  # no refusal: it elaborates, with the forwarding fields
    Fragment.get(core, None)
    assert core.dec.payload.shape()["route_hit"].width == 1
    require_no_network(load_config(ROOT / "examples" / "small.toml"), "X")
    assert Memories(cfg).specs["route"].depth == 16
