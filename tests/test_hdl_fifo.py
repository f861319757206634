# amaranth: UnusedElaboratable=no
"""hdl/fifo.py in the Amaranth simulator: order, capacity, latency and the stream rules
under random valid/ready, against a Python deque."""

import random
from collections import deque

import pytest

from hdl.fifo import StreamFifo

from .hdl_simutil import run_sim


@pytest.mark.parametrize("depth", [3, 4, 5, 17, 33])
def test_stream_fifo_random_traffic(depth):
    """Random writes and reads: every word comes out once, in order; ``w.ready`` is low
    exactly when the queue holds ``capacity`` words; ``r.valid`` matches the model."""
    dut = StreamFifo(9, depth)
    assert dut.capacity >= depth
    rng = random.Random(depth)
    model: deque[int] = deque()
    out: list[int] = []
    sent: list[int] = []

    async def tb(ctx):
        nxt = 0
        for cycle in range(3000):
            phase = (cycle // 300) % 3  # fill-heavy, drain-heavy, balanced
            wv = rng.random() < (0.9, 0.2, 0.5)[phase]
            rr = rng.random() < (0.2, 0.9, 0.5)[phase]
            ctx.set(dut.w.valid, wv)
            ctx.set(dut.w.payload, nxt)
            ctx.set(dut.r.ready, rr)
            w_ready, r_valid = ctx.get(dut.w.ready), ctx.get(dut.r.valid)
            # w.ready is a register: low exactly when full (words written, not yet read)
            assert bool(w_ready) == (len(model) < dut.capacity), (cycle, len(model))
            if r_valid and rr:
                out.append(ctx.get(dut.r.payload))
                model.popleft()
            if wv and w_ready:
                sent.append(nxt)
                model.append(nxt)
                nxt = (nxt + 1) % 512
            await ctx.tick()
        ctx.set(dut.w.valid, 0)
        ctx.set(dut.r.ready, 1)
        for _ in range(dut.capacity + 4):
            if ctx.get(dut.r.valid):
                out.append(ctx.get(dut.r.payload))
            await ctx.tick()

    run_sim(dut, tb)
    assert len(sent) > 700
    assert out == sent


def test_stream_fifo_latency_and_stability():
    """A word written into an empty queue is valid ``latency`` cycles later and stays on
    ``r`` unchanged while ``r.ready`` is low."""
    dut = StreamFifo(8, 4)
    seen = []

    async def tb(ctx):
        ctx.set(dut.r.ready, 0)
        ctx.set(dut.w.valid, 1)
        ctx.set(dut.w.payload, 0xA5)
        await ctx.tick()
        ctx.set(dut.w.valid, 0)
        for _ in range(6):
            seen.append((ctx.get(dut.r.valid), ctx.get(dut.r.payload)))
            await ctx.tick()

    run_sim(dut, tb)
    assert [v for v, _ in seen] == [0] + [1] * 5  # valid in cycle 2 after the write in 0
    assert all(p == 0xA5 for v, p in seen if v)


def test_stream_fifo_validates():
    with pytest.raises(ValueError, match="depth"):
        StreamFifo(8, 2)
    with pytest.raises(ValueError, match="width"):
        StreamFifo(0, 4)
