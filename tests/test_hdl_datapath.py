# amaranth: UnusedElaboratable=no
"""hdl/datapath.py (parser, frame buffer, core, rewriter) in the Amaranth simulator
against model/frame.py: output frames byte for byte, with input gaps and output
backpressure, at W = 8, 16, 32 and 64; the [frames] drop policy; rx-error and oversize
frames; one minimum-size frame per clock at W = 64 and the latency; constructor
validation. The long runs (>= 20k frames) are the Verilator benches
(cocotb_tests/test_datapath.py)."""

import itertools
import random
import tomllib

import pytest

from hdl.datapath import FrameDatapath
from hdl.parser import PARSE_LATENCY
from hdl.rewriter import REWRITE_LATENCY
from l4lb.framegen import MALFORMED, build_frame, frame_mix, malform
from model.config import load_config, parse_config
from model.controlplane import ControlPlane
from model.frame import FrameDataPlane
from model.hashing import FiveTuple
from model.layout import Memories
from model.parse import Reason, parse_frame
from model.pipeline import Packet

from .conftest import EXAMPLES
from .hdl_simutil import run_sim
from .test_hdl_parser import beats_of

SMALL = load_config(EXAMPLES / "small.toml")


def small_with_frames(table: dict):
    data = tomllib.loads((EXAMPLES / "small.toml").read_text())
    data["frames"] = table
    return parse_config(data)


def state(cfg, rng: random.Random, conns: int = 30) -> tuple[Memories, list[FiveTuple]]:
    """Installed pools and ``conns`` connections in the ConnTable."""
    cp = ControlPlane(cfg)
    cp.install()
    keys = []
    for _ in range(conns):
        vid = rng.randrange(len(cfg.vips))
        v = cfg.vips[vid]
        k = FiveTuple(0x64000000 | rng.getrandbits(20), v.address, rng.randrange(1024, 65536),
                      v.port, v.protocol)
        cp.learn(k, vid, cp.pools.current(vid).version)
        cp.insert_pending()
        keys.append(k)
    return cp.mem, keys


