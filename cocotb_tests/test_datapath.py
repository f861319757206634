"""RTL frame datapath (``l4lb_datapath``, Verilator) against model/frame.py, byte for byte.

Top: the cocotb tests (they run inside the simulator). Bottom: the pytest functions that
build the datapath for ``examples/default.toml`` at W = 8 and W = 64 (one cached build
each) and run the tests on it.

The bench is verilog-ethernet style: a :class:`TB` owns the clock, cocotbext-axi's
``AxiStreamSource`` (input, with an idle pause generator) and ``AxiStreamSink`` (output,
with a backpressure pause generator), a monitor that timestamps first beats in and out
and collects learn events, a table loader on the ``wr_*`` port, and the scoreboard.

Cases:

1. ``frames``: tables from a populated control plane (connections, a pool update per
   VIP, RECORD/FLIP phases, TransitTable bits) loaded through the write port; then
   ``L4LB_FRAMES`` frames -- well-formed (0-2 tags, IPv4 options, TCP/UDP, zero UDP
   checksums, padding, payloads up to 1,400 bytes), every malformed class, random and
   mutated frames, frames with ``tuser`` set and (fuzz) frames over ``max_frame``
   bytes, which the datapath drops and counts -- under the idle/backpressure
   patterns of ``L4LB_PATTERN``; every output frame must equal the model's, the
   per-reason counters and the learn events too.
2. ``throughput``: minimum-size (64-byte) frames back to back without pauses: frames per
   cycle in and out, and the latency (first beat in to first beat out).

``L4LB_FRAMES`` sets the frame count (default below); ``scripts/datapath_bench.py``
runs the long (>= 20k frames) version and prints the figures.
"""

import itertools
import json
import logging
import os
import random
import time
from pathlib import Path

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge
from l4lb_bench import image_writes
from traffic import copy_memories, make_state, random_traffic

from l4lb.framegen import build_frame, frame_mix
from model.config import load_config
from model.frame import FrameDataPlane
from model.layout import Memories
from model.parse import Reason

try:
    from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
except ImportError:  # the dev extras bring it
    pytest.skip("cocotbext-axi is not installed (pip install -e '.[dev]')",
                allow_module_level=True)

# ======================================================================================
# cocotb side
# ======================================================================================

#: name -> (input idle pattern, output backpressure pattern): 1 = pause this cycle
PATTERNS = {
    "none": (None, None),
    "gaps": ([0, 0, 1, 0, 1], None),
    "backpressure": (None, [0, 0, 0, 1, 1, 0, 1]),
    "both": ([0, 1, 0, 0, 1, 0, 0], [0, 0, 1, 1, 0, 1, 0, 0, 0, 1]),
}


