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
  an updated UDP checksum of 0 sent as 0xFFFF (:func:`model.frame.rewrite_destination`);
* with ``challenge`` (SYN authentication): a CHALLENGE is replaced by the SYN-ACK of
  :func:`model.frame.challenge_frame` (:mod:`hdl.challenge`; its TCP checksum gets the
  cookie's words in c2..c5 beside the rewrite's sums), VERIFY and UNVERIFIED are dropped.

Every rewritten field is a 16-bit word at an even byte offset below 100 (``l3 = 14 +
4 * tags`` and ``l4 = l3 + 4 * ihl`` are even, and beats hold an even number of bytes),
so each of the five *patches* (IPv4 checksum, the two address words, port, L4
checksum) lands on one 16-bit lane of one beat: its beat index and lane are computed
once per frame, and each beat's lanes are replaced where a patch matches.

Pipeline::

    join  record (+ decision) taken while ``credit`` (a flip-flop) is high
    c1    registered; drop / rewrite decided
    c2    new address and port words added pairwise; L3 offset
    c3    the sums complete; L4 offset
    c4    sums folded once; patch offsets
    c5    folded again; each patch's beat index and lane
    c6    the verdict: new checksums complemented, patches -> verdict queue (StreamFifo)
    v2    the verdict of the frame whose beats pass; held while they pass, released with
          its last beat
    out   the output register (m)

c1..c6 are free-running, one carry chain per stage at most (the first version added
three words and folded twice in one stage: with the parser, the datapath made 94.7
MHz on ECP5). ``credit`` bounds the verdicts joined and not yet taken by v2 by the
queue's capacity, from registered events (as the core's credits), so ``m.ready`` has no
combinational path into ``rec.ready`` or ``dec.ready``.

Backpressure on ``m`` stops the beat reads; nothing is lost or reordered. With ``m``
always ready a frame of ``k`` beats takes ``k`` cycles, one-beat frames one per cycle.
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.layout import Action

from .challenge import CHALLENGE_LAYOUT, ChallengeBeats
from .fifo import StreamFifo, up_down_thermometer
from .parser import HEADER_BYTES, beat_layout, check_beat_width

__all__ = ["Rewriter", "RECORD_LAYOUT", "DEST_LAYOUT", "REWRITE_LATENCY", "record_layout",
           "dest_layout"]

_RECORD_FIELDS = {
    "drop": 1,      # drop whatever the core says (policy, rx error, oversize)
    "core": 1,      # the frame went through the core: take its decision
    "tags": 2,
    "ihl": 4,
    "tcp": 1,
    "udp_zero": 1,  # a UDP frame without checksum (0): no L4 checksum patch
    "ip_part": 16,  # fold(~HC + ~old address words)
    "l4_part": 16,  # fold(~HC + ~old address words + ~old port)
}


def record_layout(challenge: bool = False) -> data.StructLayout:
    """What the datapath keeps per frame between the parser and the rewriter; with
    ``challenge`` also the SYN's MACs, addresses and ports and the parser's ``ch_ip``,
    ``ch_l4`` (:func:`hdl.parser.parse_layout`) for a challenge reply."""
    if not challenge:
        return data.StructLayout(_RECORD_FIELDS)
    return data.StructLayout(_RECORD_FIELDS | {
        "macs": 96, "src_ip": 32, "dst_ip": 32, "src_port": 16, "dst_port": 16,
        "ch_ip": 16, "ch_l4": 16})


def dest_layout(challenge: bool = False) -> data.StructLayout:
    """The part of the core's decision the rewriter needs; with ``challenge`` the 3-bit
    action and the cookie."""
    if not challenge:
        return data.StructLayout({"action": 2, "ip": 32, "port": 16})
    return data.StructLayout({"action": 3, "ip": 32, "port": 16, "cookie": 32})


#: :func:`record_layout` and :func:`dest_layout` without SYN authentication.
RECORD_LAYOUT = record_layout()
DEST_LAYOUT = dest_layout()

#: Cycles from a record (and decision) being joined to the first beat on ``m`` when the
#: beats are there and ``m`` is ready: c1..c6, the verdict queue (2), v2, out.
REWRITE_LATENCY = 10

