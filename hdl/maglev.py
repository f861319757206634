"""DIP selection: ``slot_map`` -> Maglev table -> DIP table, one lookup per cycle.

Steps 5 and 6 of :meth:`model.pipeline.DataPlane.process`::

    slot_valid, slot = slot_map[vip_id << V | version]
    dip              = maglev[slot * M + maglev_index]
    dip_ip, dip_port = dip_table[dip]

Words (``model.layout``): ``slot_map``: ``valid(1) | slot(S)``; ``maglev``:
``dip_index(dip_bits)``; ``dip``: ``ip(32) | port(16)``.
"""

from collections.abc import Mapping, Sequence

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.config import Geometry

__all__ = ["MaglevLookup", "MAGLEV_MEMS"]

#: Sub-memory selector values of the write port.
MAGLEV_MEMS = {"slot_map": 0, "maglev": 1, "dip": 2}


def _slot_layout(geo: Geometry) -> data.StructLayout:
    return data.StructLayout({"slot": geo.slot_bits, "valid": 1})


_DIP_LAYOUT = data.StructLayout({"port": 16, "ip": 32})


def _addr(value, width: int):
    """The low ``width`` bits of ``value`` (memories of depth 1 have 0 address bits)."""
    return value[:width] if width else Const(0, 0)


