"""The cuckoo connection table: d stage memories read in parallel, first match wins.

Word layout (``model.layout``): ``valid(1) | version(V) | digest(D)``, LSB first
``digest`` in bits ``D-1..0``. The data-plane rule is
:func:`model.conntable.lookup_words`: the lowest stage whose word is valid and whose
digest equals the key's digest gives ``hit = 1``, that ``stage`` and the stored
``version``; otherwise ``hit = stage = version = 0``.
"""

from collections.abc import Sequence

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.config import Geometry

from .layouts import stage_bits

__all__ = ["ConnTable", "conn_word_layout"]


def conn_word_layout(geo: Geometry) -> data.StructLayout:
    """``digest | version | valid``, LSB first (= ``model.layout.pack_conn``)."""
    return data.StructLayout({"digest": geo.digest_bits, "version": geo.version_bits,
                              "valid": 1})


class ConnTable(wiring.Component):
    """d parallel stage memories with synchronous read ports and priority resolution.

    Timing: a lookup presented in cycle ``c`` (``index``, ``digest``) has its result on
    ``hit``/``stage``/``version`` in cycle ``c + latency`` (``latency == 1``; the result
    is combinational from the block-RAM read data). A write presented in cycle ``c`` is
    stored at the end of ``c``: lookups presented in ``c + 1`` or later see the new
    word, a lookup presented in the same cycle ``c`` sees the old one (read-first,
    non-transparent ports, as block RAM does natively). The core never presents a
    lookup and a write in the same cycle (one op per pipeline slot).

    Parameters
    ----------
    geo : Geometry
        Table geometry (stages, log2_slots, digest and version widths).
    init : sequence of sequence of int, optional
        Initial image of each stage memory (``model.layout`` words).

    Members
    -------
    index : ``In(ArrayLayout(log2_slots, stages))``
        Per-stage word address of the lookup.
    digest : ``In(digest_bits)``
        Digest of the looked-up key (presented with ``index``).
    hit, stage, version : ``Out``
        Result, ``latency`` cycles after the lookup.
    w_en, w_stage, w_addr, w_data : ``In``
        Write port: ``w_data`` is a full word; ``w_stage`` selects the memory.

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
            if len(init) != geo.stages:
                raise ValueError(f"init must hold {geo.stages} stage images, not {len(init)}")
            for i, img in enumerate(init):
                if len(img) > geo.slots:
                    raise ValueError(f"init[{i}] has {len(img)} words, more than the "
                                     f"{geo.slots} of a stage")
        self._geo = geo
        self._init = init
        super().__init__({
            "index": In(data.ArrayLayout(geo.log2_slots, geo.stages)),
            "digest": In(geo.digest_bits),
            "hit": Out(1),
            "stage": Out(stage_bits(geo)),
            "version": Out(geo.version_bits),
            "w_en": In(1),
            "w_stage": In(stage_bits(geo)),
            "w_addr": In(geo.log2_slots),
            "w_data": In(geo.conn_word_bits),
        })

    @property
    def latency(self) -> int:
        """Cycles from a lookup to its result."""
        return 1

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        layout = conn_word_layout(g)
        digest_q = Signal(g.digest_bits)
        m.d.sync += digest_q.eq(self.digest)
        words = []
        for i in range(g.stages):
            # plain-width words (integer images), viewed through the layout when read
            mem = Memory(shape=layout.size, depth=g.slots,
                         init=self._init[i] if self._init else [])
            m.submodules[f"stage{i}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="sync")
            m.d.comb += [
                rd.addr.eq(self.index[i]),
                wr.addr.eq(self.w_addr),
                wr.data.eq(self.w_data),
                wr.en.eq(self.w_en & (self.w_stage == i)),
            ]
            words.append(data.View(layout, rd.data))
        # Priority: the lowest matching stage wins (an If/Elif chain from stage 0).
        match = [w.valid & (w.digest == digest_q) for w in words]
        m.d.comb += self.hit.eq(0)
        with m.If(match[0]):
            m.d.comb += [self.hit.eq(1), self.stage.eq(0), self.version.eq(words[0].version)]
        for i in range(1, g.stages):
            with m.Elif(match[i]):
                m.d.comb += [self.hit.eq(1), self.stage.eq(i),
                             self.version.eq(words[i].version)]
        return m
