"""DIP selection: ``slot_map`` -> Maglev table -> DIP table, one lookup per cycle.

Steps 5 and 6 of :meth:`model.pipeline.DataPlane.process`::

    slot_valid, slot = slot_map[vip_id << V | version]
    dip              = maglev[slot * M + maglev_index]
    dip_ip, dip_port = dip_table[dip]

Words (``model.layout``): ``slot_map``: ``valid(1) | slot(S)``; ``maglev``:
``dip_index(dip_bits)``; ``dip``: ``ip(32) | port(16)``.
"""

from collections.abc import Mapping, Sequence

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from model.config import Geometry

__all__ = ["MaglevLookup", "MAGLEV_MEMS"]

#: Sub-memory selector values of the write port.
MAGLEV_MEMS = {"slot_map": 0, "maglev": 1, "dip": 2}


def _slot_layout(geo: Geometry) -> data.StructLayout:
    return data.StructLayout({"slot": geo.slot_bits, "valid": 1})


_BANK_BITS = 14
_BANK = 1 << _BANK_BITS

_DIP_LAYOUT = data.StructLayout({"port": 16, "ip": 32})


def _addr(value, width: int):
    """The low ``width`` bits of ``value`` (memories of depth 1 have 0 address bits)."""
    return value[:width] if width else Const(0, 0)


