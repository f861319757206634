"""Frames in, frames out: parser, frame buffer, the core, and the rewriter.

:class:`FrameDatapath` follows :meth:`model.frame.FrameDataPlane.process_frame` byte for
byte (docs/frames.md, docs/datapath.md)::

    s ──┬─> frame buffer (beats, block RAM) ──────────────────────────┐
        └─> FrameParser ──> record queue ─────────────────────────┐   │
                        └─> packet queue ─> L4LBCore ─> dec ──> Rewriter ──> m
                                        wr ─┘        └─> learn

Every accepted beat is written into the frame buffer and seen by the parser; a frame's
record (its reason, the policy's verdict, the rewrite offsets and partial checksums)
goes into the record queue, and a well-formed frame (reason OK, no rx error, not
oversize) also goes to the core as a parsed packet. The rewriter takes the records in
order, with the core's decision where there is one, and passes each frame's beats from
the buffer: dropped, forwarded, or rewritten. Frames therefore leave in input order;
set-aside frames never reach the core (no TransitTable update, no learn event).

**The connection lifecycle** (a config with a ``[lifecycle]``, docs/lifecycle.md): with
SYN authentication the parser also extracts the TCP sequence number (into the core's
``pkt.seq``), the MAC addresses and the partial sums of a challenge reply; a CHALLENGE
decision leaves as the SYN-ACK of :func:`model.frame.challenge_frame` in the place of
the SYN, out of ``m`` (:mod:`hdl.challenge`), and VERIFY and UNVERIFIED are dropped.
The core's control-plane read port (``rd`` / ``rdata``: activity bits, verified-source
words) is passed through for the aging scans. Without a ``[lifecycle]`` none of this
exists and the Verilog is what it was.

**Flow control.** ``s.ready``, a flip-flop, is high while the frame buffer has room
(its ``w_ready_ahead``: a write in the next cycle finds its ``w.ready`` high) and while
fewer than ``frame_slots - 4`` frames are between their last input beat and the read
of their last beat at the rewriter: a count of registered events (a frame's end in is counted
three cycles late), compared with ``frame_slots - 5`` two cycles before ``s.ready``
applies it (the count moves by at most one a cycle, so that is no less strict than a
compare with ``frame_slots - 4`` one cycle before). That bound keeps both queues
(``frame_slots`` records each) from overflowing whatever the core and ``m`` do. The
parser itself never stalls.

**Sizes.** A frame's decision is ready ``decision_delay`` cycles after its last beat
(parser, packet queue, core); to run at full rate the buffer must hold one frame of
``max_frame`` bytes plus the beats that arrive in that time, and the queues the frames
that end in that time::

    decision_delay = PARSE_LATENCY + 2 (the queue writes) + queue latency + core.latency
    buffer_beats  >= ceil(max_frame / W) + decision_delay + REWRITE_LATENCY + 8
    frame_slots   >= decision_delay + REWRITE_LATENCY + 8

(both rounded up by :class:`~hdl.fifo.BlockRamFifo` to a power of two minus 4). A frame
longer than ``max_frame`` bytes is dropped (its beats past the limit are not stored,
so it cannot fill the buffer), as is a frame with ``user`` set on any beat (an error
the MAC saw); they are counted as ``oversize`` and ``rx_errors``.
"""

from collections.abc import Mapping, Sequence

from amaranth.hdl import ClockDomain, ClockSignal, Const, DomainRenamer, Module, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Config
from model.network import require_no_network
from model.parse import PROTO_TCP, Reason

from .core import DEFAULT_HASH_STAGES, L4LBCore, split_counter
from .fifo import BlockRamFifo
from .layouts import (
    counters_layout,
    learn_layout,
    packet_layout,
    rdata_layout,
    read_layout,
    write_layout,
)
from .parser import PARSE_LATENCY, FrameParser, beat_layout, check_beat_width
from .rewriter import REWRITE_LATENCY, Rewriter, record_layout

__all__ = ["FrameDatapath", "frame_counters_layout", "FRAME_COUNTERS"]

#: Frame counters besides the per-reason ones.
FRAME_COUNTERS = ("rx_errors", "oversize", "frames_out", "frames_dropped", "frames_rewritten")

_QUEUE_LATENCY = 8      # BlockRamFifo: write to r.valid
_WRITE_STAGE = 2        # the parser's record, the policy applied, registered twice into the queues
_SLACK = 8


