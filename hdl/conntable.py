"""The cuckoo connection table: d stage memories read in parallel, first match wins.

Word layout (``model.layout``): ``valid(1) | version(V) | digest(D)``, LSB first
``digest`` in bits ``D-1..0``. The data-plane rule is
:func:`model.conntable.lookup_words`: the lowest stage whose word is valid and whose
digest equals the key's digest gives ``hit = 1``, that ``stage`` and the stored
``version``; otherwise ``hit = stage = version = 0``.
"""

from collections.abc import Sequence

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Geometry

from .bram import RAM_LATENCY, PipelinedRam, check_images
from .layouts import stage_bits

__all__ = ["ConnTable", "conn_word_layout"]


def conn_word_layout(geo: Geometry) -> data.StructLayout:
    """``digest | version | valid``, LSB first (= ``model.layout.pack_conn``)."""
    return data.StructLayout({"digest": geo.digest_bits, "version": geo.version_bits,
                              "valid": 1})


class ConnTable(wiring.Component):
    """d parallel stage memories, each a :class:`~hdl.bram.PipelinedRam`, and priority
    resolution.

    Timing: a lookup presented in cycle ``c`` (``index``, ``digest``) has its result on
    ``hit``/``stage``/``version`` in cycle ``c + latency`` (``latency == 7``, all outputs
    registered): ``c .. c + 3`` the block-RAM access (:data:`~hdl.bram.RAM_LATENCY`:
    address registered, read, output register, fabric register), ``c + 4`` the digest
    compared two bits per LUT, ``c + 5`` per-stage match, ``c + 6`` first-match
    priority, each registered. Each memory's
    read and write share one address (the write's while ``w_en``), so the block RAM's
    read-before-write mode orders them: a write presented in cycle ``c`` is seen by
    lookups presented in ``c + 1`` or later, and the lookup of the write cycle itself has
    an undefined result (the core's write slots carry no lookup).

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
        self._geo = geo
        self._init = check_images(init, geo.stages, geo.slots, "stage")
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
        return RAM_LATENCY + 3

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        layout = conn_word_layout(g)
        # the key's digest waits for the words (reset-less: only compared with them)
        digest = self.digest
        for k in range(RAM_LATENCY):
            q = Signal(g.digest_bits, name=f"digest_{k + 1}", reset_less=True)
            m.d.sync += q.eq(digest)
            digest = q
        words = []
        for i in range(g.stages):
            ram = PipelinedRam(layout.size, g.slots, self._init[i] if self._init else ())
            m.submodules[f"stage{i}"] = ram
            w_en = self.w_en & (self.w_stage == i)
            m.d.comb += [ram.addr.eq(Mux(self.w_en, self.w_addr, self.index[i])),
                         ram.w_en.eq(w_en), ram.w_data.eq(self.w_data)]
            words.append(data.View(layout, ram.r_data))
        # c + RAM_LATENCY: the digest compared two bits at a time (one LUT4 each),
        # registered; c + RAM_LATENCY + 1: those AND-ed with the valid bit, registered
        D = g.digest_bits
        match = Signal(g.stages, reset_less=True)
        version = [Signal(g.version_bits, name=f"version{i}_c", reset_less=True)
                   for i in range(g.stages)]
        for i, w in enumerate(words):
            pairs = Signal(-(-D // 2) + 1, name=f"pairs{i}", reset_less=True)
            version_p = Signal(g.version_bits, name=f"version{i}_p", reset_less=True)
            m.d.sync += [pairs.eq(Cat(w.valid, *[w.digest[b:b + 2] == digest[b:b + 2]
                                                 for b in range(0, D, 2)])),
                         version_p.eq(w.version)]
            m.d.sync += [match[i].eq(pairs.all()), version[i].eq(version_p)]
        # c + RAM_LATENCY + 2: priority, the lowest matching stage wins (If/Elif from 0),
        # into reset-less registers (the user qualifies them with its own valid bit)
        hit = Signal(reset_less=True)
        stage = Signal.like(self.stage, reset_less=True)
        version_q = Signal.like(self.version, reset_less=True)
        m.d.comb += [self.hit.eq(hit), self.stage.eq(stage), self.version.eq(version_q)]
        m.d.sync += [hit.eq(0), stage.eq(0), version_q.eq(0)]
        with m.If(match[0]):
            m.d.sync += [hit.eq(1), stage.eq(0), version_q.eq(version[0])]
        for i in range(1, g.stages):
            with m.Elif(match[i]):
                m.d.sync += [hit.eq(1), stage.eq(i), version_q.eq(version[i])]
        return m