#: What the DUT's memories hold as far as the bench knows: memories have no reset and
#: keep their contents from one cocotb test to the next within one simulation.
_SHADOW: dict = {}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class TB:
    """Clock, AXI4-Stream source and sink, first-beat/learn monitor, table loader."""

    def __init__(self, dut, info: dict):
        self.dut = dut
        self.info = info
        self.width = int(info["width"])
        self.log = dut._log
        Clock(dut.clk, 10, unit="ns").start()
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for drv in (self.source, self.sink):   # one INFO line per frame otherwise
            drv.log.setLevel(logging.WARNING)
        self.cycle = 0
        self.first_in: list[int] = []
        self.first_out: list[int] = []
        self.learn: list[tuple] = []
        self._mon = None

    def set_idle_generator(self, generator=None) -> None:
        if generator:
            self.source.set_pause_generator(generator())

    def set_backpressure_generator(self, generator=None) -> None:
        if generator:
            self.sink.set_pause_generator(generator())

    async def reset(self) -> None:
        d = self.dut
        d.wr_valid.value = 0
        d.learn_ready.value = 1
        if "rd_valid" in self.info["ports"]:   # a [lifecycle] config: the read port idle
            d.rd_valid.value = 0
            d.rdata_ready.value = 1
        d.rst.value = 1
        for _ in range(4):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)
        if self._mon is None:
            self._mon = cocotb.start_soon(self._monitor())

    async def _monitor(self) -> None:
        """Every cycle: first beats of frames in and out (the handshakes sampled at the
        clock edge, as cocotbext-axi samples them) and learn events."""
        d = self.dut
        s_v, s_r, s_l = d.s_axis_tvalid, d.s_axis_tready, d.s_axis_tlast
        m_v, m_r, m_l = d.m_axis_tvalid, d.m_axis_tready, d.m_axis_tlast
        l_v = d.learn_valid
        learn_ports = [getattr(d, f"learn_{n}") for n in
                       ("src_ip", "dst_ip", "src_port", "dst_port", "proto", "vip_id",
                        "version")]
        in_first = out_first = True
        edge = RisingEdge(d.clk)
        while True:
            await edge
            self.cycle += 1
            if int(s_v.value) and int(s_r.value):
                if in_first:
                    self.first_in.append(self.cycle)
                in_first = bool(int(s_l.value))
            if int(m_v.value) and int(m_r.value):
                if out_first:
                    self.first_out.append(self.cycle)
                out_first = bool(int(m_l.value))
            if int(l_v.value):
                self.learn.append(tuple(p.value.to_unsigned() for p in learn_ports))

    async def load_tables(self, cfg, mem: Memories) -> tuple[Memories, int]:
        """Make the DUT's memories hold ``mem``: write every word that differs from what
        it holds (:data:`_SHADOW`, all zero in a fresh simulation) through ``wr_*``, one
        per cycle (wr_ready is 1). Returns the model's copy to run frames on (it becomes
        the shadow: the DUT's own TransitTable sets happen in both) and the write count."""
        ids = {m["name"]: m["id"] for m in self.info["memories"]}
        d = self.dut
        shadow = _SHADOW.setdefault("mem", Memories(cfg))
        ops = image_writes(mem.snapshot(), ids, shadow.arrays)
        for _, mem_id, addr, word in ops:
            d.wr_valid.value = 1
            d.wr_mem.value = mem_id
            d.wr_addr.value = addr
            d.wr_data.value = word
            await RisingEdge(d.clk)
        d.wr_valid.value = 0
        for _ in range(80):  # the last write reaches its stage
            await RisingEdge(d.clk)
        model_mem = copy_memories(cfg, mem)
        _SHADOW["mem"] = model_mem
        return model_mem, len(ops)

    def counter(self, name: str) -> int:
        return getattr(self.dut, f"cnt_{name}").value.to_unsigned()


def _pattern(p):
    return (lambda: itertools.cycle(p)) if p else None


async def _tb(dut) -> tuple[TB, object]:
    cfg = load_config(os.environ["L4LB_CONFIG"])
    info = json.loads(Path(os.environ["L4LB_INFO_JSON"]).read_text())
    tb = TB(dut, info)
    await tb.reset()
    return tb, cfg


def _record(stats: dict) -> None:
    run_dir = Path(os.environ.get("L4LB_RUN_DIR", "."))
    with open(run_dir / "stats.jsonl", "a") as f:
        f.write(json.dumps(stats) + "\n")


