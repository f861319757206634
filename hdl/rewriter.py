"""The output side of the frame datapath: verdicts, the DNAT rewrite, the output stream.

:class:`Rewriter` joins, frame by frame and in order, the parser's record of a frame
(from the record queue), the core's decision when the frame went through the core, and
the frame's beats (from the frame buffer), and emits the frame exactly as
:meth:`model.frame.FrameDataPlane.process_frame` does:

* dropped (the ``[frames]`` policy, an rx error or oversize, or the core's DROP): its
  beats are read and discarded, nothing is emitted;
* forwarded (a set-aside frame the policy forwards, or a non-VIP frame): byte for byte;
* load-balanced: destination address and port replaced by the DIP's, the IPv4 header
  checksum and the TCP/UDP checksum updated by RFC 1624 eqn. 3 (``HC' = ~(~HC + ~m +
  m')``, the ``~HC + ~m`` part computed by the parser), a UDP checksum of 0 kept 0 and
  an updated UDP checksum of 0 sent as 0xFFFF (:func:`model.frame.rewrite_destination`).

Every rewritten field is a 16-bit word at an even byte offset below 100 (``l3 = 14 +
4 * tags`` and ``l4 = l3 + 4 * ihl`` are even, and beats hold an even number of bytes),
so each of the five *patches* (IPv4 checksum, the two address words, port, L4
checksum) lands on one 16-bit lane of one beat: its beat index and lane are computed
once per frame, and each beat's lanes are replaced where a patch matches.

Pipeline, with stream handshakes between stages (transfer when ``valid & ready``; a
source never waits for ``ready`` to assert ``valid``)::

    v1    record (+ decision) taken: new words added to the partial sums
    v2    the frame's verdict: sums folded and complemented, patch positions; held
          while the frame's beats pass, released with its last beat
    out   the output register (m)

Backpressure on ``m`` stops the beat reads; nothing is lost or reordered. With ``m``
always ready a frame of ``k`` beats takes ``k`` cycles, one-beat frames one per cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.layout import Action

from .parser import HEADER_BYTES, beat_layout, check_beat_width

__all__ = ["Rewriter", "RECORD_LAYOUT", "DEST_LAYOUT", "REWRITE_LATENCY"]

#: What the datapath keeps per frame between the parser and the rewriter.
RECORD_LAYOUT = data.StructLayout({
    "drop": 1,      # drop whatever the core says (policy, rx error, oversize)
    "core": 1,      # the frame went through the core: take its decision
    "tags": 2,
    "ihl": 4,
    "tcp": 1,
    "udp_zero": 1,  # a UDP frame without checksum (0): no L4 checksum patch
    "ip_part": 16,  # fold(~HC + ~old address words)
    "l4_part": 16,  # fold(~HC + ~old address words + ~old port)
})

#: The part of the core's decision the rewriter needs.
DEST_LAYOUT = data.StructLayout({"action": 2, "ip": 32, "port": 16})

#: Cycles from a record (and decision) being taken into v1 to the first beat on ``m``
#: when the beats are there and ``m`` is ready: v1, v2, out.
REWRITE_LATENCY = 3

_PATCHES = 5


def _fold2(m: Module, s, name: str) -> Signal:
    """The 16-bit end-around-carry fold of an 18-bit sum (two folds suffice)."""
    f1 = Signal(17, name=f"{name}_f1")
    f2 = Signal(16, name=f"{name}_f2")
    m.d.comb += [f1.eq(s[:16] + s[16:]), f2.eq(f1[:16] + f1[16])]
    return f2


class Rewriter(wiring.Component):
    """Verdicts, the DNAT rewrite and the output stream (see the module docstring).

    Parameters
    ----------
    width : int
        Bytes per beat (one of :data:`hdl.parser.WIDTHS`).

    Members
    -------
    rec : ``In(stream.Signature(RECORD_LAYOUT))``
        One record per frame, in frame order.
    dec : ``In(stream.Signature(DEST_LAYOUT))``
        One decision per record with ``core = 1``, in the same order.
    beats : ``In(stream.Signature(beat_layout(width)))``
        The frames' beats, in the same order (the frame buffer).
    m : ``Out(stream.Signature(beat_layout(width)))``
        The frames out (``user`` is always 0).
    frame_done : ``Out(1)``
        Pulses when a frame's last beat leaves the buffer; ``frame_dropped`` and
        ``frame_rewritten`` say what became of it (for counters and credits).
    frame_dropped, frame_rewritten : ``Out(1)``

    Raises
    ------
    ValueError
        If ``width`` is not supported.
    """

    def __init__(self, width: int):
        check_beat_width(width)
        self._width = width
        super().__init__({
            "rec": In(stream.Signature(RECORD_LAYOUT)),
            "dec": In(stream.Signature(DEST_LAYOUT)),
            "beats": In(stream.Signature(beat_layout(width))),
            "m": Out(stream.Signature(beat_layout(width))),
            "frame_done": Out(1),
            "frame_dropped": Out(1),
            "frame_rewritten": Out(1),
        })

    @property
    def latency(self) -> int:
        return REWRITE_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self._width
        lb = (W - 1).bit_length()            # log2 W
        nb = -(-HEADER_BYTES // W)           # beats that can hold a patch
        rec, dec = self.rec.payload, self.dec.payload

        # ---- v1: record and decision joined; new words added ----------------------------
        v1_valid = Signal()
        v1 = Signal(data.StructLayout({
            "drop": 1, "rw": 1, "tags": 2, "ihl": 4, "tcp": 1, "udp_zero": 1,
            "ip": 32, "port": 16, "ip_sum": 18, "l4_sum": 18}), reset_less=True)
        v2_valid = Signal()
        v2_free = Signal()
        v1_free = Signal()
        v1_load = Signal()
        m.d.comb += [
            v1_free.eq(~v1_valid | v2_free),
            v1_load.eq(self.rec.valid & (~rec.core | self.dec.valid) & v1_free),
            self.rec.ready.eq(v1_free & (~rec.core | self.dec.valid)),
            self.dec.ready.eq(v1_free & self.rec.valid & rec.core),
        ]
        nhi, nlo = dec.ip[16:], dec.ip[:16]
        with m.If(v1_load):
            m.d.sync += [
                v1.drop.eq(rec.drop | (rec.core & (dec.action == Action.DROP))),
                v1.rw.eq(~rec.drop & rec.core & (dec.action == Action.LB)),
                v1.tags.eq(rec.tags), v1.ihl.eq(rec.ihl), v1.tcp.eq(rec.tcp),
                v1.udp_zero.eq(rec.udp_zero), v1.ip.eq(dec.ip), v1.port.eq(dec.port),
                v1.ip_sum.eq(rec.ip_part + nhi + nlo),
                v1.l4_sum.eq(rec.l4_part + nhi + nlo + dec.port),
            ]
        with m.If(v1_free):
            m.d.sync += v1_valid.eq(v1_load)

        # ---- v2: the verdict of the frame whose beats pass now ---------------------------
        patch_layout = data.StructLayout({"en": 1, "beat": range(nb + 1), "lane": W // 2,
                                          "value": 16})
        v2 = Signal(data.StructLayout({"drop": 1, "rw": 1,
                                       "p": data.ArrayLayout(patch_layout, _PATCHES)}),
                    reset_less=True)
        ip_new = Signal(16)
        l4_new = Signal(16)
        m.d.comb += [ip_new.eq(~_fold2(m, v1.ip_sum, "ip")),
                     l4_new.eq(~_fold2(m, v1.l4_sum, "l4"))]
        l4_val = Signal(16)
        m.d.comb += l4_val.eq(Mux(~v1.tcp & (l4_new == 0), 0xFFFF, l4_new))
        l3 = Signal(7)
        l4 = Signal(7)
        m.d.comb += [l3.eq(14 + (v1.tags << 2)), l4.eq(l3 + (v1.ihl << 2))]
        patches = [
            (l3 + 10, ip_new, v1.rw),
            (l3 + 16, v1.ip[16:], v1.rw),
            (l3 + 18, v1.ip[:16], v1.rw),
            (l4 + 2, v1.port, v1.rw),
            (l4 + Mux(v1.tcp, 16, 6), l4_val, v1.rw & (v1.tcp | ~v1.udp_zero)),
        ]
        v2_load = Signal()
        m.d.comb += v2_load.eq(v1_valid & v2_free)
        with m.If(v2_load):
            m.d.sync += [v2.drop.eq(v1.drop), v2.rw.eq(v1.rw)]
            for k, (off, val, en) in enumerate(patches):
                o = Signal(7, name=f"patch{k}_off")
                m.d.comb += o.eq(off)
                lane = Signal(W // 2, name=f"patch{k}_lane")
                m.d.comb += lane.eq(1 << o[1:lb])
                m.d.sync += [v2.p[k].en.eq(en), v2.p[k].beat.eq(o >> lb),
                             v2.p[k].lane.eq(lane), v2.p[k].value.eq(val)]
        with m.If(v2_free):
            m.d.sync += v2_valid.eq(v2_load)

        # ---- beats: discarded (drop) or patched into the output register -------------------
        beat = self.beats.payload
        ob = Signal(range(nb + 1))           # beat index in the frame, saturating at nb
        o_valid = Signal()
        o = Signal(beat_layout(W), reset_less=True)
        out_free = Signal()
        consume = Signal()
        done = Signal()
        m.d.comb += [
            out_free.eq(~o_valid | self.m.ready),
            self.beats.ready.eq(v2_valid & (v2.drop | out_free)),
            consume.eq(self.beats.valid & self.beats.ready),
            done.eq(consume & beat.last),
            v2_free.eq(~v2_valid | done),
            self.frame_done.eq(done),
            self.frame_dropped.eq(done & v2.drop),
            self.frame_rewritten.eq(done & v2.rw),
            self.m.valid.eq(o_valid),
            self.m.payload.eq(o),
        ]
        with m.If(consume):
            m.d.sync += ob.eq(Mux(beat.last, 0, Mux(ob == nb, nb, ob + 1)))
        patched = Signal(8 * W)
        hit = [Signal(name=f"patch{k}_here") for k in range(_PATCHES)]
        for k in range(_PATCHES):
            m.d.comb += hit[k].eq(v2.p[k].en & (v2.p[k].beat == ob))
        for j in range(W // 2):
            lane = beat.data[16 * j:16 * j + 16]
            for k in range(_PATCHES):
                v = v2.p[k].value
                lane = Mux(hit[k] & v2.p[k].lane[j], Cat(v[8:], v[:8]), lane)
            m.d.comb += patched[16 * j:16 * j + 16].eq(lane)
        emit = Signal()
        m.d.comb += emit.eq(consume & ~v2.drop)
        with m.If(emit):
            m.d.sync += [o.data.eq(patched), o.keep.eq(beat.keep), o.last.eq(beat.last),
                         o.user.eq(0), o_valid.eq(1)]
        with m.Elif(self.m.ready):
            m.d.sync += o_valid.eq(0)
        return m
