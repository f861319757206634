"""A single-port block RAM with every input and the output registered.

At 200 MHz on ECP5 (5 ns) a block RAM cannot afford logic on either side: its
clock-to-output delay without the output register is about 5.6 ns on its own (nextpnr's
``DP16KD`` timing, speed grade 6), and an address that passes through a multiplexer and
then fans out to six block RAMs across the die spent 6 ns in routing. :class:`PipelinedRam`
puts a flip-flop right before the address, write-enable and write-data pins and two
after the data output. The first of these is ``reset_less`` with no enable, exactly the
register the ECP5 block RAM has inside (``REGMODE = "OUTREG"``); the synthesis flow
(:func:`l4lb.bram_outreg.absorb_bram_output_registers`) moves it there. The second one
takes the long route out of the block-RAM column (about 2.5 ns on the 85k) without any
logic in front of it. In simulation and in the Verilog both are ordinary registers, so
every target sees the same cycle behaviour.
"""

from collections.abc import Sequence

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["PipelinedRam", "SimpleDualPortRam", "RAM_LATENCY", "check_size", "check_images"]

#: Cycles from an access to its word: input registers, block-RAM read, output register,
#: fabric register.
RAM_LATENCY = 4

#: Widest column of a shallow (<= 512 words) memory, see :meth:`PipelinedRam.elaborate`.
_COLUMN = 18


