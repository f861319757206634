"""The hash unit: every hash of :class:`model.hashing.Hasher` for one key per cycle.

Each role (``stage<i>``, ``digest``, ``maglev``, ``transit<j>``) is an
:class:`~hdl.crc.AffineXorNetwork` over the packed 104-bit key whose matrix comes from
:func:`~hdl.crc.crc_role_matrix`: the role's salt and field order are folded into the
matrix and constant, and only the output bits the role uses are built (``log2_slots``
bits for a stage index, ``transit_log2_bits`` for a Bloom index, ``digest_bits`` for the
digest, ``log2 M`` bits for a power-of-two Maglev size, all 32 bits for a prime one,
which then goes through :class:`~hdl.modulo.ConstMod`).
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Config
from model.hashing import FIELD_ORDERS

from .crc import AffineXorNetwork, crc_role_matrix
from .layouts import KEY_LAYOUT
from .modulo import ConstMod

__all__ = ["HashUnit"]


class HashUnit(wiring.Component):
    """Stage indices, digest, TransitTable indices and Maglev index of a 5-tuple.

    Parameters
    ----------
    cfg : Config
        The configuration (geometry and salts).
    stages : int
        Register stages of the XOR networks (1..4); ``latency == stages``.

    Members
    -------
    key : ``In(KEY_LAYOUT)``
        The 5-tuple (packed like :func:`model.hashing.pack_key`).
    stage_index : ``Out(ArrayLayout(log2_slots, d))``
        ``h_stage_i & (slots - 1)``, ``latency`` cycles after ``key``.
    digest : ``Out(digest_bits)``
        ``h_digest & mask`` (the key itself in full-key mode), ``latency`` cycles after.
    transit_index : ``Out(ArrayLayout(transit_log2_bits, transit_hashes))``
        Bloom indices, ``latency`` cycles after ``key``.
    maglev_index : ``Out(ceil(log2 M))``
        ``h_maglev % M``, ``maglev_latency`` cycles after ``key``.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`~model.config.Config`.
    ValueError
        If ``stages`` is out of range.
    """

    def __init__(self, cfg: Config, stages: int = 1):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a model.config.Config, not {cfg!r}")
        if not isinstance(stages, int) or not 1 <= stages <= 4:
            raise ValueError(f"stages must be an integer within 1..4, not {stages!r}")
        self._cfg = cfg
        self._stages = stages
        g = cfg.geometry
        self._mod_latency = ConstMod.latency_for(g.maglev_size)
        super().__init__({
            "key": In(KEY_LAYOUT),
            "stage_index": Out(data.ArrayLayout(g.log2_slots, g.stages)),
            "digest": Out(g.digest_bits),
            "transit_index": Out(data.ArrayLayout(g.transit_log2_bits, g.transit_hashes)),
            "maglev_index": Out(g.maglev_index_bits),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``key`` to stage indices, digest and transit indices."""
        return self._stages

    @property
    def maglev_latency(self) -> int:
        """Cycles from ``key`` to ``maglev_index`` (adds the modulo's stages)."""
        return self._stages + (0 if self._cfg.geometry.maglev_pow2 else self._mod_latency)

    def _network(self, m: Module, name: str, role: str, salt: int, bits: int) -> Signal:
        rows, const = crc_role_matrix(salt, FIELD_ORDERS[role], bits)
        net = AffineXorNetwork(KEY_LAYOUT.size, rows, const, self._stages)
        m.submodules[name] = net
        m.d.comb += net.i.eq(self.key.as_value())
        return net.o

    def elaborate(self, platform) -> Module:
        m = Module()
        g, s = self._cfg.geometry, self._cfg.salts
        for i in range(g.stages):
            o = self._network(m, f"stage{i}", f"stage{i}", s.stages[i], g.log2_slots)
            m.d.comb += self.stage_index[i].eq(o)
        for j in range(g.transit_hashes):
            o = self._network(m, f"transit{j}", f"transit{j}", s.transit[j],
                              g.transit_log2_bits)
            m.d.comb += self.transit_index[j].eq(o)
        if g.full_key:
            # The digest is the key itself, delayed to line up with the other hashes.
            prev = self.key.as_value()
            for k in range(self._stages):
                reg = Signal(KEY_LAYOUT.size, name=f"key_d{k}", reset_less=True)
                m.d.sync += reg.eq(prev)
                prev = reg
            m.d.comb += self.digest.eq(prev)
        else:
            m.d.comb += self.digest.eq(
                self._network(m, "digest", "digest", s.digest, g.digest_bits))
        if g.maglev_pow2:
            m.d.comb += self.maglev_index.eq(
                self._network(m, "maglev", "maglev", s.maglev, g.maglev_index_bits))
        else:
            h = self._network(m, "maglev", "maglev", s.maglev, 32)
            m.submodules.maglev_mod = mod = ConstMod(32, g.maglev_size)
            m.d.comb += [mod.i.eq(h), self.maglev_index.eq(mod.o)]
        return m
