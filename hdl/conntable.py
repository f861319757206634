"""The cuckoo connection table: d stage memories read in parallel, first match wins.

Word layout (``model.layout``): ``valid(1) | version(V) | digest(D)``, LSB first
``digest`` in bits ``D-1..0``. The data-plane rule is
:func:`model.conntable.lookup_words`: the lowest stage whose word is valid and whose
digest equals the key's digest gives ``hit = 1``, that ``stage`` and the stored
``version``; otherwise ``hit = stage = version = 0``.
"""

from collections.abc import Sequence

from amaranth.hdl import Module, Mux, Signal
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
    ``hit``/``stage``/``version`` in cycle ``c + latency`` (``latency == 4``, all outputs
    registered): ``c`` block-RAM read, ``c + 1`` read data registered (the block RAM's
    output is not), ``c + 2`` per-stage digest compare registered, ``c + 3`` first-match
    priority registered. A write presented in cycle ``c`` is
    stored at the end of ``c``: lookups presented in ``c + 1`` or later see the new
    word, a lookup presented in the same cycle ``c`` sees the old one (read-first,
    non-transparent ports, as block RAM does natively). The core never presents a
    lookup and a write in the same cycle (one op per pipeline slot).

    With ``shared_port=True`` each memory's read and write share one address (the write
    address while ``w_en``), so that the block RAM's read-before-write mode gives the
    read-first behaviour natively; otherwise synthesis (yosys on ECP5) emulates it with
    a bypass multiplexer right after the block-RAM output. The result of a lookup
    presented in the same cycle as a write is then undefined (the core's write slots
    carry no lookup).

    Parameters
    ----------
    geo : Geometry
        Table geometry (stages, log2_slots, digest and version widths).
    init : sequence of sequence of int, optional
        Initial image of each stage memory (``model.layout`` words).
    shared_port : bool
        Share the read and write address of each memory (see above).

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

    def __init__(self, geo: Geometry, init: Sequence[Sequence[int]] | None = None, *,
                 shared_port: bool = False):
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
        self._shared = bool(shared_port)
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
        return 4

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        layout = conn_word_layout(g)
        digest_1 = Signal(g.digest_bits)
        digest_2 = Signal(g.digest_bits)
        m.d.sync += [digest_1.eq(self.digest), digest_2.eq(digest_1)]
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
            if self._shared:
                addr = Signal(g.log2_slots, name=f"addr{i}")
                m.d.comb += [addr.eq(Mux(self.w_en, self.w_addr, self.index[i])),
                             rd.addr.eq(addr), wr.addr.eq(addr)]
            # c + 1: register the block-RAM output before any logic
            word_2 = Signal(layout, name=f"word{i}_2")
            m.d.sync += word_2.eq(rd.data)
            words.append(word_2)
        # c + 2: compare, registered per stage
        match_3 = Signal(g.stages)
        version_3 = [Signal(g.version_bits, name=f"version{i}_3") for i in range(g.stages)]
        for i, w in enumerate(words):
            m.d.sync += [match_3[i].eq(w.valid & (w.digest == digest_2)),
                         version_3[i].eq(w.version)]
        # c + 3: priority, the lowest matching stage wins (an If/Elif chain from stage 0)
        m.d.sync += [self.hit.eq(0), self.stage.eq(0), self.version.eq(0)]
        with m.If(match_3[0]):
            m.d.sync += [self.hit.eq(1), self.stage.eq(0), self.version.eq(version_3[0])]
        for i in range(1, g.stages):
            with m.Elif(match_3[i]):
                m.d.sync += [self.hit.eq(1), self.stage.eq(i), self.version.eq(version_3[i])]
        return m
