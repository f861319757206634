# amaranth: UnusedElaboratable=no
"""The ``[network]`` table in the RTL core (hdl/network.py, hdl/core.py) against the
model: the return path (REVERSE from the ``rev`` memory) and forwarding (``route_hit``,
``route``, ``port`` from the longest-prefix match over ``route``).

Top: Amaranth-simulator tests -- :class:`~hdl.network.ReverseTable` and
:class:`~hdl.network.RouteTable` against naive models with writes at every distance
from the lookups, and the core on ``examples/network.toml``'s model scenario plus the
lookup corners of tests/test_hls_network.py (duplicate ``rev`` keys and routes at higher
indices taking over, /0 and /32 routes). Middle: the cocotb tests, which run inside
Verilator with the core bench of ``cocotb_tests/l4lb_bench.py``. Bottom: the pytest
functions that build ``examples/network.toml`` once (cached by
``cocotb_tests/rtl_env.py``) and replay its format-3 vectors, back to back and with
gaps and backpressure, and check that an altered expected decision is reported with
its packet and field.
"""

import itertools
import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import cocotb
import pytest

from hdl.core import L4LBCore
from hdl.layouts import memory_map
from hdl.network import MAX_REV_ENTRIES, MAX_ROUTE_ENTRIES, ReverseTable, RouteTable
from model.config import load_config, parse_config
from model.hashing import FIELDS
from model.layout import Action
from model.network import pack_rev, pack_route
from model.pipeline import Decision, Packet, decision_fields
from model.vectors import Scenario, Write, build_scenario, read_vectors, write_vectors

from .hdl_simutil import run_sim

ROOT = Path(__file__).resolve().parent.parent
NETWORK_TOML = ROOT / "examples" / "network.toml"


def _cfg():
    return load_config(NETWORK_TOML)


def _scenario(connections: int = 60, updates: int = 2, seed: int = 3) -> Scenario:
    """examples/network.toml's model scenario (server replies = REVERSE, routed and
    unrouted frames, pool updates), then the lookup corners of tests/test_hls_network.py."""
    from .test_hls_network import _extended

    return _extended(build_scenario(_cfg(), connections=connections, updates=updates,
                                    seed=seed))


def _bench_ops(cfg, scen: Scenario, load_images: bool = True):
    """("W", id, addr, word) / ("P", Packet, seq) ops (the images' non-zero words first)
    and the expected decisions."""
    mm = {n: i.id for n, i in memory_map(cfg.geometry, cfg.lifecycle, cfg.network).items()}
    ops = [("W", mm[n], a, int(w)) for n, words in scen.initial.items()
           for a, w in enumerate(words) if w] if load_images else []
    exp: list[Decision] = []
    for o in scen.ops:
        if isinstance(o, Write):
            ops.append(("W", mm[o.mem], o.addr, o.word))
        else:
            ops.append(("P", o.packet, len(exp)))
            exp.append(o.decision)
    return ops, exp


# ======================================================================================
# Amaranth simulator: the two tables
# ======================================================================================

def _lookup_run(dut, outputs, ops):
    """Ops ``("L", {input: value})`` / ``("W", addr, word)``, one per clock; for every
    lookup, its outputs ``dut.latency`` cycles later."""
    got: list[tuple] = []
    lat = dut.latency

    async def tb(ctx):
        pending: list[int] = []
        for c in range(len(ops) + lat + 1):
            if c < len(ops):
                o = ops[c]
                ctx.set(dut.w_en, o[0] == "W")
                if o[0] == "W":
                    ctx.set(dut.w_addr, o[1])
                    ctx.set(dut.w_data, o[2])
                else:
                    for k, v in o[1].items():
                        ctx.set(getattr(dut, k), v)
            else:
                ctx.set(dut.w_en, 0)
            pending.append(c if c < len(ops) and ops[c][0] == "L" else -1)
            await ctx.tick()
            if c + 1 >= lat:
                src = pending[c + 1 - lat]
                if src >= 0:
                    got.append(tuple(ctx.get(getattr(dut, o)) for o in outputs))

    run_sim(dut, tb)
    return got


