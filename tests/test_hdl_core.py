# amaranth: UnusedElaboratable=no
"""hdl/core.py in the Amaranth simulator: a short model scenario (writes interleaved with
packets), output backpressure, the learn FIFO's drop counter, parameter validation.
The long runs (>100k packets) are the Verilator benches in cocotb_tests/."""

import dataclasses
import itertools
import random

import pytest
from amaranth.hdl import ClockDomain, Module

from hdl.core import L4LBCore
from hdl.layouts import memory_map
from model.config import clog2, load_config
from model.layout import Action
from model.pipeline import DECISION_FIELDS
from model.vectors import Write, build_scenario

from .conftest import EXAMPLES
from .hdl_simutil import run_sim


def _ops(cfg, scen, load_images=True):
    """The scenario as driver ops; with ``load_images`` its initial images are loaded
    through the write port first (non-zero words only)."""
    mm = memory_map(cfg.geometry)
    ops = [("W", mm[n].id, a, w) for n, words in scen.initial.items()
           for a, w in enumerate(words) if w] if load_images else []
    exp = []
    for o in scen.ops:
        if isinstance(o, Write):
            ops.append(("W", mm[o.mem].id, o.addr, o.word))
        else:
            ops.append(("P", o.packet, len(exp)))
            exp.append(o.decision)
    return ops, exp


def _drive(dut, ops, n_exp, ready=None, learn_ready=None, reset_after=None):
    """Present ops in order (held until accepted); collect decisions and learn events.
    With ``reset_after`` the domain reset is pulsed once that many ops are accepted (ops
    still in flight), and only what comes out after the reset is returned."""
    got, learns, counters = [], [], {}
    ready = ready or itertools.repeat(1)
    learn_ready = learn_ready or itertools.repeat(1)
    top = dut
    if reset_after is not None:
        top = Module()
        top.domains.sync = cd = ClockDomain()
        top.submodules.dut = dut

    async def tb(ctx):
        i = 0
        pending_reset = reset_after
        for _ in range(4 * len(ops) + 200):
            if i < len(ops):
                o = ops[i]
                ctx.set(dut.wr.valid, o[0] == "W")
                ctx.set(dut.pkt.valid, o[0] == "P")
                if o[0] == "W":
                    ctx.set(dut.wr.payload, {"mem": o[1], "addr": o[2], "data": o[3]})
                else:
                    p = o[1]
                    ctx.set(dut.pkt.payload, {
                        "key": {"src_ip": p.src_ip, "dst_ip": p.dst_ip, "src_port": p.src_port,
                                "dst_port": p.dst_port, "proto": p.proto},
                        "tcp_flags": p.tcp_flags, "meta": o[2]})
            else:
                ctx.set(dut.wr.valid, 0)
                ctx.set(dut.pkt.valid, 0)
            ctx.set(dut.dec.ready, next(ready))
            ctx.set(dut.learn.ready, next(learn_ready))
            _, _, wv, wr, pv, pr, dv, dr, dp, lv, lr, lp = await ctx.tick().sample(
                dut.wr.valid, dut.wr.ready, dut.pkt.valid, dut.pkt.ready, dut.dec.valid,
                dut.dec.ready, dut.dec.payload, dut.learn.valid, dut.learn.ready,
                dut.learn.payload)
            if (wv and wr) or (pv and pr):
                i += 1
            if pending_reset is not None and i == pending_reset:
                ctx.set(dut.wr.valid, 0)
                ctx.set(dut.pkt.valid, 0)
                ctx.set(cd.rst, 1)
                await ctx.tick()
                ctx.set(cd.rst, 0)
                got.clear()
                learns.clear()
                pending_reset = None
                continue
            if dv and dr:
                got.append({f: int(getattr(dp, f)) for f in DECISION_FIELDS}
                           | {"meta": int(dp.meta), "out_dst_ip": int(dp.out_dst_ip)})
            if lv and lr:
                learns.append((int(lp.key.src_ip), int(lp.key.src_port), int(lp.vip_id),
                               int(lp.version)))
            if i >= len(ops) and len(got) >= n_exp:
                break
        for _ in range(40):  # drain learn events
            ctx.set(dut.learn.ready, 1)
            _, _, lv, lp = await ctx.tick().sample(dut.learn.valid, dut.learn.payload)
            if lv:
                learns.append((int(lp.key.src_ip), int(lp.key.src_port), int(lp.vip_id),
                               int(lp.version)))
        for name in ("packets", "vip_hits", "conn_misses", "drops", "learn_drops"):
            counters[name] = ctx.get(getattr(dut.counters, name))

    run_sim(top, tb)
    return got, learns, counters


