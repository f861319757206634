# amaranth: UnusedElaboratable=no
"""The ``[network]`` table's lookups in the core (model.network, docs/network.md).

* :class:`ReverseTable` -- the return path: the ``rev`` memory's keys
  ``valid | proto | dip_ip | dip_port`` in registers, matched in parallel against a
  packet's (src ip, src port, proto); the lowest matching index wins (a pipelined tree
  of 4-way "first hit" selections), and the word's payload ``vip_id | vip_ip |
  vip_port`` is read from a :class:`~hdl.bram.PipelinedRam` at that index.
* :class:`RouteTable` -- forwarding: the ``route`` memory's ``valid | prefix | length
  | port`` in registers (the next-hop MAC is not needed for the decision and is not
  kept), a parallel masked compare against a destination and a pipelined tree of
  2-way selections by (length, then lowest index): the longest prefix, the lowest
  index among equally long ones -- :meth:`model.pipeline.DataPlane.route_lookup`.

Both follow :class:`~hdl.vip_table.VipTable`'s contract: free-running (one lookup per
clock, no stall), and a write presented in cycle ``c`` is seen by every lookup
presented in ``c + 1`` or later, never by one presented in ``c`` or earlier. A field
that is only needed further down a lookup's pipeline (a route's length and port, a
``rev`` word's payload) is written when the write has travelled as far, by an internal
delay line, so each lookup sees one consistent version of the table.

Register capacity: a ``rev`` key costs 57 flip-flops plus about 38 flip-flops and 40
LUTs of compare pipeline, a route about 110 flip-flops and 45 LUTs. Up to
:data:`MAX_REV_ENTRIES` (256, about 24 k flip-flops and 10 k LUTs on an ECP5-85k, a
quarter of the chip) and :data:`MAX_ROUTE_ENTRIES` (64) entries that is what an FPGA
engineer would build; above, the components refuse rather than build a CAM that does
not fit (a larger return path needs a hashed table that the control plane places,
which the model's word-addressed ``rev`` memory does not describe).
"""

from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.config import Geometry, clog2
from model.network import PORT_BITS, ROUTE_WORD_BITS, rev_word_bits

from .bram import RAM_LATENCY, PipelinedRam

__all__ = ["ReverseTable", "RouteTable", "MAX_REV_ENTRIES", "MAX_ROUTE_ENTRIES",
           "REV_KEY_BITS"]

#: Largest ``dip_capacity`` whose ``rev`` keys are held in registers.
MAX_REV_ENTRIES = 256
#: Largest ``route_capacity`` held in registers.
MAX_ROUTE_ENTRIES = 64
#: ``valid | proto | dip_ip | dip_port``: the compared part of a ``rev`` word.
REV_KEY_BITS = 1 + 8 + 32 + 16
_LEN_BITS = 6


def _init_words(init: Sequence[int] | None, depth: int, width: int, what: str) -> list[int]:
    if init is None:
        return [0] * depth
    words = [int(x) for x in init]
    if len(words) > depth:
        raise ValueError(f"{what} init has {len(words)} words, more than the depth {depth}")
    for x in words:
        if not 0 <= x < (1 << width):
            raise ValueError(f"{what} init word {x:#x} is wider than {width} bits")
    return words + [0] * (depth - len(words))


