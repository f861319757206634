"""The exported top level: :class:`~hdl.core.L4LBCore` with one flat port per field.

Flat, documented port names (``pkt_src_ip`` rather than a packed ``pkt__payload``) keep
the Verilog interface stable when a layout gains a field and make the module easy to
instantiate by hand; ``docs/rtl.md`` lists them. Amaranth adds ``clk`` and ``rst``
(synchronous, active high) for the ``sync`` domain.
"""

from collections.abc import Mapping, Sequence

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.config import Config, clog2
from model.network import PORT_BITS

from .core import DEFAULT_HASH_STAGES, L4LBCore
from .layouts import COUNTERS, memory_map, read_layout, stage_bits, write_layout

__all__ = ["L4LBTop", "KEY_FIELDS", "DECISION_PORTS", "NETWORK_PORTS", "port_widths"]

#: The 5-tuple fields, in ``model.hashing.FIELDS`` order.
KEY_FIELDS = (("src_ip", 32), ("dst_ip", 32), ("src_port", 16), ("dst_port", 16), ("proto", 8))

#: Decision fields on ``dec_*`` ports (``model.pipeline.Decision`` order, then extras).
DECISION_PORTS = ("action", "vip_id", "hit", "stage", "version", "transit_hit", "slot",
                  "dip", "dip_ip", "dip_port", "learn", "close", "dst_ip", "dst_port", "meta")

#: Forwarding fields on ``dec_*`` ports of a config with a ``[network]``.
NETWORK_PORTS = ("route_hit", "route", "port")


def port_widths(cfg: Config, meta_width: int = 32, counter_width: int = 48
                ) -> dict[str, tuple[str, int]]:
    """Every top-level port except ``clk``/``rst``: name -> (direction, width).

    A config with a ``[lifecycle]`` adds the control-plane read ports (``rd_*`` in,
    ``rdata_*`` out); with SYN authentication also ``pkt_seq`` and ``dec_cookie``, and
    ``dec_action`` is 3 bits wide; with a ``[network]`` ``dec_action`` is 3 bits wide
    and ``dec_route_hit``, ``dec_route``, ``dec_port`` follow (docs/rtl.md)."""
    g = cfg.geometry
    lc = cfg.lifecycle
    net = cfg.network if cfg.network.enabled else None
    wl = write_layout(g, lc, net)
    p: dict[str, tuple[str, int]] = {"pkt_valid": ("in", 1), "pkt_ready": ("out", 1)}
    p |= {f"pkt_{n}": ("in", w) for n, w in KEY_FIELDS}
    p |= {"pkt_tcp_flags": ("in", 8), "pkt_meta": ("in", meta_width)}
    if lc.auth:
        p["pkt_seq"] = ("in", 32)
    p |= {"wr_valid": ("in", 1), "wr_ready": ("out", 1)}
    p |= {f"wr_{n}": ("in", wl[n].width) for n in ("mem", "addr", "data")}
    if lc.enabled:
        rl = read_layout(g, lc, net)
        p |= {"rd_valid": ("in", 1), "rd_ready": ("out", 1)}
        p |= {f"rd_{n}": ("in", rl[n].width) for n in ("mem", "addr")}
        p |= {"rdata_valid": ("out", 1), "rdata_ready": ("in", 1), "rdata_data": ("out", 32)}
    dw = {"action": 3 if lc.auth or net else 2, "vip_id": g.vip_bits, "hit": 1,
          "stage": stage_bits(g),
          "version": g.version_bits, "transit_hit": 1, "slot": g.slot_bits,
          "dip": g.dip_bits, "dip_ip": 32, "dip_port": 16, "learn": 1, "close": 1,
          "dst_ip": 32, "dst_port": 16, "meta": meta_width}
    p |= {"dec_valid": ("out", 1), "dec_ready": ("in", 1)}
    p |= {f"dec_{n}": ("out", dw[n]) for n in DECISION_PORTS}
    if lc.auth:
        p["dec_cookie"] = ("out", 32)
    if net:
        p |= {"dec_route_hit": ("out", 1), "dec_route": ("out", clog2(net.route_capacity)),
              "dec_port": ("out", PORT_BITS)}
    p |= {"learn_valid": ("out", 1), "learn_ready": ("in", 1)}
    p |= {f"learn_{n}": ("out", w) for n, w in KEY_FIELDS}
    p |= {"learn_vip_id": ("out", g.vip_bits), "learn_version": ("out", g.version_bits)}
    p |= {f"cnt_{n}": ("out", counter_width) for n in COUNTERS}
    return p


