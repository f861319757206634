"""Streaming frame parser: one classification per frame, bit-exact with model/parse.py.

The parser watches the beats of a frame stream (``W`` bytes per beat, byte ``i`` of a
beat in ``data[8*i:8*i+8]``, AXI4-Stream lane order) and, a fixed :attr:`latency` after
each frame's last beat, emits one :data:`PARSE_LAYOUT` record: the :class:`Reason` of
:func:`model.parse.parse_frame` (same checks, same priority order), the 5-tuple and TCP
flags, the header offsets the rewriter needs (tags, IHL), the old checksums and the
ones'-complement partial sums of the RFC 1624 update (``~HC + ~m`` over the words the
rewrite replaces, so the rewriter only adds the new words).

It never stalls: its input is a sniffer of accepted beats (``always_ready``) and its
output has no ready (``always_ready``); at most one frame ends per cycle, so at most one
record leaves per cycle, and the pipeline is free-running.

Only the first :data:`HEADER_BYTES` bytes of a frame matter to the decision and the
rewrite (two tags, a 60-byte IPv4 header, a TCP header up to its checksum); they are
captured beat by beat into a window register, and the frame length is counted. When the
last beat arrives the window (with that beat merged in) and the length enter the
pipeline:

    p0   tags, EtherType, checks 1-4; the 78 bytes from the IPv4 header on (3:1 mux)
    p1   checks 5-7, 9-12; IPv4 header words masked by IHL, summed in pairs (15);
         the L4 window (11:1 mux on IHL)
    p2   the L4 fields; ~L4 checksum + ~port and ~address words summed; header 15 -> 8
    p3   the rewrite's partial sums; header 8 -> 4
    p4   partial sums folded once; header 4 -> 2
    p5   partial sums folded again; header 2 -> 1
    p6   header sum folded once
    p7   folded again; check 8; priority
    out  the record

Each stage adds at most one carry chain (an adder or a compare) after its registers, so
the parser keeps up with the 200 MHz of the core on ECP5 (the first version summed five
words, then four, in one stage each: 94.7 MHz, a 23-level path).

Beats must carry ``keep`` all ones except on the last beat of a frame, where it is a run
of ones from lane 0 (what MACs deliver); the byte count of a last beat is the position
of its highest ``keep`` bit plus one. ``user`` on any beat marks the frame as errored
(``rx_error``, e.g. a bad FCS seen by the MAC). A frame longer than ``max_frame`` bytes
is flagged ``oversize`` (the datapath drops both kinds; the model has neither).
"""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.parse import ETHERTYPE_IPV4, PROTO_TCP, PROTO_UDP, TPIDS, Reason

from .layouts import KEY_LAYOUT

__all__ = ["FrameParser", "beat_layout", "check_beat_width", "PARSE_LAYOUT", "parse_layout",
           "HEADER_BYTES", "PARSE_LATENCY", "WIDTHS"]

#: Bytes of a frame the decision and the rewrite depend on: two tags (22), a 60-byte
#: IPv4 header (82), and the TCP header up to its checksum (l4 + 18).
HEADER_BYTES = 100
#: Bytes from the IPv4 header on that the parser looks at (60 + 18).
_L3_WINDOW = 78
#: Beat widths in bytes the datapath is built for.
WIDTHS = (8, 16, 32, 64)
#: Cycles from the transfer of a frame's last beat to its record's ``valid``.
PARSE_LATENCY = 9


def check_beat_width(width) -> None:
    """Raise ``ValueError`` unless ``width`` is one of :data:`WIDTHS` (bytes per beat)."""
    if not isinstance(width, int) or width not in WIDTHS:
        raise ValueError(f"width must be one of {list(WIDTHS)} bytes, not {width!r}")


def beat_layout(width: int) -> data.StructLayout:
    """One beat of a frame stream: ``data`` (``width`` bytes, lane 0 first on the wire),
    ``keep`` (byte valid), ``last`` (end of frame), ``user`` (error/drop flag)."""
    return data.StructLayout({"data": 8 * width, "keep": width, "last": 1, "user": 1})