def _rev_model(words, vb, src_ip, src_port, proto):
    for i, w in enumerate(words):
        valid, p, ip, port = w >> (56 + 48 + vb) & 1, w >> (48 + 48 + vb) & 0xFF, \
            w >> (16 + 48 + vb) & 0xFFFFFFFF, w >> (48 + vb) & 0xFFFF
        if valid and (p, ip, port) == (proto, src_ip, src_port):
            return (1, i, w >> 48 & ((1 << vb) - 1), w >> 16 & 0xFFFFFFFF, w & 0xFFFF)
    return (0,)


def test_reverse_table_against_a_naive_model():
    """Random writes (duplicate keys, invalid words) interleaved with lookups at every
    distance: hit, lowest index and its VIP equal a scan of the words as written so far."""
    cfg = _cfg()
    g = cfg.geometry
    vb = g.vip_bits
    rng = random.Random(7)
    keys = [(6, 0x0A0A0000 + k, 8080 + k % 2) for k in range(5)]
    words = [0] * g.dip_capacity
    ops, want = [], []
    for _ in range(1500):
        if rng.random() < 0.3:
            a = rng.randrange(g.dip_capacity)
            p, ip, port = rng.choice(keys)
            w = pack_rev(vb, rng.random() < 0.8, p, ip, port, rng.randrange(1 << vb),
                         rng.getrandbits(32), rng.getrandbits(16))
            words[a] = w
            ops.append(("W", a, w))
        else:
            p, ip, port = rng.choice(keys + [(17, 0x0A0A0001, 8081)])
            ops.append(("L", {"src_ip": ip, "src_port": port, "proto": p}))
            want.append(_rev_model(words, vb, ip, port, p))
    dut = ReverseTable(g)
    got = _lookup_run(dut, ("hit", "index", "vip_id", "vip_ip", "vip_port"), ops)
    got = [g_[:1] if not g_[0] else g_ for g_ in got]
    assert got == want
    assert sum(w[0] for w in want) > 300 and sum(not w[0] for w in want) > 100


def _route_model(routes, dst):
    best = None
    for i, (valid, prefix, length, port) in enumerate(routes):
        mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
        if valid and dst & mask == prefix & mask and (best is None or length > best[0]):
            best = (length, i, port)
    return (0,) if best is None else (1, best[1], best[2])


@pytest.mark.parametrize("capacity", [1, 5, 16])
def test_route_table_against_a_naive_model(capacity):
    """Random routes (duplicate prefixes, /0, /32, nested prefixes) written between
    lookups at every distance: the longest prefix, then the lowest index."""
    rng = random.Random(capacity)
    bases = [0x64400000, 0x0A0A0000, 0x0C000001, 0x80000000]
    routes = [(0, 0, 0, 0)] * capacity
    ops, want = [], []
    for _ in range(1200):
        if rng.random() < 0.3:
            a = rng.randrange(capacity)
            length = rng.choice([0, 1, 8, 10, 12, 16, 24, 31, 32])
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            prefix = rng.choice(bases) & mask
            r = (int(rng.random() < 0.85), prefix, length, rng.randrange(512))
            routes[a] = r
            ops.append(("W", a, pack_route(bool(r[0]), r[1], r[2], r[3], rng.getrandbits(48))))
        else:
            dst = rng.choice(bases) ^ (rng.getrandbits(rng.choice([0, 1, 4, 12, 20, 32])))
            ops.append(("L", {"dst_ip": dst}))
            want.append(_route_model(routes, dst))
    dut = RouteTable(capacity)
    got = _lookup_run(dut, ("hit", "index", "port"), ops)
    got = [g_[:1] if not g_[0] else g_ for g_ in got]
    assert got == want
    assert sum(w[0] for w in want) > 150