def _delay(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` through ``cycles`` reset-less registers."""
    for k in range(cycles):
        q = Signal(len(value), name=f"{name}_d{k}", reset_less=True)
        m.d.sync += q.eq(value)
        value = q
    return value


def _first_hit_tree(m: Module, hits: list[Value], name: str) -> tuple[Value, Value, int]:
    """The lowest index ``k`` with ``hits[k]``: a tree of 4-way selections (the first
    child with a hit), one registered level per cycle. Returns (hit, index, levels)."""
    nodes = [(h, Const(k, max(1, (len(hits) - 1).bit_length()))) for k, h in enumerate(hits)]
    levels = 0
    while len(nodes) > 1:
        nxt = []
        for g in range(0, len(nodes), 4):
            group = nodes[g:g + 4]
            hit = Signal(name=f"{name}_l{levels}_hit{g // 4}", reset_less=True)
            idx = Signal(len(group[0][1]), name=f"{name}_l{levels}_idx{g // 4}",
                         reset_less=True)
            m.d.sync += hit.eq(Cat(*[h for h, _ in group]).any())
            # the first child with a hit: later (lower) assignments override
            sel = group[-1][1]
            for h, i in reversed(group[:-1]):
                sel = Mux(h, i, sel)
            m.d.sync += idx.eq(sel)
            nxt.append((hit, idx))
        nodes = nxt
        levels += 1
    return nodes[0][0], nodes[0][1], levels


class ReverseTable(wiring.Component):
    """The return path's lookup: lowest valid ``rev`` word whose key is the packet's
    (src ip, src port, proto), and that word's VIP.

    Timing: a lookup presented in cycle ``c`` has its result in ``c + latency``: in
    ``c`` every key is compared two bits per LUT, registered; in ``c + 1`` groups of four
    pair results are AND-ed and in ``c + 2`` the groups, each registered; then
    ``ceil(log4 dip_capacity)`` levels of first-hit selection; the winning index then
    addresses the payload memory (a :class:`~hdl.bram.PipelinedRam`, 4 cycles), with
    hit and index delayed alongside. A write presented in ``c`` updates the key at the
    end of ``c`` and the payload when it reaches the payload memory, so lookups
    presented in ``c + 1`` or later see the whole new word, lookups presented in ``c``
    or earlier the old one.

    Parameters
    ----------
    geo : Geometry
        Geometry (``dip_capacity`` words, ``vip_bits``).
    init : sequence of int, optional
        Initial ``rev`` words (``model.network.pack_rev``).

    Members
    -------
    src_ip, src_port, proto : ``In``
        The packet's source and protocol.
    hit : ``Out(1)``
        Some valid word matched.
    index : ``Out(dip_bits)``
        The lowest matching index (undefined without a hit).
    vip_id, vip_ip, vip_port : ``Out``
        That word's VIP (undefined without a hit).
    w_en, w_addr, w_data : ``In``
        Write port (``w_addr`` must be below ``dip_capacity``).

    Raises
    ------
    TypeError
        If ``geo`` is not a :class:`~model.config.Geometry`.
    ValueError
        If ``dip_capacity`` exceeds :data:`MAX_REV_ENTRIES`, or ``init`` is too long or
        holds too-wide words.
    """

    def __init__(self, geo: Geometry, init: Sequence[int] | None = None):
        if not isinstance(geo, Geometry):
            raise TypeError(f"geo must be a model.config.Geometry, not {geo!r}")
        if geo.dip_capacity > MAX_REV_ENTRIES:
            raise ValueError(
                f"dip_capacity {geo.dip_capacity} is above {MAX_REV_ENTRIES}, the largest "
                f"return-path (rev) table the RTL core holds in registers")
        self._geo = geo
        self._width = rev_word_bits(geo.vip_bits)
        self._init = _init_words(init, geo.dip_capacity, self._width, "rev")
        super().__init__({
            "src_ip": In(32),
            "src_port": In(16),
            "proto": In(8),
            "hit": Out(1),
            "index": Out(geo.dip_bits),
            "vip_id": Out(geo.vip_bits),
            "vip_ip": Out(32),
            "vip_port": Out(16),
            "w_en": In(1),
            "w_addr": In(geo.dip_bits),
            "w_data": In(self._width),
        })

    @staticmethod
    def levels_for(dip_capacity: int) -> int:
        """Levels of the first-hit tree (4-way) over ``dip_capacity`` keys."""
        n, lv = dip_capacity, 0
        while n > 1:
            n, lv = -(-n // 4), lv + 1
        return lv

    @staticmethod
    def latency_for(dip_capacity: int) -> int:
        """:attr:`latency` of a table of ``dip_capacity`` words."""
        return 3 + ReverseTable.levels_for(dip_capacity) + RAM_LATENCY

    @property
    def levels(self) -> int:
        """Levels of the first-hit tree (4-way)."""
        return self.levels_for(self._geo.dip_capacity)

    @property
    def latency(self) -> int:
        """Cycles from a lookup to its result."""
        return self.latency_for(self._geo.dip_capacity)

    def elaborate(self, platform) -> Module:
        m = Module()
        geo = self._geo
        n = geo.dip_capacity
        pay_bits = self._width - REV_KEY_BITS  # vip_port | vip_ip | vip_id
        # keys (the top REV_KEY_BITS of a word: dip_port | dip_ip | proto | valid, LSB
        # first); like the memories, not cleared by the domain's reset
        keys = [Signal(REV_KEY_BITS, init=self._init[k] >> pay_bits, reset_less=True,
                       name=f"rev_key{k}") for k in range(n)]
        with m.If(self.w_en):
            for k, e in enumerate(keys):
                with m.If(self.w_addr == k):
                    m.d.sync += e.eq(self.w_data[pay_bits:])
        want = Cat(self.src_port, self.src_ip, self.proto, Const(1, 1))
        # c: two-bit compares (one LUT4 each), registered
        pairs = []
        for k, e in enumerate(keys):
            eq = Signal(-(-REV_KEY_BITS // 2), name=f"rev_pair{k}", reset_less=True)
            m.d.sync += eq.eq(Cat(*[e[b:b + 2] == want[b:b + 2]
                                    for b in range(0, REV_KEY_BITS, 2)]))
            pairs.append(eq)
        # c + 1: groups of four pair results; c + 2: the whole key
        groups = []
        for k, eq in enumerate(pairs):
            grp = Signal(-(-len(eq) // 4), name=f"rev_group{k}", reset_less=True)
            m.d.sync += grp.eq(Cat(*[eq[b:b + 4].all() for b in range(0, len(eq), 4)]))
            groups.append(grp)
        match = Signal(n, name="rev_match", reset_less=True)
        m.d.sync += match.eq(Cat(*[grp.all() for grp in groups]))
        # c + 3 ...: lowest matching index
        hit, index, levels = _first_hit_tree(m, [match[k] for k in range(n)], "rev")
        assert levels == self.levels
        # the payload memory, read at the winner, written when the write gets there
        ram = PipelinedRam(pay_bits, n, [w & ((1 << pay_bits) - 1) for w in self._init])
        m.submodules.payload = ram
        delay = 3 + levels
        w_en_d = _delay(m, self.w_en, delay, "rev_w_en")
        w_addr_d = _delay(m, self.w_addr, delay, "rev_w_addr")
        w_data_d = _delay(m, self.w_data[:pay_bits], delay, "rev_w_data")
        m.d.comb += [ram.addr.eq(Mux(w_en_d, w_addr_d, index)), ram.w_en.eq(w_en_d),
                     ram.w_data.eq(w_data_d)]
        vb = geo.vip_bits
        m.d.comb += [
            self.hit.eq(_delay(m, hit, RAM_LATENCY, "rev_hit")),
            self.index.eq(_delay(m, index, RAM_LATENCY, "rev_index")),
            self.vip_port.eq(ram.r_data[:16]),
            self.vip_ip.eq(ram.r_data[16:48]),
            self.vip_id.eq(ram.r_data[48:48 + vb]),
        ]
        return m


class RouteTable(wiring.Component):
    """Longest-prefix match of a destination over ``capacity`` route words.

    Timing: a lookup presented in cycle ``c`` has its result in ``c + latency``: in
    ``c`` every bit of every route is compared under its prefix mask (one LUT per bit),
    registered; in ``c + 1`` groups of four and in ``c + 2`` the route (with its valid
    bit), registered; then ``ceil(log2 capacity)`` levels of a selection tree that
    keeps, of two children (lower indices left), the right one only when it matched and
    the left one did not or is strictly shorter -- the longest prefix, then the lowest
    index. The mask (from the length) is decoded when a word is written; the length and
    port used by the tree are written when the write reaches the tree. A write presented
    in ``c`` is seen by lookups presented in ``c + 1`` or later.

    A length above 32 never occurs (the model cannot decide such a word); it matches as
    a /32 here.

    Parameters
    ----------
    capacity : int
        Words of the ``route`` memory (``route_capacity``, 1..:data:`MAX_ROUTE_ENTRIES`).
    init : sequence of int, optional
        Initial ``route`` words (``model.network.pack_route``).

    Members
    -------
    dst_ip : ``In(32)``
        The address routed.
    hit : ``Out(1)``
        Some valid route holds it.
    index, port : ``Out``
        The chosen route and its port (undefined without a hit).
    w_en, w_addr, w_data : ``In``
        Write port (``w_addr`` must be below ``capacity``).

    Raises
    ------
    ValueError
        If ``capacity`` is out of range or ``init`` is too long or holds too-wide words.
    """

    def __init__(self, capacity: int, init: Sequence[int] | None = None):
        if not isinstance(capacity, int) or not 1 <= capacity <= MAX_ROUTE_ENTRIES:
            raise ValueError(f"route capacity must be an integer within 1..{MAX_ROUTE_ENTRIES}"
                             f" (the routes the RTL core holds in registers), not {capacity!r}")
        self._n = capacity
        self._init = _init_words(init, capacity, ROUTE_WORD_BITS, "route")
        super().__init__({
            "dst_ip": In(32),
            "hit": Out(1),
            "index": Out(clog2(capacity)),
            "port": Out(PORT_BITS),
            "w_en": In(1),
            "w_addr": In(clog2(capacity)),
            "w_data": In(ROUTE_WORD_BITS),
        })

    @staticmethod
    def latency_for(capacity: int) -> int:
        """:attr:`latency` of a table of ``capacity`` routes."""
        return 3 + max(1, (capacity - 1).bit_length())

    @property
    def levels(self) -> int:
        """Levels of the selection tree (2-way)."""
        return (self._n - 1).bit_length()

    @property
    def latency(self) -> int:
        """Cycles from a lookup to its result."""
        return self.latency_for(self._n)

    @staticmethod
    def _care(length: Value) -> Value:
        """The prefix mask of ``length`` (bit ``b`` compared when ``b >= 32 - length``)."""
        return Cat(*[length >= 32 - b for b in range(32)])

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self._n
        ib = clog2(n)

        def fields(word):  # (valid, prefix, length, port) of a route word
            return word >> 95 & 1, word >> 63 & 0xFFFFFFFF, word >> 57 & 0x3F, word >> 48 & 0x1FF

        def care_of(length: int) -> int:
            return sum(1 << b for b in range(32) if length >= 32 - b)

        init = [fields(w) for w in self._init]
        # c: what the compare needs (valid, prefix, mask); not cleared by the reset
        valid = [Signal(init=init[k][0], name=f"route_valid{k}", reset_less=True)
                 for k in range(n)]
        prefix = [Signal(32, init=init[k][1], name=f"route_prefix{k}", reset_less=True)
                  for k in range(n)]
        care = [Signal(32, init=care_of(init[k][2]), name=f"route_care{k}", reset_less=True)
                for k in range(n)]
        w = self.w_data
        w_care = Signal(32, name="route_w_care")
        m.d.comb += w_care.eq(self._care(w[57:63]))
        with m.If(self.w_en):
            for k in range(n):
                with m.If(self.w_addr == k):
                    m.d.sync += [valid[k].eq(w[95]), prefix[k].eq(w[63:95]),
                                 care[k].eq(w_care)]
        # c + 3: what the tree needs (length, port), written 3 cycles after the write
        length = [Signal(_LEN_BITS, init=init[k][2], name=f"route_len{k}", reset_less=True)
                  for k in range(n)]
        port = [Signal(PORT_BITS, init=init[k][3], name=f"route_port{k}", reset_less=True)
                for k in range(n)]
        w_en_d = _delay(m, self.w_en, 3, "route_w_en")
        w_addr_d = _delay(m, self.w_addr, 3, "route_w_addr")
        w_lp_d = _delay(m, w[48:63], 3, "route_w_len_port")
        with m.If(w_en_d):
            for k in range(n):
                with m.If(w_addr_d == k):
                    m.d.sync += [port[k].eq(w_lp_d[:PORT_BITS]),
                                 length[k].eq(w_lp_d[PORT_BITS:])]
        # c: per bit, matched or not compared; c + 1: groups of four; c + 2: the route
        match = Signal(n, name="route_match", reset_less=True)
        for k in range(n):
            bits = Signal(33, name=f"route_bits{k}", reset_less=True)
            m.d.sync += bits.eq(Cat(~care[k] | ~(self.dst_ip ^ prefix[k]), valid[k]))
            grp = Signal(9, name=f"route_group{k}", reset_less=True)
            m.d.sync += grp.eq(Cat(*[bits[b:b + 4].all() for b in range(0, 33, 4)]))
            m.d.sync += match[k].eq(grp.all())
        # c + 3 ...: the selection tree over (hit, length, index, port)
        nodes = [(match[k], length[k], Const(k, ib), port[k]) for k in range(n)]
        level = 0
        while len(nodes) > 1 or level == 0:
            nxt = []
            for g in range(0, len(nodes), 2):
                pair = nodes[g:g + 2]
                h = Signal(name=f"route_l{level}_hit{g // 2}", reset_less=True)
                ln = Signal(_LEN_BITS, name=f"route_l{level}_len{g // 2}", reset_less=True)
                ix = Signal(ib, name=f"route_l{level}_idx{g // 2}", reset_less=True)
                pt = Signal(PORT_BITS, name=f"route_l{level}_port{g // 2}", reset_less=True)
                if len(pair) == 1:
                    (h0, l0, i0, p0), = pair
                    m.d.sync += [h.eq(h0), ln.eq(l0), ix.eq(i0), pt.eq(p0)]
                else:
                    (h0, l0, i0, p0), (h1, l1, i1, p1) = pair
                    right = Signal(name=f"route_l{level}_right{g // 2}")
                    m.d.comb += right.eq(h1 & (~h0 | (l1 > l0)))
                    m.d.sync += [h.eq(h0 | h1), ln.eq(Mux(right, l1, l0)),
                                 ix.eq(Mux(right, i1, i0)), pt.eq(Mux(right, p1, p0))]
                nxt.append((h, ln, ix, pt))
            nodes = nxt
            level += 1
        assert level == max(1, self.levels)
        h, _, ix, pt = nodes[0]
        m.d.comb += [self.hit.eq(h), self.index.eq(ix), self.port.eq(pt)]
        return m
