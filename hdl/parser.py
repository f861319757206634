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
rewrite (two tags, a 60-byte IPv4 header, a TCP header up to its checksum). Each beat is
registered twice (``q``, ``q2``) and written from ``q2`` into its segment of a window
register (the segment is decided from ``q``, so each segment's write enable is a
flip-flop computed from flip-flops); non-last beats are counted. Two cycles after a
frame's last beat was registered (p0) the window holds the frame, and the stages copy
what they need:

    p1   byte compares (TPID and IPv4 EtherType bytes); the last beat's byte count
    p2   TPID and EtherType flags; the length (beats * W + bytes); for each tag count,
         ``IHL > c`` and the L4 offset ``k = tags + IHL - 5`` (4-byte units)
    p3   tags, checks 3 and 4, ``k``; the 20 fixed-offset IPv4 bytes (3:1 mux on the
         TPID flags); the header-sum word mask; the length compared with every
         constant the checks need, and minus each ``l3``
    p4   checks 1, 2, 5, 6, 10, 11, IHL < 5; the header words masked in place
    p5   header words summed in pairs; L4 window shifted by 32 bytes (bit 3 of ``k``);
         ``avail`` = length - ``l3``
    p6   checks 7, 9, 12 compared; header 17 -> 9; L4 shift 16
    p7   priority of checks 1-7 and 9-12 in three groups; header 9 -> 5; L4 shift 8
    p8   checks 1-7 merged; header 5 -> 3; L4 shift 4 (the 18-byte L4 window)
    p9   the L4 fields; header 3 -> 2
    p10  ~L4 checksum + ~port; header 2 -> 1
    p11  ... + ~address words; header folded once
    p12  L4 sum folded once; header folded again
    p13  L4 sum folded again (``l4_part``); check 8 (header sum != 0xFFFF)
    out  the reason (the first failing check); the record

Every stage has at most one carry chain, or about two LUT levels, after its registers,
so the parser keeps up with 200 MHz on ECP5: the variable byte offsets (tags, IHL) are
never resolved by one wide multiplexer (the IPv4 header sum masks words in place
instead of shifting them, the L4 window is a four-step logarithmic shifter), what
depends on the tags is computed for each tag count and selected by the TPID flags,
each length check is a compare with a constant made before the tags are known, and the
priority encoder is split around the late header-sum check. (The first version
resolved the tags, the EtherType and ``n < l3 + 20`` in one stage: 72.9 to 96.7 MHz.)