def test_tables_validate():
    with pytest.raises(ValueError, match="route capacity"):
        RouteTable(0)
    with pytest.raises(ValueError, match="route capacity"):
        RouteTable(MAX_ROUTE_ENTRIES + 1)
    vip = [{"name": "w", "address": "10.0.0.1", "port": 80, "protocol": "tcp",
            "dips": [{"address": "10.1.0.1", "port": 80}]}]
    net = {"port": [{"id": 0, "mac": "02:00:00:00:00:10"}],
           "route": [{"prefix": "0.0.0.0/0", "port": 0, "mac": "02:00:00:00:00:ff"}]}
    big = parse_config({"name": "big", "geometry": {"dip_capacity": 2 * MAX_REV_ENTRIES},
                        "vip": vip, "network": net})
    with pytest.raises(ValueError, match="dip_capacity 512 is above 256"):
        ReverseTable(big.geometry)
    with pytest.raises(TypeError, match="Geometry"):
        ReverseTable(big)
    with pytest.raises(ValueError, match="dip_capacity 512 is above 256"):
        L4LBCore(big)
    many = parse_config({"name": "many", "vip": vip,
                         "network": net | {"route_capacity": MAX_ROUTE_ENTRIES + 1}})
    with pytest.raises(ValueError, match="route_capacity 65 is above 64"):
        L4LBCore(many)


# ======================================================================================
# Amaranth simulator: the core
# ======================================================================================

def _drive(dut: L4LBCore, ops, n_dec: int, ready: Iterator[int] | None = None,
           idle: Iterator[int] | None = None, n_rd: int = 0) -> list[dict]:
    """Present ops in order (each held until accepted, ``idle`` inserting gaps);
    collect the decisions (``ready`` drives ``dec.ready``). With a ``[lifecycle]``, ops
    ``("R", id, addr, k)`` are control-plane reads, whose words are returned as the
    decisions' ``reads`` (a list after the last decision)."""
    life = dut.cfg.lifecycle.enabled
    seq = dut.cfg.lifecycle.auth
    names = decision_fields(dut.cfg) + ("out_dst_ip", "out_dst_port", "meta")
    got: list[dict] = []
    words: list[int] = []
    ready = ready or itertools.repeat(1)
    idle = idle or itertools.repeat(1)
    streams = ((dut.wr, "W"), (dut.pkt, "P")) + (((dut.rd, "R"),) if life else ())

    async def tb(ctx):
        i = 0
        cur = None
        for _ in range(6 * len(ops) + 400):
            if cur is None and i < len(ops) and next(idle):
                cur = ops[i]
            for s_, kind in streams:
                ctx.set(s_.valid, cur is not None and cur[0] == kind)
            if cur is not None:
                if cur[0] == "W":
                    ctx.set(dut.wr.payload, {"mem": cur[1], "addr": cur[2], "data": cur[3]})
                elif cur[0] == "R":
                    ctx.set(dut.rd.payload, {"mem": cur[1], "addr": cur[2]})
                else:
                    p = cur[1]
                    ctx.set(dut.pkt.payload, {"key": {f: getattr(p, f) for f in FIELDS},
                                              "tcp_flags": p.tcp_flags, "meta": cur[2]}
                            | ({"seq": p.seq} if seq else {}))
            r = next(ready)
            ctx.set(dut.dec.ready, r)
            if life:
                ctx.set(dut.rdata.ready, r)
            ctx.set(dut.learn.ready, 1)
            sampled = [x for s_, _ in streams for x in (s_.valid, s_.ready)]
            extra = (dut.rdata.valid, dut.rdata.payload) if life else ()
            _, _, *v = await ctx.tick().sample(dut.dec.valid, dut.dec.ready,
                                               dut.dec.payload, *sampled, *extra)
            dv, dr, dp = v[:3]
            hs = v[3:3 + len(sampled)]
            if any(hs[k] and hs[k + 1] for k in range(0, len(hs), 2)):
                i += 1
                cur = None
            if dv and dr:
                got.append({f: int(getattr(dp, f)) for f in names})
            if life and r and v[-2]:
                words.append(int(v[-1].data))
            if i >= len(ops) and len(got) >= n_dec and len(words) >= n_rd:
                break

    run_sim(dut, tb)
    if life:
        got.append({"reads": words})
    return got


def _check(cfg, got: list[dict], exp: list[Decision], ops) -> None:
    pkts = {o[2]: o[1] for o in ops if o[0] == "P"}
    names = decision_fields(cfg)
    assert len(got) == len(exp)
    for n, (g, e) in enumerate(zip(got, exp, strict=True)):
        assert g["meta"] == n, "decisions out of order or lost"
        assert {f: g[f] for f in names} == e.as_dict(names), f"packet #{n}"
        assert (g["out_dst_ip"], g["out_dst_port"]) == e.out_dst(pkts[n]), f"packet #{n}"