def check_size(name: str, value, least: int) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= ``least``."""
    if not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be an integer of at least {least}, not {value!r}")


def check_images(init: Sequence[Sequence[int]] | None, count: int, depth: int, kind: str
                 ) -> list[list[int]] | None:
    """``init`` as lists, checked to hold ``count`` images of at most ``depth`` words
    (the power-on contents of ``count`` memories of one ``kind``), or ``None``."""
    if init is None:
        return None
    init = [list(x) for x in init]
    if len(init) != count:
        raise ValueError(f"init must hold {count} {kind} images, not {len(init)}")
    for i, img in enumerate(init):
        if len(img) > depth:
            raise ValueError(f"init[{i}] has {len(img)} words, more than the {depth} of "
                             f"a {kind} memory")
    return init


class PipelinedRam(wiring.Component):
    """One memory, one address per cycle shared by the read and the write.

    Timing: an access presented in cycle ``c`` (``addr``; ``w_en`` and ``w_data`` for a
    write) is registered at the end of ``c``, the block RAM is accessed in ``c + 1``
    (read-before-write), the word read is in the block RAM's output register in
    ``c + 2`` and in a fabric register, on ``r_data``, in ``c + latency``
    (``latency == 4``). A write presented in ``c`` is seen by reads
    presented in ``c + 1`` or later; the read of a write cycle returns the old word.

    Parameters
    ----------
    width, depth : int
        Word width in bits and number of words.
    init : sequence of int, optional
        Initial contents (missing words are zero).

    Members
    -------
    addr : ``In(range(depth))``
        The word accessed (the write's while ``w_en``).
    w_en, w_data : ``In``
        Write request.
    r_data : ``Out(width)``
        The word read, ``latency`` cycles after ``addr``.
    """

    def __init__(self, width: int, depth: int, init: Sequence[int] = ()):
        check_size("width", width, 1)
        check_size("depth", depth, 1)
        init = [int(x) for x in init]
        if len(init) > depth:
            raise ValueError(f"init has {len(init)} words, more than the depth {depth}")
        self._width, self._depth, self._init = width, depth, init
        super().__init__({
            "addr": In(max(1, (depth - 1).bit_length())),
            "w_en": In(1),
            "w_data": In(width),
            "r_data": Out(width),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``addr`` to ``r_data``."""
        return RAM_LATENCY

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform) -> Module:
        m = Module()
        abits = (self._depth - 1).bit_length()
        # A shallow memory wider than 18 bits is split into columns of at most 18 bits:
        # ECP5 would otherwise use a block RAM's pseudo-dual-port 36-bit mode, whose
        # output register is shared by its two ports (not the single-port one below).
        if self._depth <= 512 and self._width > _COLUMN:
            cols = [(lo, min(_COLUMN, self._width - lo))
                    for lo in range(0, self._width, _COLUMN)]
        else:
            cols = [(0, self._width)]
        rd_data = []
        # input registers: nothing but routing between them and the block-RAM pins
        addr_q = Signal(abits, name="addr_q", reset_less=True)
        w_en_q = Signal(name="w_en_q")
        w_data_q = Signal(self._width, name="w_data_q", reset_less=True)
        m.d.sync += [w_en_q.eq(self.w_en), w_data_q.eq(self.w_data)]
        if abits:
            m.d.sync += addr_q.eq(self.addr[:abits])
        for c, (lo, w) in enumerate(cols):
            mask = (1 << w) - 1
            mem = Memory(shape=w, depth=self._depth, init=[x >> lo & mask for x in self._init])
            m.submodules["mem" if len(cols) == 1 else f"mem_c{c}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="sync")
            m.d.comb += [wr.addr.eq(addr_q), rd.addr.eq(addr_q),
                         wr.en.eq(w_en_q), wr.data.eq(w_data_q[lo:lo + w])]
            rd_data.append(rd.data)
        # output register: reset-less, no enable (the block RAM's own OUTREG), then a
        # fabric register, so that the long route out of the block-RAM column carries no
        # logic either
        r_q = Signal(self._width, name="r_q", reset_less=True)
        r_qq = Signal(self._width, name="r_qq", reset_less=True)
        m.d.sync += [r_q.eq(Cat(*rd_data)), r_qq.eq(r_q)]
        m.d.comb += self.r_data.eq(r_qq)
        return m



class SimpleDualPortRam(wiring.Component):
    """One memory with a read port and a write port at independent addresses.

    Timing as :class:`PipelinedRam`: every input is registered, the word read goes through
    the block RAM's output register and one fabric register (``latency == 4``). A write
    presented in cycle ``c`` is seen by reads presented in ``c + 1`` or later; a read
    presented in the same cycle as a write of the same word returns an undefined value
    (the old word in simulation): the user must not depend on it (the verified-source
    table forwards every write a read could have missed, :mod:`hdl.auth`).

    The storage is named ``ring_c0`` so that the synthesis flow, which declares the
    read/write collisions of ``*.ring_c*`` memories don't-care (``RD_COLLISION_X_MASK``,
    as for :class:`~hdl.fifo.BlockRamFifo`'s ring), adds no bypass behind the block RAM.

    Parameters
    ----------
    width, depth : int
        Word width in bits and number of words.
    init : sequence of int, optional
        Initial contents (missing words are zero).

    Members
    -------
    r_addr : ``In(range(depth))``
        The word read.
    r_data : ``Out(width)``
        The word read, ``latency`` cycles after ``r_addr``.
    w_en, w_addr, w_data : ``In``
        Write request.
    """

    def __init__(self, width: int, depth: int, init: Sequence[int] = ()):
        check_size("width", width, 1)
        check_size("depth", depth, 1)
        init = [int(x) for x in init]
        if len(init) > depth:
            raise ValueError(f"init has {len(init)} words, more than the depth {depth}")
        self._width, self._depth, self._init = width, depth, init
        abits = max(1, (depth - 1).bit_length())
        super().__init__({
            "r_addr": In(abits),
            "r_data": Out(width),
            "w_en": In(1),
            "w_addr": In(abits),
            "w_data": In(width),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``r_addr`` to ``r_data``."""
        return RAM_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        abits = (self._depth - 1).bit_length()
        r_addr_q = Signal(max(1, abits), name="r_addr_q", reset_less=True)
        w_addr_q = Signal(max(1, abits), name="w_addr_q", reset_less=True)
        w_en_q = Signal(name="w_en_q")
        w_data_q = Signal(self._width, name="w_data_q", reset_less=True)
        m.d.sync += [r_addr_q.eq(self.r_addr), w_addr_q.eq(self.w_addr),
                     w_en_q.eq(self.w_en), w_data_q.eq(self.w_data)]
        mem = Memory(shape=self._width, depth=self._depth, init=self._init)
        m.submodules.ring_c0 = mem
        wr = mem.write_port()
        rd = mem.read_port(domain="sync")
        m.d.comb += [wr.addr.eq(w_addr_q), wr.en.eq(w_en_q), wr.data.eq(w_data_q),
                     rd.addr.eq(r_addr_q)]
        r_q = Signal(self._width, name="r_q", reset_less=True)
        r_qq = Signal(self._width, name="r_qq", reset_less=True)
        m.d.sync += [r_q.eq(rd.data), r_qq.eq(r_q)]
        m.d.comb += self.r_data.eq(r_qq)
        return m