class MaglevLookup(wiring.Component):
    """Three chained memories with a write port that keeps the lookup order.

    Timing: a lookup presented in cycle ``c`` (``vip_id``, ``version``, ``index``) has
    its result in ``c + latency`` (``latency == 8``, all outputs registered). Every
    block-RAM read is followed by a register before any logic uses the data::

        c      slot_map read          c + 1  slot_map word registered
        c + 2  slot * M + index reg.  c + 3  maglev read (all banks)
        c + 4  maglev words reg.      c + 5  bank selected, registered
        c + 6  dip read               c + 7  dip word registered
        c + 8  result

    ``slot``, ``dip``, ``dip_ip`` and ``dip_port`` are only meaningful when
    ``slot_valid``.

    A write presented in cycle ``c`` travels with the lookups and is stored when it
    reaches the stage of its memory (``slot_map`` in ``c``, ``maglev`` in ``c + 3``,
    ``dip`` in ``c + 6``), so lookups presented in ``c + 1`` or later see the new word
    and lookups presented in ``c`` or earlier see the old one, whichever memory it is.
    Writes to addresses beyond a memory's depth are ignored.

    With ``shared_port=True`` each memory's read and write share one address (the
    write's while a write is at that memory's stage), so that the block RAM's
    read-before-write mode gives the read-first behaviour natively instead of a bypass
    multiplexer after the block-RAM output; a lookup presented in the same cycle as a
    write then has an undefined result (the core's write slots carry no lookup).

    Parameters
    ----------
    geo : Geometry
        Geometry (vip, version, slot, Maglev and DIP sizes).
    init : mapping of str to sequence of int, optional
        Initial images by memory name (``"slot_map"``, ``"maglev"``, ``"dip"``).
    shared_port : bool
        Share the read and write address of each memory (see above).

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

    def __init__(self, geo: Geometry, init: Mapping[str, Sequence[int]] | None = None, *,
                 shared_port: bool = False):
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
        self._shared = bool(shared_port)
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
        return 8

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        M = g.maglev_size
        # plain-width words (integer images), viewed through their layouts when read
        slot_map = Memory(shape=_slot_layout(g).size, depth=self._depths["slot_map"],
                          init=self._init.get("slot_map", []))
        # The Maglev memory in banks of at most _BANK words (one block RAM deep on
        # ECP5 at these widths), each read registered on its own and the bank selected
        # after the register: no multiplexer between a block RAM and its register.
        mg_depth = self._depths["maglev"]
        mg_init = self._init.get("maglev", [])
        n_banks = -(-mg_depth // _BANK)
        banks = []
        for b in range(n_banks):
            d = min(_BANK, mg_depth - b * _BANK)
            banks.append(Memory(shape=g.dip_bits, depth=d,
                                init=mg_init[b * _BANK:(b + 1) * _BANK]))
        dips = Memory(shape=_DIP_LAYOUT.size, depth=self._depths["dip"],
                      init=self._init.get("dip", []))
        m.submodules.slot_map_mem = slot_map
        for b, mem in enumerate(banks):
            m.submodules[f"maglev_mem{b}" if n_banks > 1 else "maglev_mem"] = mem
        m.submodules.dip_mem = dips

        # The write port, delayed by 0..6 cycles (en, mem, addr, data).
        w_chain = [(self.w_en, self.w_mem, self.w_addr, self.w_data)]
        for k in range(6):
            q = tuple(Signal.like(x, name=f"{x.name}_d{k + 1}") for x in w_chain[-1])
            m.d.sync += [a.eq(b) for a, b in zip(q, w_chain[-1], strict=True)]
            w_chain.append(q)

        def hook(mem: Memory, name: str, w, rd, lookup) -> None:
            """Write port of `mem` and the read address `lookup` of its read port `rd`."""
            en, sel, addr, wdata = w
            port = mem.write_port()
            m.d.comb += [
                port.en.eq(en & (sel == MAGLEV_MEMS[name]) & (addr < mem.depth)),
                port.addr.eq(_addr(addr, len(port.addr))),
                port.data.eq(wdata),
                rd.addr.eq(_addr(lookup, len(rd.addr))),
            ]
            if self._shared and len(rd.addr):
                shared = Signal(len(rd.addr), name=f"{name}_addr")
                m.d.comb += [shared.eq(Mux(en, addr, lookup)),
                             rd.addr.eq(shared), port.addr.eq(shared)]

        def delay(sig, n: int, name: str):
            for k in range(n):
                q = Signal.like(sig, name=f"{name}_{k + 1}")
                m.d.sync += q.eq(sig)
                sig = q
            return sig

        sl = _slot_layout(g)
        # c: slot_map read
        sm_rd = slot_map.read_port(domain="sync")
        hook(slot_map, "slot_map", w_chain[0], sm_rd, (self.vip_id << g.version_bits)
             | self.version)
        index_2 = delay(self.index, 2, "index")
        # c + 1: slot_map word registered
        sm_2 = Signal(sl)
        m.d.sync += sm_2.eq(sm_rd.data)
        # c + 2: Maglev address = slot * M + index (registered)
        # slot * M as a table of constants (a few LUT levels, no multiplier in this stage)
        mg_addr_3 = Signal(g.slot_bits + g.maglev_index_bits + 1)
        base_2 = Signal.like(mg_addr_3)
        with m.Switch(sm_2.slot):
            for k in range(1 << g.slot_bits):
                with m.Case(k):
                    m.d.comb += base_2.eq(k * M)
        m.d.sync += mg_addr_3.eq(base_2 + index_2)
        valid_3 = Signal()
        slot_3 = Signal(g.slot_bits)
        m.d.sync += [valid_3.eq(sm_2.valid), slot_3.eq(sm_2.slot)]
        # c + 3: Maglev read (every bank; the bank number travels along)
        bank_bits = (n_banks - 1).bit_length()
        words_5 = []
        en, sel, waddr, wdata = w_chain[3]
        for b, mem in enumerate(banks):
            rd = mem.read_port(domain="sync")
            hook(mem, "maglev", (en & ((waddr >> _BANK_BITS) == b), sel,
                                 (waddr - b * _BANK)[:len(waddr)], wdata), rd, mg_addr_3)
            # c + 4: each bank's word registered
            q = Signal(g.dip_bits, name=f"mg_word{b}_5")
            m.d.sync += q.eq(rd.data)
            words_5.append(q)
        dip_5 = Signal(g.dip_bits)
        if n_banks == 1:
            m.d.comb += dip_5.eq(words_5[0])
        else:
            bank_5 = delay(mg_addr_3[_BANK_BITS:_BANK_BITS + bank_bits], 2, "bank")
            with m.Switch(bank_5):
                for b, q in enumerate(words_5):
                    with m.Case(b):
                        m.d.comb += dip_5.eq(q)
        # c + 5: the selected Maglev word registered
        dip_6 = Signal(g.dip_bits)
        m.d.sync += dip_6.eq(dip_5)
        # c + 6: DIP read, addressed by the registered Maglev word
        dip_rd = dips.read_port(domain="sync")
        hook(dips, "dip", w_chain[6], dip_rd, dip_6)
        # c + 7: DIP word registered
        dw_8 = Signal(_DIP_LAYOUT)
        m.d.sync += dw_8.eq(dip_rd.data)
        # c + 8: result
        m.d.comb += [
            self.slot_valid.eq(delay(valid_3, 5, "valid")),
            self.slot.eq(delay(slot_3, 5, "slot")),
            self.dip.eq(delay(dip_6, 2, "dip")),
            self.dip_ip.eq(dw_8.ip),
            self.dip_port.eq(dw_8.port),
        ]
        return m