def frame_counters_layout(width: int) -> data.StructLayout:
    """Per-reason frame counts (index = :class:`~model.parse.Reason` value; rx-error and
    oversize frames are counted apart, not by reason) and the outcome counters."""
    return data.StructLayout({"reasons": data.ArrayLayout(width, len(Reason))}
                             | {n: width for n in FRAME_COUNTERS})


def _reset_leaf(m: Module, name: str, init: int, src) -> None:
    """A clock domain ``name`` (the module's clock) whose reset is ``src`` registered
    in a flip-flop of its own (power-on value ``init``)."""
    rst = Signal(name=f"rst_{name}", init=init, reset_less=True)
    m.d.sync += rst.eq(src)
    cd = ClockDomain(name, local=True)
    m.domains += cd
    m.d.comb += [cd.clk.eq(ClockSignal()), cd.rst.eq(rst)]


class FrameDatapath(wiring.Component):
    """The l4lb data plane on Ethernet frames (see the module docstring).

    Parameters
    ----------
    cfg : Config
        Configuration: geometry, salts and the ``[frames]`` policy.
    width : int
        Bytes per beat (8, 16, 32 or 64).
    max_frame : int
        Longest frame in bytes (without FCS) that is processed; longer ones are dropped.
    hash_stages, learn_fifo_depth, counter_width, init_images
        Passed to :class:`~hdl.core.L4LBCore`.

    Members
    -------
    s : ``In(stream.Signature(beat_layout(width)))``
        Frames in (``keep`` all ones but on a frame's last beat, which holds a run of
        ones from lane 0; ``user`` = frame error).
    m : ``Out(stream.Signature(beat_layout(width)))``
        Frames out, in input order (``user`` = 0).
    wr : ``In(stream.Signature(write_layout(geo, lifecycle)))``
        Control-plane table writes (the core's port).
    learn : ``Out(stream.Signature(learn_layout(geo)))``
        Learn events (the core's).
    rd : ``In(stream.Signature(read_layout(geo, lifecycle)))``
        Only with a ``[lifecycle]``: control-plane reads (the core's port).
    rdata : ``Out(stream.Signature(rdata_layout()))``
        Only with a ``[lifecycle]``: the words read, in op order (the core's port).
    counters : ``Out(counters_layout(counter_width))``
        The core's counters.
    frame_counters : ``Out(frame_counters_layout(counter_width))``
        Frames per parser reason, rx errors, oversize, out, dropped, rewritten.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`~model.config.Config`.
    ValueError
        If ``width``, ``max_frame`` or a core parameter is out of range.
    model.network.NetworkUnsupported
        If the config has a ``[network]`` table (forwarding and the return path are not
        implemented in the frame datapath).
    """

    def __init__(self, cfg: Config, width: int, *, max_frame: int = 1536,
                 hash_stages: int = DEFAULT_HASH_STAGES, learn_fifo_depth: int = 16,
                 counter_width: int = 48,
                 init_images: Mapping[str, Sequence[int]] | None = None):
        check_beat_width(width)
        if not isinstance(max_frame, int) or not 64 <= max_frame <= 65535:
            raise ValueError(f"max_frame must be an integer within 64..65535, not {max_frame!r}")
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a model.config.Config, not {cfg!r}")
        # the core routes a [network] config; the frame path around it (MAC rewrite, the
        # return path's source rewrite, one output stream per port) does not
        require_no_network(cfg, "RTL frame datapath")
        self.core = L4LBCore(cfg, hash_stages=hash_stages, meta_width=1,
                             learn_fifo_depth=learn_fifo_depth, counter_width=counter_width,
                             init_images=init_images)
        lc = cfg.lifecycle
        self.parser = FrameParser(width, max_frame, challenge=lc.auth)
        self._cfg = cfg
        self._width = width
        self._max_frame = max_frame
        self._counter_width = counter_width
        g = cfg.geometry
        ports = {
            "s": In(stream.Signature(beat_layout(width))),
            "m": Out(stream.Signature(beat_layout(width))),
            "wr": In(stream.Signature(write_layout(g, lc))),
            "learn": Out(stream.Signature(learn_layout(g))),
            "counters": Out(counters_layout(counter_width)),
            "frame_counters": Out(frame_counters_layout(counter_width)),
        }
        if lc.enabled:
            ports["rd"] = In(stream.Signature(read_layout(g, lc)))
            ports["rdata"] = Out(stream.Signature(rdata_layout()))
        super().__init__(ports)

    # ---- static properties ------------------------------------------------------------
    @property
    def cfg(self) -> Config:
        return self._cfg

    @property
    def width(self) -> int:
        return self._width

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def max_beats(self) -> int:
        """Beats of the longest processed frame."""
        return -(-self._max_frame // self._width)

    @property
    def decision_delay(self) -> int:
        """Cycles from a frame's last beat in to its decision at the rewriter."""
        return PARSE_LATENCY + _WRITE_STAGE + _QUEUE_LATENCY + self.core.latency

    @property
    def frame_slots(self) -> int:
        """Frames the record and packet queues hold (frames in flight at most + 4)."""
        return BlockRamFifo.capacity_for(self.decision_delay + REWRITE_LATENCY + _SLACK)

    @property
    def buffer_beats(self) -> int:
        """Beats the frame buffer holds."""
        return BlockRamFifo.capacity_for(self.max_beats + self.decision_delay
                                         + REWRITE_LATENCY + _SLACK)

    @property
    def latency(self) -> int:
        """Cycles from the first (and last) beat of a one-beat frame in to its first beat
        out, without backpressure: the decision delay, the rewriter, one cycle into the
        rewriter's input."""
        return self.decision_delay + REWRITE_LATENCY

    @property
    def policy_drops(self) -> tuple[Reason, ...]:
        """The reasons the ``[frames]`` policy drops."""
        return tuple(r for r in Reason if r != Reason.OK
                     and self._cfg.frames.action(r.key) == "drop")

    # ---- elaboration ----------------------------------------------------------------
    def elaborate(self, platform) -> Module:
        m = Module()
        W = self._width
        m.submodules.core = core = self.core
        # The parts around the core take the reset through a tree of registers, two
        # levels and five leaves (the parser and the input logic; the record queue; the
        # packet queue; the frame buffer and the counters; the rewriter), so no reset
        # net spans the die: one reset flip-flop on every reset pin was a 5.1 ns route on
        # ECP5, one of two copies still 4.5 ns, one leaf for both queues 4.3 ns. They
        # leave (and enter) a reset two cycles after the core, which then holds no frame.
        # (The core keeps `rst` itself: `wr.ready` is 1 from the first cycle after it,
        # so the core must take writes from then. With a leaf of its own, the first two
        # writes after a reset were lost.) Copies with the same input differ in power-on
        # value (which keeps yosys from merging them); the packet queue's leaf is fed by
        # the AND of both tops (so it is not a third copy of the same flip-flop). That
        # equals `rst` two cycles before, but at power-on, where it lets the packet queue
        # leave its reset a cycle early while nothing reaches it.
        tops = {}
        for top, init, leaves in (("a", 1, (("dp_in", 1), ("dp_q", 0))),
                                  ("b", 0, (("dp_cnt", 1), ("dp_out", 0)))):
            rst1 = tops[top] = Signal(name=f"rst_{top}", init=init, reset_less=True)
            m.d.sync += rst1.eq(ResetSignal())
            for name, init2 in leaves:
                _reset_leaf(m, name, init2, rst1)
        _reset_leaf(m, "dp_pq", 0, tops["a"] & tops["b"])
        m.submodules.parser = parser = DomainRenamer("dp_in")(self.parser)
        lc = self._cfg.lifecycle
        auth = lc.auth
        bl = beat_layout(W)
        # unchecked: `s.ready` is high only when the buffer's `w.ready` will be. A deep
        # (pointer-counted) ring reads late: a frame's beats wait for its decision anyway
        buf = BlockRamFifo(bl.size, self.buffer_beats, ready_ahead=True, checked=False,
                           late_reads=True)
        # unchecked (a write is the registered `valid` alone): the frame credit below
        # keeps every queue's `w.ready` high; the ring reads decided a cycle ahead
        recq = BlockRamFifo(record_layout(auth).size, self.frame_slots, checked=False,
                            issue_ahead=True)
        pktq = BlockRamFifo(packet_layout(1, seq=auth).size, self.frame_slots,
                            checked=False, issue_ahead=True)
        assert buf.capacity == self.buffer_beats and recq.capacity == self.frame_slots
        assert recq.latency == _QUEUE_LATENCY
        m.submodules.frame_buffer = buf = DomainRenamer("dp_cnt")(buf)
        m.submodules.record_queue = recq = DomainRenamer("dp_q")(recq)
        m.submodules.packet_queue = pktq = DomainRenamer("dp_pq")(pktq)
        m.submodules.rewriter = rw = DomainRenamer("dp_out")(Rewriter(W, challenge=auth))

        # ---- input: credits for frames in flight; the buffer's own ready ---------------
        # Frames in flight, counted from registered events (a small counter; `room` is
        # its compare, registered): a frame's end in is seen three cycles late, so at most
        # K - 6 + 3 + 1 frames are in flight when one more may start. (A thermometer code
        # here put both events on a fan-out of K flip-flops: 6.2 ns on ECP5.)
        # `s.ready` is one flip-flop, the AND of two: the buffer's `w_ready_ahead` and
        # the credit compare (as two flip-flops behind a LUT, `s.ready` and the transfer
        # it gates reached the parser's window enables in three LUT levels and 6.3 ns on
        # ECP5; with both compares in front of it, 6.6 ns)
        K = self.frame_slots
        inflight = Signal(range(K + 1))
        room = Signal()     # inflight < K - 5, one cycle ago: inflight < K - 4 now
        ready = Signal(name="s_ready")
        take = Signal()
        take_last = Signal()
        take_last_q = Signal()
        m.d.comb += [
            self.s.ready.eq(ready),
            take.eq(self.s.valid & ready),
            take_last.eq(take & self.s.payload.last),
        ]
        done = rw.frame_done       # a flip-flop
        with m.If(take_last_q & ~done):
            m.d.dp_in += inflight.eq(inflight + 1)
        with m.Elif(done & ~take_last_q):
            m.d.dp_in += inflight.eq(inflight - 1)
        m.d.dp_in += [take_last_q.eq(take_last), room.eq(inflight < K - 5),
                     ready.eq(buf.w_ready_ahead & room)]

        # beats past max_beats of an oversize frame are not stored (its last one is);
        # `under` = bcount < max_beats, a flip-flop
        bcount = Signal(range(self.max_beats + 1))
        under = Signal(init=1)
        with m.If(take):
            with m.If(self.s.payload.last):
                m.d.dp_in += [bcount.eq(0), under.eq(1)]
            with m.Elif(under):
                m.d.dp_in += [bcount.eq(bcount + 1), under.eq(bcount < self.max_beats - 1)]
        m.d.comb += [
            buf.w.valid.eq(take & (self.s.payload.last | under)),
            buf.w.payload.eq(self.s.payload),
            parser.beat.valid.eq(take),
            parser.beat.payload.eq(self.s.payload),
        ]

        # ---- parser records: the policy; to the record queue and the core -------------
        f = parser.frame.payload
        drop_mask = 0
        for r in self.policy_drops:
            drop_mask |= 1 << r
        policy_drop = Signal()
        m.d.comb += policy_drop.eq(Const(drop_mask, len(Reason)).bit_select(f.reason, 1))
        ok = Signal()
        m.d.comb += ok.eq((f.reason == Reason.OK) & ~f.rx_error & ~f.oversize)
        rec = Signal(record_layout(auth))
        m.d.comb += [
            rec.drop.eq(f.rx_error | f.oversize | policy_drop),
            rec.core.eq(ok),
            rec.tags.eq(f.tags), rec.ihl.eq(f.ihl),
            rec.tcp.eq(f.key.proto == PROTO_TCP),
            rec.udp_zero.eq(f.l4_csum == 0),
            rec.ip_part.eq(f.ip_part), rec.l4_part.eq(f.l4_part),
        ]
        pkt = Signal(packet_layout(1, seq=auth))
        m.d.comb += [pkt.key.eq(f.key), pkt.tcp_flags.eq(f.tcp_flags)]
        # registered into the queues (their write side starts with an adder), twice: the
        # first register sits by the parser, the second by the queues' rings (from one,
        # the packet queue's write was a 4.8 ns route between two flip-flops on ECP5)
        rec_q1 = Signal(record_layout(auth), name="rec_q1", reset_less=True)
        pkt_q1 = Signal(packet_layout(1, seq=auth), name="pkt_q1", reset_less=True)
        rec_q = Signal(record_layout(auth), reset_less=True)
        pkt_q = Signal(packet_layout(1, seq=auth), reset_less=True)
        rec_v1, pkt_v1, rec_v, pkt_v = (Signal(name=n) for n in
                                        ("rec_v1", "pkt_v1", "rec_v", "pkt_v"))
        m.d.dp_in += [rec_v1.eq(parser.frame.valid), rec_q1.eq(rec),
                      pkt_v1.eq(parser.frame.valid & ok), pkt_q1.eq(pkt)]
        m.d.dp_q += [rec_v.eq(rec_v1), rec_q.eq(rec_q1)]
        m.d.dp_pq += [pkt_v.eq(pkt_v1), pkt_q.eq(pkt_q1)]
        m.d.comb += [recq.w.valid.eq(rec_v), recq.w.payload.eq(rec_q),
                     pktq.w.valid.eq(pkt_v), pktq.w.payload.eq(pkt_q)]
        if auth:   # what the core's verdict and a challenge reply need
            m.d.comb += [
                pkt.seq.eq(f.seq),
                rec.macs.eq(f.macs), rec.src_ip.eq(f.key.src_ip), rec.dst_ip.eq(f.key.dst_ip),
                rec.src_port.eq(f.key.src_port), rec.dst_port.eq(f.key.dst_port),
                rec.ch_ip.eq(f.ch_ip), rec.ch_l4.eq(f.ch_l4),
            ]
        pq = pktq.r
        m.d.comb += [core.pkt.valid.eq(pq.valid), core.pkt.payload.eq(pq.payload),
                     pq.ready.eq(core.pkt.ready)]
        wiring.connect(m, wiring.flipped(self.wr), core.wr)
        wiring.connect(m, core.learn, wiring.flipped(self.learn))
        if lc.enabled:
            wiring.connect(m, wiring.flipped(self.rd), core.rd)
            wiring.connect(m, core.rdata, wiring.flipped(self.rdata))
        m.d.comb += self.counters.eq(core.counters)

        # ---- rewriter ------------------------------------------------------------------
        d = core.dec.payload
        wiring.connect(m, recq.r, rw.rec)
        wiring.connect(m, buf.r, rw.beats)
        m.d.comb += [
            rw.dec.valid.eq(core.dec.valid),
            rw.dec.payload.action.eq(d.action),
            rw.dec.payload.ip.eq(d.out_dst_ip),
            rw.dec.payload.port.eq(d.out_dst_port),
            core.dec.ready.eq(rw.dec.ready),
        ]
        if auth:
            m.d.comb += rw.dec.payload.cookie.eq(d.cookie)
        wiring.connect(m, rw.m, wiring.flipped(self.m))

        # ---- frame counters (each event a flip-flop) ----------------------------------------
        # taken from a register of the record's flags of their own, so the events share
        # no logic with the queue writes (the shared "ok" LUT sent a 2.5 ns route from the
        # queue side to an event on ECP5)
        fc = self.frame_counters
        # The events come from the record's flags registered twice, so the placer can
        # put one register by the parser and one by the counters (from one register, a
        # 3.8 ns route into the event decode on ECP5); the counters lag a cycle more.
        flags = data.StructLayout({"reason": len(f.reason), "rx_error": 1, "oversize": 1})
        fv1, fv = Signal(name="ev_valid1"), Signal(name="ev_valid")
        fr1 = Signal(flags, name="ev_rec1", reset_less=True)
        fr = Signal(flags, name="ev_rec", reset_less=True)
        m.d.dp_in += [fv1.eq(parser.frame.valid), fr1.reason.eq(f.reason),
                      fr1.rx_error.eq(f.rx_error), fr1.oversize.eq(f.oversize)]
        m.d.dp_cnt += [fv.eq(fv1), fr.eq(fr1)]
        f = fr
        clean = fv & ~f.rx_error & ~f.oversize

        def event(name: str, cond) -> Signal:
            q = Signal(name=f"ev_{name}")
            m.d.dp_cnt += q.eq(cond)
            return q

        # each counter in two halves with the carry registered (as the core's): whole,
        # a 48-bit counter's carry chain was a 5.3 ns path on ECP5
        for r in Reason:
            split_counter(m, fc.reasons[r], event(r.key, clean & (f.reason == r)),
                          f"frames_{r.key}", domain="dp_cnt")
        events = {
            "rx_errors": event("rx_errors", fv & f.rx_error),
            "oversize": event("oversize", fv & f.oversize & ~f.rx_error),
            # registered by the counters too (from the rewriter's flip-flops straight to
            # the counters' enables, a 5.7 ns path on ECP5)
            "frames_out": event("frames_out", done & ~rw.frame_dropped),
            "frames_dropped": event("frames_dropped", rw.frame_dropped),
            "frames_rewritten": event("frames_rewritten", rw.frame_rewritten),
        }
        for name, ev in events.items():
            split_counter(m, getattr(fc, name), ev, f"cnt_{name}", domain="dp_cnt")
        return m