@pytest.fixture(scope="module")
def net_scenario():
    cfg = _cfg()
    scen = _scenario(connections=30, updates=2, seed=5)
    ops, exp = _bench_ops(cfg, scen)
    acts = {d.action for d in exp}
    assert acts >= {Action.FORWARD, Action.LB, Action.REVERSE}
    assert any(d.route_hit for d in exp) and any(not d.route_hit and d.action != Action.DROP
                                                 for d in exp)
    return cfg, ops, exp


@pytest.mark.parametrize("flow", ["back_to_back", "gaps_backpressure"])
def test_core_network_scenario(net_scenario, flow):
    """The model scenario and the lookup corners in the Amaranth simulator: every field
    of format 3 and the emitted destination equal the model's."""
    cfg, ops, exp = net_scenario
    dut = L4LBCore(cfg)
    assert dut.latency == 41 + 1 + RouteTable.latency_for(cfg.network.route_capacity)
    if flow == "back_to_back":
        got = _drive(dut, ops, len(exp))
    else:
        rng = random.Random(2)
        got = _drive(dut, ops, len(exp), ready=iter(lambda: int(rng.random() < 0.6), 2),
                     idle=iter(lambda: int(rng.random() < 0.8), 2))
    _check(cfg, got, exp, ops)


def test_core_network_writes_between_packets():
    """``rev`` and ``route`` writes racing the lookups of the packets right behind and
    ahead of them (no gap): a reply whose ``rev`` word is rewritten, invalidated and
    duplicated, and a destination whose routes change, alternating with the writes."""
    cfg = _cfg()
    scen = build_scenario(cfg, connections=4, updates=0, seed=1)
    from model.vectors import load_memories

    mem = load_memories(cfg, scen.initial)
    from model.pipeline import DataPlane

    dp = DataPlane(cfg, mem)
    vb = cfg.geometry.vip_bits
    rng = random.Random(9)
    sops: list = []
    src = (0x0A0A0001, 8080, 6)
    reply = Packet(src[0], 0x64400007, src[1], 40001, src[2], 0x10)
    from model.vectors import Step

    for _ in range(600):
        r = rng.random()
        if r < 0.25:
            a = rng.choice([0, 1, 5, 31])
            w = pack_rev(vb, rng.random() < 0.7, src[2], src[0], src[1], rng.randrange(4),
                         rng.getrandbits(32), rng.getrandbits(16))
            sops.append(Write("rev", a, w))
            mem.write("rev", a, w)
        elif r < 0.45:
            a = rng.choice([6, 7, 8, 15])
            length = rng.choice([0, 8, 16, 24, 32])
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            w = pack_route(rng.random() < 0.8, 0x64400007 & mask, length, rng.randrange(4),
                           0x020000000000)
            sops.append(Write("route", a, w))
            mem.write("route", a, w)
        else:
            pkt = reply if rng.random() < 0.7 else Packet(0x0B000001, 0x64400007, 1, 2, 17)
            sops.append(Step(pkt, dp.process(pkt)))
    ops, exp = _bench_ops(cfg, Scenario(cfg, scen.initial, sops))
    assert sum(d.action == Action.REVERSE for d in exp) > 50
    assert len({(d.route_hit, d.route) for d in exp}) > 4
    got = _drive(L4LBCore(cfg), ops, len(exp))
    _check(cfg, got, exp, ops)


def test_core_network_with_lifecycle():
    """A lifecycle config with examples/network.toml's [network] (tests/test_hls_network.py's
    "lcnet"): CHALLENGE routed by the client's address, control-plane reads answered
    through the routing stages, SYN authentication, aging, the lookup corners."""
    from .test_hdl_lifecycle import scenario_ops
    from .test_hls_network import _extended, _load

    cfg = _load("lcnet")
    scen = _extended(build_scenario(cfg, connections=15, updates=1, seed=2))
    mm = {n: i.id for n, i in memory_map(cfg.geometry, cfg.lifecycle, cfg.network).items()}
    ops, exp, words = scenario_ops(cfg, scen.initial, scen.ops, mm)
    acts = {d.action for d in exp}
    assert acts >= {Action.LB, Action.CHALLENGE, Action.REVERSE} and len(words) > 20
    assert any(d.action == Action.CHALLENGE and d.route_hit for d in exp)
    dut = L4LBCore(cfg)
    assert dut.latency == 59 + dut.route_delay
    rng = random.Random(5)
    got = _drive(dut, ops, len(exp), ready=iter(lambda: int(rng.random() < 0.7), 2),
                 n_rd=len(words))
    assert got.pop()["reads"] == words
    _check(cfg, got, exp, ops)