@pytest.fixture(scope="module")
def small_scenario(small_cfg):
    scen = build_scenario(small_cfg, connections=40, updates=2, seed=5)
    return _ops(small_cfg, scen)


def _check(got, exp, scen_ops):
    pkts = {o[2]: o[1] for o in scen_ops if o[0] == "P"}
    assert len(got) == len(exp)
    for n, (g, e) in enumerate(zip(got, exp, strict=True)):
        assert g["meta"] == n, "decisions out of order or lost"
        assert {f: g[f] for f in DECISION_FIELDS} == e.as_dict(), f"packet #{n}"
        assert g["out_dst_ip"] == e.out_dst(pkts[n])[0]


@pytest.mark.parametrize("backpressure", [None, [1, 1, 0], [0, 1, 0, 0, 1]])
def test_core_small_scenario(small_cfg, small_scenario, backpressure):
    ops, exp = small_scenario
    dut = L4LBCore(small_cfg)
    ready = None if backpressure is None else itertools.cycle(backpressure)
    got, learns, counters = _drive(dut, ops, len(exp), ready)
    _check(got, exp, ops)
    pk = {o[2]: o[1] for o in ops if o[0] == "P"}
    assert learns == [(pk[n].src_ip, pk[n].src_port, d.vip_id, d.version)
                      for n, d in enumerate(exp) if d.learn]
    assert counters == {
        "packets": len(exp),
        "vip_hits": sum(d.action != Action.FORWARD for d in exp),
        "conn_misses": sum(d.action != Action.FORWARD and not d.hit for d in exp),
        "drops": sum(d.action == Action.DROP for d in exp),
        "learn_drops": 0,
    }


def test_core_ignores_writes_beyond_a_memory(small_cfg, small_scenario):
    """Writes past a memory's depth (which its address bits alone would alias onto a
    real entry) and to an unused memory id change nothing: the scenario after them
    decides as the model."""
    ops, exp = small_scenario
    mm = memory_map(small_cfg.geometry)
    addr_bits = max(info.addr_bits for info in mm.values())
    junk = [("W", info.id, a, (1 << info.width) - 1) for info in mm.values()
            for a in range(info.depth, min(info.depth + 3, 1 << addr_bits))]
    assert junk, "every memory fills its address space: nothing to alias"
    if len(mm) < 1 << clog2(len(mm)):                  # an id the mem field can hold
        junk.append(("W", len(mm), 0, 1))
    first_pkt = next(i for i, o in enumerate(ops) if o[0] == "P")   # after the images
    got, _, _ = _drive(L4LBCore(small_cfg), ops[:first_pkt] + junk + ops[first_pkt:],
                       len(exp))
    _check(got, exp, ops)


def test_core_narrow_counters(small_cfg, small_scenario):
    """8-bit counters (two 4-bit halves with a registered carry) read exactly, through
    many carries of the low half."""
    ops, exp = small_scenario
    dut = L4LBCore(small_cfg, counter_width=8)
    got, _, counters = _drive(dut, ops, len(exp))
    _check(got, exp, ops)
    assert len(exp) > 100
    assert counters["packets"] == len(exp) % 256
    assert counters["vip_hits"] == sum(d.action != Action.FORWARD for d in exp) % 256
    assert counters["drops"] == sum(d.action == Action.DROP for d in exp) % 256