@cocotb.test()
async def frames(dut):
    """Random, malformed, mutated and errored frames; every output frame as the model's."""
    tb, cfg = await _tb(dut)
    seed = _env_int("L4LB_SEED", 1)
    n = _env_int("L4LB_FRAMES", 2000)
    pattern = os.environ.get("L4LB_PATTERN", "both")
    state = make_state(cfg, seed, conns=_env_int("L4LB_CONNS", 1500))
    model_mem, writes = await tb.load_tables(cfg, state.mem)
    pkts = [op[1] for op in random_traffic(state, seed + 1, n) if op[0] == "P"]
    rng = random.Random(seed + 2)
    mix = frame_mix(rng, pkts, malformed=float(os.environ.get("L4LB_MALFORMED", "0.3")),
                    fuzz=float(os.environ.get("L4LB_FUZZ", "0.05")))
    frames = [f or b"\x00" for f in mix]   # cocotbext-axi sends no empty frame
    errored = [rng.random() < 0.01 for _ in frames]
    # frames longer than max_frame are dropped by the datapath (the model has no limit)
    oversize = [len(f) > int(tb.info["max_frame"]) and not e
                for f, e in zip(frames, errored, strict=True)]
    # the model, on a copy of the memories the DUT holds
    fdp = FrameDataPlane(cfg, model_mem)
    expected: list[tuple[int, bytes]] = []
    reason_of: dict[int, str] = {}
    learns: list[tuple] = []
    for i, (f, err) in enumerate(zip(frames, errored, strict=True)):
        if err or oversize[i]:
            continue
        r = fdp.decide(f)
        reason_of[i] = r.reason.key
        if r.out is not None:
            expected.append((i, r.out))
        if r.decision.learn:
            k = r.packet.key
            learns.append((k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto,
                           r.decision.vip_id, r.decision.version))
    idle, bp = PATTERNS[pattern]
    tb.set_idle_generator(_pattern(idle))
    tb.set_backpressure_generator(_pattern(bp))
    c0 = tb.cycle
    t0 = time.perf_counter()
    for f, err in zip(frames, errored, strict=True):
        await tb.source.send(AxiStreamFrame(f, tuser=int(err)))
    mismatches: list[str] = []
    compared = dict.fromkeys((r.key for r in Reason), 0)
    bad = dict.fromkeys((r.key for r in Reason), 0)
    for k, (i, want) in enumerate(expected):
        got = await tb.sink.recv()
        data = bytes(got.tdata)
        compared[reason_of[i]] += 1
        if data != want or got.tuser not in (None, 0, [0] * len(data)):
            bad[reason_of[i]] += 1
            if len(mismatches) < 10:
                tb.log.error("output frame %d (input %d):\n got %s\nwant %s", k, i,
                             data.hex(), want.hex())
            mismatches.append(f"frame {i}")
    for _ in range(300):
        await RisingEdge(dut.clk)
    if not tb.sink.empty():
        mismatches.append(f"{tb.sink.count()} extra output frames")
    wall = time.perf_counter() - t0
    cycles = tb.cycle - c0
    reasons = {r.key: tb.counter(r.key) for r in Reason}
    want_reasons = {r.key: fdp.reasons[r] for r in Reason}
    if reasons != want_reasons:
        mismatches.append(f"reason counters {reasons} != model {want_reasons}")
    for name, want_n in (("rx_errors", sum(errored)), ("oversize", sum(oversize))):
        if tb.counter(name) != want_n:
            mismatches.append(f"{name} {tb.counter(name)} != {want_n}")
    if tb.counter("frames_rewritten") != fdp.actions["lb"]:
        mismatches.append(f"rewritten {tb.counter('frames_rewritten')} != {fdp.actions['lb']}")
    if tb.learn != learns:
        mismatches.append(f"learn events: {len(tb.learn)} vs model {len(learns)}, "
                          f"equal: {tb.learn == learns}")
    out_idx = {i: k for k, (i, _) in enumerate(expected)}
    lat = [tb.first_out[k] - tb.first_in[i] for i, k in out_idx.items()
           if k < len(tb.first_out) and i < len(tb.first_in)]
    stats = {"test": "frames", "width": tb.width, "pattern": pattern, "frames": len(frames),
             "out": len(expected), "compared": compared, "bad": bad,
             "mismatches": len(mismatches), "errored": sum(errored),
             "oversize": sum(oversize), "writes": writes,
             "reasons": want_reasons, "actions": fdp.actions, "learn": len(learns),
             "cycles": cycles, "wall": wall, "latency_min": min(lat), "latency_max": max(lat),
             "bytes_in": sum(map(len, frames))}
    _record(stats)
    tb.log.info("frames: %s", json.dumps(stats))
    assert not mismatches, "\n".join(mismatches[:20])


