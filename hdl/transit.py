"""The TransitTable: a Bloom filter of ``transit_hashes`` one-bit memories.

While a VIP is in phase RECORD every ConnTable miss sets the key's bits (one per
hash); in phase FLIP a miss tests them (``transit_hit`` = all set). The model runs
packets strictly in order, so a bit set by packet ``N`` must be visible to packet
``N + 1``: :class:`TransitBits` tests and sets in the same pipeline stage through one
shared address per memory, so no forwarding path is needed (see hdl/core.py).
"""

from collections.abc import Sequence

from amaranth.hdl import Module, Mux
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Geometry

from .bram import RAM_LATENCY, PipelinedRam, check_images

__all__ = ["TransitBits"]


class TransitBits(wiring.Component):
    """The TransitTable's bit memories with one shared read/write address per memory.

    Used by :class:`~hdl.core.L4LBCore`, where the op at the Bloom stage either tests
    its bits (FLIP-phase miss), sets them (RECORD-phase miss) or is a control write, never
    two of these: so each memory needs one address per cycle, the write's when writing.
    Reads and writes then happen in the same stage, and every read sees all earlier
    writes without any bypass; the block RAM's read-before-write mode provides the
    rest natively (a transparent port would need a bypass multiplexer right after the
    block-RAM output).

    Timing: ``index`` presented in cycle ``c`` gives ``bits`` in ``c + latency``
    (``latency == 3``, a :class:`~hdl.bram.PipelinedRam` per memory). A write presented
    in cycle ``c`` is seen by reads presented in ``c + 1`` or later. While ``w_en[j]`` is
    high memory ``j`` reads ``w_addr[j]`` instead of ``index[j]`` (its bit in ``bits`` is
    then undefined).

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
        self._geo = geo
        self._init = check_images(init, geo.transit_hashes, geo.transit_bits, "Bloom")
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
        return RAM_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        for j in range(g.transit_hashes):
            ram = PipelinedRam(1, g.transit_bits, self._init[j] if self._init else ())
            m.submodules[f"bits{j}"] = ram
            m.d.comb += [ram.addr.eq(Mux(self.w_en[j], self.w_addr[j], self.index[j])),
                         ram.w_en.eq(self.w_en[j]), ram.w_data.eq(self.w_data[j]),
                         self.bits[j].eq(ram.r_data)]
        return m