class L4LBTop(wiring.Component):
    """Flat-port wrapper of :class:`~hdl.core.L4LBCore` (the ``l4lb_core`` Verilog module).

    Parameters
    ----------
    cfg : Config
        Configuration.
    hash_stages, meta_width, learn_fifo_depth, counter_width, init_images
        Passed to :class:`~hdl.core.L4LBCore`.

    Members
    -------
    pkt_*, wr_*, dec_*, learn_*, cnt_*
        See :func:`port_widths` and ``docs/rtl.md``.

    Raises
    ------
    TypeError, ValueError
        As :class:`~hdl.core.L4LBCore`.
    """

    def __init__(self, cfg: Config, *, hash_stages: int = DEFAULT_HASH_STAGES, meta_width: int = 32,
                 learn_fifo_depth: int = 16, counter_width: int = 48,
                 init_images: Mapping[str, Sequence[int]] | None = None):
        self.core = L4LBCore(cfg, hash_stages=hash_stages, meta_width=meta_width,
                             learn_fifo_depth=learn_fifo_depth, counter_width=counter_width,
                             init_images=init_images)
        ports = port_widths(cfg, meta_width, counter_width)
        super().__init__({n: (In(w) if d == "in" else Out(w)) for n, (d, w) in ports.items()})

    @property
    def latency(self) -> int:
        """Cycles from ``pkt`` acceptance to ``dec_valid`` (see :attr:`L4LBCore.latency`)."""
        return self.core.latency

    @property
    def memory_map(self):
        cfg = self.core.cfg
        return memory_map(cfg.geometry, cfg.lifecycle,
                          cfg.network if cfg.network.enabled else None)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = self.core
        pk, wr, dec, ln = core.pkt, core.wr, core.dec, core.learn
        m.d.comb += [
            pk.valid.eq(self.pkt_valid), self.pkt_ready.eq(pk.ready),
            pk.payload.tcp_flags.eq(self.pkt_tcp_flags), pk.payload.meta.eq(self.pkt_meta),
            wr.valid.eq(self.wr_valid), self.wr_ready.eq(wr.ready),
            wr.payload.mem.eq(self.wr_mem), wr.payload.addr.eq(self.wr_addr),
            wr.payload.data.eq(self.wr_data),
            self.dec_valid.eq(dec.valid), dec.ready.eq(self.dec_ready),
            self.learn_valid.eq(ln.valid), ln.ready.eq(self.learn_ready),
            self.learn_vip_id.eq(ln.payload.vip_id), self.learn_version.eq(ln.payload.version),
        ]
        for n, _ in KEY_FIELDS:
            m.d.comb += [getattr(pk.payload.key, n).eq(getattr(self, f"pkt_{n}")),
                         getattr(self, f"learn_{n}").eq(getattr(ln.payload.key, n))]
        for n in DECISION_PORTS:
            src = {"dst_ip": "out_dst_ip", "dst_port": "out_dst_port"}.get(n, n)
            m.d.comb += getattr(self, f"dec_{n}").eq(getattr(dec.payload, src))
        for n in COUNTERS:
            m.d.comb += getattr(self, f"cnt_{n}").eq(getattr(core.counters, n))
        lc = core.cfg.lifecycle
        if lc.auth:
            m.d.comb += [pk.payload.seq.eq(self.pkt_seq), self.dec_cookie.eq(dec.payload.cookie)]
        if core.cfg.network.enabled:
            for n in NETWORK_PORTS:
                m.d.comb += getattr(self, f"dec_{n}").eq(getattr(dec.payload, n))
        if lc.enabled:
            rd, rdata = core.rd, core.rdata
            m.d.comb += [
                rd.valid.eq(self.rd_valid), self.rd_ready.eq(rd.ready),
                rd.payload.mem.eq(self.rd_mem), rd.payload.addr.eq(self.rd_addr),
                self.rdata_valid.eq(rdata.valid), rdata.ready.eq(self.rdata_ready),
                self.rdata_data.eq(rdata.payload.data),
            ]
        return m
