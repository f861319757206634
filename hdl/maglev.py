"""DIP selection: ``slot_map`` -> Maglev table -> DIP table, one lookup per cycle.

Steps 5 and 6 of :meth:`model.pipeline.DataPlane.process`::

    slot_valid, slot = slot_map[vip_id << V | version]
    dip              = maglev[slot * M + maglev_index]
    dip_ip, dip_port = dip_table[dip]

Words (``model.layout``): ``slot_map``: ``valid(1) | slot(S)``; ``maglev``:
``dip_index(dip_bits)``; ``dip``: ``ip(32) | port(16)``.
"""

from collections.abc import Mapping, Sequence

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Geometry

from .bram import RAM_LATENCY, PipelinedRam

__all__ = ["MaglevLookup", "MAGLEV_MEMS"]

#: Bit of each memory in the write enable ``w_en``.
MAGLEV_MEMS = {"slot_map": 0, "maglev": 1, "dip": 2}


def _slot_layout(geo: Geometry) -> data.StructLayout:
    return data.StructLayout({"slot": geo.slot_bits, "valid": 1})


_BANK_BITS = 14
_BANK = 1 << _BANK_BITS

_DIP_LAYOUT = data.StructLayout({"port": 16, "ip": 32})


class MaglevLookup(wiring.Component):
    """Three chained memories with a write port that keeps the lookup order.

    Timing: a lookup presented in cycle ``c`` (``vip_id``, ``version``, ``index``) has
    its result in ``c + latency`` (``latency == 15``, all outputs registered). The
    inputs are registered first, the write decoded into one enable per memory. Each
    memory is a :class:`~hdl.bram.PipelinedRam` (``L`` = :data:`~hdl.bram.RAM_LATENCY` = 4
    cycles: input registers, read, output register, fabric register), so no logic
    touches a block-RAM pin or the long route out of the block-RAM column::

        c       inputs registered      c + 1   slot_map access
        c + 5   slot * M + index reg.  c + 6   maglev access (banks)
        c + 10  bank selected, reg.    c + 11  dip access
        c + 15  result

    ``slot``, ``dip``, ``dip_ip`` and ``dip_port`` are only meaningful when
    ``slot_valid``.

    A write presented in cycle ``c`` travels with the lookups and is presented to its
    memory when it reaches that memory's stage (``slot_map`` in ``c + 1``, ``maglev`` in
    ``c + 6``, ``dip`` in ``c + 11``), so lookups presented in ``c + 1`` or later see the
    new word and lookups presented in ``c`` or earlier see the old one, whichever memory
    it is. Writes to addresses beyond a memory's depth are ignored (with ``checked``;
    without it the writer guarantees that it sends none). Each memory's read
    and write share one address (the write's while a write is at that memory's stage),
    so the block RAM's read-before-write mode orders them; a lookup presented in the
    same cycle as a write has an undefined result (the core's write slots carry no
    lookup).

    Parameters
    ----------
    geo : Geometry
        Geometry (vip, version, slot, Maglev and DIP sizes).
    init : mapping of str to sequence of int, optional
        Initial images by memory name (``"slot_map"``, ``"maglev"``, ``"dip"``).
    checked : bool
        Ignore writes at addresses beyond a memory's depth (the default). With
        ``False`` the writer promises that a ``w_en`` bit is only set for an address
        within that memory's depth (the core decodes this once, as a write is
        accepted), and the write decode is then one LUT (the Maglev bank) instead of an
        address comparison (a carry chain) per memory.

    Members
    -------
    vip_id, version, index : ``In``
        The lookup.
    slot_valid, slot, dip, dip_ip, dip_port : ``Out``
        The result, ``latency`` cycles later.
    slot_valid_next : ``Out(1)``
        ``slot_valid`` one cycle ahead (the next cycle's ``slot_valid``), so that a
        consumer can register a flag derived from it, such as the core's "load-balance"
        select of the decision multiplexer.
    w_en, w_addr, w_data : ``In``
        Write port; ``w_en`` has one bit per memory, bit :data:`MAGLEV_MEMS` ``[name]``
        (at most one set).

    Raises
    ------
    TypeError
        If ``geo`` is not a :class:`~model.config.Geometry`.
    ValueError
        If ``init`` names an unknown memory or an image is too long.
    """

    def __init__(self, geo: Geometry, init: Mapping[str, Sequence[int]] | None = None, *,
                 checked: bool = True):
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
        self._checked = bool(checked)
        self._init = {k: list(v) for k, v in init.items()}
        addr_bits = max(max(1, (d - 1).bit_length()) for d in self._depths.values())
        super().__init__({
            "vip_id": In(geo.vip_bits),
            "version": In(geo.version_bits),
            "index": In(geo.maglev_index_bits),
            "slot_valid": Out(1),
            "slot_valid_next": Out(1),
            "slot": Out(geo.slot_bits),
            "dip": Out(geo.dip_bits),
            "dip_ip": Out(32),
            "dip_port": Out(16),
            "w_en": In(len(MAGLEV_MEMS)),
            "w_addr": In(addr_bits),
            "w_data": In(48),
        })

    @property
    def latency(self) -> int:
        """Cycles from a lookup to its result."""
        return 3 * RAM_LATENCY + 3

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        M = g.maglev_size
        L = RAM_LATENCY
        mg_depth = self._depths["maglev"]
        n_banks = -(-mg_depth // _BANK)
        bank_bits = (n_banks - 1).bit_length()
        # cycles after the lookup where each memory is presented (``c`` registers inputs)
        sm_at, mg_at = 1, L + 2
        dip_at = mg_at + L + 1

        def reg(value, name: str, **kw) -> Signal:
            q = Signal.like(value, name=name, **kw)
            m.d.sync += q.eq(value)
            return q

        def delay(sig, n: int, name: str, **kw):
            for k in range(n):
                sig = reg(sig, f"{name}_{k + 1}", **kw)
            return sig

        # c: the lookup registered; the write registered and decoded (which memory, or
        # which Maglev bank, and within its depth), so that every write enable that
        # reaches a memory is a flip-flop
        en, addr = self.w_en, self.w_addr

        def within(name: str):
            """Memory `name` is written, at an address within its depth."""
            e = en[MAGLEV_MEMS[name]]
            return e & (addr < self._depths[name]) if self._checked else e

        dec = {"slot_map": within("slot_map"), "dip": within("dip")}
        for b in range(n_banks):
            dec[f"maglev{b}"] = within("maglev")
            if n_banks > 1:
                dec[f"maglev{b}"] &= (addr >> _BANK_BITS) == b
        w_en_q = {k: reg(v, f"w_en_{k}") for k, v in dec.items()}
        w_addr_q = reg(self.w_addr, "w_addr_q", reset_less=True)
        w_data_q = reg(self.w_data, "w_data_q", reset_less=True)
        sm_lookup = reg((self.vip_id << g.version_bits) | self.version, "sm_lookup",
                        reset_less=True)
        index = reg(self.index, "index_q", reset_less=True)

        def ram(name: str, width: int, depth: int, init, w_en, at: int, lookup
                ) -> PipelinedRam:
            """Memory `name`, written by `w_en` (delayed to stage `at`) and read at
            `lookup`; the write's address while it writes."""
            r = PipelinedRam(width, depth, init)
            m.submodules[name] = r
            en = delay(w_en, at - 1, f"{name}_w_en")
            w_addr = delay(w_addr_q, at - 1, f"{name}_w_addr")
            w_data = delay(w_data_q, at - 1, f"{name}_w_data")
            m.d.comb += [
                r.addr.eq(Mux(en, w_addr, lookup)),
                r.w_en.eq(en),
                r.w_data.eq(w_data),
            ]
            return r

        sl = _slot_layout(g)
        # c + 1: slot_map access
        sm = ram("slot_map_mem", sl.size, self._depths["slot_map"],
                 self._init.get("slot_map", []), w_en_q["slot_map"], sm_at, sm_lookup)
        sm_word = data.View(sl, sm.r_data)
        index = delay(index, L, "index")
        # c + 1 + L: Maglev address = slot * M + index, registered
        # slot * M as a table of constants (one LUT level, no multiplier)
        # the data path is reset-less (only write enables are reset)
        mg_addr = Signal(g.slot_bits + g.maglev_index_bits + 1, reset_less=True)
        base = Signal.like(mg_addr)
        with m.Switch(sm_word.slot):
            for k in range(1 << g.slot_bits):
                with m.Case(k):
                    m.d.comb += base.eq(k * M)
        m.d.sync += mg_addr.eq(base + index)
        valid = reg(sm_word.valid, "valid", reset_less=True)
        slot = reg(sm_word.slot, "slot", reset_less=True)
        # c + mg_at: Maglev access, every bank (the bank number travels along). The
        # Maglev memory is in banks of at most _BANK words (one block RAM deep on ECP5
        # at these widths), so that no multiplexer sits between a block RAM and its
        # output register; the bank is selected after it.
        mg_init = self._init.get("maglev", [])
        words = []
        for b in range(n_banks):
            name = f"maglev_mem{b}" if n_banks > 1 else "maglev_mem"
            d = min(_BANK, mg_depth - b * _BANK)
            r = ram(name, g.dip_bits, d, mg_init[b * _BANK:(b + 1) * _BANK],
                    w_en_q[f"maglev{b}"], mg_at, mg_addr[:_BANK_BITS])
            words.append(r.r_data)
        dip_sel = Signal(g.dip_bits)
        if n_banks == 1:
            m.d.comb += dip_sel.eq(words[0])
        else:
            bank = delay(mg_addr[_BANK_BITS:_BANK_BITS + bank_bits], L, "bank",
                         reset_less=True)
            with m.Switch(bank):
                for b, q in enumerate(words):
                    with m.Case(b):
                        m.d.comb += dip_sel.eq(q)
        # c + mg_at + L: the selected Maglev word registered
        dip_idx = reg(dip_sel, "dip_idx", reset_less=True)
        # c + dip_at: DIP access, addressed by the registered Maglev word
        dw = ram("dip_mem", _DIP_LAYOUT.size, self._depths["dip"],
                 self._init.get("dip", []), w_en_q["dip"], dip_at, dip_idx)
        dip_word = data.View(_DIP_LAYOUT, dw.r_data)
        # c + latency: result
        assert dip_at + L == self.latency
        valid_pre = delay(valid, self.latency - sm_at - L - 2, "valid")
        m.d.comb += [
            self.slot_valid_next.eq(valid_pre),
            self.slot_valid.eq(reg(valid_pre, "slot_valid")),
            self.slot.eq(delay(slot, self.latency - sm_at - L - 1, "slot")),
            self.dip.eq(delay(dip_idx, L, "dip")),
            self.dip_ip.eq(dip_word.ip),
            self.dip_port.eq(dip_word.port),
        ]
        return m
