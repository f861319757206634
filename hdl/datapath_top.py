"""The exported frame datapath: AXI4-Stream ports, and ``l4lb rtl --frames``-style export.

:class:`L4LBDatapathTop` is :class:`~hdl.datapath.FrameDatapath` with flat ports named
the way MAC IP names them, so the Verilog module ``l4lb_datapath`` drops between a
receive MAC and a transmit MAC:

* ``s_axis_tdata`` (8W), ``s_axis_tkeep`` (W), ``s_axis_tlast``, ``s_axis_tvalid``,
  ``s_axis_tready`` (out), ``s_axis_tuser`` (1: the frame is bad, e.g. an FCS error --
  it is dropped and counted in ``cnt_rx_errors``);
* ``m_axis_*`` likewise (``m_axis_tuser`` is always 0: no bad frame is ever sent);
* ``wr_*`` (table writes) and ``learn_*`` (learn events) as on ``l4lb_core``
  (hdl/top.py); ``cnt_*`` the core's counters, ``cnt_<reason>`` the parser's frames per
  reason, and ``cnt_rx_errors``, ``cnt_oversize``, ``cnt_frames_out``,
  ``cnt_frames_dropped``, ``cnt_frames_rewritten``;
* with a ``[lifecycle]``: ``rd_*`` (control-plane reads: activity bits, verified-source
  words, for the aging scans and key rotations) and ``rdata_*`` (their words), as on
  ``l4lb_core``. Challenge replies leave on ``m_axis`` like every other frame.

Byte 0 of a frame (the first byte of the destination MAC address) is ``tdata[7:0]`` of
its first beat. Amaranth adds ``clk`` and ``rst`` (synchronous, active high).
"""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.config import Config
from model.parse import Reason

from .core import DEFAULT_HASH_STAGES
from .datapath import FRAME_COUNTERS, FrameDatapath
from .export import compact_memory_inits
from .layouts import COUNTERS, config_summary, memory_map, read_layout, write_layout
from .lifecycle import readable
from .top import KEY_FIELDS

__all__ = ["L4LBDatapathTop", "DATAPATH_MODULE", "datapath_ports", "write_datapath_verilog"]

#: Name of the generated Verilog module.
DATAPATH_MODULE = "l4lb_datapath"

_AXIS = ("tdata", "tkeep", "tlast", "tvalid", "tready", "tuser")


def datapath_ports(cfg: Config, width: int, counter_width: int = 48
                   ) -> dict[str, tuple[str, int]]:
    """Every top-level port except ``clk``/``rst``: name -> (direction, width)."""
    g = cfg.geometry
    lc = cfg.lifecycle
    wl = write_layout(g, lc)
    p: dict[str, tuple[str, int]] = {}
    for side, d_in in (("s_axis", "in"), ("m_axis", "out")):
        d_out = "out" if d_in == "in" else "in"
        p |= {f"{side}_tdata": (d_in, 8 * width), f"{side}_tkeep": (d_in, width),
              f"{side}_tlast": (d_in, 1), f"{side}_tvalid": (d_in, 1),
              f"{side}_tready": (d_out, 1), f"{side}_tuser": (d_in, 1)}
    p |= {"wr_valid": ("in", 1), "wr_ready": ("out", 1)}
    p |= {f"wr_{n}": ("in", wl[n].width) for n in ("mem", "addr", "data")}
    if lc.enabled:
        rl = read_layout(g, lc)
        p |= {"rd_valid": ("in", 1), "rd_ready": ("out", 1)}
        p |= {f"rd_{n}": ("in", rl[n].width) for n in ("mem", "addr")}
        p |= {"rdata_valid": ("out", 1), "rdata_ready": ("in", 1), "rdata_data": ("out", 32)}
    p |= {"learn_valid": ("out", 1), "learn_ready": ("in", 1)}
    p |= {f"learn_{n}": ("out", w) for n, w in KEY_FIELDS}
    p |= {"learn_vip_id": ("out", g.vip_bits), "learn_version": ("out", g.version_bits)}
    p |= {f"cnt_{n}": ("out", counter_width) for n in COUNTERS}
    p |= {f"cnt_{r.key}": ("out", counter_width) for r in Reason}
    p |= {f"cnt_{n}": ("out", counter_width) for n in FRAME_COUNTERS}
    return p


