"""cocotb bench for ``l4lb_core``: op driver, decision/learn monitors and a scoreboard.

One :class:`L4LBBench` per DUT instance. The bench is deliberately a single clocked
coroutine (two triggers per cycle: the rising edge, where new inputs are driven, and
``ReadOnly``, where handshakes and outputs are sampled): with Verilator the per-trigger
cost dominates, and one loop keeps the cycle accounting exact.

Ops are ``("W", mem_id, addr, word)`` (a control-plane write on ``wr_*``) or
``("P", Packet, seq)`` (a packet on ``pkt_*`` whose ``meta`` carries ``seq``). They are
presented strictly in list order, one at a time, each held until accepted: the DUT's
input arbitration then sees exactly the vector file's order, with writes interleaved
between packets while earlier packets are still in flight.

With a ``[network]`` table (vector format 3) the decision also carries ``route_hit``,
``route`` and ``port`` (compared like every other field) and ``action`` may be REVERSE,
which the ``vip_hits`` and ``conn_misses`` counters do not count (no VIP matched).
"""

import itertools
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from model.config import Config
from model.hashing import FIELDS
from model.layout import Action, Memories
from model.pipeline import DataPlane, Decision, Packet, decision_fields

__all__ = ["L4LBBench", "Op", "RunResult", "expected_ops", "image_writes", "gen_cycle"]

Op = tuple  # ("W", mem_id, addr, word) | ("P", Packet, seq)

_LEARN_PORTS = tuple(FIELDS) + ("vip_id", "version")
_COUNTERS = ("packets", "vip_hits", "conn_misses", "drops", "learn_drops")


def gen_cycle(pattern: Sequence[int] | None) -> Iterator[int]:
    """``itertools.cycle`` of a 0/1 pattern, or always 1 when ``pattern`` is None."""
    return itertools.repeat(1) if pattern is None else itertools.cycle(pattern)


def random_gen(rng: random.Random, p_one: float) -> Iterator[int]:
    """Endless random 0/1 stream with ``P(1) = p_one``."""
    while True:
        yield int(rng.random() < p_one)


def expected_ops(cfg: Config, mem: Memories, ops: Iterable[Op], id_to_name: dict[int, str]
                 ) -> list[Decision]:
    """Run ops through the model in order (writes applied between packets); returns the
    decision of every packet, indexed like the packets' ``seq``."""
    dp = DataPlane(cfg, mem)
    out: list[Decision] = []
    for op in ops:
        if op[0] == "W":
            mem.write(id_to_name[op[1]], op[2], op[3])
        else:
            assert op[2] == len(out), "packet seq numbers must count up from 0"
            out.append(dp.process(op[1]))
    return out


def image_writes(images: dict[str, Sequence[int]], mem_ids: dict[str, int],
                 shadow: dict[str, np.ndarray] | None = None) -> list[Op]:
    """Write ops that load memory images word by word (only words that differ from
    ``shadow``, the contents the DUT is known to hold; all non-zero words after reset
    of a fresh simulation)."""
    ops: list[Op] = []
    for name, words in images.items():
        arr = np.asarray([int(w) for w in words], dtype=object)
        old = shadow.get(name) if shadow is not None else None
        for a, w in enumerate(arr):
            prev = int(old[a]) if old is not None else 0
            if int(w) != prev:
                ops.append(("W", mem_ids[name], a, int(w)))
    return ops


@dataclass
class RunResult:
    """What one :meth:`L4LBBench.run` observed."""

    packets: int = 0
    writes: int = 0
    cycles: int = 0
    wall: float = 0.0
    mismatches: list[str] = field(default_factory=list)
    latencies: list[int] = field(default_factory=list)
    first_accept: int = -1
    last_output: int = -1
    first_op: int = -1
    last_op: int = -1
    learn_expected: int = 0
    learn_received: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def span(self) -> int:
        """Cycles from the first packet's acceptance to the last decision, inclusive."""
        return self.last_output - self.first_accept + 1