_PARSE_FIELDS = {
    "reason": 4,
    "rx_error": 1,
    "oversize": 1,
    "key": KEY_LAYOUT,
    "tcp_flags": 8,
    "tags": 2,
    "ihl": 4,
    "ip_csum": 16,
    "l4_csum": 16,
    "ip_part": 16,
    "l4_part": 16,
}


def parse_layout(challenge: bool = False) -> data.StructLayout:
    """One parsed frame. ``ip_part`` = fold(~ip_csum + ~dst_ip_hi + ~dst_ip_lo) and
    ``l4_part`` = fold(~l4_csum + ~dst_ip_hi + ~dst_ip_lo + ~dst_port): RFC 1624 eqn. 3
    with the old words taken out; the rewriter adds the new ones.

    With ``challenge`` (SYN authentication, :mod:`hdl.challenge`) also: ``seq`` (the TCP
    sequence number, 0 for UDP), ``macs`` (frame bytes 0..11, lane order) and the
    challenge SYN-ACK's partial sums ``ch_ip`` = fold(C_ip + address words) (its IPv4
    header checksum is the complement) and ``ch_l4`` = fold(C_tcp + address words +
    ports) (the cookie's words are still to be added), with the constants of
    :func:`hdl.challenge.challenge_constants`."""
    if not challenge:
        return data.StructLayout(_PARSE_FIELDS)
    return data.StructLayout(_PARSE_FIELDS | {"seq": 32, "macs": 96, "ch_ip": 16,
                                              "ch_l4": 16})


#: One parsed frame without the SYN-authentication fields (:func:`parse_layout`).
PARSE_LAYOUT = parse_layout()


def _byte(v, i: int):
    return v[8 * i:8 * i + 8]


def _be16(v, i: int):
    """The big-endian 16-bit word at byte offset ``i`` of a little-endian lane vector."""
    return Cat(_byte(v, i + 1), _byte(v, i))


def _be32(v, i: int):
    return Cat(_be16(v, i + 2), _be16(v, i))


def _fold_once(m: Module, s, name: str) -> Signal:
    """``(s & 0xFFFF) + (s >> 16)``: one end-around-carry fold."""
    out = Signal(17, name=name)
    m.d.comb += out.eq(s[:16] + s[16:])
    return out


