"""The TransitTable: a Bloom filter of ``transit_hashes`` one-bit memories.

While a VIP is in phase RECORD every ConnTable miss sets the key's bits (one per
hash); in phase FLIP a miss tests them (``transit_hit`` = all set). The model runs
packets strictly in order, so a bit set by packet ``N`` must be visible to packet
``N + 1``. Here the test of a key is read in cycle ``c`` and its bits are set in
``c + 1``, when the ConnTable result is known; the next key is read in that same cycle
``c + 1``. The read ports are *transparent* to the write port (``transparent_for``):
a read in the cycle of a write to the same bit returns the new value, which is the
one-cycle forwarding path; older writes are already in the memory.
"""

from collections.abc import Sequence

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.config import Geometry, clog2

__all__ = ["TransitTable"]


class TransitTable(wiring.Component):
    """Bloom-filter bit memories with test-then-set and a bypass for back-to-back keys.

    Timing: ``index`` presented in cycle ``c`` gives ``all_set`` in ``c + 1``
    (combinational from the read data). Asserting ``set`` in ``c + 1`` sets the bits of
    the indices presented in ``c``. Every write (a ``set`` or a control write) takes
    effect in the cycle it is presented and is visible to reads presented in that
    same cycle (transparent ports) and later. A control write to memory ``j`` in the
    same cycle as a ``set`` wins over the set's bit in memory ``j`` (the core never
    issues both: each pipeline slot holds either a packet or a write).

    Parameters
    ----------
    geo : Geometry
        Geometry (``transit_hashes``, ``transit_log2_bits``).
    init : sequence of sequence of int, optional
        Initial bits of each memory.

    Members
    -------
    index : ``In(ArrayLayout(transit_log2_bits, transit_hashes))``
        Bloom indices of the key to test.
    all_set : ``Out(1)``
        Every indexed bit is set, ``latency`` cycles after ``index``.
    set : ``In(1)``
        Set the bits of the key presented one cycle earlier.
    w_en, w_sel, w_addr, w_data : ``In``
        Control write of one bit of memory ``w_sel``.

    Raises
    ------
    TypeError
        If ``geo`` is not a :class:`~model.config.Geometry`.
    ValueError
        If ``init`` has the wrong number of images or an image is too long.
    """

    def __init__(self, geo: Geometry, init: Sequence[Sequence[int]] | None = None):
        if not isinstance(geo, Geometry):
            raise TypeError(f"geo must be a model.config.Geometry, not {geo!r}")
        if init is not None:
            init = [list(x) for x in init]
            if len(init) != geo.transit_hashes:
                raise ValueError(f"init must hold {geo.transit_hashes} images, "
                                 f"not {len(init)}")
            for j, img in enumerate(init):
                if len(img) > geo.transit_bits:
                    raise ValueError(f"init[{j}] has {len(img)} bits, more than "
                                     f"{geo.transit_bits}")
        self._geo = geo
        self._init = init
        super().__init__({
            "index": In(data.ArrayLayout(geo.transit_log2_bits, geo.transit_hashes)),
            "all_set": Out(1),
            "set": In(1),
            "w_en": In(1),
            "w_sel": In(clog2(geo.transit_hashes)),
            "w_addr": In(geo.transit_log2_bits),
            "w_data": In(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``index`` to ``all_set``."""
        return 1

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        index_q = Signal.like(self.index)
        m.d.sync += index_q.eq(self.index)
        bits = []
        for j in range(g.transit_hashes):
            mem = Memory(shape=1, depth=g.transit_bits,
                         init=self._init[j] if self._init else [])
            m.submodules[f"bits{j}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="sync", transparent_for=(wr,))
            m.d.comb += rd.addr.eq(self.index[j])
            ctrl = self.w_en & (self.w_sel == j)
            with m.If(ctrl):
                m.d.comb += [wr.en.eq(1), wr.addr.eq(self.w_addr), wr.data.eq(self.w_data)]
            with m.Elif(self.set):
                m.d.comb += [wr.en.eq(1), wr.addr.eq(index_q[j]), wr.data.eq(1)]
            bits.append(rd.data)
        acc = bits[0]
        for b in bits[1:]:
            acc = acc & b
        m.d.comb += self.all_set.eq(acc)
        return m