class L4LBBench:
    """Driver, monitors and scoreboard for one ``l4lb_core`` DUT.

    Parameters
    ----------
    dut
        The cocotb handle of ``l4lb_core``.
    cfg : Config
        The configuration the core was generated from.
    info : dict
        ``l4lb_core.json`` written next to the Verilog (latency, ports, memory map).
    """

    def __init__(self, dut, cfg: Config, info: dict):
        self.dut = dut
        self.cfg = cfg
        self.info = info
        self.latency = int(info["latency"])
        self.mem_ids = {m["name"]: m["id"] for m in info["memories"]}
        self.id_to_name = {v: k for k, v in self.mem_ids.items()}
        self.meta_mask = (1 << int(info["meta_width"])) - 1
        # the format's decision fields (format 3 adds the route), then the extras
        self.dec_fields = tuple(decision_fields(cfg))
        self.dec_ports = self.dec_fields + ("dst_ip", "dst_port", "meta")
        self._h = {n: getattr(dut, n) for n in info["ports"]}
        self._driven: dict[str, int] = {}
        self._bits1 = {n for n, p in info["ports"].items() if p["width"] == 1}
        self.log = dut._log
        Clock(dut.clk, 10, unit="ns").start()

    # ---- low-level pin access --------------------------------------------------------
    def _set(self, name: str, value: int) -> None:
        if self._driven.get(name) != value:
            self._h[name].value = value
            self._driven[name] = value

    def _get(self, name: str) -> int:
        v = self._h[name].value
        # 1-bit ports read as cocotb.types.Logic, wider ones as LogicArray
        return int(v) if name in self._bits1 else v.to_unsigned()

    async def reset(self, cycles: int = 3) -> None:
        """Synchronous reset; inputs idle (and, on a lifecycle core, the control-plane
        read port idle and its answers accepted). Memories keep their contents."""
        self._driven.clear()
        reads = "rd_valid" in self._h
        for n in ("pkt_valid", "wr_valid") + (("rd_valid",) if reads else ()):
            self._set(n, 0)
        for n in ("dec_ready", "learn_ready") + (("rdata_ready",) if reads else ()):
            self._set(n, 1)
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    def counters(self) -> dict[str, int]:
        return {n: self._get(f"cnt_{n}") for n in _COUNTERS}

    # ---- the clocked loop ------------------------------------------------------------
    async def run(self, ops: Sequence[Op], expected: Sequence[Decision], *,
                  idle: Iterator[int] | None = None, backpressure: Iterator[int] | None = None,
                  learn_backpressure: Iterator[int] | None = None,
                  max_report: int = 20, timeout_cycles: int | None = None) -> RunResult:
        """Drive ``ops`` in order and check every decision against ``expected``.

        ``idle`` yields 1 when an op may be presented in a cycle (0 inserts a gap);
        ``backpressure`` yields ``dec_ready``; ``learn_backpressure`` ``learn_ready``.
        Learn events are checked in order against the decisions with ``learn = 1``:
        the received ones must be exactly those not counted in ``cnt_learn_drops``.
        """
        idle = idle or itertools.repeat(1)
        backpressure = backpressure or itertools.repeat(1)
        learn_backpressure = learn_backpressure or itertools.repeat(1)
        res = RunResult()
        pkts = [op for op in ops if op[0] == "P"]
        res.packets = len(pkts)
        res.writes = len(ops) - len(pkts)
        assert len(expected) == len(pkts), "one expected decision per packet"
        packet_of = {op[2]: op[1] for op in pkts}
        exp_learn = [(i, packet_of[i], d) for i, d in enumerate(expected) if d.learn]
        res.learn_expected = len(exp_learn)
        learn_pos = 0
        accept_cycle: dict[int, int] = {}
        next_out = 0
        clk_edge = RisingEdge(self.dut.clk)
        ro = ReadOnly()
        counters0 = self.counters()
        timeout = timeout_cycles or (4 * len(ops) + 20 * self.latency + 1000)
        t0 = time.perf_counter()

        i = 0
        cur: Op | None = None
        cycle = 0
        dec_ready = learn_ready = 1
        drain = 0
        while True:
            # ---- rising edge: new cycle; drive this cycle's inputs ------------------
            await clk_edge
            cycle += 1
            if cur is None and i < len(ops) and next(idle):
                cur = ops[i]
                if cur[0] == "W":
                    self._set("pkt_valid", 0)
                    self._set("wr_valid", 1)
                    self._set("wr_mem", cur[1])
                    self._set("wr_addr", cur[2])
                    self._set("wr_data", cur[3])
                else:
                    p: Packet = cur[1]
                    self._set("wr_valid", 0)
                    self._set("pkt_valid", 1)
                    for f in FIELDS:
                        self._set(f"pkt_{f}", getattr(p, f))
                    self._set("pkt_tcp_flags", p.tcp_flags)
                    self._set("pkt_meta", cur[2] & self.meta_mask)
            elif cur is None:
                self._set("pkt_valid", 0)
                self._set("wr_valid", 0)
            dec_ready = next(backpressure)
            learn_ready = next(learn_backpressure)
            self._set("dec_ready", dec_ready)
            self._set("learn_ready", learn_ready)

            # ---- ReadOnly: sample the handshakes of this cycle ------------------------
            await ro
            if cur is not None:
                port = "wr_ready" if cur[0] == "W" else "pkt_ready"
                if self._get(port):
                    if res.first_op < 0:
                        res.first_op = cycle
                    res.last_op = cycle
                    if cur[0] == "P":
                        accept_cycle[cur[2]] = cycle
                        if res.first_accept < 0:
                            res.first_accept = cycle
                    cur = None
                    i += 1
            if dec_ready and self._get("dec_valid"):
                got = {n: self._get(f"dec_{n}") for n in self.dec_ports}
                seq = next_out
                if seq >= len(expected):
                    res.mismatches.append(f"unexpected extra decision {got}")
                else:
                    self._check(seq, packet_of[seq], expected[seq], got, res, max_report)
                    res.latencies.append(cycle - accept_cycle.get(seq, cycle))
                next_out += 1
                res.last_output = cycle
            learn_valid = self._get("learn_valid")
            if learn_ready and learn_valid:
                ev = tuple(self._get(f"learn_{n}") for n in _LEARN_PORTS)
                # dropped events are skipped: find the next expected event equal to ev
                while learn_pos < len(exp_learn):
                    _, pk, d = exp_learn[learn_pos]
                    learn_pos += 1
                    want = tuple(getattr(pk, f) for f in FIELDS) + (d.vip_id, d.version)
                    if want == ev:
                        res.learn_received += 1
                        break
                else:
                    res.mismatches.append(f"learn event {ev} matches no expected event")
            if i >= len(ops) and next_out >= len(expected):
                drain += 1
                # run on a little: catches spurious late outputs, drains the learn FIFO
                if drain > self.latency + 20 and not learn_valid:
                    break
            if cycle > timeout:
                res.mismatches.append(
                    f"timeout after {cycle} cycles: {i}/{len(ops)} ops accepted, "
                    f"{next_out}/{len(expected)} decisions")
                break
        await clk_edge
        self._set("pkt_valid", 0)
        self._set("wr_valid", 0)
        self._set("dec_ready", 1)
        self._set("learn_ready", 1)
        res.cycles = cycle
        res.wall = time.perf_counter() - t0
        c1 = self.counters()
        res.counters = {n: (c1[n] - counters0[n]) for n in _COUNTERS}
        self._check_counters(expected, res)
        return res

    # ---- scoreboard --------------------------------------------------------------------
    def _check(self, seq: int, pkt: Packet, exp: Decision, got: dict[str, int],
               res: RunResult, max_report: int) -> None:
        want = exp.as_dict(self.dec_fields)
        dst_ip, dst_port = exp.out_dst(pkt)
        want |= {"dst_ip": dst_ip, "dst_port": dst_port, "meta": seq & self.meta_mask}
        diff = [f"{n}: expected {want[n]:#x} got {got[n]:#x}" for n in self.dec_ports
                if want[n] != got[n]]
        if diff:
            if len(res.mismatches) < max_report:
                self.log.error(
                    "packet #%d %08x:%d -> %08x:%d proto %d flags %#x:\n    %s", seq,
                    pkt.src_ip, pkt.src_port, pkt.dst_ip, pkt.dst_port, pkt.proto,
                    pkt.tcp_flags, "\n    ".join(diff))
            res.mismatches.append(f"packet #{seq}: " + "; ".join(diff))

    def _check_counters(self, expected: Sequence[Decision], res: RunResult) -> None:
        vip = [d.action not in (Action.FORWARD, Action.REVERSE) for d in expected]
        want = {
            "packets": len(expected),
            "vip_hits": sum(vip),
            "conn_misses": sum(v and not d.hit for v, d in zip(vip, expected, strict=True)),
            "drops": sum(d.action == Action.DROP for d in expected),
            "learn_drops": res.learn_expected - res.learn_received,
        }
        width = int(self.info["ports"]["cnt_packets"]["width"])
        for n, v in want.items():
            if res.counters[n] % (1 << width) != v % (1 << width):
                res.mismatches.append(f"counter {n}: expected {v} got {res.counters[n]}")

    def report(self, name: str, res: RunResult) -> str:
        rate = res.packets / res.wall if res.wall else 0.0
        line = (f"{name}: {res.packets} packets, {res.writes} writes, {res.cycles} cycles, "
                f"{len(res.mismatches)} mismatches, {rate:.0f} packets/s wall "
                f"({res.cycles / res.wall if res.wall else 0:.0f} cycles/s)")
        self.log.info(line)
        return line
