"""A stream FIFO whose every control signal is a register, for a 200 MHz clock.

:class:`amaranth.lib.fifo.SyncFIFOBuffered` derives ``w_rdy`` from its level counter
with a comparator and updates that counter from ``w_en`` and ``r_en`` through an adder:
four logic levels and 6.8 ns on ECP5 in this core. :class:`StreamFifo` keeps the
occupancy of its storage as a thermometer code, so "full" and "empty" are single
flip-flops and each occupancy bit changes from its two neighbours; the output is a
register stage that is refilled from the storage (a LUT RAM read asynchronously at a
registered pointer).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["StreamFifo"]


class StreamFifo(wiring.Component):
    """First-in first-out queue between two :mod:`amaranth.lib.stream` interfaces.

    ``w.ready`` and ``r.valid`` are registers (they depend on neither ``w.valid`` nor
    ``r.ready`` in the same cycle). A word written in cycle ``c`` is on ``r`` from cycle
    ``c + latency`` (``latency == 2``) if the queue was empty.

    Parameters
    ----------
    width : int
        Payload width in bits.
    depth : int
        Words the queue must hold (at least 3). It holds :attr:`capacity` words: the
        storage is rounded up to a power of two (plus the output register). ``w.ready``
        is low exactly when it holds ``capacity`` words (the storage has at least two
        words, so it is never full while the output register waits for a refill).

    Members
    -------
    w : ``In(stream.Signature(width))``
        Write side.
    r : ``Out(stream.Signature(width))``
        Read side.
    """

    def __init__(self, width: int, depth: int):
        if not isinstance(width, int) or width < 1:
            raise ValueError(f"width must be a positive integer, not {width!r}")
        if not isinstance(depth, int) or depth < 3:
            raise ValueError(f"depth must be an integer of at least 3, not {depth!r}")
        self._width = width
        self._abits = (depth - 2).bit_length()
        super().__init__({
            "w": In(stream.Signature(width)),
            "r": Out(stream.Signature(width)),
        })

    @staticmethod
    def capacity_for(depth: int) -> int:
        """:attr:`capacity` of a queue built for ``depth`` words."""
        return (1 << (depth - 2).bit_length()) + 1

    @property
    def capacity(self) -> int:
        """Words the queue holds: the storage (a power of two) and the output register."""
        return (1 << self._abits) + 1

    @property
    def latency(self) -> int:
        """Cycles from a write into an empty queue to ``r.valid``."""
        return 2

    def elaborate(self, platform) -> Module:
        m = Module()
        n = 1 << self._abits
        mem = Memory(shape=self._width, depth=n, init=[])
        m.submodules.storage = mem
        wp = Signal(self._abits)
        rp = Signal(self._abits)
        # occupancy of the storage: fill[i] = "more than i words stored"
        fill = Signal(n)
        full, nonempty = fill[n - 1], fill[0]
        out_valid = Signal()
        out_data = Signal(self._width, reset_less=True)

        do_write = Signal()
        load = Signal()  # storage -> output register
        m.d.comb += [
            self.w.ready.eq(~full),
            do_write.eq(self.w.valid & ~full),
            load.eq(nonempty & (~out_valid | self.r.ready)),
            self.r.valid.eq(out_valid),
            self.r.payload.eq(out_data),
        ]

        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        m.d.comb += [wr.addr.eq(wp), wr.data.eq(self.w.payload), wr.en.eq(do_write),
                     rd.addr.eq(rp)]
        if self._abits:
            with m.If(do_write):
                m.d.sync += wp.eq(wp + 1)
            with m.If(load):
                m.d.sync += rp.eq(rp + 1)

        # the thermometer shifts up on a write alone, down on a read alone
        with m.If(do_write & ~load):
            m.d.sync += fill.eq(Cat(Const(1, 1), fill[:n - 1]))
        with m.Elif(load & ~do_write):
            m.d.sync += fill.eq(Cat(fill[1:], Const(0, 1)))

        with m.If(load):
            m.d.sync += [out_valid.eq(1), out_data.eq(rd.data)]
        with m.Elif(self.r.ready):
            m.d.sync += out_valid.eq(0)
        return m