def test_core_reset_with_ops_in_flight(small_cfg):
    """A reset pulse while packets and (idempotent) table writes are in flight: nothing
    of theirs comes out afterwards, the counters restart, and the scenario then run
    gives exactly the model's decisions, learn events and counts (tables, which the
    reset does not clear, were not disturbed by the flushed slots)."""
    scen = build_scenario(small_cfg, connections=40, updates=2, seed=5)
    load, _ = _ops(small_cfg, scen)
    load = load[:len(load) - len(scen.ops)]  # the image loads only
    run, exp = _ops(small_cfg, scen, load_images=False)
    rng = random.Random(3)
    pkt = next(o[1] for o in run if o[0] == "P")
    burst = []
    for k in range(60):  # packets to no VIP, and image words written again unchanged
        if k % 4 == 3:
            burst.append(rng.choice(load))
        else:
            burst.append(("P", dataclasses.replace(pkt, dst_ip=0x7F000001, dst_port=k),
                          10_000 + k))
    ops = load + burst + run
    dut = L4LBCore(small_cfg)
    got, learns, counters = _drive(dut, ops, len(exp), reset_after=len(load) + len(burst))
    _check(got, exp, run)
    pk = {o[2]: o[1] for o in run if o[0] == "P"}
    assert learns == [(pk[n].src_ip, pk[n].src_port, d.vip_id, d.version)
                      for n, d in enumerate(exp) if d.learn]
    assert counters["packets"] == len(exp)
    assert counters["vip_hits"] == sum(d.action != Action.FORWARD for d in exp)


def test_core_hash_stages_and_full_key(small_scenario):
    cfg = load_config(EXAMPLES.parent / "cocotb_tests" / "configs" / "fullkey.toml")
    scen = build_scenario(cfg, connections=25, updates=2, seed=9)
    ops, exp = _ops(cfg, scen)
    dut = L4LBCore(cfg, hash_stages=3)
    assert dut.latency == 41
    got, _, _ = _drive(dut, ops, len(exp), itertools.cycle([1, 0, 1]))
    _check(got, exp, ops)


def test_core_learn_fifo_drops_are_counted(small_cfg, small_scenario):
    ops, exp = small_scenario
    dut = L4LBCore(small_cfg, learn_fifo_depth=2)
    rng = random.Random(4)
    got, learns, counters = _drive(dut, ops, len(exp),
                                   learn_ready=iter(lambda: int(rng.random() < 0.05), 2))
    _check(got, exp, ops)  # decisions unaffected: learn = 1 even when the event drops
    n_learn = sum(d.learn for d in exp)
    assert counters["learn_drops"] > 0
    assert len(learns) + counters["learn_drops"] == n_learn


def test_core_latency_property(small_cfg):
    assert L4LBCore(small_cfg).latency == 41
    assert L4LBCore(small_cfg, hash_stages=2).latency == 40


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"hash_stages": 0}, ValueError, "hash_stages"),
    ({"meta_width": 0}, ValueError, "meta_width"),
    ({"learn_fifo_depth": 0}, ValueError, "learn_fifo_depth"),
    ({"counter_width": 4}, ValueError, "counter_width"),
    ({"init_images": {"bogus": []}}, ValueError, "unknown memory 'bogus'"),
    ({"init_images": {"vip": [0] * 5}}, ValueError, "more than the depth 4"),
])
def test_core_validates(small_cfg, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        L4LBCore(small_cfg, **kwargs)
    with pytest.raises(TypeError, match="Config"):
        L4LBCore(small_cfg.geometry)


def test_core_init_images_replace_loading(small_cfg):
    """Power-on images (export's init_images) give the same decisions as loading them."""
    scen = build_scenario(small_cfg, connections=15, updates=1, seed=2)
    ops, exp = _ops(small_cfg, scen, load_images=False)
    dut = L4LBCore(small_cfg, init_images=scen.initial)
    got, _, _ = _drive(dut, ops, len(exp))
    _check(got, exp, ops)


def test_split_counter_exact_through_carries():
    """A 20-bit counter (two 10-bit halves; the upper bits of the low half tested a cycle
    early for the carry) counts the cycles with ``inc`` high, two cycles late, exactly
    through several carries of the low half, including increments right after one."""
    from amaranth.hdl import Signal

    from hdl.core import split_counter
    m = Module()
    out, inc = Signal(20), Signal()
    split_counter(m, out, inc, "c")
    rng = random.Random(7)
    incs = [1 if rng.random() < 0.9 else 0 for _ in range(4000)]
    seen = []

    async def tb(ctx):
        for v in incs:
            ctx.set(inc, v)
            await ctx.tick()
            seen.append(ctx.get(out))

    run_sim(m, tb)
    # after the clock edge that samples incs[c], out shows the incs before cycle c
    total = list(itertools.accumulate(incs, initial=0))
    assert total[-1] > 3 * 1024
    assert seen == total[:len(seen)]