def packets(cfg, rng: random.Random, keys: list[FiveTuple], n: int) -> list[Packet]:
    """Known connections, new ones to the VIPs, and non-VIP traffic."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.35 and keys:
            k = rng.choice(keys)
        elif r < 0.8:
            v = rng.choice(cfg.vips)
            k = FiveTuple(rng.getrandbits(32), v.address, rng.getrandbits(16), v.port,
                          v.protocol)
        else:
            k = FiveTuple(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                          rng.getrandbits(16), rng.choice((6, 17)))
        out.append(Packet(k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto,
                          rng.choice((0x02, 0x10, 0x11, 0x04, 0x18))))
    return out


def run_datapath(dut: FrameDatapath, frames: list[bytes], n_out: int, *, idle=None,
                 ready=None, users: list[bool] | None = None) -> dict:
    """Drive the frames (each beat held until accepted; ``idle`` yields 1 to present a
    beat), collect output frames (``ready`` yields m.ready) until ``n_out`` frames and 100
    more cycles (which must bring none); first-beat cycles in and out."""
    idle = idle or itertools.repeat(1)
    ready = ready or itertools.repeat(1)
    W = dut.width
    seq = [(i, b) for i, fr in enumerate(frames)
           for b in beats_of(fr, W, users[i] if users else False)]
    res = {"out": [], "first_in": [], "first_out": [], "cycles": 0, "counters": None}
    cur = bytearray()
    limit = len(seq) * 8 + 1000

    async def tb(ctx):
        k = 0
        quiet = 0
        holding = False
        new_frame = True
        for cycle in range(limit):
            if not holding and k < len(seq) and next(idle):
                holding = True
                ctx.set(dut.s.payload, seq[k][1])
            ctx.set(dut.s.valid, holding)
            r = next(ready)
            ctx.set(dut.m.ready, r)
            await ctx.delay(1e-9)
            if holding and ctx.get(dut.s.ready):
                if new_frame:
                    res["first_in"].append(cycle)
                new_frame = bool(seq[k][1]["last"])
                holding = False
                k += 1
            if r and ctx.get(dut.m.valid):
                b = ctx.get(dut.m.payload)
                keep = int(b.keep)
                assert int(b.user) == 0
                if not cur:
                    res["first_out"].append(cycle)
                nbytes = keep.bit_length()
                assert keep == (1 << nbytes) - 1 and (b.last or nbytes == W)
                cur.extend(int(b.data).to_bytes(W, "little")[:nbytes])
                if b.last:
                    res["out"].append(bytes(cur))
                    cur.clear()
            await ctx.tick()
            res["cycles"] = cycle + 1
            quiet = quiet + 1 if len(res["out"]) >= n_out else 0
            if quiet > 100:
                break
        fc = dut.frame_counters
        res["counters"] = {"reasons": [ctx.get(fc.reasons[r]) for r in Reason]} | {
            n: ctx.get(getattr(fc, n)) for n in ("rx_errors", "oversize", "frames_out",
                                                  "frames_dropped", "frames_rewritten")}

    run_sim(dut, tb)
    return res


def expected(cfg, mem: Memories, frames: list[bytes], users=None
             ) -> tuple[list[bytes], FrameDataPlane]:
    fdp = FrameDataPlane(cfg, mem)
    out = []
    for i, f in enumerate(frames):
        if users and users[i]:
            continue
        o, _, _ = fdp.process_frame(f)
        if o is not None:
            out.append(o)
    return out, fdp


def _compare(got: list[bytes], want: list[bytes]) -> None:
    assert len(got) == len(want), f"{len(got)} frames out, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"output frame {i}:\n got {g.hex()}\nwant {w.hex()}"


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_frames_match_the_model_with_gaps_and_backpressure(width):
    rng = random.Random(width)
    mem, keys = state(SMALL, rng)
    frames = list(frame_mix(rng, packets(SMALL, rng, keys, 160), malformed=0.3, fuzz=0.1))
    dut = FrameDatapath(SMALL, width, init_images=mem.snapshot(), hash_stages=1)
    want, fdp = expected(SMALL, mem, frames)
    res = run_datapath(dut, frames, len(want), idle=itertools.cycle([1, 1, 0, 1, 0]),
                       ready=itertools.cycle([1, 1, 1, 0, 0, 1, 0]))
    _compare(res["out"], want)
    assert res["counters"]["reasons"] == [fdp.reasons[r] for r in Reason]
    assert res["counters"]["frames_rewritten"] == fdp.actions["lb"] > 10


def test_policy_drops_and_every_class():
    cfg = small_with_frames({"malformed": "drop", "not_ipv4": "forward", "fragment": "forward"})
    rng = random.Random(3)
    mem, keys = state(cfg, rng)
    frames = []
    for i, p in enumerate(packets(cfg, rng, keys, 66)):
        f = build_frame(rng, p)
        frames += [f, malform(rng, f, MALFORMED[i % len(MALFORMED)])]
    dut = FrameDatapath(cfg, 8, init_images=mem.snapshot(), hash_stages=1)
    want, fdp = expected(cfg, mem, frames)
    res = run_datapath(dut, frames, len(want), ready=itertools.cycle([1, 0]))
    _compare(res["out"], want)
    assert fdp.actions["malformed_drop"] > 20 and fdp.actions["malformed_forward"] > 5
    assert all(fdp.reasons[r] > 0 for r in Reason)


def test_rx_error_and_oversize_frames_are_dropped():
    rng = random.Random(4)
    mem, keys = state(SMALL, rng)
    frames = [build_frame(rng, p, payload=rng.choice((20, 100, 400)))
              for p in packets(SMALL, rng, keys, 50)]
    users = [i % 5 == 1 for i in range(len(frames))]
    dut = FrameDatapath(SMALL, 16, max_frame=256, init_images=mem.snapshot(), hash_stages=1)
    kept = [f for f, u in zip(frames, users, strict=True) if not u and len(f) <= 256]
    want, _ = expected(SMALL, mem, kept)
    res = run_datapath(dut, frames, len(want), users=users, ready=itertools.cycle([1, 1, 0]))
    _compare(res["out"], want)
    c = res["counters"]
    assert c["rx_errors"] == sum(users)
    assert c["oversize"] == sum(len(f) > 256 and not u for f, u in zip(frames, users, strict=True))


def test_one_min_frame_per_clock_at_w64():
    rng = random.Random(5)
    mem, keys = state(SMALL, rng)
    frames = []
    for p in packets(SMALL, rng, keys, 300):
        f = build_frame(rng, p, tags=0, options=0, payload=0)
        frames.append(f[:64].ljust(64, b"\x00") if len(f) <= 64 else f[:64])
    frames = [f for f in frames if parse_frame(f).ok]
    dut = FrameDatapath(SMALL, 64, init_images=mem.snapshot(), hash_stages=1)
    want, _ = expected(SMALL, mem, frames)
    res = run_datapath(dut, frames, len(want))
    _compare(res["out"], want)
    n = len(frames)
    span_in = res["first_in"][-1] - res["first_in"][0] + 1
    span_out = res["first_out"][-1] - res["first_out"][0] + 1
    assert span_in == n and span_out == len(want) == n, (span_in, span_out, n)
    lat = {o - i for i, o in zip(res["first_in"], res["first_out"], strict=True)}
    assert lat == {dut.latency}, lat
    # the parser, the queue writes registered twice (2), the packet queue (8), the core,
    # the rewriter
    assert dut.latency == dut.decision_delay + REWRITE_LATENCY == (
        PARSE_LATENCY + 2 + 8 + dut.core.latency + REWRITE_LATENCY)
    assert dut.buffer_beats >= dut.max_beats + dut.decision_delay
    assert dut.frame_slots >= dut.decision_delay + REWRITE_LATENCY


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"width must be one of \[8, 16, 32, 64\] bytes, not 7"):
        FrameDatapath(SMALL, 7)
    with pytest.raises(ValueError, match="max_frame must be an integer within 64..65535"):
        FrameDatapath(SMALL, 8, max_frame=63)
    with pytest.raises(TypeError, match="cfg must be a model.config.Config"):
        FrameDatapath("small.toml", 8)
