"""The VIP table (a CAM of registers) and the per-VIP two-phase-commit state registers.

``vip`` words (``model.layout.pack_vip``): ``valid(1) | ip(32) | port(16) | proto(8)``;
a packet matches entry ``k`` when the entry equals ``1 | dst_ip | dst_port | proto``
(the valid bit is part of the comparison); the lowest matching index wins.

``vip_state`` words (``model.layout.pack_vip_state``):
``phase(2) | old_version(V) | cur_version(V)``.
"""

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Geometry

__all__ = ["VipTable", "VipState", "vip_state_layout", "VIP_WORD_BITS"]

#: Width of a ``vip`` word.
VIP_WORD_BITS = 57


def vip_state_layout(geo: Geometry) -> data.StructLayout:
    """``cur_version | old_version | phase``, LSB first (= ``pack_vip_state``)."""
    return data.StructLayout({"cur_version": geo.version_bits,
                              "old_version": geo.version_bits, "phase": 2})


def _check_init(init: Sequence[int] | None, depth: int, width: int, what: str
                ) -> list[int]:
    if init is None:
        return [0] * depth
    init = [int(x) for x in init]
    if len(init) > depth:
        raise ValueError(f"{what} init has {len(init)} words, more than the depth {depth}")
    for x in init:
        if not 0 <= x < (1 << width):
            raise ValueError(f"{what} init word {x:#x} is wider than {width} bits")
    return init + [0] * (depth - len(init))