Beats must carry ``keep`` all ones except on the last beat of a frame, where it is a run
of ones from lane 0 (what MACs deliver); the byte count of a last beat is the position
of its highest ``keep`` bit plus one. ``user`` on any beat marks the frame as errored
(``rx_error``, e.g. a bad FCS seen by the MAC). A frame longer than ``max_frame`` bytes
is flagged ``oversize`` (the datapath drops both kinds; the model has neither).
"""

from amaranth.hdl import Cat, Const, Module, Mux, ResetSignal, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.parse import ETHERTYPE_IPV4, PROTO_TCP, PROTO_UDP, TPIDS, Reason

from .layouts import KEY_LAYOUT

__all__ = ["FrameParser", "beat_layout", "check_beat_width", "PARSE_LAYOUT", "parse_layout",
           "HEADER_BYTES", "PARSE_LATENCY", "WIDTHS"]

#: Bytes of a frame the decision and the rewrite depend on: two tags (22), a 60-byte
#: IPv4 header (82), and the TCP header up to its checksum (l4 + 18).
HEADER_BYTES = 100
#: Beat widths in bytes the datapath is built for.
WIDTHS = (8, 16, 32, 64)
#: Cycles from the transfer of a frame's last beat to its record's ``valid``: the two
#: input registers, the window, p1..p13 and the output register.
PARSE_LATENCY = 17

_L3 = (14, 18, 22)      # IPv4 header offset for 0, 1, 2 tags
_IP_FIELDS = 20         # IPv4 header bytes with fixed offsets (version .. destination)
_SUM_FIRST = 14         # the IPv4 header lies within bytes 14 .. 81 (l3 + 60 <= 82)
_SUM_END = 82
_L4_FIRST = 34          # l4 = l3 + 4 * ihl >= 34 when IHL >= 5
_L4_WINDOW = 18         # L4 bytes looked at: ports, sequence number, flags, checksums
_OUT = 13               # the stage whose registers feed the output register


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


class _Regs:
    """Pipeline registers of one module: ``reg`` registers an expression (no reset: the
    valid bits travel separately), ``delay`` passes a register on through more stages,
    ``fold1``/``fold2`` are the two end-around-carry folds of a ones'-complement sum."""

    def __init__(self, m: Module):
        self.m = m

    def reg(self, name: str, expr, shape=None) -> Signal:
        expr = Value.cast(expr)
        s = Signal(expr.shape() if shape is None else shape, name=name, reset_less=True)
        self.m.d.sync += s.eq(expr)
        return s

    def delay(self, sig, stages: int, name: str) -> Signal:
        for i in range(stages):
            sig = self.reg(f"{name}_d{i + 1}", sig)
        return sig

    def sum_pairs(self, vals: list, name: str) -> list:
        """One adder level: pairs summed (an odd last one passed), registered."""
        return [self.reg(f"{name}{g}", vals[2 * g] + vals[2 * g + 1] if 2 * g + 1 < len(vals)
                         else vals[2 * g], len(vals[0]) + 1)
                for g in range((len(vals) + 1) // 2)]

    def fold1(self, name: str, s) -> Signal:
        """``(s & 0xFFFF) + (s >> 16)``, registered (17 bits)."""
        return self.reg(name, s[:16] + s[16:], 17)

    def fold2(self, name: str, s) -> Signal:
        """The second fold of a once-folded sum (17 bits), registered: exact (16 bits)."""
        return self.reg(name, s[:16] + s[16], 16)


#: Copies of the window's write enables (each loads a quarter of a segment).
_WEN_COPIES = 4


def _copies(m: Module, expr, n: int, name: str, cleared: bool = False) -> list[Signal]:
    """``expr`` registered in ``n`` (at most 4) flip-flops that yosys does not merge:
    they differ in reset class (reset or not) and power-on value, so one enable's
    fan-out can be split. Only for values whose state at and right after a reset does
    not matter (a window write then stores bytes no frame has claimed yet), or, with
    ``cleared``, whose reset-less copies take 0 while the reset is asserted (so every
    copy is 0 after a reset)."""
    assert 1 <= n <= 4
    expr = Value.cast(expr)
    out = []
    for k in range(n):
        init = 0 if k < 2 else (1 << len(expr)) - 1
        q = Signal(expr.shape(), name=f"{name}{'' if k == 0 else k}", init=init,
                   reset_less=bool(k % 2))
        m.d.sync += q.eq(Mux(ResetSignal(), 0, expr) if cleared and k % 2 else expr)
        out.append(q)
    return out


def _first_failing(checks: list) -> tuple:
    """``(any, reason)`` of a group of ``(flag, Reason)`` in priority order, as
    expressions (the reason of the first raised flag; don't care when none is)."""
    reason = Const(checks[-1][1], 4)
    for flag, r in reversed(checks[:-1]):
        reason = Mux(flag, r, reason)
    return Cat(*(f for f, _ in checks)).any(), reason


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

    # ---- capture -----------------------------------------------------------------------
    def _capture(self, m: Module) -> tuple:
        """The input registers, the window, the beat count: ``(v0, win, f_nb, f_keep,
        f_err)``, valid in p0 (two cycles after a frame's last beat was registered)."""
        W = self._width
        nb = -(-HEADER_BYTES // W)          # beats of the header window
        sat = -(-(self._max_frame + 1) // W)  # non-last beats that make any frame oversize
        q_valid = Signal()
        q = Signal(beat_layout(W), reset_less=True)
        q2 = Signal(8 * W, reset_less=True)
        m.d.sync += [q_valid.eq(self.beat.valid), q.eq(self.beat.payload), q2.eq(q.data)]

        # the window segment of each beat, decided from the input register: `oh`
        # (one-hot) is the segment of the beat in `q`, `wen` the segment written from `q2`
        # (all zero past the window), so each segment's write enable is a flip-flop
        # computed from flip-flops -- in four copies, one per quarter of the segment (one
        # enable on all 8 W bits of a segment was a 6.1 ns route on ECP5, the window bits
        # sitting by their consumers; computed from the input's transfer, the enables
        # were three LUT levels from `s.ready`, and later a 2.8 ns route from one shared
        # "take" LUT). Each copy keeps `oh` and the input's `valid` and `last` itself, so
        # its enables are computed where they are used (from one `q_valid`, a 3.0-3.2 ns
        # route into the copies' LUTs on ECP5). The input copies differ in reset class and
        # power-on value (`_copies`), and a copy's `valid` and `last` alike, so every `oh`
        # takes the same steps: every `valid` is 0 after a reset, and a first-cycle beat
        # that is only power-on values is a last beat, which sets `oh` to its power-on
        # value.
        win = Signal(8 * W * nb, reset_less=True)
        qvs = _copies(m, self.beat.valid, _WEN_COPIES, "q_valid_c", cleared=True)
        qls = _copies(m, self.beat.payload.last, _WEN_COPIES, "q_last_c")
        wens = []
        for c, (qv, ql) in enumerate(zip(qvs, qls, strict=True)):
            oh = Signal(nb, init=1, name=f"oh{c}")
            with m.If(qv):
                m.d.sync += oh.eq(Mux(ql, 1, oh << 1))
            wen = Signal(nb, name=f"wen{c}", reset_less=True)
            m.d.sync += wen.eq(Mux(qv, oh, 0))
            wens.append(wen)
        quarter = 8 * W // _WEN_COPIES
        for b in range(nb):
            for c, wen in enumerate(wens):
                lo = 8 * W * b + quarter * c
                with m.If(wen[b]):
                    m.d.sync += win[lo:lo + quarter].eq(q2[quarter * c:quarter * (c + 1)])
        nbeats = Signal(range(sat + 1))     # non-last beats so far, saturating at sat
        nsat = Signal()
        err = Signal()
        v_last = Signal()
        l_nb = Signal(range(sat + 1), reset_less=True)
        l_keep = Signal(W, reset_less=True)
        l_err = Signal(reset_less=True)
        m.d.sync += v_last.eq(q_valid & q.last)
        with m.If(q_valid):
            with m.If(q.last):
                m.d.sync += [nbeats.eq(0), nsat.eq(0), err.eq(0),
                             l_nb.eq(nbeats), l_keep.eq(q.keep), l_err.eq(err | q.user)]
            with m.Else():
                m.d.sync += err.eq(err | q.user)
                with m.If(~nsat):
                    m.d.sync += [nbeats.eq(nbeats + 1), nsat.eq(nbeats == sat - 1)]
        # the last beat's facts wait a cycle for its window write
        v0 = Signal()
        f_nb = Signal.like(l_nb, name="f_nb")
        f_keep = Signal.like(l_keep, name="f_keep")
        f_err = Signal.like(l_err, name="f_err")
        m.d.sync += [v0.eq(v_last), f_nb.eq(l_nb), f_keep.eq(l_keep), f_err.eq(l_err)]
        return v0, win, f_nb, f_keep, f_err

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self._width
        lb = (W - 1).bit_length()           # log2 W
        top = self._max_frame + 1           # saturated length: "more than max_frame"
        layout = parse_layout(self._challenge)
        r = _Regs(m)
        v0, win, f_nb, f_keep, f_err = self._capture(m)
        out = {}                            # record field -> its value at stage _OUT

        def at_out(name: str, sig, stage: int) -> None:
            out[name] = r.delay(sig, _OUT - stage, f"{name.replace('.', '_')}_s{stage}")

        # ---- p1: byte compares; the last beat's byte count ----------------------------
        his = sorted({t >> 8 for t in TPIDS} | {ETHERTYPE_IPV4 >> 8})
        los = sorted({t & 0xFF for t in TPIDS} | {ETHERTYPE_IPV4 & 0xFF})
        hi = {(k, v): r.reg(f"p1_b{k}_{v:02x}", _byte(win, k) == v) for k in (12, 16, 20)
              for v in his}
        lo = {(k, v): r.reg(f"p1_b{k + 1}_{v:02x}", _byte(win, k + 1) == v)
              for k in (12, 16, 20) for v in los}
        cnt = Signal(range(W + 1))
        m.d.comb += cnt.eq(0)
        for i in range(W):                  # the highest keep bit wins
            with m.If(f_keep[i]):
                m.d.comb += cnt.eq(i + 1)
        p1_cnt = r.reg("p1_cnt", cnt)
        p1_nb = r.reg("p1_nb", f_nb)
        at_out("rx_error", r.reg("p1_err", f_err), 1)
        p1_w = r.reg("p1_w", win[8 * _SUM_FIRST:8 * HEADER_BYTES])

        def fb(v, i: int, n: int = 1):
            """Frame bytes ``i .. i + n - 1`` of a copy of the window from byte 14 on."""
            return v[8 * (i - _SUM_FIRST):8 * (i - _SUM_FIRST + n)]

        # ---- p2: TPID and EtherType flags; the length ----------------------------------
        def word_is(k: int, value: int):
            return hi[(k, value >> 8)] & lo[(k, value & 0xFF)]

        tp = {k: r.reg(f"p2_tpid{k}", Cat(*(word_is(k, t) for t in TPIDS)).any())
              for k in (12, 16, 20)}
        e4 = {k: r.reg(f"p2_ipv4_{k}", word_is(k, ETHERTYPE_IPV4)) for k in (12, 16, 20)}
        # the length in three copies: it feeds ten carry chains in p3 (one copy was a
        # 2.9 ns route into them on ECP5)
        n_expr = Cat(Const(0, lb), p1_nb) + p1_cnt
        p2_ns = _copies(m, n_expr, 3, "p2_n")
        nw = len(n_expr)
        p2_w = r.reg("p2_w", p1_w)
        # the L4 offset in 4-byte units, l4 = 34 + 4 * k, k = tags + IHL - 5, for each
        # tag count (p2) and selected (p3)
        ks = [r.reg(f"p2_l4_off{t}", t + fb(p1_w, l3)[:4] - 5, 4) for t, l3 in enumerate(_L3)]
        p3_w = r.reg("p3_w", p2_w)
        p13_c8 = self._header_sum_bad(r, p1_w, tp, p3_w)

        # ---- p3: tags, checks 3-4; the IPv4 fields; the length compares ---------------
        t1, t2 = tp[12], tp[12] & tp[16]
        p3_tags = r.reg("p3_tags", Mux(t2, 2, Mux(t1, 1, 0)), 2)
        p3_c3 = r.reg("p3_c3", t2 & tp[20])
        p3_k = r.reg("p3_l4_off", Mux(t1, Mux(tp[16], ks[2], ks[1]), ks[0]))
        p3_c4 = r.reg("p3_c4", ~Mux(t1, Mux(tp[16], e4[20], e4[16]), e4[12]))
        ipf = r.reg("p3_ipf", Mux(t1, Mux(tp[16], fb(p2_w, 22, _IP_FIELDS),
                                          fb(p2_w, 18, _IP_FIELDS)),
                                  fb(p2_w, 14, _IP_FIELDS)))
        p3_over = r.reg("p3_over", p2_ns[0] > self._max_frame)
        lt = {k: r.reg(f"p3_lt{k}", p2_ns[0 if k < 22 else 1] < k)
              for k in (14, 18, 22, 34, 38, 42)}
        diff = {l3: r.reg(f"p3_n{l3}", p2_ns[2] - l3, nw) for l3 in _L3}
        at_out("tags", p3_tags, 3)
        at_out("oversize", p3_over, 3)

        def by_tags(tags, vals):
            return Mux(tags == 2, vals[2], Mux(tags == 1, vals[1], vals[0]))

        # ---- p4: checks 1, 2, 5, 6, 10, 11 ----------------------------------------------
        vihl = _byte(ipf, 0)
        ihl = vihl[:4]
        proto = _byte(ipf, 9)
        p4_c1 = r.reg("p4_c1", lt[14])
        p4_c2 = r.reg("p4_c2", by_tags(p3_tags, (Const(0), lt[18], lt[22])))
        p4_c5 = r.reg("p4_c5", by_tags(p3_tags, (lt[34], lt[38], lt[42])))
        p4_c6 = r.reg("p4_c6", vihl[4:] != 4)
        p4_c7a = r.reg("p4_ihl_lt5", ihl < 5)
        p4_c10 = r.reg("p4_c10", _be16(ipf, 6)[:14].any())
        p4_c11 = r.reg("p4_c11", (proto != PROTO_TCP) & (proto != PROTO_UDP))
        p4_tcp = r.reg("p4_tcp", proto == PROTO_TCP)
        sat_n = {l3: r.reg(f"p4_avail{l3}", Mux(p3_over, top - l3, diff[l3]), nw) for l3 in _L3}
        p4_k = r.reg("p4_l4_off", p3_k)
        p4_w = r.reg("p4_w", p3_w)
        p4_tags = r.reg("p4_tags", p3_tags)
        p4_ipf = r.reg("p4_ipf", ipf)
        # the total length's bits above the available count's width, any set (so p5
        # compares the low bits alone: a carry chain and one LUT)
        p4_tot_hi = r.reg("p4_tot_hi", _be16(ipf, 2)[nw:].any() if nw < 16 else Const(0))
        # the destination words complemented as registered, so they enter p5's adder
        # straight from flip-flops (through a LUT placed apart, a 5.6 ns path on ECP5)
        ndst4 = r.reg("p4_ndst", ~_be32(ipf, 16), 32)
        at_out("ihl", ihl, 3)
        at_out("key.proto", proto, 3)
        at_out("key.src_ip", _be32(ipf, 12), 3)
        at_out("key.dst_ip", _be32(ipf, 16), 3)
        at_out("ip_csum", _be16(ipf, 10), 3)

        # ---- p5: L4 shift 32; avail ---------------------------------------------------
        ihl4, total4 = _byte(p4_ipf, 0)[:4], _be16(p4_ipf, 2)
        hlen4 = Cat(Const(0, 2), ihl4)
        # the header and total length compared with the bytes available for each tag
        # count (p5), selected by the tags in p6 (a compare behind the selection was a
        # 5.8 ns path on ECP5)
        gt_hlen = [r.reg(f"p5_hlen_gt{l3}", hlen4 > sat_n[l3]) for l3 in _L3]
        # the total length in two halves (an 11-bit compare of registers was a carry
        # chain and three multiplexer levels, 5.3-5.6 ns on ECP5): high half greater,
        # high half equal, low half greater, joined in p6. Each is compared in p4, with
        # the count before and after saturation, and picked in p5 (compared in p5 with
        # the saturated count, the low half was a 1.7 ns route into a carry chain and a
        # LUT behind it, 5.2 ns on ECP5)
        lo = nw // 2
        tot_hi = r.reg("p5_tot_hi", p4_tot_hi)
        total3 = _be16(ipf, 2)
        p4_over = r.reg("p4_over", p3_over)
        halves = (("hgt", lambda t, a: t[lo:nw] > a[lo:]),
                  ("heq", lambda t, a: t[lo:nw] == a[lo:]),
                  ("lgt", lambda t, a: t[:lo] > a[:lo]))

        def total_vs_avail(kind: str, cmp, l3: int) -> Signal:
            fits = r.reg(f"p4_tot_{kind}{l3}", cmp(total3, diff[l3]))
            over = r.reg(f"p4_tot_{kind}{l3}_over", cmp(total3, Const(top - l3, nw)))
            return r.reg(f"p5_tot_{kind}{l3}", Mux(p4_over, over, fits))

        gt_tot = [(tot_hi, *(total_vs_avail(kind, cmp, l3) for kind, cmp in halves))
                  for l3 in _L3]
        p5_tags = r.reg("p5_tags", p4_tags)
        p5_l4min = r.reg("p5_l4min", Cat(Const(0, 2), ihl4 + Mux(p4_tcp, 5, 2)), 7)
        p5_c9a = r.reg("p5_tot_lt_hlen", total4 < hlen4)
        p5_ipc = r.reg("p5_ipc", ~_be16(p4_ipf, 10), 16)
        p5_nd = r.reg("p5_nd", ndst4[16:] + ndst4[:16], 17)
        region = fb(p4_w, _L4_FIRST, HEADER_BYTES - _L4_FIRST)
        l4s = region
        for step, bit in ((32, 3), (16, 2), (8, 1), (4, 0)):
            stage = 7 - bit                 # shifted in p4 .. p7 into p5 .. p8
            k_bit = r.delay(p4_k[bit], stage - 4, f"l4_off{bit}")
            width = _L4_WINDOW + (step - 4)
            padded = Cat(l4s, Const(0, max(0, 8 * (width + step) - len(l4s))))
            l4s = r.reg(f"p{stage + 1}_l4s",
                        Mux(k_bit, padded[8 * step:8 * (step + width)], padded[:8 * width]))
        l4w = l4s                            # p8: frame bytes l4 .. l4 + 17
        p5_total = r.reg("p5_total", total4)
        flags4 = {"c1": p4_c1, "c2": p4_c2, "c5": p4_c5, "c6": p4_c6, "c7a": p4_c7a,
                  "c10": p4_c10, "c11": p4_c11}
        flags = {k: r.delay(v, 2, f"{k}_s4") for k, v in flags4.items()}  # at p6
        flags |= {"c3": r.delay(p3_c3, 3, "c3_s3"), "c4": r.delay(p3_c4, 3, "c4_s3"),
                  "c9a": r.delay(p5_c9a, 1, "c9a_s5")}

        # ---- p6: checks 7, 9, 12; ip sum -----------------------------------------------
        flags["c7b"] = r.reg("p6_hlen_gt_avail", by_tags(p5_tags, gt_hlen))
        flags["c9b"] = r.reg("p6_tot_gt_avail", by_tags(p5_tags, [
            hi | hgt | (heq & lgt) for hi, hgt, heq, lgt in gt_tot]))
        flags["c12"] = r.reg("p6_c12", p5_total < p5_l4min)
        p6_ip = r.reg("p6_ip", p5_ipc + p5_nd, 18)

        # ---- p7: priority in three groups; ip folded once -------------------------------
        F = flags
        groups = [
            [(F["c1"], Reason.TRUNCATED), (F["c2"], Reason.TRUNCATED),
             (F["c3"], Reason.TOO_MANY_TAGS), (F["c4"], Reason.NOT_IPV4)],
            [(F["c5"], Reason.TRUNCATED), (F["c6"], Reason.BAD_VERSION),
             (F["c7a"], Reason.BAD_IHL), (F["c7b"], Reason.BAD_IHL)],
            [(F["c9a"], Reason.BAD_TOTAL_LENGTH), (F["c9b"], Reason.BAD_TOTAL_LENGTH),
             (F["c10"], Reason.FRAGMENT), (F["c11"], Reason.NOT_TCP_UDP),
             (F["c12"], Reason.L4_TRUNCATED)],
        ]
        g7 = []
        for gi, g in enumerate(groups):
            any_, reason = _first_failing(g)
            g7.append((r.reg(f"p7_any{gi}", any_), r.reg(f"p7_reason{gi}", reason, 4)))
        p7_ip = r.fold1("p7_ip", p6_ip)

        # ---- p8: checks 1-7 merged; ip_part final ----------------------------------------
        (a0, r0), (a1, r1), (a2, r2) = g7
        p8_any = r.reg("p8_any_early", a0 | a1)
        p8_reason = r.reg("p8_reason_early", Mux(a0, r0, r1), 4)
        at_out("ip_part", r.fold2("p8_ip_part", p7_ip), 8)

        # ---- p9: the L4 fields -------------------------------------------------------------
        tcp8 = r.delay(p4_tcp, 4, "tcp_s4")
        l4c = Mux(tcp8, _be16(l4w, 16), _be16(l4w, 6))
        sport, dport = _be16(l4w, 0), _be16(l4w, 2)
        p9_nl4c = r.reg("p9_nl4c", ~l4c, 16)       # complemented: the adder is alone
        p9_ndport = r.reg("p9_ndport", ~dport, 16)
        at_out("key.src_port", sport, 8)
        at_out("key.dst_port", dport, 8)
        at_out("tcp_flags", Mux(tcp8, _byte(l4w, 13), 0), 8)
        at_out("l4_csum", l4c, 8)

        # ---- p10: ~L4 checksum + ~port; p11: + ~address words -------------------------
        p10_la = r.reg("p10_la", p9_nl4c + p9_ndport, 17)
        p11_l4 = r.reg("p11_l4", p10_la + r.delay(p5_nd, 5, "nd_s5"), 18)

        # ---- p12, p13: the L4 sum folded (the header sum: _header_sum_bad) -------------
        p12_l4 = r.fold1("p12_l4", p11_l4)
        at_out("l4_part", r.fold2("p13_l4_part", p12_l4), 13)

        # ---- out: the first failing check -------------------------------------------------
        early_any = r.delay(p8_any, _OUT - 8, "any_early_s8")
        early_reason = r.delay(p8_reason, _OUT - 8, "reason_early_s8")
        late_any = r.delay(a2, _OUT - 7, "any_late_s7")
        late_reason = r.delay(r2, _OUT - 7, "reason_late_s7")
        reason = Mux(early_any, early_reason,
                     Mux(p13_c8, Reason.BAD_IP_CHECKSUM,
                         Mux(late_any, late_reason, Reason.OK)))
        if self._challenge:
            self._challenge_fields(m, r, win, ipf, l4w, tcp8, at_out)

        valid = v0
        for s in range(_OUT + 1):
            valid_next = Signal(name=f"p{s + 1}_valid" if s < _OUT else "out_valid")
            m.d.sync += valid_next.eq(valid)
            valid = valid_next
        rec = Signal(layout, name="out", reset_less=True)
        m.d.sync += rec.reason.eq(reason)
        for name, sig in out.items():
            field = rec
            for part in name.split("."):
                field = getattr(field, part)
            m.d.sync += field.eq(sig)
        m.d.comb += [self.frame.valid.eq(valid), self.frame.payload.eq(rec)]
        return m

    @staticmethod
    def _header_sum_bad(r: _Regs, p1_w, tp: dict, p3_w) -> Signal:
        """Check 8 (p13): the IPv4 header's ones'-complement sum is not 0xFFFF. The
        header's words are summed where they are in the frame, each masked by whether it
        lies in ``l3 .. l3 + 4 * IHL``: the comparisons ``IHL > c`` of the three
        candidate IHL nibbles (bytes 14, 18, 22) in p2, the mask selected by the TPID
        flags in p3, the masked words in p4, summed in pairs in p5 and by a tree in
        p6 .. p10 (at most 30 non-zero words: 21 bits), folded twice in p11, p12."""
        def fb(v, i: int, n: int = 1):
            return v[8 * (i - _SUM_FIRST):8 * (i - _SUM_FIRST + n)]

        gt = {(t, c): r.reg(f"p2_ihl{t}_gt{c}", fb(p1_w, l3)[:4] > c)
              for t, l3 in enumerate(_L3) for c in range(15)}
        mask = []
        for i in range(_SUM_FIRST // 2, _SUM_END // 2):    # frame word i: bytes 2i, 2i+1
            per_tags = [gt[(t, (i - l3 // 2) // 2)] if 0 <= i - l3 // 2 < 30 else Const(0)
                        for t, l3 in enumerate(_L3)]        # header word i - l3 / 2
            mask.append(Mux(tp[12], Mux(tp[16], per_tags[2], per_tags[1]), per_tags[0]))
        p3_mask = r.reg("p3_hdr_mask", Cat(*mask))
        words = [r.reg(f"p4_hdr_word{i}", _be16(p3_w, 2 * i - _SUM_FIRST)
                       & p3_mask[i - _SUM_FIRST // 2].replicate(16))
                 for i in range(_SUM_FIRST // 2, _SUM_END // 2)]
        hs = [r.reg(f"p5_hsum{g}", words[2 * g] + words[2 * g + 1], 17)
              for g in range(len(words) // 2)]
        for st in range(6, 11):                             # 17 -> 9 -> 5 -> 3 -> 2 -> 1
            hs = r.sum_pairs(hs, f"p{st}_hsum")
        assert len(hs) == 1
        p12_h = r.fold2("p12_hsum", r.fold1("p11_hsum", hs[0]))
        return r.reg("p13_c8", p12_h != 0xFFFF)

    def _challenge_fields(self, m: Module, r: _Regs, win, ipf, l4w, tcp8, at_out) -> None:
        """The SYN-authentication fields of :func:`parse_layout`, beside the stages above
        (one carry chain per stage): the MACs (p1); the sequence number (p9); ``ch_ip``
        = fold(C_ip + address words) (p8) and ``ch_l4`` = fold(C_tcp + address words +
        ports) (p13), each folded twice (at most seven 16-bit terms: the second fold is
        exact)."""
        from .challenge import challenge_constants  # hdl.challenge imports this module

        _, c_ip, c_tcp = challenge_constants()
        at_out("macs", r.reg("p1_macs", win[:96]), 1)
        src, dst = _be32(ipf, 12), _be32(ipf, 16)   # p3
        p4_src = r.reg("p4_ch_src", src[16:] + src[:16], 17)
        p4_dst = r.reg("p4_ch_dst", dst[16:] + dst[:16], 17)
        p5_addr = r.reg("p5_ch_addr", p4_src + p4_dst, 18)
        p6_ip = r.reg("p6_ch_ip", p5_addr + c_ip, 19)
        p7_ip = r.fold1("p7_ch_ip", p6_ip)
        at_out("ch_ip", r.fold2("p8_ch_ip", p7_ip), 8)
        at_out("seq", Mux(tcp8, _be32(l4w, 4), 0), 8)
        p9_ports = r.reg("p9_ch_ports", _be16(l4w, 0) + _be16(l4w, 2), 17)
        p10_l4 = r.reg("p10_ch_l4", r.delay(p5_addr, 4, "ch_addr_s5") + p9_ports, 19)
        p11_l4 = r.reg("p11_ch_l4", p10_l4 + c_tcp, 20)
        p12_l4 = r.fold1("p12_ch_l4", p11_l4)
        at_out("ch_l4", r.fold2("p13_ch_l4", p12_l4), 13)