class L4LBDatapathTop(wiring.Component):
    """Flat AXI4-Stream wrapper of :class:`~hdl.datapath.FrameDatapath` (``l4lb_datapath``).

    Parameters
    ----------
    cfg : Config
        Configuration (geometry, salts, ``[frames]`` policy).
    width : int
        Bytes per beat (8, 16, 32 or 64).
    max_frame, hash_stages, learn_fifo_depth, counter_width, init_images
        Passed to :class:`~hdl.datapath.FrameDatapath`.

    Raises
    ------
    TypeError, ValueError
        As :class:`~hdl.datapath.FrameDatapath`.
    """

    def __init__(self, cfg: Config, width: int, *, max_frame: int = 1536,
                 hash_stages: int = DEFAULT_HASH_STAGES, learn_fifo_depth: int = 16,
                 counter_width: int = 48,
                 init_images: Mapping[str, Sequence[int]] | None = None):
        self.dp = FrameDatapath(cfg, width, max_frame=max_frame, hash_stages=hash_stages,
                                learn_fifo_depth=learn_fifo_depth,
                                counter_width=counter_width, init_images=init_images)
        ports = datapath_ports(cfg, width, counter_width)
        super().__init__({n: (In(w) if d == "in" else Out(w)) for n, (d, w) in ports.items()})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.datapath = dp = self.dp
        s, mo = dp.s, dp.m
        m.d.comb += [
            s.valid.eq(self.s_axis_tvalid), self.s_axis_tready.eq(s.ready),
            s.payload.data.eq(self.s_axis_tdata), s.payload.keep.eq(self.s_axis_tkeep),
            s.payload.last.eq(self.s_axis_tlast), s.payload.user.eq(self.s_axis_tuser),
            self.m_axis_tvalid.eq(mo.valid), mo.ready.eq(self.m_axis_tready),
            self.m_axis_tdata.eq(mo.payload.data), self.m_axis_tkeep.eq(mo.payload.keep),
            self.m_axis_tlast.eq(mo.payload.last), self.m_axis_tuser.eq(mo.payload.user),
        ]
        wr, ln = dp.wr, dp.learn
        m.d.comb += [
            wr.valid.eq(self.wr_valid), self.wr_ready.eq(wr.ready),
            wr.payload.mem.eq(self.wr_mem), wr.payload.addr.eq(self.wr_addr),
            wr.payload.data.eq(self.wr_data),
            self.learn_valid.eq(ln.valid), ln.ready.eq(self.learn_ready),
            self.learn_vip_id.eq(ln.payload.vip_id), self.learn_version.eq(ln.payload.version),
        ]
        for n, _ in KEY_FIELDS:
            m.d.comb += getattr(self, f"learn_{n}").eq(getattr(ln.payload.key, n))
        for n in COUNTERS:
            m.d.comb += getattr(self, f"cnt_{n}").eq(getattr(dp.counters, n))
        for r in Reason:
            m.d.comb += getattr(self, f"cnt_{r.key}").eq(dp.frame_counters.reasons[r])
        for n in FRAME_COUNTERS:
            m.d.comb += getattr(self, f"cnt_{n}").eq(getattr(dp.frame_counters, n))
        if dp.cfg.lifecycle.enabled:
            rd, rdata = dp.rd, dp.rdata
            m.d.comb += [
                rd.valid.eq(self.rd_valid), self.rd_ready.eq(rd.ready),
                rd.payload.mem.eq(self.rd_mem), rd.payload.addr.eq(self.rd_addr),
                self.rdata_valid.eq(rdata.valid), rdata.ready.eq(self.rdata_ready),
                self.rdata_data.eq(rdata.payload.data),
            ]
        return m


def describe_datapath(top: L4LBDatapathTop) -> dict:
    """The JSON-able interface description (sizes, latency, ports, memory map)."""
    dp = top.dp
    cfg = dp.cfg
    mm = memory_map(cfg.geometry, cfg.lifecycle)
    info = {
        "module": DATAPATH_MODULE,
        "config": cfg.name,
        "width": dp.width,
        "max_frame": dp.max_frame,
        "latency": dp.latency,
        "decision_delay": dp.decision_delay,
        "core_latency": dp.core.latency,
        "buffer_beats": dp.buffer_beats,
        "frame_slots": dp.frame_slots,
        "hash_stages": dp.core.hash_stages,
        "policy_drops": [r.key for r in dp.policy_drops],
        "ports": {n: {"dir": d, "width": w}
                  for n, (d, w) in datapath_ports(cfg, dp.width,
                                                  len(dp.counters.packets)).items()},
        "memories": [{"id": i.id, "name": i.name, "width": i.width, "depth": i.depth,
                      "addr_bits": i.addr_bits}
                     for i in mm.values()],
    }
    if cfg.lifecycle.enabled:   # as l4lb_core.json: the memories a read answers
        info["readable"] = [n for n in mm if readable(n)]
    return info


def write_datapath_verilog(cfg: Config, outdir: str | Path, width: int, *,
                           max_frame: int = 1536, hash_stages: int = DEFAULT_HASH_STAGES,
                           init_images: Mapping[str, Sequence[int]] | None = None) -> Path:
    """Write ``l4lb_datapath.v`` and ``l4lb_datapath.json`` into ``outdir``.

    Raises
    ------
    TypeError, ValueError
        As :class:`~hdl.datapath.FrameDatapath`.
    """
    top = L4LBDatapathTop(cfg, width, max_frame=max_frame, hash_stages=hash_stages,
                          init_images=init_images)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    info = describe_datapath(top)
    text = compact_memory_inits(verilog.convert(top, name=DATAPATH_MODULE, emit_src=False))
    header = (f"// {DATAPATH_MODULE}: l4lb frame datapath (AXI4-Stream, {width}-byte beats), "
              f"generated by hdl/datapath_top.py (Amaranth). Do not edit.\n"
              f"// {config_summary(cfg)}\n"
              f"// latency {info['latency']} cycles (one-beat frame), buffer "
              f"{info['buffer_beats']} beats, {info['frame_slots']} frames in flight; "
              f"ports: {DATAPATH_MODULE}.json, docs/datapath.md\n")
    path = out / f"{DATAPATH_MODULE}.v"
    path.write_text(header + text)
    (out / f"{DATAPATH_MODULE}.json").write_text(json.dumps(info, indent=2) + "\n")
    return path
