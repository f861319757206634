"""The TransitTable: a Bloom filter of ``transit_hashes`` one-bit memories.

While a VIP is in phase RECORD every ConnTable miss sets the key's bits (one per
hash); in phase FLIP a miss tests them (``transit_hit`` = all set). The model runs
packets strictly in order, so a bit set by packet ``N`` must be visible to packet
``N + 1``: :class:`TransitBits` tests and sets in the same pipeline stage through one
shared address per memory, so no forwarding path is needed (see hdl/core.py).
"""

from collections.abc import Sequence

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.config import Geometry

__all__ = ["TransitBits"]


class TransitBits(wiring.Component):
    """The TransitTable's bit memories with one shared read/write address per memory.

    Used by :class:`~hdl.core.L4LBCore`, where the op at the Bloom stage either tests
    its bits (FLIP-phase miss), sets them (RECORD-phase miss) or is a control write, never
    two of these: so each memory needs one address per cycle, the write's when writing.
    Reads and writes then happen in the same stage, and every read sees all earlier
    writes without any bypass; the block RAM's read-before-write mode provides the
    rest natively (a one-cycle transparent port, as in :class:`TransitTable`, made
    synthesis put a bypass multiplexer right after the block-RAM output).

    Timing: ``index`` presented in cycle ``c`` gives ``bits`` in ``c + latency``
    (``latency == 2``: block-RAM read in ``c``, read data registered in ``c + 1``). A
    write presented in cycle ``c`` is stored at the end of ``c`` and seen by reads
    presented in ``c + 1`` or later. While ``w_en[j]`` is high memory ``j`` reads
    ``w_addr[j]`` instead of ``index[j]`` (its bit in ``bits`` is then undefined).

    Parameters
    ----------
    geo : Geometry
        Geometry (``transit_hashes``, ``transit_log2_bits``).
    init : sequence of sequence of int, optional
        Initial bits of each memory.

    Members
    -------
    index : ``In(ArrayLayout(transit_log2_bits, transit_hashes))``
        Read address of each memory.
    bits : ``Out(transit_hashes)``
        Bit ``j`` is the word of memory ``j``, ``latency`` cycles after ``index``.
    w_en, w_addr, w_data : ``In``
        One write port per memory (``w_en[j]``, ``w_addr[j]``, ``w_data[j]``).
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
        t, n = geo.transit_log2_bits, geo.transit_hashes
        super().__init__({
            "index": In(data.ArrayLayout(t, n)),
            "bits": Out(n),
            "w_en": In(n),
            "w_addr": In(data.ArrayLayout(t, n)),
            "w_data": In(n),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``index`` to ``bits``."""
        return 2

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        for j in range(g.transit_hashes):
            mem = Memory(shape=1, depth=g.transit_bits,
                         init=self._init[j] if self._init else [])
            m.submodules[f"bits{j}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="sync")
            addr = Signal(g.transit_log2_bits, name=f"addr{j}")
            m.d.comb += [addr.eq(Mux(self.w_en[j], self.w_addr[j], self.index[j])),
                         rd.addr.eq(addr), wr.addr.eq(addr),
                         wr.en.eq(self.w_en[j]), wr.data.eq(self.w_data[j])]
            m.d.sync += self.bits[j].eq(rd.data)
        return m
