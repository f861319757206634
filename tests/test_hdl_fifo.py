# amaranth: UnusedElaboratable=no
"""hdl/fifo.py in the Amaranth simulator: order, capacity, latency and the stream rules
under random valid/ready, against a Python deque."""

import random
from collections import deque

import pytest

from hdl.fifo import BlockRamFifo, StreamFifo

from .hdl_simutil import run_sim


async def _drain(ctx, dut, out: list[int], cycles: int) -> None:
    """Stop writing, read every cycle for ``cycles`` cycles, append what comes out."""
    ctx.set(dut.w.valid, 0)
    ctx.set(dut.r.ready, 1)
    for _ in range(cycles):
        if ctx.get(dut.r.valid):
            out.append(ctx.get(dut.r.payload))
        await ctx.tick()


@pytest.mark.parametrize("depth", [3, 4, 5, 17, 33])
@pytest.mark.parametrize("checked", [True, False])
def test_stream_fifo_random_traffic(depth, checked):
    """Random writes and reads: every word comes out once, in order; ``w.ready`` is high
    whenever fewer than ``capacity`` words are outstanding and falls when the queue
    fills. An unchecked queue's writer only writes while ``w.ready``."""
    dut = StreamFifo(9, depth, checked=checked)
    assert dut.capacity >= depth
    rng = random.Random(depth)
    model: deque[int] = deque()
    out: list[int] = []
    sent: list[int] = []

    lows = 0

    async def tb(ctx):
        nonlocal lows
        nxt = 0
        predicted = None
        for cycle in range(3000):
            phase = (cycle // 300) % 3  # fill-heavy, drain-heavy, balanced
            wv = rng.random() < (0.9, 0.2, 0.5)[phase]
            rr = rng.random() < (0.2, 0.9, 0.5)[phase]
            if not checked:
                wv = wv and ctx.get(dut.w.ready)
            ctx.set(dut.w.valid, wv)
            ctx.set(dut.w.payload, nxt)
            ctx.set(dut.r.ready, rr)
            w_ready, r_valid = ctx.get(dut.w.ready), ctx.get(dut.r.valid)
            # w_ready_next of the previous cycle foretold this cycle's w.ready
            assert predicted is None or predicted == w_ready, cycle
            # high whenever fewer than `capacity` words are outstanding; it does fall
            # when the queue fills (the fill-heavy phases), and no word is lost then
            assert w_ready or len(model) >= dut.capacity, (cycle, len(model))
            lows += not w_ready
            if r_valid and rr:
                out.append(ctx.get(dut.r.payload))
                model.popleft()
            if wv and w_ready:
                sent.append(nxt)
                model.append(nxt)
                nxt = (nxt + 1) % 512
            predicted = ctx.get(dut.w_ready_next)
            await ctx.tick()
        await _drain(ctx, dut, out, dut.capacity + 4)

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


def _late(width: int, depth: int, late: bool) -> BlockRamFifo:
    """A queue counted with pointers that reads late (``late_reads``), or the default."""
    if not late:
        return BlockRamFifo(width, depth)
    dut = BlockRamFifo(width, depth, pointer_counts=True, late_reads=True)
    assert dut._late
    return dut


@pytest.mark.parametrize("late", [False, True])
@pytest.mark.parametrize("depth", [2, 36, 61])
def test_block_ram_fifo_random_traffic(depth, late):
    """Random writes (never more than ``capacity`` outstanding) and reads: ``w.ready`` is
    always high for such a writer, every word comes out once and in order (also when
    the ring reads late)."""
    dut = _late(23, depth, late)
    assert dut.capacity >= depth
    rng = random.Random(depth)
    out: list[int] = []
    sent: list[int] = []

    async def tb(ctx):
        nxt = 0
        for cycle in range(4000):
            phase = (cycle // 400) % 3  # fill-heavy, drain-heavy, balanced
            outstanding = len(sent) - len(out)
            wv = outstanding < dut.capacity and rng.random() < (0.95, 0.2, 0.6)[phase]
            rr = rng.random() < (0.1, 0.95, 0.6)[phase]
            ctx.set(dut.w.valid, wv)
            ctx.set(dut.w.payload, nxt)
            ctx.set(dut.r.ready, rr)
            if wv:
                assert ctx.get(dut.w.ready), (cycle, outstanding)
                sent.append(nxt)
                nxt = (nxt + 12345) % (1 << 23)
            if ctx.get(dut.r.valid) and rr:
                out.append(ctx.get(dut.r.payload))
            await ctx.tick()
        await _drain(ctx, dut, out, dut.capacity + 40)

    run_sim(dut, tb)
    assert len(sent) > 600
    assert out == sent


@pytest.mark.parametrize("late", [False, True])
def test_block_ram_fifo_latency_and_rate(late):
    """A word written into an empty queue is on ``r`` ``latency`` cycles later (two more
    when the ring reads late); a word per cycle in gives a word per cycle out."""
    dut = _late(8, 36, late)
    assert dut.latency == BlockRamFifo(8, 36).latency + 2 * late
    got: list[tuple[int, int]] = []

    async def tb(ctx):
        ctx.set(dut.r.ready, 1)
        for c in range(200):
            ctx.set(dut.w.valid, c < 100)
            ctx.set(dut.w.payload, c % 256)
            if ctx.get(dut.r.valid):
                got.append((c, ctx.get(dut.r.payload)))
            await ctx.tick()

    run_sim(dut, tb)
    assert [p for _, p in got] == list(range(100))
    assert got[0][0] == dut.latency
    assert got[-1][0] - got[0][0] == 99  # no bubble


@pytest.mark.parametrize("late", [False, True])
def test_block_ram_fifo_write_side_backs_off_when_full(late):
    """With nothing read, ``w.ready`` falls before the ring overflows and nothing is
    lost; the words then all come out in order."""
    dut = _late(8, 10, late)
    accepted: list[int] = []
    out: list[int] = []

    async def tb(ctx):
        ctx.set(dut.r.ready, 0)
        ctx.set(dut.w.valid, 1)
        for c in range(80):
            ctx.set(dut.w.payload, c)
            if ctx.get(dut.w.ready):
                accepted.append(c)
            await ctx.tick()
        await _drain(ctx, dut, out, 120)

    run_sim(dut, tb)
    assert dut.capacity <= len(accepted) < 80
    assert out == accepted


@pytest.mark.parametrize("depth", [10, 61, 200])
def test_block_ram_fifo_pointer_counts_equal_thermometer_counts(depth):
    """Counting with pointer differences (deep rings) and with thermometer codes makes
    the same decisions in every cycle: ``w.ready``, ``r.valid`` and ``r.payload`` agree
    under random traffic that also fills the ring and writes while it is full. So do
    thermometer counts whose ring reads are decided a cycle ahead (``issue_ahead``)."""
    def trace(pointers: bool, ahead: bool = False) -> list[tuple[int, int, int]]:
        dut = BlockRamFifo(12, depth, pointer_counts=pointers, ready_ahead=True,
                           issue_ahead=ahead)
        assert dut._issue_ahead == ahead
        rng = random.Random(depth)
        seen: list[tuple[int, int, int]] = []

        async def tb(ctx):
            for cycle in range(3000):
                phase = (cycle // 300) % 4  # fill, drain, balanced, overfill
                wv = rng.random() < (0.9, 0.2, 0.6, 1.0)[phase]
                rr = rng.random() < (0.1, 0.95, 0.6, 0.05)[phase]
                ctx.set(dut.w.valid, wv)
                ctx.set(dut.w.payload, cycle % 4096)
                ctx.set(dut.r.ready, rr)
                rv = ctx.get(dut.r.valid)
                seen.append((ctx.get(dut.w.ready), rv, ctx.get(dut.r.payload) if rv else 0,
                             ctx.get(dut.w_ready_ahead)))
                await ctx.tick()

        run_sim(dut, tb)
        return seen

    thermometer, pointers = trace(False), trace(True)
    assert sum(r for r, _, _, _ in thermometer) < len(thermometer)   # it was full at times
    assert sum(v for _, v, _, _ in thermometer) > 500
    assert pointers == thermometer
    assert trace(False, ahead=True) == thermometer


@pytest.mark.parametrize("pointers", [False, True])
def test_block_ram_fifo_ready_ahead_foretells_ready(pointers):
    """``w_ready_ahead`` high in one cycle means ``w.ready`` is high in the next, and a
    writer that writes only then (the frame datapath's ``s.ready``) loses nothing and
    still fills the ring to within two words of ``w.ready``'s own limit."""
    dut = BlockRamFifo(10, 61, pointer_counts=pointers, ready_ahead=True)
    rng = random.Random(7)
    accepted: list[int] = []
    out: list[int] = []
    stats = {"ahead": 0, "ready": 0, "max_held": 0}

    async def tb(ctx):
        ahead = 0
        for cycle in range(4000):
            phase = (cycle // 400) % 4  # fill, drain, balanced, overfill
            wv = ahead and rng.random() < (0.95, 0.2, 0.6, 1.0)[phase]
            ctx.set(dut.w.valid, wv)
            ctx.set(dut.w.payload, cycle % 1024)
            ctx.set(dut.r.ready, rng.random() < (0.05, 0.95, 0.6, 0.02)[phase])
            ready = ctx.get(dut.w.ready)
            assert ready or not ahead, cycle
            stats["ahead"] += ahead
            stats["ready"] += ready
            if wv:
                accepted.append(cycle % 1024)
            if ctx.get(dut.r.valid) and ctx.get(dut.r.ready):
                out.append(ctx.get(dut.r.payload))
            stats["max_held"] = max(stats["max_held"], len(accepted) - len(out))
            ahead = ctx.get(dut.w_ready_ahead)
            await ctx.tick()
        await _drain(ctx, dut, out, 200)

    run_sim(dut, tb)
    assert out == accepted
    assert stats["ahead"] < stats["ready"] < 4000      # both fell while the ring was full
    assert stats["max_held"] >= dut.capacity - 2


def test_block_ram_fifo_counts_deep_rings_with_pointers():
    """Rings of more than THERMOMETER_MAX words count with pointers by default."""
    assert not BlockRamFifo(8, BlockRamFifo.THERMOMETER_MAX - 4)._pointers
    assert BlockRamFifo(8, BlockRamFifo.THERMOMETER_MAX - 3)._pointers