class FrameParser(wiring.Component):
    """Classify every frame of a beat stream like :func:`model.parse.parse_frame`.

    Parameters
    ----------
    width : int
        Bytes per beat, one of :data:`WIDTHS`.
    max_frame : int
        Longest frame in bytes that is not flagged ``oversize`` (64..65535).
    challenge : bool
        Also extract what SYN authentication needs (``parse_layout(True)``: the
        sequence number, the MAC addresses, the challenge's partial checksums).

    Members
    -------
    beat : ``In(stream.Signature(beat_layout(width), always_ready=True))``
        The beats *transferred* on the datapath's input (valid = a transfer this cycle).
    frame : ``Out(stream.Signature(parse_layout(challenge), always_ready=True))``
        One record per frame, :attr:`latency` cycles after its last beat, in frame order.

    Raises
    ------
    ValueError
        If ``width`` or ``max_frame`` is out of range.
    """

    def __init__(self, width: int, max_frame: int = 1536, *, challenge: bool = False):
        check_beat_width(width)
        if not isinstance(max_frame, int) or not 64 <= max_frame <= 65535:
            raise ValueError(f"max_frame must be an integer within 64..65535, not {max_frame!r}")
        self._width = width
        self._max_frame = max_frame
        self._challenge = bool(challenge)
        super().__init__({
            "beat": In(stream.Signature(beat_layout(width), always_ready=True)),
            "frame": Out(stream.Signature(parse_layout(self._challenge), always_ready=True)),
        })

    @property
    def challenge(self) -> bool:
        """Whether the records carry the SYN-authentication fields."""
        return self._challenge

    @property
    def width(self) -> int:
        return self._width

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a frame's last beat to its record on ``frame``."""
        return PARSE_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self._width
        nb = -(-HEADER_BYTES // W)          # beats of the header window
        nbytes = nb * W
        top = self._max_frame + 1           # saturated length: "more than max_frame"
        beat = self.beat.payload
        take = self.beat.valid
        layout = parse_layout(self._challenge)

        # ---- capture: the header window and the length, beat by beat -----------------
        win = Signal(8 * nbytes, reset_less=True)
        bi = Signal(range(nb + 1))          # beat index in the frame, saturating at nb
        n = Signal(range(top + 1))          # bytes so far, saturating at max_frame + 1
        err = Signal()
        cnt = Signal(range(W + 1))          # bytes in this beat
        m.d.comb += cnt.eq(W)
        with m.If(beat.last):
            m.d.comb += cnt.eq(0)
            for i in range(W):              # the highest keep bit wins
                with m.If(beat.keep[i]):
                    m.d.comb += cnt.eq(i + 1)
        win_next = Signal.like(win)
        for b in range(nb):
            sl = slice(8 * W * b, 8 * W * (b + 1))
            m.d.comb += win_next[sl].eq(Mux(bi == b, beat.data, win[sl]))
        n_sum = Signal(range(top + W + 1))
        n_next = Signal.like(n)
        m.d.comb += [n_sum.eq(n + cnt), n_next.eq(Mux(n_sum > self._max_frame, top, n_sum))]

        p0_valid = Signal()
        p0_win = Signal.like(win, reset_less=True)
        p0_n = Signal.like(n, reset_less=True)
        p0_err = Signal(reset_less=True)
        m.d.sync += p0_valid.eq(take & beat.last)
        with m.If(take):
            with m.If(beat.last):
                m.d.sync += [bi.eq(0), n.eq(0), err.eq(0),
                             p0_win.eq(win_next), p0_n.eq(n_next), p0_err.eq(err | beat.user)]
            with m.Else():
                m.d.sync += [win.eq(win_next), n.eq(n_next), err.eq(err | beat.user),
                             bi.eq(Mux(bi == nb, nb, bi + 1))]

        # ---- p0: tags, EtherType, checks 1-4, the IPv4 window -------------------------
        def tpid(v):
            return Cat(*(v == t for t in TPIDS)).any()

        e12, e16, e20 = _be16(p0_win, 12), _be16(p0_win, 16), _be16(p0_win, 20)
        t1 = tpid(e12)
        t2 = t1 & tpid(e16)
        t3 = t2 & tpid(e20)
        tags = Signal(2)
        etype = Signal(16)
        ipwin = Signal(8 * _L3_WINDOW)
        m.d.comb += [tags.eq(Mux(t2, 2, Mux(t1, 1, 0))),
                     etype.eq(Mux(t2, e20, Mux(t1, e16, e12)))]
        with m.Switch(tags):
            for k in range(3):
                with m.Case(k):
                    lo = 14 + 4 * k
                    m.d.comb += ipwin.eq(p0_win[8 * lo:8 * (lo + _L3_WINDOW)])
            with m.Default():   # tags is at most 2
                m.d.comb += ipwin.eq(0)
        l3 = Signal(5)
        m.d.comb += l3.eq(14 + 4 * tags)
        p1 = {
            "valid": Signal(name="p1_valid"),
            "err": Signal(name="p1_err"),
            "oversize": Signal(name="p1_oversize"),
            "c1": Signal(name="p1_c1"), "c2": Signal(name="p1_c2"),
            "c3": Signal(name="p1_c3"), "c4": Signal(name="p1_c4"),
            "c5": Signal(name="p1_c5"),
        }
        p1_tags = Signal(2, name="p1_tags")
        p1_ipwin = Signal(8 * _L3_WINDOW, name="p1_ipwin", reset_less=True)
        p1_avail = Signal(len(p0_n), name="p1_avail")   # bytes from the IPv4 header on
        m.d.sync += [
            p1["valid"].eq(p0_valid), p1["err"].eq(p0_err), p1["oversize"].eq(p0_n == top),
            p1["c1"].eq(p0_n < 14),
            p1["c2"].eq((t1 & (p0_n < 18)) | (t2 & (p0_n < 22))),
            p1["c3"].eq(t3),
            p1["c4"].eq(etype != ETHERTYPE_IPV4),
            p1["c5"].eq(p0_n < l3 + 20),
            p1_tags.eq(tags), p1_ipwin.eq(ipwin), p1_avail.eq(p0_n - l3),
        ]

        # ---- p1: checks 5-12 but 8; header words masked by IHL and summed in pairs; the
        # L4 window (11:1 mux on IHL). Every later stage adds at most one carry chain.
        vihl = _byte(p1_ipwin, 0)
        ihl = vihl[:4]
        hlen = Signal(6)
        total = _be16(p1_ipwin, 2)
        proto = _byte(p1_ipwin, 9)
        is_tcp = proto == PROTO_TCP
        m.d.comb += hlen.eq(ihl << 2)
        l4w = Signal(8 * 18)
        with m.Switch(ihl):
            for i in range(5, 16):
                with m.Case(i):
                    m.d.comb += l4w.eq(p1_ipwin[32 * i:32 * i + 8 * 18])
            with m.Default():   # IHL < 5: BAD_IHL, the fields are not used
                m.d.comb += l4w.eq(0)
        dst_ip = _be32(p1_ipwin, 16)
        # header words 0..29; word j counts when j < 2 * ihl (ihl >= 5 or check 7 fails)
        words = []
        for j in range(30):
            w = _be16(p1_ipwin, 2 * j)
            words.append(w if j < 10 else Mux(ihl > j // 2, w, 0))
        flags = ("valid", "err", "oversize", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c9",
                 "c10", "c11", "c12")
        p2 = {k: Signal(name=f"p2_{k}") for k in flags}
        p2_pairs = [Signal(17, name=f"p2_pair{g}", reset_less=True) for g in range(15)]
        p2_l4w = Signal(8 * 18, name="p2_l4w", reset_less=True)
        p2_tcp = Signal(name="p2_tcp", reset_less=True)
        p2_rec = Signal(layout, name="p2_rec", reset_less=True)
        for k in ("valid", "err", "oversize", "c1", "c2", "c3", "c4", "c5"):
            m.d.sync += p2[k].eq(p1[k])
        m.d.sync += [
            p2["c6"].eq(vihl[4:] != 4),
            p2["c7"].eq((ihl < 5) | (hlen > p1_avail)),
            p2["c9"].eq((total < hlen) | (total > p1_avail)),
            p2["c10"].eq(_be16(p1_ipwin, 6)[:14].any()),
            p2["c11"].eq((proto != PROTO_TCP) & (proto != PROTO_UDP)),
            p2["c12"].eq(total < hlen + Mux(is_tcp, 20, 8)),
            p2_l4w.eq(l4w), p2_tcp.eq(is_tcp),
            p2_rec.key.src_ip.eq(_be32(p1_ipwin, 12)),
            p2_rec.key.dst_ip.eq(dst_ip),
            p2_rec.key.proto.eq(proto),
            p2_rec.tags.eq(p1_tags),
            p2_rec.ihl.eq(ihl),
            p2_rec.ip_csum.eq(_be16(p1_ipwin, 10)),
        ]
        m.d.sync += [p.eq(words[2 * g] + words[2 * g + 1]) for g, p in enumerate(p2_pairs)]

        # ---- p2: L4 fields; the rewrite's partial sums, first adds; header sum 15 -> 8 ---
        def stage(prev: dict, name: str) -> dict:
            """The next stage's copies of the flags and the record."""
            nxt = {k: Signal(name=f"{name}_{k}") for k in prev}
            m.d.sync += [nxt[k].eq(prev[k]) for k in prev]
            return nxt

        def tree(vals: list, width: int, name: str) -> list:
            """One adder level: pairs summed (an odd last one passed), registered."""
            out = [Signal(width, name=f"{name}_sum{g}", reset_less=True)
                   for g in range((len(vals) + 1) // 2)]
            for g, o in enumerate(out):
                pair = vals[2 * g:2 * g + 2]
                m.d.sync += o.eq(pair[0] + pair[1] if len(pair) == 2 else pair[0])
            return out

        l4_csum = Signal(16)
        m.d.comb += l4_csum.eq(Mux(p2_tcp, _be16(p2_l4w, 16), _be16(p2_l4w, 6)))
        p3 = stage(p2, "p3")
        p3_sums = tree(p2_pairs, 18, "p3")
        p3_rec = Signal(layout, name="p3_rec", reset_less=True)
        dst_port = _be16(p2_l4w, 2)
        nd_hi, nd_lo = ~p2_rec.key.dst_ip[16:], ~p2_rec.key.dst_ip[:16]
        p3_ipc = Signal(16, name="p3_ipc", reset_less=True)    # ~ip_csum
        p3_la = Signal(17, name="p3_la", reset_less=True)      # ~l4_csum + ~dst_port
        p3_b = Signal(17, name="p3_b", reset_less=True)        # ~dst_ip_hi + ~dst_ip_lo
        m.d.sync += [
            p3_rec.eq(p2_rec),
            p3_rec.key.src_port.eq(_be16(p2_l4w, 0)),
            p3_rec.key.dst_port.eq(dst_port),
            p3_rec.tcp_flags.eq(Mux(p2_tcp, _byte(p2_l4w, 13), 0)),
            p3_rec.l4_csum.eq(l4_csum),
            p3_ipc.eq(~p2_rec.ip_csum),
            p3_la.eq((~l4_csum)[:16] + (~dst_port)[:16]),
            p3_b.eq(nd_hi + nd_lo),
        ]

        # ---- p3: partial sums complete; header 8 -> 4 ------------------------------------
        p4 = stage(p3, "p4")
        p4_sums = tree(p3_sums, 19, "p4")
        p4_rec = Signal(layout, name="p4_rec", reset_less=True)
        p4_ip = Signal(18, name="p4_ip", reset_less=True)
        p4_l4 = Signal(18, name="p4_l4", reset_less=True)
        m.d.sync += [p4_rec.eq(p3_rec), p4_ip.eq(p3_ipc + p3_b), p4_l4.eq(p3_la + p3_b)]

        # ---- p4: first folds; header 4 -> 2 ----------------------------------------------
        p5 = stage(p4, "p5")
        p5_sums = tree(p4_sums, 20, "p5")
        p5_rec = Signal(layout, name="p5_rec", reset_less=True)
        p5_ip = Signal(17, name="p5_ip", reset_less=True)
        p5_l4 = Signal(17, name="p5_l4", reset_less=True)
        m.d.sync += [p5_rec.eq(p4_rec), p5_ip.eq(_fold_once(m, p4_ip, "ip_fold1")),
                     p5_l4.eq(_fold_once(m, p4_l4, "l4_fold1"))]

        # ---- p5: second folds (the partial sums are final); header 2 -> 1 ----------------
        p6 = stage(p5, "p6")
        p6_sum = tree(p5_sums, 21, "p6")[0]
        p6_rec = Signal(layout, name="p6_rec", reset_less=True)
        m.d.sync += [p6_rec.eq(p5_rec),
                     p6_rec.ip_part.eq(p5_ip[:16] + p5_ip[16]),
                     p6_rec.l4_part.eq(p5_l4[:16] + p5_l4[16])]

        # ---- p6: header sum folded once; p7: folded again, check 8, priority ------------
        p7 = stage(p6, "p7")
        p7_sum = Signal(17, name="p7_sum", reset_less=True)
        p7_rec = Signal(layout, name="p7_rec", reset_less=True)
        m.d.sync += [p7_sum.eq(_fold_once(m, p6_sum, "hdr_fold1")), p7_rec.eq(p6_rec)]

        hsum = Signal(16)
        m.d.comb += hsum.eq(p7_sum[:16] + p7_sum[16])
        checks = [  # model/parse.py order
            (p7["c1"], Reason.TRUNCATED), (p7["c2"], Reason.TRUNCATED),
            (p7["c3"], Reason.TOO_MANY_TAGS), (p7["c4"], Reason.NOT_IPV4),
            (p7["c5"], Reason.TRUNCATED), (p7["c6"], Reason.BAD_VERSION),
            (p7["c7"], Reason.BAD_IHL), (hsum != 0xFFFF, Reason.BAD_IP_CHECKSUM),
            (p7["c9"], Reason.BAD_TOTAL_LENGTH), (p7["c10"], Reason.FRAGMENT),
            (p7["c11"], Reason.NOT_TCP_UDP), (p7["c12"], Reason.L4_TRUNCATED),
        ]
        reason = Signal(4)
        m.d.comb += reason.eq(Reason.OK)
        for cond, r in reversed(checks):    # the earliest failing check is assigned last
            with m.If(cond):
                m.d.comb += reason.eq(r)

        out_valid = Signal()
        out = Signal(layout, reset_less=True)
        m.d.sync += [out_valid.eq(p7["valid"]), out.eq(p7_rec), out.reason.eq(reason),
                     out.rx_error.eq(p7["err"]), out.oversize.eq(p7["oversize"])]
        m.d.comb += [self.frame.valid.eq(out_valid), self.frame.payload.eq(out)]
        if self._challenge:
            self._challenge_fields(m, p0_win, p1_ipwin, p2_l4w, p2_tcp,
                                   (p2_rec, p3_rec, p6_rec, p7_rec))
        return m

    def _challenge_fields(self, m: Module, p0_win, p1_ipwin, p2_l4w, p2_tcp, recs) -> None:
        """The SYN-authentication fields of :func:`parse_layout`, beside the stages above
        (one carry chain per stage; assigned after each record's copy of the previous
        one, so these assignments win): the MACs; the sequence number; ``ch_ip`` =
        fold(C_ip + address words) and ``ch_l4`` = fold(C_tcp + address words + ports),
        each folded twice (at most seven 16-bit terms: the second fold is exact)."""
        from .challenge import challenge_constants  # hdl.challenge imports this module

        _, c_ip, c_tcp = challenge_constants()
        p2_rec, p3_rec, p6_rec, p7_rec = recs
        p1_macs = Signal(96, name="p1_macs", reset_less=True)
        m.d.sync += p1_macs.eq(p0_win[:96])
        # p1: the address words summed in pairs
        src, dst = _be32(p1_ipwin, 12), _be32(p1_ipwin, 16)
        p2_src = Signal(17, name="p2_ch_src", reset_less=True)
        p2_dst = Signal(17, name="p2_ch_dst", reset_less=True)
        m.d.sync += [p2_rec.macs.eq(p1_macs), p2_src.eq(src[16:] + src[:16]),
                     p2_dst.eq(dst[16:] + dst[:16])]
        # p2: the sequence number; the addresses; the ports
        p3_addr = Signal(18, name="p3_ch_addr", reset_less=True)
        p3_ports = Signal(17, name="p3_ch_ports", reset_less=True)
        m.d.sync += [p3_rec.seq.eq(Mux(p2_tcp, _be32(p2_l4w, 4), 0)),
                     p3_addr.eq(p2_src + p2_dst),
                     p3_ports.eq(_be16(p2_l4w, 0) + _be16(p2_l4w, 2))]
        # p3: + C_ip; addresses + ports
        p4_ip = Signal(19, name="p4_ch_ip", reset_less=True)
        p4_l4 = Signal(19, name="p4_ch_l4", reset_less=True)
        m.d.sync += [p4_ip.eq(p3_addr + c_ip), p4_l4.eq(p3_addr + p3_ports)]
        # p4: ch_ip folded once; + C_tcp
        p5_ip = Signal(17, name="p5_ch_ip", reset_less=True)
        p5_l4 = Signal(20, name="p5_ch_l4", reset_less=True)
        m.d.sync += [p5_ip.eq(_fold_once(m, p4_ip, "ch_ip_fold1")), p5_l4.eq(p4_l4 + c_tcp)]
        # p5: ch_ip folded again (final); ch_l4 folded once
        p6_l4 = Signal(17, name="p6_ch_l4", reset_less=True)
        m.d.sync += [p6_rec.ch_ip.eq(p5_ip[:16] + p5_ip[16]),
                     p6_l4.eq(_fold_once(m, p5_l4, "ch_l4_fold1"))]
        # p6: ch_l4 folded again (final)
        m.d.sync += p7_rec.ch_l4.eq(p6_l4[:16] + p6_l4[16])