_PATCHES = 5
#: Verdicts the queue between the verdict pipeline and the beat stage holds.
_VQ_DEPTH = 17


class Rewriter(wiring.Component):
    """Verdicts, the DNAT rewrite and the output stream (see the module docstring).

    Parameters
    ----------
    width : int
        Bytes per beat (one of :data:`hdl.parser.WIDTHS`).
    challenge : bool
        SYN authentication: CHALLENGE decisions are answered, VERIFY and UNVERIFIED
        dropped.

    Members
    -------
    rec : ``In(stream.Signature(record_layout(challenge)))``
        One record per frame, in frame order.
    dec : ``In(stream.Signature(dest_layout(challenge)))``
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

    def __init__(self, width: int, *, challenge: bool = False):
        check_beat_width(width)
        self._width = width
        self._challenge = bool(challenge)
        super().__init__({
            "rec": In(stream.Signature(record_layout(self._challenge))),
            "dec": In(stream.Signature(dest_layout(self._challenge))),
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
        patch_layout = data.StructLayout({"en": 1, "beat": range(nb + 1), "lane": W // 2,
                                          "value": 16})
        ch = self._challenge
        _VERDICT = data.StructLayout({"drop": 1, "rw": 1,
                                      "p": data.ArrayLayout(patch_layout, _PATCHES)}
                                     | ({"ch": 1, "reply": CHALLENGE_LAYOUT} if ch else {}))

        # ---- join: record and decision taken while the verdict queue has credit ---------
        # The verdict is computed in a free-running pipeline (one carry chain per stage)
        # and queued; `credit` (a flip-flop) bounds what is in the pipeline and the queue
        # by the queue's capacity, so the queue never refuses a word and `m.ready` has no
        # path into `rec.ready` / `dec.ready`.
        vq = StreamFifo(_VERDICT.size, _VQ_DEPTH, checked=False)
        m.submodules.verdict_queue = vq
        cap = vq.capacity
        credit = Signal(init=1)     # nothing is outstanding after reset
        go = Signal()
        go_q = Signal()
        pop_q = Signal()
        m.d.comb += [
            go.eq(credit & self.rec.valid & (~rec.core | self.dec.valid)),
            self.rec.ready.eq(credit & (~rec.core | self.dec.valid)),
            self.dec.ready.eq(credit & self.rec.valid & rec.core),
        ]
        # joined and not yet popped from the queue, counted from registered events (one
        # cycle late); credit: at most cap - 3 two cycles ago, so at most cap after this
        # cycle's join (as the core's credits, hdl/core.py)
        outstanding = up_down_thermometer(m, cap, go_q, pop_q, "verdicts")
        m.d.sync += [go_q.eq(go), pop_q.eq(vq.r.valid & vq.r.ready),
                     credit.eq(~outstanding[cap - 3])]

        # c1: the inputs registered (drop / rewrite decided)
        c1_valid = Signal()
        c1 = Signal(data.StructLayout({
            "drop": 1, "rw": 1, "tags": 2, "ihl": 4, "tcp": 1, "udp_zero": 1,
            "ip": 32, "port": 16, "ip_part": 16, "l4_part": 16}), reset_less=True)
        if ch:
            drop_action = (dec.action == Action.DROP) | (dec.action == Action.VERIFY) | \
                (dec.action == Action.UNVERIFIED)
        else:
            drop_action = dec.action == Action.DROP
        m.d.sync += [
            c1_valid.eq(go),
            c1.drop.eq(rec.drop | (rec.core & drop_action)),
            c1.rw.eq(~rec.drop & rec.core & (dec.action == Action.LB)),
            c1.tags.eq(rec.tags), c1.ihl.eq(rec.ihl), c1.tcp.eq(rec.tcp),
            c1.udp_zero.eq(rec.udp_zero), c1.ip.eq(dec.ip), c1.port.eq(dec.port),
            c1.ip_part.eq(rec.ip_part), c1.l4_part.eq(rec.l4_part),
        ]

        def nxt(prev, name: str):
            """The next stage's copy of a register (valid or payload)."""
            q = Signal.like(prev, name=name)
            m.d.sync += q.eq(prev)
            return q

        # c2: the new words added pairwise; the L3 offset
        c2_valid, c2 = nxt(c1_valid, "c2_valid"), nxt(c1, "c2")
        nhi, nlo = c1.ip[16:], c1.ip[:16]
        c2_ip = Signal(17, reset_less=True)      # ip_part + new address hi
        c2_l4 = Signal(17, reset_less=True)      # l4_part + new address hi
        c2_lp = Signal(17, reset_less=True)      # new address lo + new port
        c2_l3 = Signal(7, reset_less=True)
        m.d.sync += [c2_ip.eq(c1.ip_part + nhi), c2_l4.eq(c1.l4_part + nhi),
                     c2_lp.eq(nlo + c1.port), c2_l3.eq(14 + (c1.tags << 2))]
        # c3: the sums complete; the L4 offset
        c3_valid, c3 = nxt(c2_valid, "c3_valid"), nxt(c2, "c3")
        c3_ip = Signal(18, reset_less=True)
        c3_l4 = Signal(18, reset_less=True)
        c3_l3 = nxt(c2_l3, "c3_l3")
        c3_off4 = Signal(7, reset_less=True)
        m.d.sync += [c3_ip.eq(c2_ip + c2.ip[:16]), c3_l4.eq(c2_l4 + c2_lp),
                     c3_off4.eq(c2_l3 + (c2.ihl << 2))]
        # c4: folded once; the patch offsets
        c4_valid, c4 = nxt(c3_valid, "c4_valid"), nxt(c3, "c4")
        c4_ip = Signal(17, reset_less=True)
        c4_l4 = Signal(17, reset_less=True)
        m.d.sync += [c4_ip.eq(c3_ip[:16] + c3_ip[16:]), c4_l4.eq(c3_l4[:16] + c3_l4[16:])]
        offs = [(c3_l3, 10), (c3_l3, 16), (c3_l3, 18), (c3_off4, 2), (c3_off4, None)]
        c4_off = [Signal(7, name=f"c4_off{k}", reset_less=True) for k in range(_PATCHES)]
        for k, (base, add) in enumerate(offs):
            m.d.sync += c4_off[k].eq(base + (Mux(c3.tcp, 16, 6) if add is None else add))
        # c5: folded again; beat and lane of each patch
        c5_valid, c5 = nxt(c4_valid, "c5_valid"), nxt(c4, "c5")
        c5_ip = Signal(16, reset_less=True)
        c5_l4 = Signal(16, reset_less=True)
        m.d.sync += [c5_ip.eq(c4_ip[:16] + c4_ip[16]), c5_l4.eq(c4_l4[:16] + c4_l4[16])]
        c5_beat = [Signal(range(nb + 1), name=f"c5_beat{k}", reset_less=True)
                   for k in range(_PATCHES)]
        c5_lane = [Signal(W // 2, name=f"c5_lane{k}", reset_less=True)
                   for k in range(_PATCHES)]
        for k in range(_PATCHES):
            m.d.sync += [c5_beat[k].eq(c4_off[k] >> lb), c5_lane[k].eq(1 << c4_off[k][1:lb])]
        # c6: the new checksums (complemented; an updated UDP checksum of 0 sent as 0xFFFF)
        ip_new = Signal(16)
        l4_new = Signal(16)
        m.d.comb += [ip_new.eq(~c5_ip), l4_new.eq(~c5_l4)]
        l4_val = Signal(16)
        m.d.comb += l4_val.eq(Mux(~c5.tcp & (l4_new == 0), 0xFFFF, l4_new))
        values = [ip_new, c5.ip[16:], c5.ip[:16], c5.port, l4_val]
        ens = [c5.rw] * 4 + [c5.rw & (c5.tcp | ~c5.udp_zero)]
        c6_valid = Signal()
        c6 = Signal(_VERDICT, reset_less=True)
        m.d.sync += [c6_valid.eq(c5_valid), c6.drop.eq(c5.drop), c6.rw.eq(c5.rw)]
        for k in range(_PATCHES):
            m.d.sync += [c6.p[k].en.eq(ens[k]), c6.p[k].beat.eq(c5_beat[k]),
                         c6.p[k].lane.eq(c5_lane[k]), c6.p[k].value.eq(values[k])]
        m.d.comb += [vq.w.valid.eq(c6_valid), vq.w.payload.eq(c6)]
        if ch:
            self._challenge_verdict(m, go, rec, dec, nxt, c6)

        # ---- v2: the verdict of the frame whose beats pass now ---------------------------
        v2_valid = Signal()
        v2_free = Signal()
        v2 = Signal(_VERDICT, reset_less=True)
        m.d.comb += vq.r.ready.eq(v2_free)
        with m.If(v2_free):
            m.d.sync += [v2_valid.eq(vq.r.valid), v2.eq(vq.r.payload)]

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
        if not ch:
            m.d.comb += emit.eq(consume & ~v2.drop)
            with m.If(emit):
                m.d.sync += [o.data.eq(patched), o.keep.eq(beat.keep), o.last.eq(beat.last),
                             o.user.eq(0), o_valid.eq(1)]
            with m.Elif(self.m.ready):
                m.d.sync += o_valid.eq(0)
            return m
        # a challenge: the reply's beats in place of the SYN's, its rest consumed unsent
        m.submodules.reply = reply = ChallengeBeats(W)
        m.d.comb += [reply.fields.eq(v2.reply), reply.index.eq(ob),
                     reply.beat_in.eq(beat.data),
                     emit.eq(consume & ~v2.drop & ~(v2.ch & reply.past))]
        with m.If(emit):
            m.d.sync += [o.data.eq(Mux(v2.ch, reply.data, patched)),
                         o.keep.eq(Mux(v2.ch, reply.keep, beat.keep)),
                         o.last.eq(Mux(v2.ch, reply.last, beat.last)),
                         o.user.eq(0), o_valid.eq(1)]
        with m.Elif(self.m.ready):
            m.d.sync += o_valid.eq(0)
        return m

    def _challenge_verdict(self, m: Module, go, rec, dec, nxt, c6) -> None:
        """The challenge part of the verdict, beside c1..c6: whether the frame is
        answered, the reply's fields, its IPv4 checksum (the complement of the parser's
        ``ch_ip``) and its TCP checksum (``ch_l4`` + the cookie's two words, folded
        twice, complemented), one carry chain per stage."""
        cx_layout = data.StructLayout({"ch": 1, "f": CHALLENGE_LAYOUT, "ch_l4": 16})
        c1x = Signal(cx_layout, name="c1_ch", reset_less=True)
        f = c1x.f
        m.d.sync += [
            c1x.ch.eq(go & ~rec.drop & rec.core & (dec.action == Action.CHALLENGE)),
            f.macs.eq(rec.macs), f.src_ip.eq(rec.src_ip), f.dst_ip.eq(rec.dst_ip),
            f.src_port.eq(rec.src_port), f.dst_port.eq(rec.dst_port),
            f.cookie.eq(dec.cookie), f.ip_csum.eq(~rec.ch_ip), f.tags.eq(rec.tags),
            c1x.ch_l4.eq(rec.ch_l4),
        ]
        c2x = nxt(c1x, "c2_ch")
        c2_s = Signal(17, name="c2_ch_sum", reset_less=True)
        m.d.sync += c2_s.eq(c1x.ch_l4 + c1x.f.cookie[16:])
        c3x = nxt(c2x, "c3_ch")
        c3_s = Signal(18, name="c3_ch_sum", reset_less=True)
        m.d.sync += c3_s.eq(c2_s + c2x.f.cookie[:16])
        c4x = nxt(c3x, "c4_ch")
        c4_s = Signal(17, name="c4_ch_sum", reset_less=True)
        m.d.sync += c4_s.eq(c3_s[:16] + c3_s[16:])
        c5x = nxt(c4x, "c5_ch")
        c5_s = Signal(16, name="c5_ch_sum", reset_less=True)
        m.d.sync += c5_s.eq(c4_s[:16] + c4_s[16])
        m.d.sync += [c6.ch.eq(c5x.ch), c6.reply.eq(c5x.f), c6.reply.tcp_csum.eq(~c5_s)]