class VipTable(wiring.Component):
    """Parallel match of (dst ip, dst port, proto) against ``vip_capacity`` registers.

    Timing: a match presented in cycle ``c`` has ``hit``/``vip_id`` registered in
    ``c + latency`` (``latency == 4``): in ``c`` every entry is compared two bits at a time
    (one LUT4 per pair, so the packet's key, which also fans out to every hash, drives
    a single logic level), registered; in ``c + 1`` groups of four pair results are
    AND-ed, and in ``c + 2`` the groups, each registered; in ``c + 3`` the lowest matching
    index is registered. A write
    presented in cycle ``c`` updates the entry at the end of ``c``: matches presented
    in ``c + 1`` or later see it, a match in ``c`` compares against the old entry.

    Parameters
    ----------
    geo : Geometry
        Geometry (``vip_capacity``).
    init : sequence of int, optional
        Initial ``vip`` words.

    Members
    -------
    dst_ip, dst_port, proto : ``In``
        Fields of the packet to match.
    hit : ``Out(1)``
        Some valid entry matched.
    vip_id : ``Out(vip_bits)``
        Lowest matching index (0 without a match).
    w_en, w_addr, w_data : ``In``
        Write port (addresses ``>= vip_capacity`` are ignored).

    Raises
    ------
    TypeError
        If ``geo`` is not a :class:`~model.config.Geometry`.
    ValueError
        If ``init`` is too long or holds words wider than 57 bits.
    """

    def __init__(self, geo: Geometry, init: Sequence[int] | None = None):
        if not isinstance(geo, Geometry):
            raise TypeError(f"geo must be a model.config.Geometry, not {geo!r}")
        self._geo = geo
        self._init = _check_init(init, geo.vip_capacity, VIP_WORD_BITS, "vip")
        super().__init__({
            "dst_ip": In(32),
            "dst_port": In(16),
            "proto": In(8),
            "hit": Out(1),
            "vip_id": Out(geo.vip_bits),
            "w_en": In(1),
            "w_addr": In(geo.vip_bits),
            "w_data": In(VIP_WORD_BITS),
        })

    @property
    def latency(self) -> int:
        """Cycles from a match to its result."""
        return 4

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self._geo.vip_capacity
        # Table contents, like the memories, are not cleared by the domain's reset.
        entries = [Signal(VIP_WORD_BITS, init=self._init[k], reset_less=True, name=f"vip{k}")
                   for k in range(n)]
        with m.If(self.w_en):
            for k, e in enumerate(entries):
                with m.If(self.w_addr == k):
                    m.d.sync += e.eq(self.w_data)
        want = Cat(self.proto, self.dst_port, self.dst_ip, Const(1, 1))
        # c: two-bit compares, registered (reset-less: only AND-ed in the next cycle)
        pairs = []
        for k, e in enumerate(entries):
            eq = Signal(-(-VIP_WORD_BITS // 2), name=f"pair_eq{k}", reset_less=True)
            m.d.sync += eq.eq(Cat(*[e[b:b + 2] == want[b:b + 2]
                                    for b in range(0, VIP_WORD_BITS, 2)]))
            pairs.append(eq)
        # c + 1: groups of four pair results AND-ed (one LUT4 each), registered
        groups = []
        for k, eq in enumerate(pairs):
            grp = Signal(-(-len(eq) // 4), name=f"group_eq{k}", reset_less=True)
            m.d.sync += grp.eq(Cat(*[eq[b:b + 4].all() for b in range(0, len(eq), 4)]))
            groups.append(grp)
        # c + 2: whole-entry match, registered
        match = Signal(n, reset_less=True)
        m.d.sync += match.eq(Cat(*[grp.all() for grp in groups]))
        hit = Signal()
        vip_id = Signal(self._geo.vip_bits)
        # Lowest index wins: later (lower-index) assignments override earlier ones.
        for k in reversed(range(n)):
            with m.If(match[k]):
                m.d.comb += vip_id.eq(k)
        m.d.comb += hit.eq(match.any())
        # reset-less result registers (the user qualifies them with its own valid bit):
        # a reset would be merged into their logic through the flip-flops' LSR pins
        hit_q = Signal(reset_less=True)
        vip_id_q = Signal.like(vip_id, reset_less=True)
        m.d.sync += [hit_q.eq(hit), vip_id_q.eq(vip_id)]
        m.d.comb += [self.hit.eq(hit_q), self.vip_id.eq(vip_id_q)]
        return m


class VipState(wiring.Component):
    """Per-VIP ``phase | old_version | cur_version`` registers with a registered read.

    Timing: a read presented in cycle ``c`` (``vip_id``) returns the word in
    ``c + latency`` (``latency == 2``: a 4:1 selection per group of four entries in
    ``c``, the group in ``c + 1``, each registered); a write in ``c`` is seen by reads in
    ``c + 1`` and later, not by a read in ``c``.

    Parameters
    ----------
    geo : Geometry
        Geometry (``vip_capacity``, ``version_bits``).
    init : sequence of int, optional
        Initial ``vip_state`` words.

    Members
    -------
    vip_id : ``In(vip_bits)``
        Entry to read.
    phase, old_version, cur_version : ``Out``
        Fields of the entry, ``latency`` cycles after ``vip_id``.
    w_en, w_addr, w_data : ``In``
        Write port (addresses ``>= vip_capacity`` are ignored).

    Raises
    ------
    TypeError
        If ``geo`` is not a :class:`~model.config.Geometry`.
    ValueError
        If ``init`` is too long or holds too-wide words.
    """

    def __init__(self, geo: Geometry, init: Sequence[int] | None = None):
        if not isinstance(geo, Geometry):
            raise TypeError(f"geo must be a model.config.Geometry, not {geo!r}")
        self._geo = geo
        self._layout = vip_state_layout(geo)
        self._init = _check_init(init, geo.vip_capacity, self._layout.size, "vip_state")
        super().__init__({
            "vip_id": In(geo.vip_bits),
            "phase": Out(2),
            "old_version": Out(geo.version_bits),
            "cur_version": Out(geo.version_bits),
            "w_en": In(1),
            "w_addr": In(geo.vip_bits),
            "w_data": In(self._layout.size),
        })

    @property
    def latency(self) -> int:
        """Cycles from a read to its data."""
        return 2

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self._geo.vip_capacity
        # Table contents, like the memories, are not cleared by the domain's reset.
        entries = [Signal(self._layout.size, init=self._init[k], reset_less=True,
                          name=f"state{k}") for k in range(n)]
        with m.If(self.w_en):
            for k, e in enumerate(entries):
                with m.If(self.w_addr == k):
                    m.d.sync += e.eq(self.w_data)
        # c: one entry of each group of four, by the low two bits of vip_id, registered
        # (a 4:1 multiplexer per bit); c + 1: the group, by the other bits, registered
        groups = []
        for g in range(-(-n // 4)):
            gq = Signal(self._layout.size, name=f"group{g}", reset_less=True)
            with m.Switch(self.vip_id[:2]):
                for j in range(4):
                    if 4 * g + j < n:
                        with m.Case(j):
                            m.d.sync += gq.eq(entries[4 * g + j])
                with m.Default():
                    m.d.sync += gq.eq(0)
            groups.append(gq)
        q = Signal(self._layout, reset_less=True)
        if len(self.vip_id) <= 2:  # one group (a zero-width switch is avoided)
            m.d.sync += q.eq(groups[0])
        else:
            high = Signal(len(self.vip_id) - 2, name="vip_id_high")
            m.d.sync += high.eq(self.vip_id[2:])
            with m.Switch(high):
                for g, gq in enumerate(groups):
                    with m.Case(g):
                        m.d.sync += q.eq(gq)
                with m.Default():
                    m.d.sync += q.eq(0)
        m.d.comb += [self.phase.eq(q.phase), self.old_version.eq(q.old_version),
                     self.cur_version.eq(q.cur_version)]
        return m