# ======================================================================================
# cocotb tests (run inside the simulator; the bench is cocotb_tests/l4lb_bench.py)
# ======================================================================================

def _cocotb_setup(dut):
    from l4lb_bench import L4LBBench

    cfg = load_config(os.environ["L4LB_CONFIG"])
    info = json.loads(Path(os.environ["L4LB_CORE_JSON"]).read_text())
    return L4LBBench(dut, cfg, info)


def _record(bench, name: str, res, **extra) -> None:
    line = bench.report(name, res)
    stats = {"name": name, "packets": res.packets, "writes": res.writes,
             "cycles": res.cycles, "wall": res.wall, "mismatches": len(res.mismatches),
             "latencies": sorted(set(res.latencies)), "span": res.span,
             "first": res.mismatches[:5]} | extra
    with open(Path(os.environ["L4LB_RUN_DIR"]) / "stats.jsonl", "a") as f:
        f.write(json.dumps(stats) + "\n")
    if not extra.get("expect_mismatch"):
        assert not res.mismatches, f"{line}\n" + "\n".join(res.mismatches[:20])


def _file_ops(bench, scen: Scenario, shadow=None):
    from l4lb_bench import image_writes

    ops = image_writes(scen.initial, bench.mem_ids, shadow)
    n_load = len(ops)
    exp: list[Decision] = []
    for o in scen.ops:
        if isinstance(o, Write):
            ops.append(("W", bench.mem_ids[o.mem], o.addr, o.word))
        else:
            ops.append(("P", o.packet, len(exp)))
            exp.append(o.decision)
    return ops, exp, n_load


@cocotb.test()
async def network_vectors(dut):
    """Replay format-3 vector directories (``L4LB_VECTORS``, ``:``-separated): images
    loaded through the write port, then the W/P lines in order while traffic flows;
    each back to back (one op per clock, fixed latency) and again with random input
    gaps, output and learn backpressure."""
    from l4lb_bench import expected_ops, random_gen

    from model.layout import Memories

    bench = _cocotb_setup(dut)
    cfg = bench.cfg
    rng = random.Random(int(os.environ.get("L4LB_SEED", "1")))
    held = Memories(cfg)  # what the DUT's memories hold: zero after power-on
    for k, path in enumerate(os.environ["L4LB_VECTORS"].split(":")):
        scen = read_vectors(cfg, path)
        for flow in ("", "_gaps_backpressure"):
            await bench.reset()
            ops, exp, n_load = _file_ops(bench, scen, held.arrays)
            # the model on the same ops: the file's decisions, and what the DUT will hold
            # afterwards (packets set TransitTable bits)
            assert expected_ops(cfg, held, ops, bench.id_to_name) == exp
            if flow:
                res = await bench.run(ops, exp, idle=random_gen(rng, 0.8),
                                      backpressure=random_gen(rng, 0.7),
                                      learn_backpressure=random_gen(rng, 0.5))
            else:
                res = await bench.run(ops, exp)
                assert res.last_op - res.first_op + 1 == len(ops), "ops not 1 per cycle"
            _record(bench, f"vectors{k}{flow}", res, load_writes=n_load,
                    reverse=sum(d.action == Action.REVERSE for d in exp),
                    routed=sum(d.route_hit for d in exp))


