# amaranth: UnusedElaboratable=no
"""The connection lifecycle in the RTL core (hdl/lifecycle.py, hdl/auth.py, hdl/siphash.py)
against the model: HalfSipHash-2-4, SYN authentication, activity bits, control-plane reads.

Top: Amaranth-simulator tests (the HalfSipHash unit on random inputs and the reference
vectors; the core on the small lifecycle config of tests/test_lifecycle.py, including
back-to-back hazards on verified-source words). Middle: the cocotb bench
(:class:`LifecycleBench`) and its cocotb tests, which run inside Verilator. Bottom: the
pytest function that builds ``examples/lifecycle.toml`` once (cached by
``cocotb_tests/rtl_env.py``) and replays its format-2 vectors (W, R and P lines) through
the Verilog, once back to back and once with random gaps and backpressure, then checks
that the scoreboard catches one altered cookie and one altered read word.
"""

import itertools
import json
import os
import random
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import cocotb
import pytest
from cocotb.triggers import ReadOnly, RisingEdge

from hdl.core import L4LBCore
from hdl.layouts import memory_map
from hdl.siphash import HalfSipHash
from model.config import Config, load_config, parse_config
from model.cookie import cookie, halfsiphash24, halfsiphash24_words
from model.hashing import FIELDS
from model.layout import Action, Memories, Read
from model.pipeline import (
    LIFECYCLE_DECISION_FIELDS,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    DataPlane,
    Decision,
    Packet,
)
from model.vectors import (
    Step,
    Write,
    build_scenario,
    load_memories,
    read_vectors,
    write_vectors,
)

from .hdl_simutil import run_sim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "cocotb_tests"))
from l4lb_bench import L4LBBench  # noqa: E402  (cocotb_tests/ holds the core bench)

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE_TOML = ROOT / "examples" / "lifecycle.toml"

Op = tuple  # ("W", mem_id, addr, word) | ("R", mem_id, addr, k) | ("P", Packet, seq)


def scenario_ops(cfg: Config, initial: dict | None, ops: Sequence, mem_ids: dict[str, int]
                 ) -> tuple[list[Op], list[Decision], list[int]]:
    """Bench ops of a scenario (``initial``'s non-zero words loaded first when given),
    the expected decision of every packet and the expected word of every read."""
    out: list[Op] = []
    if initial is not None:
        out = [("W", mem_ids[n], a, int(w)) for n, words in initial.items()
               for a, w in enumerate(words) if w]
    exp: list[Decision] = []
    words: list[int] = []
    for o in ops:
        if isinstance(o, Write):
            out.append(("W", mem_ids[o.mem], o.addr, o.word))
        elif isinstance(o, Read):
            out.append(("R", mem_ids[o.mem], o.addr, len(words)))
            words.append(o.word)
        else:
            out.append(("P", o.packet, len(exp)))
            exp.append(o.decision)
    return out, exp, words


# ======================================================================================
# Amaranth simulator
# ======================================================================================

# HalfSipHash-2-4 reference vectors (key 00..07, message 00..n-1), as tests/test_lifecycle.py
HSIP32 = {0: "a9359f5b", 1: "27475ab8", 3: "8afee704", 4: "2a6e4689", 7: "8bcf63c5",
          8: "d0b8848f", 12: "57f0872f", 15: "74fe2b97"}


def _sip_run(length: int, inputs: list[tuple[int, list[int]]]) -> list[int]:
    """One message per clock through :class:`HalfSipHash`; the hash of each."""
    dut = HalfSipHash(length)
    got: list[int] = []

    async def tb(ctx):
        for c in range(len(inputs) + dut.latency):
            if c < len(inputs):
                ctx.set(dut.key, inputs[c][0])
                for k, w in enumerate(inputs[c][1]):
                    ctx.set(dut.words[k], w)
            await ctx.tick()
            got.append(ctx.get(dut.h))

    run_sim(dut, tb)
    return got[dut.latency - 1:dut.latency - 1 + len(inputs)]