@cocotb.test()
async def throughput(dut):
    """64-byte frames back to back, no pauses: frames per cycle and latency."""
    tb, cfg = await _tb(dut)
    seed = _env_int("L4LB_SEED", 1)
    n = _env_int("L4LB_THROUGHPUT_FRAMES", 2000)
    state = make_state(cfg, seed + 5, conns=_env_int("L4LB_CONNS", 1500), transit_fill=0.0)
    model_mem, _ = await tb.load_tables(cfg, state.mem)
    pkts = [op[1] for op in random_traffic(state, seed + 6, n) if op[0] == "P"]
    rng = random.Random(seed + 7)
    frames = []
    for p in pkts:   # untagged, no options: 54 or 42 header bytes, padded/cut to 64
        f = build_frame(rng, p, tags=0, options=0, payload=10)
        frames.append(f[:64].ljust(64, b"\x00"))
    fdp = FrameDataPlane(cfg, model_mem)
    expected = [o for o in (fdp.process_frame(f)[0] for f in frames) if o is not None]
    in0, out0 = len(tb.first_in), len(tb.first_out)
    for f in frames:
        await tb.source.send(AxiStreamFrame(f))
    bad = 0
    for want in expected:
        got = await tb.sink.recv()
        bad += bytes(got.tdata) != want
    fi, fo = tb.first_in[in0:], tb.first_out[out0:]
    span_in = fi[-1] - fi[0] + 1
    span_out = fo[-1] - fo[0] + 1
    lat = [o - i for i, o in zip(fi, fo, strict=False)] if len(fo) == len(fi) else []
    stats = {"test": "throughput", "width": tb.width, "frames": len(frames),
             "frames_per_cycle_in": len(frames) / span_in,
             "frames_per_cycle_out": len(fo) / span_out, "mismatches": bad,
             "latency_min": min(lat) if lat else -1, "latency_max": max(lat) if lat else -1,
             # a frame leaves when its last beat is in: latency + beats - 1
             "latency_expected": int(tb.info["latency"]) + -(-64 // tb.width) - 1}
    _record(stats)
    tb.log.info("throughput: %s", json.dumps(stats))
    assert bad == 0


@cocotb.test()
async def replay(dut):
    """A recorded model replay of a capture (``l4lb replay --rtl``, l4lb/replay_rtl.py):
    frames in segments, the model's table writes between them, outputs compared."""
    tb, cfg = await _tb(dut)
    t = json.loads(Path(os.environ["L4LB_REPLAY"]).read_text())
    mem = Memories(cfg)
    for name, pairs in t["initial"].items():
        for a, w in pairs:
            mem.write(name, a, w)
    await tb.load_tables(cfg, mem)
    ids = {m["name"]: m["id"] for m in tb.info["memories"]}
    max_frame = int(tb.info["max_frame"])
    frames = [bytes.fromhex(h) for h in t["frames"]]
    outputs = [None if h is None else bytes.fromhex(h) for h in t["outputs"]]
    writes = {int(k): v for k, v in t["writes"].items()}
    received: list[bytes] = []

    async def rx() -> None:
        while True:
            received.append(bytes((await tb.sink.recv()).tdata))

    rx_task = cocotb.start_soon(rx())
    d = tb.dut
    c0 = tb.cycle
    sent = empty = oversize = n_writes = 0
    expected: list[tuple[int, bytes]] = []
    ends = sorted(writes) + [len(frames) - 1]
    k = 0
    for end in ends:
        for i in range(k, end + 1):
            if not frames[i]:
                empty += 1
                continue
            await tb.source.send(AxiStreamFrame(frames[i]))
            sent += 1
            if len(frames[i]) > max_frame:
                oversize += 1
            elif outputs[i] is not None:
                expected.append((i, outputs[i]))
        k = end + 1
        while tb.counter("frames_out") + tb.counter("frames_dropped") < sent:
            await RisingEdge(d.clk)
        for name, addr, word in writes.get(end, []):
            d.wr_valid.value = 1
            d.wr_mem.value = ids[name]
            d.wr_addr.value = addr
            d.wr_data.value = word
            await RisingEdge(d.clk)
            n_writes += 1
        d.wr_valid.value = 0
    for _ in range(200):
        await RisingEdge(d.clk)
    rx_task.cancel()
    mismatches = []
    if len(received) != len(expected):
        mismatches.append(f"{len(received)} frames out, the model {len(expected)}")
    for (i, want), got in zip(expected, received, strict=False):
        if got != want:
            mismatches.append(f"frame {i}: RTL {got.hex()} model {want.hex()}")
    counters = {n: tb.counter(n) for n in ("frames_out", "frames_dropped", "frames_rewritten",
                                           "oversize", "rx_errors", "packets", "vip_hits")}
    res = {"frames_sent": sent, "empty_skipped": empty, "oversize": oversize,
           "compared": min(len(received), len(expected)), "mismatches": mismatches,
           "rtl_frames": [f.hex() for f in received], "indices": [i for i, _ in expected],
           "cycles": tb.cycle - c0,
           "segments": len(ends), "writes": n_writes, "counters": counters}
    Path(os.environ["L4LB_RUN_DIR"], "replay_result.json").write_text(json.dumps(res))
    assert not mismatches, "\n".join(mismatches[:10])


# ======================================================================================
# pytest side
# ======================================================================================

_HERE = Path(__file__).resolve().parent
CONFIG = _HERE.parent / "examples" / "default.toml"
#: Frames per W in the default run (CI budget); scripts/datapath_bench.py runs 20k+.
DEFAULT_FRAMES = {8: 2500, 64: 3000}


@pytest.fixture(scope="module", params=[8, 64], ids=lambda w: f"W{w}")
def dp_build(request):
    from rtl_env import build_datapath

    return request.param, build_datapath(CONFIG, request.param)


def run_frames(build, width: int, frames: int, pattern: str = "both", seed: int = 1,
               testcases=("frames",), extra: dict | None = None) -> list[dict]:
    """Run cocotb tests of this module on a datapath build; returns their stats."""
    from rtl_env import run_cocotb

    stale = build.build_dir / ("run-" + "-".join(testcases)) / "stats.jsonl"
    stale.unlink(missing_ok=True)   # left by a failed run
    env = {"L4LB_FRAMES": str(frames), "L4LB_PATTERN": pattern, "L4LB_SEED": str(seed),
           "L4LB_THROUGHPUT_FRAMES": str(min(frames, 3000))} | dict(extra or {})
    results = run_cocotb(build, "test_datapath", list(testcases), env=env, seed=seed)
    path = results.parent / "stats.jsonl"
    stats = [json.loads(x) for x in path.read_text().splitlines()]
    path.unlink()
    return stats


def _print(stats: list[dict]) -> None:
    for s in stats:
        if s["test"] == "frames":
            print(f"W={s['width']} {s['pattern']}: {s['frames']} frames in, {s['out']} out "
                  f"compared, {s['mismatches']} mismatches, {s['cycles']} cycles, "
                  f"latency {s['latency_min']}..{s['latency_max']}, {s['wall']:.1f} s; "
                  f"reasons {s['reasons']}")
        else:
            print(f"W={s['width']} throughput: {s['frames_per_cycle_in']:.3f} frames/cycle in, "
                  f"{s['frames_per_cycle_out']:.3f} out, latency {s['latency_min']}.."
                  f"{s['latency_max']} (expected {s['latency_expected']})")


def test_datapath_frames_and_throughput(dp_build):
    """Frames vs the model with gaps and backpressure; throughput of 64-byte frames."""
    width, build = dp_build
    frames = int(os.environ.get("L4LB_FRAMES", DEFAULT_FRAMES[width]))
    stats = run_frames(build, width, frames, testcases=("frames", "throughput"))
    _print(stats)
    f = next(s for s in stats if s["test"] == "frames")
    assert f["mismatches"] == 0 and all(v > 0 for v in f["reasons"].values())
    t = next(s for s in stats if s["test"] == "throughput")
    assert t["mismatches"] == 0
    assert t["latency_min"] == t["latency_max"] == t["latency_expected"]
    if width == 64:
        assert t["frames_per_cycle_in"] == t["frames_per_cycle_out"] == 1.0


def test_replay_rtl_shipped_capture(tmp_path):
    """``l4lb replay examples/default.toml examples/capture.pcap --rtl``: the shipped
    capture (every class, live control plane) through the W = 8 datapath, identical."""
    from l4lb.replay import ReplayTrace, replay_pcap
    from l4lb.replay_rtl import replay_rtl

    cfg = load_config(CONFIG)
    trace = ReplayTrace()
    rep = replay_pcap(cfg, _HERE.parent / "examples" / "capture.pcap", tmp_path / "out.pcap",
                      trace=trace)
    rtl = replay_rtl(CONFIG, trace, 8)
    print(rtl.format())
    assert not rtl.mismatches
    assert rtl.compared == rep.frames_out - rtl.oversize - sum(1 for f in trace.frames if not f)
    assert rtl.counters["frames_rewritten"] == rep.rewritten
    assert rtl.writes > 100 and rtl.segments > 100


@pytest.mark.skipif(not os.environ.get("L4LB_DATAPATH_ALL"),
                    reason="a third Verilator build (about 2 min); L4LB_DATAPATH_ALL=1 runs it "
                           "(tests/test_hdl_datapath.py checks the policy in every run)")
def test_datapath_drop_policy(tmp_path):
    """The shipped config with a ``[frames]`` table that drops every set-aside class but
    NOT_IPV4 and FRAGMENT: dropped frames leave nothing, the rest as the model (W = 8)."""
    from rtl_env import build_datapath

    text = CONFIG.read_text() + ('\n[frames]\nmalformed = "drop"\nnot_ipv4 = "forward"\n'
                                 'fragment = "forward"\n')
    path = tmp_path / "default-drop.toml"
    path.write_text(text)
    build = build_datapath(path, 8)
    assert set(build.info["policy_drops"]) == {r.key for r in Reason} - {
        "ok", "not_ipv4", "fragment"}
    stats = run_frames(build, 8, int(os.environ.get("L4LB_FRAMES", 1500)))
    _print(stats)
    f = stats[0]
    assert f["mismatches"] == 0
    assert f["actions"]["malformed_drop"] > 100 and f["actions"]["malformed_forward"] > 50