@cocotb.test()
async def network_altered(dut):
    """A prefix of the vectors with one expected decision altered (``L4LB_ALTER`` =
    ``packet:field``): the scoreboard must report exactly that packet and field."""
    import dataclasses

    bench = _cocotb_setup(dut)
    scen = read_vectors(bench.cfg, os.environ["L4LB_VECTORS"].split(":")[0])
    seq, field = os.environ["L4LB_ALTER"].split(":")
    await bench.reset()
    ops, exp, _ = _file_ops(bench, scen)
    n = int(seq)
    cut = [i for i, o in enumerate(ops) if o[0] == "P"][n + 20]
    exp = exp[:n + 21]
    exp[n] = dataclasses.replace(exp[n], **{field: getattr(exp[n], field) ^ 1})
    res = await bench.run(ops[:cut + 1], exp)
    _record(bench, "altered", res, expect_mismatch=True)


# ======================================================================================
# pytest: Verilator
# ======================================================================================

def _run(tmp_path, testcase: str, env: dict) -> list[dict]:
    sys.path.insert(0, str(ROOT / "cocotb_tests"))
    from rtl_env import build_core, run_cocotb

    build = build_core(NETWORK_TOML)
    results = run_cocotb(build, "tests.test_hdl_network", testcase, env=env)
    stats = [json.loads(x) for x in (results.parent / "stats.jsonl").read_text().splitlines()]
    (results.parent / "stats.jsonl").unlink()
    for s in stats:
        print(f"[network] {s['name']}: {s['packets']} packets "
              f"({s.get('reverse', '-')} REVERSE, {s.get('routed', '-')} routed), "
              f"{s['writes']} writes ({s.get('load_writes', '-')} image words), "
              f"{s['cycles']} cycles, {s['mismatches']} mismatches, latencies "
              f"{s['latencies'][:3]}..{s['latencies'][-1:]}, "
              f"{s['packets'] / s['wall']:.0f} packets/s")
    return stats


@pytest.fixture(scope="module")
def vector_dirs(tmp_path_factory):
    """examples/network.toml's vectors: the model scenario, and the scenario followed by
    the lookup corners (duplicate rev keys and routes taking over, /0 and /32)."""
    root = tmp_path_factory.mktemp("network_vectors")
    cfg = _cfg()
    plain = build_scenario(cfg, connections=int(os.environ.get("L4LB_NET_CONNECTIONS", "1500")),
                           updates=4, seed=3)
    write_vectors(plain, root / "scenario")
    write_vectors(_scenario(), root / "corners")
    return root, plain


def test_rtl_network_lint(tmp_path):
    """``verilator --lint-only -Wall`` (with the project's waivers) on the network core."""
    sys.path.insert(0, str(ROOT / "cocotb_tests"))
    from rtl_env import verilator_lint

    from hdl.export import write_verilog

    path = write_verilog(_cfg(), tmp_path)
    res = verilator_lint(path)
    report = res.stdout + res.stderr
    assert res.returncode == 0 and "%Warning" not in report and "%Error" not in report, report


def test_rtl_network_vectors(vector_dirs, tmp_path):
    """Format-3 vectors through the Verilated core: 0 mismatches on every decision field
    (route_hit, route, port included), destination, learn event and counter."""
    root, plain = vector_dirs
    stats = _run(tmp_path, "network_vectors",
                 {"L4LB_VECTORS": f"{root / 'scenario'}:{root / 'corners'}"})
    assert len(stats) == 4 and all(s["mismatches"] == 0 for s in stats)
    latency = L4LBCore(_cfg()).latency
    assert stats[0]["latencies"] == [latency] and stats[2]["latencies"] == [latency]
    assert stats[0]["packets"] == len(plain.packets)
    assert stats[0]["reverse"] > 100 and stats[0]["routed"] < stats[0]["packets"]


def test_rtl_network_reports_an_altered_decision(vector_dirs, tmp_path):
    """One expected ``port`` (of a routed REVERSE decision) altered: the scoreboard names
    that packet and that field, and nothing else."""
    root, plain = vector_dirs
    n = next(i for i, s in enumerate(plain.packets)
             if s.decision.action == Action.REVERSE and s.decision.route_hit)
    stats = _run(tmp_path, "network_altered",
                 {"L4LB_VECTORS": str(root / "scenario"), "L4LB_ALTER": f"{n}:port"})
    assert stats[0]["mismatches"] == 1
    assert stats[0]["first"][0].startswith(f"packet #{n}: port: expected ")