@pytest.mark.parametrize("n", sorted(HSIP32))
def test_halfsiphash_reference_vectors(n):
    msg = bytes(range(n))
    words = [int.from_bytes(msg[4 * i:4 * i + 4], "little") for i in range(n // 4 + 1)]
    key = int.from_bytes(bytes(range(8)), "little")
    (h,) = _sip_run(n, [(key, words)])
    assert h.to_bytes(4, "little").hex() == HSIP32[n]
    assert h == halfsiphash24(bytes(range(8)), msg)


def test_halfsiphash_cookie_messages_one_per_clock():
    """400 random keys and connections back to back: every hash is the model's, and the
    cookie the core derives from it is model.cookie.cookie."""
    rng = random.Random(7)
    ins, conns = [], []
    for _ in range(400):
        key = rng.getrandbits(64)
        a, b, sp, dp = rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), \
            rng.getrandbits(16)
        conns.append((key, a, b, sp, dp))
        ins.append((key, [a, b, (sp << 16) | dp, 0]))
    got = _sip_run(12, ins)
    assert got == [halfsiphash24_words(k, w, 12) for k, w in ins]
    for h, (key, a, b, sp, dp) in zip(got, conns, strict=True):
        e = h & 1  # any parity: the core puts the key's parity into bit 0
        assert (h & ~1) | e == cookie(key, e, a, b, sp, dp)


def test_halfsiphash_validates():
    with pytest.raises(ValueError, match="length"):
        HalfSipHash(256)
    assert HalfSipHash(12).latency == 25


def _drive(dut: L4LBCore, ops: list[Op], n_dec: int, n_rd: int,
           ready: Iterator[int] | None = None) -> tuple[list[dict], list[int]]:
    """Present ops in order (each held until accepted); collect decisions and read
    answers (``ready`` drives ``dec.ready`` and ``rdata.ready``)."""
    got: list[dict] = []
    words: list[int] = []
    ready = ready or itertools.repeat(1)

    async def tb(ctx):
        i = 0
        for _ in range(4 * len(ops) + 400):
            if i < len(ops):
                o = ops[i]
                ctx.set(dut.wr.valid, o[0] == "W")
                ctx.set(dut.rd.valid, o[0] == "R")
                ctx.set(dut.pkt.valid, o[0] == "P")
                if o[0] == "W":
                    ctx.set(dut.wr.payload, {"mem": o[1], "addr": o[2], "data": o[3]})
                elif o[0] == "R":
                    ctx.set(dut.rd.payload, {"mem": o[1], "addr": o[2]})
                else:
                    p = o[1]
                    ctx.set(dut.pkt.payload, {"key": {f: getattr(p, f) for f in FIELDS},
                                              "tcp_flags": p.tcp_flags, "seq": p.seq,
                                              "meta": o[2]})
            else:
                for s in (dut.wr, dut.rd, dut.pkt):
                    ctx.set(s.valid, 0)
            r = next(ready)
            ctx.set(dut.dec.ready, r)
            ctx.set(dut.rdata.ready, r)
            ctx.set(dut.learn.ready, 1)
            _, _, *v = await ctx.tick().sample(
                dut.wr.valid, dut.wr.ready, dut.rd.valid, dut.rd.ready, dut.pkt.valid,
                dut.pkt.ready, dut.dec.valid, dut.dec.ready, dut.dec.payload,
                dut.rdata.valid, dut.rdata.ready, dut.rdata.payload)
            wv, wr, rv, rr, pv, pr, dv, dr, dp, qv, qr, qp = v
            if (wv and wr) or (rv and rr) or (pv and pr):
                i += 1
            if dv and dr:
                got.append({f: int(getattr(dp, f)) for f in LIFECYCLE_DECISION_FIELDS}
                           | {"meta": int(dp.meta)})
            if qv and qr:
                words.append(int(qp.data))
            if i >= len(ops) and len(got) >= n_dec and len(words) >= n_rd:
                break

    run_sim(dut, tb)
    return got, words


def _check(got: list[dict], words: list[int], exp: list[Decision], exp_words: list[int]
           ) -> None:
    assert len(got) == len(exp) and len(words) == len(exp_words)
    for n, (g, e) in enumerate(zip(got, exp, strict=True)):
        assert g["meta"] == n, "decisions out of order or lost"
        assert {f: g[f] for f in LIFECYCLE_DECISION_FIELDS} == \
            e.as_dict(LIFECYCLE_DECISION_FIELDS), f"packet #{n}"
    assert words == exp_words


@pytest.fixture(scope="module")
def small_lc():
    from .test_lifecycle import LC, _cfg

    return _cfg(LC)


@pytest.mark.parametrize("backpressure", [None, [1, 0, 1, 1, 0]])
def test_core_lifecycle_scenario(small_lc, backpressure):
    """The small lifecycle config's model scenario (challenges, verifying RSTs, a
    spoofed flood, aging scans, key rotations, pool updates) in the Amaranth simulator."""
    cfg = small_lc
    scen = build_scenario(cfg, connections=20, updates=2, seed=1)
    mm = {n: i.id for n, i in memory_map(cfg.geometry, cfg.lifecycle).items()}
    ops, exp, words = scenario_ops(cfg, scen.initial, scen.ops, mm)
    assert {d.action for d in exp} >= {Action.LB, Action.CHALLENGE, Action.VERIFY,
                                       Action.UNVERIFIED}
    ready = None if backpressure is None else itertools.cycle(backpressure)
    got, rgot = _drive(L4LBCore(cfg), ops, len(exp), len(words), ready)
    _check(got, rgot, exp, words)


def _hazard_ops(cfg: Config, mem: Memories, rng: random.Random, n: int) -> list:
    """Back-to-back ops on a few sources whose verified-source words collide, run through
    the model as they are made: SYNs, RSTs with the right cookie (either key), wrong
    RSTs, other flag mixes; control writes and reads of those words, key and epoch
    changes -- so every forwarding distance of hdl.auth.VerifiedSources carries writes to
    the word a packet reads. Returns scenario ops (Write, Read, Step)."""
    web = cfg.vips[0]
    srcs = [0x64400000 + k for k in range(6)]
    ops: list = []
    dp = DataPlane(cfg, mem)
    for _ in range(n):
        r = rng.random()
        src = rng.choice(srcs)
        i0, i1, tag = dp.hasher.auth_slots(Packet(src, web.address, 1, web.port, 6).key)
        way = rng.randrange(2)
        if r < 0.06:
            word = (rng.randrange(2) << 31) | (rng.randrange(2) << 30) | \
                (tag if rng.random() < 0.7 else rng.getrandbits(30))
            ops.append(Write(f"auth{way}", (i0, i1)[way], word))
        elif r < 0.10:
            ops.append(Read(f"auth{way}", (i0, i1)[way], mem.read(f"auth{way}", (i0, i1)[way])))
            continue
        elif r < 0.11:
            ops.append(Write("auth_epoch", 0, rng.randrange(2)))
        elif r < 0.115:
            ops.append(Write("auth_key", rng.randrange(2), rng.getrandbits(64)))
        else:
            sport = rng.choice((1000, 1001, 1002))
            flags = rng.choice((TCP_SYN, TCP_SYN, TCP_RST, TCP_RST, TCP_RST, TCP_ACK,
                                TCP_SYN | TCP_ACK, TCP_SYN | TCP_FIN, TCP_RST | TCP_ACK,
                                TCP_FIN | TCP_ACK))
            seq = rng.getrandbits(32)
            if flags & TCP_RST and rng.random() < 0.8:  # a client answering a challenge
                e = rng.randrange(2)
                key = mem.read("auth_key", e)
                seq = cookie(key, e, src, web.address, sport, web.port) ^ \
                    (0x80000000 if rng.random() < 0.2 else 0)
            pkt = Packet(src, web.address, sport, web.port, 6, flags, seq, 0)
            ops.append(Step(pkt, dp.process(pkt)))
            continue
        mem.write(ops[-1].mem, ops[-1].addr, ops[-1].word)
    return ops


def test_core_lifecycle_back_to_back_hazards(small_lc):
    """Writes of verified-source words (the data plane's refreshes and insertions,
    control writes) followed at every distance by packets and reads of the same words:
    the RTL's forwarding gives exactly the model's verdicts, cookies and read words."""
    cfg = small_lc
    scen = build_scenario(cfg, connections=6, updates=0, seed=4)
    mem = load_memories(cfg, scen.initial)
    mem.write("auth_key", 0, 0x0123456789ABCDEF)
    mem.write("auth_key", 1, 0xFEDCBA9876543210)
    start = mem.snapshot()
    ops = _hazard_ops(cfg, mem, random.Random(11), 1500)
    mm = {n: i.id for n, i in memory_map(cfg.geometry, cfg.lifecycle).items()}
    bench_ops, exp, words = scenario_ops(cfg, start, ops, mm)
    n_verify = sum(d.action == Action.VERIFY for d in exp)
    n_learn = sum(d.learn for d in exp)
    assert n_verify > 20 and n_learn > 50 and len(words) > 40, (n_verify, n_learn, len(words))
    got, rgot = _drive(L4LBCore(cfg), bench_ops, len(exp), len(words))
    _check(got, rgot, exp, words)


def test_core_takes_a_network_config_up_to_the_register_rev_limit():
    """The RTL core implements [network] (tests/test_hdl_network.py) with the return
    path in registers: it builds one next to the lifecycle, and refuses a dip_capacity
    above hdl.network.MAX_REV_ENTRIES naming it rather than build what cannot fit."""
    import dataclasses
    import tomllib

    from hdl.network import MAX_REV_ENTRIES

    raw = tomllib.loads((ROOT / "examples" / "small.toml").read_text())
    raw["network"] = {"port": [{"id": 0, "mac": "02:00:00:00:00:10"}],
                      "route": [{"prefix": "0.0.0.0/0", "port": 0, "mac": "02:00:00:00:00:ff"}]}
    cfg = parse_config(raw)
    L4LBCore(cfg)
    big = dataclasses.replace(cfg, geometry=dataclasses.replace(
        cfg.geometry, dip_capacity=MAX_REV_ENTRIES + 1))
    with pytest.raises(ValueError, match="dip_capacity"):
        L4LBCore(big)


# ======================================================================================
# cocotb bench (runs inside the simulator)
# ======================================================================================

_DEC_PORTS = tuple(LIFECYCLE_DECISION_FIELDS) + ("dst_ip", "dst_port", "meta")
_LEARN_PORTS = tuple(FIELDS) + ("vip_id", "version")
_COUNTERS = ("packets", "vip_hits", "conn_misses", "drops", "learn_drops")


def _random_gen(rng: random.Random, p_one: float) -> Iterator[int]:
    while True:
        yield int(rng.random() < p_one)


class LifecycleBench(L4LBBench):
    """Driver, monitors and scoreboard for an ``l4lb_core`` with a ``[lifecycle]``: the
    core bench's pin access and reset, with a driver and scoreboard for reads too.

    The driver presents ops strictly in order, each held until accepted: writes on
    ``wr_*``, control-plane reads on ``rd_*``, packets (with ``seq``) on ``pkt_*``. The
    monitors take decisions from ``dec_*``, read answers from ``rdata_*`` and learn events
    from ``learn_*``; the scoreboard compares them, in order, with the model's decisions
    (every field of format 2, ``cookie`` included, and the emitted destination), the
    model's read words and learn events, and the counters with the decisions.

    Parameters
    ----------
    dut
        The cocotb handle of ``l4lb_core``.
    cfg : Config
        The configuration the core was generated from (with a ``[lifecycle]``).
    info : dict
        ``l4lb_core.json`` (latency, ports, memory map).
    """

    def _present(self, op: Op) -> None:
        kind = op[0]
        self._set("wr_valid", int(kind == "W"))
        self._set("rd_valid", int(kind == "R"))
        self._set("pkt_valid", int(kind == "P"))
        if kind == "W":
            self._set("wr_mem", op[1])
            self._set("wr_addr", op[2])
            self._set("wr_data", op[3])
        elif kind == "R":
            self._set("rd_mem", op[1])
            self._set("rd_addr", op[2])
        else:
            p: Packet = op[1]
            for f in FIELDS:
                self._set(f"pkt_{f}", getattr(p, f))
            self._set("pkt_tcp_flags", p.tcp_flags)
            self._set("pkt_seq", p.seq)
            self._set("pkt_meta", op[2] & self.meta_mask)

    async def run(self, ops: Sequence[Op], expected: Sequence[Decision],
                  words: Sequence[int], *, idle: Iterator[int] | None = None,
                  backpressure: Iterator[int] | None = None,
                  learn_backpressure: Iterator[int] | None = None) -> dict:
        """Drive ``ops`` and check every decision, read answer and learn event; returns
        the statistics (``mismatches`` lists what differed)."""
        idle = idle or itertools.repeat(1)
        backpressure = backpressure or itertools.repeat(1)
        learn_backpressure = learn_backpressure or itertools.repeat(1)
        pkts = {op[2]: op[1] for op in ops if op[0] == "P"}
        exp_learn = [(pkts[i], d) for i, d in enumerate(expected) if d.learn]
        res = {"packets": len(pkts), "writes": sum(op[0] == "W" for op in ops),
               "reads": len(words), "mismatches": [], "latencies": set(),
               "first_op": -1, "last_op": -1, "learn_expected": len(exp_learn),
               "learn_received": 0}
        mism = res["mismatches"]
        c0 = {n: self._get(f"cnt_{n}") for n in _COUNTERS}
        clk, ro = RisingEdge(self.dut.clk), ReadOnly()
        accepted: dict[int, int] = {}
        i = n_dec = n_rd = learn_pos = drain = cycle = 0
        cur: Op | None = None
        timeout = 4 * len(ops) + 20 * self.latency + 1000
        t0 = time.perf_counter()
        while True:
            await clk
            cycle += 1
            if cur is None and i < len(ops) and next(idle):
                cur = ops[i]
                self._present(cur)
            elif cur is None:
                for n in ("wr_valid", "rd_valid", "pkt_valid"):
                    self._set(n, 0)
            ready, lready = next(backpressure), next(learn_backpressure)
            self._set("dec_ready", ready)
            self._set("rdata_ready", ready)
            self._set("learn_ready", lready)
            await ro
            if cur is not None:
                port = {"W": "wr_ready", "R": "rd_ready", "P": "pkt_ready"}[cur[0]]
                if self._get(port):
                    res["first_op"] = cycle if res["first_op"] < 0 else res["first_op"]
                    res["last_op"] = cycle
                    if cur[0] == "P":
                        accepted[cur[2]] = cycle
                    cur = None
                    i += 1
            if ready and self._get("dec_valid"):
                got = {n: self._get(f"dec_{n}") for n in _DEC_PORTS}
                if n_dec >= len(expected):
                    mism.append(f"extra decision {got}")
                else:
                    self._check(n_dec, pkts[n_dec], expected[n_dec], got, mism)
                    res["latencies"].add(cycle - accepted.get(n_dec, cycle))
                n_dec += 1
            if ready and self._get("rdata_valid"):
                w = self._get("rdata_data")
                if n_rd >= len(words):
                    mism.append(f"extra read answer {w:#x}")
                elif w != words[n_rd]:
                    mism.append(f"read #{n_rd}: expected {words[n_rd]:#x} got {w:#x}")
                n_rd += 1
            lvalid = self._get("learn_valid")
            if lready and lvalid:
                ev = tuple(self._get(f"learn_{n}") for n in _LEARN_PORTS)
                while learn_pos < len(exp_learn):  # dropped events are skipped
                    pk, d = exp_learn[learn_pos]
                    learn_pos += 1
                    if ev == tuple(getattr(pk, f) for f in FIELDS) + (d.vip_id, d.version):
                        res["learn_received"] += 1
                        break
                else:
                    mism.append(f"learn event {ev} matches no expected event")
            if i >= len(ops) and n_dec >= len(expected) and n_rd >= len(words):
                drain += 1
                if drain > self.latency + 20 and not lvalid:
                    break
            if cycle > timeout:
                mism.append(f"timeout: {i}/{len(ops)} ops, {n_dec}/{len(expected)} "
                            f"decisions, {n_rd}/{len(words)} reads")
                break
        await clk
        for n in ("pkt_valid", "wr_valid", "rd_valid"):
            self._set(n, 0)
        res["cycles"], res["wall"] = cycle, time.perf_counter() - t0
        c1 = {n: self._get(f"cnt_{n}") for n in _COUNTERS}
        want = {
            "packets": len(expected),
            "vip_hits": sum(d.action != Action.FORWARD for d in expected),
            "conn_misses": sum(d.action != Action.FORWARD and not d.hit for d in expected),
            "drops": sum(d.action == Action.DROP for d in expected),
            "learn_drops": res["learn_expected"] - res["learn_received"],
        }
        width = int(self.info["ports"]["cnt_packets"]["width"])
        for n, v in want.items():
            if (c1[n] - c0[n]) % (1 << width) != v % (1 << width):
                mism.append(f"counter {n}: expected {v} got {c1[n] - c0[n]}")
        return res

    def _check(self, n: int, pkt: Packet, exp: Decision, got: dict, mism: list) -> None:
        want = exp.as_dict(LIFECYCLE_DECISION_FIELDS)
        dst_ip, dst_port = exp.out_dst(pkt)
        want |= {"dst_ip": dst_ip, "dst_port": dst_port, "meta": n & self.meta_mask}
        diff = [f"{k}: expected {want[k]:#x} got {got[k]:#x}" for k in _DEC_PORTS
                if want[k] != got[k]]
        if diff:
            mism.append(f"packet #{n} {pkt}: " + "; ".join(diff))


def _model_final(cfg: Config, initial: dict, ops: Sequence) -> Memories:
    """The memories after a scenario (the model's replay, for reloading the DUT)."""
    mem = load_memories(cfg, initial)
    dp = DataPlane(cfg, mem)
    for o in ops:
        if isinstance(o, Write):
            mem.write(o.mem, o.addr, o.word)
        elif not isinstance(o, Read):
            dp.process(o.packet)
    return mem


def _restore(initial: dict, mem: Memories, mem_ids: dict[str, int]) -> list[Op]:
    """Writes that turn the memories ``mem`` back into ``initial``."""
    return [("W", mem_ids[n], a, int(w)) for n, words in initial.items()
            for a, w in enumerate(words) if int(mem[n][a]) != int(w)]


@cocotb.test()
async def lifecycle_vectors(dut):
    """Replay a format-2 vector directory: back to back (one op per clock, fixed
    latency), again with random gaps and backpressure, and a short replay with one
    cookie and one read word altered, which the scoreboard must report."""
    cfg = load_config(os.environ["L4LB_CONFIG"])
    info = json.loads(Path(os.environ["L4LB_CORE_JSON"]).read_text())
    bench = LifecycleBench(dut, cfg, info)
    await bench.reset()
    scen = read_vectors(cfg, os.environ["L4LB_VECTORS"])
    ops, exp, words = scenario_ops(cfg, scen.initial, scen.ops, bench.mem_ids)
    n_load = len(ops) - len(scen.ops)
    stats = []
    res = await bench.run(ops, exp, words)
    res["name"] = "back_to_back"
    if res["last_op"] - res["first_op"] + 1 != len(ops):
        res["mismatches"].append("ops not accepted one per clock")
    if res["latencies"] != {bench.latency}:
        res["mismatches"].append(f"latencies {sorted(res['latencies'])}")
    stats.append(res)
    # again from the initial images, with random input gaps and output backpressure
    final = _model_final(cfg, scen.initial, scen.ops)
    again, _, _ = scenario_ops(cfg, None, scen.ops, bench.mem_ids)
    rng = random.Random(int(os.environ.get("L4LB_SEED", "1")))
    res = await bench.run(_restore(scen.initial, final, bench.mem_ids) + again, exp, words,
                          idle=_random_gen(rng, 0.8), backpressure=_random_gen(rng, 0.7),
                          learn_backpressure=_random_gen(rng, 0.5))
    res["name"] = "gaps_backpressure"
    stats.append(res)
    # the scoreboard must see a wrong cookie and a wrong read word
    cut = next(k for k, o in enumerate(scen.ops) if isinstance(o, Read)) + 1
    part = scen.ops[:max(cut, 400)]
    pops, pexp, pwords = scenario_ops(cfg, None, part, bench.mem_ids)
    k = next(n for n, d in enumerate(pexp) if d.action == Action.CHALLENGE)
    pexp[k] = Decision(**(pexp[k].as_dict(LIFECYCLE_DECISION_FIELDS)
                          | {"cookie": pexp[k].cookie ^ 0x10}))
    pwords[0] ^= 1
    res = await bench.run(_restore(scen.initial, final, bench.mem_ids) + pops, pexp, pwords)
    res["name"] = "altered"
    caught = res["mismatches"]
    ok = (len(caught) == 2 and any(c.startswith(f"packet #{k} ") and "cookie" in c
                                   for c in caught)
          and any(c.startswith("read #0:") for c in caught))
    res["mismatches"] = [] if ok else \
        ["altered cookie/read word not caught exactly: " + "; ".join(caught[:4])]
    stats.append(res)
    with open(Path(os.environ["L4LB_RUN_DIR"]) / "stats.jsonl", "w") as f:
        for s in stats:
            out = {k2: v for k2, v in s.items() if k2 != "latencies"}
            out |= {"latencies": sorted(s["latencies"]), "load_writes": n_load,
                    "latency": bench.latency}
            out["mismatches"] = len(s["mismatches"])
            f.write(json.dumps(out) + "\n")
            for line in s["mismatches"][:20]:
                bench.log.error("%s: %s", s["name"], line)
    assert all(not s["mismatches"] for s in stats)


# ======================================================================================
# pytest side: build examples/lifecycle.toml once and run the cocotb test on it
# ======================================================================================

@pytest.mark.parametrize("hash_stages", [1, 3])
def test_rtl_lifecycle_lint(tmp_path, hash_stages):
    """``verilator --lint-only -Wall`` on the lifecycle core reports nothing beyond the
    waivers of cocotb_tests/verilator_waivers.vlt."""
    import sys

    sys.path.insert(0, str(ROOT / "cocotb_tests"))
    from rtl_env import verilator_lint

    from hdl.export import write_verilog

    v = write_verilog(load_config(LIFECYCLE_TOML), tmp_path, hash_stages=hash_stages)
    res = verilator_lint(v)
    report = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and "%Warning" not in report and "%Error" not in report, report
    info = json.loads((tmp_path / "l4lb_core.json").read_text())
    assert info["latency"] == 59  # the cookie sets the verdict stage, whatever hash_stages
    assert info["readable"] == ["act0", "act1", "act2", "act3", "auth0", "auth1"]


def test_rtl_lifecycle_vectors(tmp_path):
    """examples/lifecycle.toml's format-2 vectors through the Verilated core: 0
    mismatches on every decision field (cookie included), read word and learn event."""
    from rtl_env import build_core, run_cocotb

    cfg = load_config(LIFECYCLE_TOML)
    scen = build_scenario(cfg, connections=int(os.environ.get("L4LB_LC_CONNECTIONS", "150")),
                          updates=3, seed=3)
    write_vectors(scen, tmp_path / "vectors")
    build = build_core(LIFECYCLE_TOML)
    results = run_cocotb(build, "tests.test_hdl_lifecycle", "lifecycle_vectors",
                         env={"L4LB_VECTORS": str(tmp_path / "vectors")})
    stats = [json.loads(x) for x in (results.parent / "stats.jsonl").read_text().splitlines()]
    for s in stats:
        print(f"[lifecycle] {s['name']}: {s['packets']} packets, {s['writes']} writes "
              f"({s['load_writes']} image words), {s['reads']} reads, {s['cycles']} cycles, "
              f"{s['mismatches']} mismatches, latency {s['latency']}, "
              f"{s['packets'] / s['wall']:.0f} packets/s")
    assert all(s["mismatches"] == 0 for s in stats)
    assert stats[0]["packets"] == len(scen.packets) and stats[0]["latencies"] == [59]
    acts = {d.decision.action for d in scen.packets}
    assert acts >= {Action.LB, Action.CHALLENGE, Action.VERIFY, Action.UNVERIFIED}
    assert stats[0]["reads"] > 100