class MaglevLookup(wiring.Component):
    """Three chained memories with a write port that keeps the lookup order.

    Timing: a lookup presented in cycle ``c`` (``vip_id``, ``version``, ``index``) has
    its result in ``c + latency`` (``latency == 4``; ``dip_ip``/``dip_port`` are
    combinational from the DIP memory's read data). ``slot``, ``dip``, ``dip_ip`` and
    ``dip_port`` are only meaningful when ``slot_valid``.

    A write presented in cycle ``c`` travels with the lookups and is stored when it
    reaches the stage of its memory (``slot_map`` in ``c``, ``maglev`` in ``c + 2``,
    ``dip`` in ``c + 3``), so lookups presented in ``c + 1`` or later see the new word
    and lookups presented in ``c`` or earlier see the old one, whichever memory it is.
    Writes to addresses beyond a memory's depth are ignored.

    Parameters
    ----------
    geo : Geometry
        Geometry (vip, version, slot, Maglev and DIP sizes).
    init : mapping of str to sequence of int, optional
        Initial images by memory name (``"slot_map"``, ``"maglev"``, ``"dip"``).

    Members
    -------
    vip_id, version, index : ``In``
        The lookup.
    slot_valid, slot, dip, dip_ip, dip_port : ``Out``
        The result, ``latency`` cycles later.
    w_en, w_mem, w_addr, w_data : ``In``
        Write port; ``w_mem`` is a value of :data:`MAGLEV_MEMS`.

    Raises
    ------
    TypeError
        If ``geo`` is not a :class:`~model.config.Geometry`.
    ValueError
        If ``init`` names an unknown memory or an image is too long.
    """

    def __init__(self, geo: Geometry, init: Mapping[str, Sequence[int]] | None = None):
        if not isinstance(geo, Geometry):
            raise TypeError(f"geo must be a model.config.Geometry, not {geo!r}")
        self._depths = {
            "slot_map": geo.vip_capacity << geo.version_bits,
            "maglev": geo.maglev_depth,
            "dip": geo.dip_capacity,
        }
        init = dict(init or {})
        for name, img in init.items():
            if name not in self._depths:
                raise ValueError(f"init names unknown memory {name!r} "
                                 f"(expected one of {sorted(self._depths)})")
            if len(img) > self._depths[name]:
                raise ValueError(f"init[{name!r}] has {len(img)} words, more than the "
                                 f"depth {self._depths[name]}")
        self._geo = geo
        self._init = {k: list(v) for k, v in init.items()}
        addr_bits = max(max(1, (d - 1).bit_length()) for d in self._depths.values())
        super().__init__({
            "vip_id": In(geo.vip_bits),
            "version": In(geo.version_bits),
            "index": In(geo.maglev_index_bits),
            "slot_valid": Out(1),
            "slot": Out(geo.slot_bits),
            "dip": Out(geo.dip_bits),
            "dip_ip": Out(32),
            "dip_port": Out(16),
            "w_en": In(1),
            "w_mem": In(2),
            "w_addr": In(addr_bits),
            "w_data": In(48),
        })

    @property
    def latency(self) -> int:
        """Cycles from a lookup to its result."""
        return 4

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        M = g.maglev_size
        # plain-width words (integer images), viewed through their layouts when read
        slot_map = Memory(shape=_slot_layout(g).size, depth=self._depths["slot_map"],
                          init=self._init.get("slot_map", []))
        maglev = Memory(shape=g.dip_bits, depth=self._depths["maglev"],
                        init=self._init.get("maglev", []))
        dips = Memory(shape=_DIP_LAYOUT.size, depth=self._depths["dip"],
                      init=self._init.get("dip", []))
        m.submodules.slot_map_mem = slot_map
        m.submodules.maglev_mem = maglev
        m.submodules.dip_mem = dips

        # The write port, delayed by 0..3 cycles (en, mem, addr, data).
        w_chain = [(self.w_en, self.w_mem, self.w_addr, self.w_data)]
        for k in range(3):
            q = tuple(Signal.like(x, name=f"{x.name}_d{k + 1}") for x in w_chain[-1])
            m.d.sync += [a.eq(b) for a, b in zip(q, w_chain[-1], strict=True)]
            w_chain.append(q)

        def hook_write(mem: Memory, name: str, w) -> None:
            en, sel, addr, wdata = w
            port = mem.write_port()
            m.d.comb += [
                port.en.eq(en & (sel == MAGLEV_MEMS[name]) & (addr < self._depths[name])),
                port.addr.eq(_addr(addr, len(port.addr))),
                port.data.eq(wdata),
            ]

        # cycle c: slot_map read
        sm_rd = slot_map.read_port(domain="sync")
        sm_word = data.View(_slot_layout(g), sm_rd.data)
        m.d.comb += sm_rd.addr.eq(_addr((self.vip_id << g.version_bits) | self.version,
                                        len(sm_rd.addr)))
        hook_write(slot_map, "slot_map", w_chain[0])
        index_1 = Signal.like(self.index)
        m.d.sync += index_1.eq(self.index)
        # cycle c+1: Maglev address = slot * M + index (registered)
        mg_addr_2 = Signal(g.slot_bits + g.maglev_index_bits + 1)
        valid_2 = Signal()
        slot_2 = Signal(g.slot_bits)
        m.d.sync += [mg_addr_2.eq(sm_word.slot * M + index_1),
                     valid_2.eq(sm_word.valid), slot_2.eq(sm_word.slot)]
        # cycle c+2: Maglev read
        mg_rd = maglev.read_port(domain="sync")
        m.d.comb += mg_rd.addr.eq(_addr(mg_addr_2, len(mg_rd.addr)))
        hook_write(maglev, "maglev", w_chain[2])
        valid_3 = Signal()
        slot_3 = Signal(g.slot_bits)
        m.d.sync += [valid_3.eq(valid_2), slot_3.eq(slot_2)]
        # cycle c+3: DIP read, addressed by the Maglev word
        dip_rd = dips.read_port(domain="sync")
        dip_word = data.View(_DIP_LAYOUT, dip_rd.data)
        m.d.comb += dip_rd.addr.eq(_addr(mg_rd.data, len(dip_rd.addr)))
        hook_write(dips, "dip", w_chain[3])
        valid_4 = Signal()
        slot_4 = Signal(g.slot_bits)
        dip_4 = Signal(g.dip_bits)
        m.d.sync += [valid_4.eq(valid_3), slot_4.eq(slot_3), dip_4.eq(mg_rd.data)]
        # cycle c+4: result
        m.d.comb += [
            self.slot_valid.eq(valid_4),
            self.slot.eq(slot_4),
            self.dip.eq(dip_4),
            self.dip_ip.eq(dip_word.ip),
            self.dip_port.eq(dip_word.port),
        ]
        return m
