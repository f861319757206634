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

    in    a register pair each for ``rec`` and ``dec``, read alternately: ``rec.ready``,
          ``dec.ready`` flip-flops
    rec, dec  register pairs again (the join's)
    join  record (+ decision) taken from their heads when ``go`` (a flip-flop, decided a
          cycle ahead from the pairs' next state and the verdict credit) is high
    c1    registered; drop / rewrite decided
    c2    new address and port words added pairwise; L3 offset
    c3    the sums complete; L4 offset
    c4    sums folded once; patch offsets
    c5    folded again; each patch's beat index and lane
    c6    the verdict: new checksums complemented, patches -> verdict queue (StreamFifo)
    v2    the verdict of the frame whose beats pass (the head of a register pair
          behind the queue), released with its last beat
    read  a beat taken from the frame buffer (through a register pair) while the output
          queue has credit (``ocredit``, a flip-flop; a dropped frame needs none)
    r     the beat registered with, per patch, whether it lands in this beat
    h     the beat registered again with, per patch, the lanes it replaces in it (r
          sits by the read logic, h by the lanes)
    p     per lane: replaced or not, and the value
    o     the output beat (the patched beat, or a challenge reply's) -> output queue
    m     the output queue (StreamFifo) drives ``m``

c1..c6 and r, h, p, o are free-running, one carry chain or about two LUT levels per stage
(the first version added three words and folded twice in one stage: with the parser,
the datapath made 94.7 MHz on ECP5; the beat stage then patched the lanes with five
cascaded multiplexers behind a beat-index compare, and ``m.ready`` reached the frame
buffer, the verdict queue and the record queue through the read handshake). The
verdict credit bounds the verdicts joined and not yet taken by v2 by the verdict
queue's capacity, ``ocredit`` the beats read and not yet taken from ``m`` by the output
queue's, both from registered events (as the core's credits), so ``m.ready`` has no
combinational path into ``beats.ready``, ``rec.ready`` or ``dec.ready``, and no queue
ever refuses a word.

Backpressure on ``m`` stops the beat reads once the output queue's credit is used up;
nothing is lost or reordered. With ``m`` always ready a frame of ``k`` beats takes
``k`` cycles, one-beat frames one per cycle.
"""

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.layout import Action

from .challenge import CHALLENGE_LAYOUT, ChallengeBeats, reply_length
from .fifo import KEEP_HIERARCHY_ATTR, StreamFifo, up_down_thermometer
from .pairs import full_next, held_next, pair_stage, register_pair
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

#: Cycles from a record (and decision) offered on ``rec`` (``dec``) to the first beat on
#: ``m`` when the beats are there and ``m`` is ready: the two register pairs (2), c1..c6,
#: the verdict queue (2), v2, r, h, p, o, the output queue (2).
REWRITE_LATENCY = 17

_PATCHES = 5
#: Verdicts the queue between the verdict pipeline and the beat stage holds.
_VQ_DEPTH = 17
#: Beats the output queue (between the patch stages and ``m``) holds.
_OQ_DEPTH = 17


def _join_ahead(m: Module, rec_valid, rec_core, dec_valid, credit_next) -> tuple:
    """The join of the ``rec`` and ``dec`` register pairs (:func:`register_pair`),
    decided a cycle ahead. Returns ``(go, dpop, hc)``, flip-flops: ``go`` takes the head record,
    ``dpop`` (``go & hc``) the head decision, and ``hc`` is the head record's ``core``
    bit. ``go`` is high exactly when the pairs hold a record and, if its ``core`` bit is
    set, a decision, and ``credit_next`` was high in the cycle before.

    ``rec_valid`` and ``dec_valid`` are the pairs' input ``valid`` (copies of their own,
    from :func:`pair_stage`), ``rec_core`` the ``core`` bit of the record offered. The
    pairs' flags are followed here by copies of their own (a flag feeds itself back, so
    yosys keeps each copy), fed from those and this join's decisions alone, so the
    decision's every input is a flip-flop with no other far load.

    (Decided in its own cycle from the pairs' flags and their head's ``core`` bit, the
    join was three LUT levels into every pointer and flag of both pairs: the W = 8
    datapath's critical path on 4 of 5 seeds, 5.5-6.3 ns on ECP5. Decided a cycle ahead
    from those same flags, which also enable the slots and drive ``ready``, the placer
    put its logic between the two, 6.7 ns; from the queues' ``valid``, 6.3 ns.)"""
    go = Signal(name="join_go")
    dpop = Signal(name="join_dpop")     # = go & hc
    rv = Signal(name="join_rv")         # rec holds a record
    rf = Signal(name="join_rf")         # rec holds two
    dv = Signal(name="join_dv")         # dec holds a decision
    df = Signal(name="join_df")         # dec holds two
    hc = Signal(name="join_hc", reset_less=True)  # the head record's core bit (rv)
    sc = Signal(name="join_sc", reset_less=True)  # the second record's (rf)
    rv_n, rf_n, dv_n, df_n, hc_n = (Signal(name=f"join_{n}_next")
                                    for n in ("rv", "rf", "dv", "df", "hc"))
    m.d.comb += [
        rv_n.eq(held_next(rv, rf, rec_valid, go)),
        rf_n.eq(full_next(rv, rf, rec_valid, go)),
        dv_n.eq(held_next(dv, df, dec_valid, dpop)),
        df_n.eq(full_next(dv, df, dec_valid, dpop)),
        # a pop moves the second record (or the one arriving) to the head
        hc_n.eq(Mux(go, Mux(rf, sc, rec_core), Mux(rv, hc, rec_core))),
    ]
    go_n = credit_next & rv_n & (~hc_n | dv_n)
    m.d.sync += [rv.eq(rv_n), rf.eq(rf_n), dv.eq(dv_n), df.eq(df_n), hc.eq(hc_n),
                 go.eq(go_n), dpop.eq(go_n & hc_n)]
    with m.If(~rf):
        m.d.sync += sc.eq(rec_core)
    return go, dpop, hc


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
        Pulses (a flip-flop) two cycles after a frame's last beat was read from the
        buffer; ``frame_dropped`` and ``frame_rewritten`` say what became of it (for
        counters and credits).
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
        # a patch: where (`at`: whether it applies and its beat, what the beat read
        # decides on) and what (`p`: the lanes and the value)
        at_layout = data.StructLayout({"en": 1, "beat": range(nb + 1)})
        patch_layout = data.StructLayout({"lane": W // 2, "value": 16})
        ch = self._challenge
        _VERDICT = data.StructLayout({"drop": 1, "rw": 1,
                                      "at": data.ArrayLayout(at_layout, _PATCHES),
                                      "p": data.ArrayLayout(patch_layout, _PATCHES)}
                                     | ({"ch": 1, "tags": 2, "reply": CHALLENGE_LAYOUT}
                                        if ch else {}))

        # ---- join: record and decision taken while the verdict queue has credit ---------
        # The verdict is computed in a free-running pipeline (one carry chain per stage)
        # and queued; the credit bounds what is in the pipeline and the queue by the
        # queue's capacity, so the queue never refuses a word and `m.ready` has no path
        # into `rec.ready` / `dec.ready`.
        vq = StreamFifo(_VERDICT.size, _VQ_DEPTH, checked=False)
        m.submodules.verdict_queue = vq
        cap = vq.capacity
        # The inputs pass a register pair each first (`rec_in`, `dec_in`), so what the
        # join decides on a cycle ahead (the `valid` and the `core` bit arriving at the
        # join's pairs) comes from flip-flops beside it, not from the queues behind it
        # (from the core's decision queue, a 3.8 ns route into the join on ECP5).
        rec_in, rec_in_valid = pair_stage(m, self.rec, record_layout(ch), "rec_in",
                                      fast=("core",))
        dec_in, dec_in_valid = pair_stage(m, self.dec, dest_layout(ch), "dec_in")
        rec_valid, rec, rec_pop, _, _ = register_pair(m, rec_in, record_layout(ch), "rec",
                                                      fast=("drop",))
        dec_valid, dec, dec_pop, _, _ = register_pair(m, dec_in, dest_layout(ch), "dec",
                                                      fast=("action",))
        credit_next = Signal()
        go, dpop, hc = _join_ahead(m, rec_in_valid, record_layout(ch)(rec_in.payload).core,
                                   dec_in_valid, credit_next)
        m.d.comb += [rec_pop.eq(go), dec_pop.eq(dpop)]
        go_q = Signal()
        pop_q = Signal()
        # joined and not yet popped from the queue, counted from registered events (one
        # cycle late); the credit: at most cap - 3 two cycles ago, so at most cap after
        # this cycle's join (as the core's credits, hdl/core.py). The pops are registered
        # twice: the queue's reader and the join sit apart on the die (a 4.3 ns route
        # from `pop_q` into the count on ECP5); a pop counted late only makes the count
        # larger.
        pop_qq = Signal()
        outstanding = up_down_thermometer(m, cap, go_q, pop_qq, "verdicts")
        m.d.sync += [go_q.eq(go), pop_q.eq(vq.r.valid & vq.r.ready), pop_qq.eq(pop_q)]
        # the credit of the next cycle: at most cap - 3 outstanding now
        m.d.comb += credit_next.eq(~outstanding[cap - 3])

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
            c1.drop.eq(rec.drop | (hc & drop_action)),
            c1.rw.eq(~rec.drop & hc & (dec.action == Action.LB)),
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
        # c5_l4 == 0xFFFF (the new L4 checksum is 0), decided from c4: c4_l4 is at most
        # 0xFFFF + 3, so the fold wraps to 0xFFFF only from c4_l4 == 0xFFFF (compared in
        # c6, the 16-bit compare and the UDP substitution were a 5.4 ns path on ECP5)
        c5_l4_ones = Signal(reset_less=True)
        m.d.sync += c5_l4_ones.eq(c4_l4 == 0xFFFF)
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
        m.d.comb += l4_val.eq(Mux(~c5.tcp & c5_l4_ones, 0xFFFF, l4_new))
        values = [ip_new, c5.ip[16:], c5.ip[:16], c5.port, l4_val]
        ens = [c5.rw] * 4 + [c5.rw & (c5.tcp | ~c5.udp_zero)]
        c6_valid = Signal()
        c6 = Signal(_VERDICT, reset_less=True)
        m.d.sync += [c6_valid.eq(c5_valid), c6.drop.eq(c5.drop), c6.rw.eq(c5.rw)]
        for k in range(_PATCHES):
            m.d.sync += [c6.at[k].en.eq(ens[k]), c6.at[k].beat.eq(c5_beat[k]),
                         c6.p[k].lane.eq(c5_lane[k]), c6.p[k].value.eq(values[k])]
        m.d.comb += [vq.w.valid.eq(c6_valid), vq.w.payload.eq(c6)]
        if ch:
            self._challenge_verdict(m, go, rec, dec, nxt, c6)

        # ---- v2: the verdict of the frame whose beats pass now: the head of a register
        # pair behind the verdict queue, popped with the frame's last beat ---------------
        v2_valid, v2, v2_pop, _, _ = register_pair(
            m, vq.r, _VERDICT, "v2", fast=("drop", "rw", "at") + (("ch", "tags") if ch else ()),
            heads=("drop",))

        # ---- read: beats taken from the buffer while the output queue has credit (a
        # dropped frame's beats need none); `ocredit` is a flip-flop, so `m.ready` has no
        # combinational path into the frame buffer or the verdicts ------------------------
        oq = StreamFifo(beat_layout(W).size, _OQ_DEPTH, checked=False)
        m.submodules.output_queue = oq
        ocap = oq.capacity
        # the rewriter is kept a module of its own in synthesis (the attribute, see
        # hdl/fifo.py): flattened into the datapath, abc mapped this read and the pairs'
        # flags behind it in three LUT levels where two do (5.8 ns on ECP5)
        ocredit = Signal(init=1, attrs={KEEP_HIERARCHY_ATTR: 1})
        b_valid, beat, b_pop, _, b_pop_slots = register_pair(
            m, self.beats, beat_layout(W), "beat", fast=("last",), heads=("last",),
            pop_slots=True)
        ob = Signal(range(nb + 1))           # beat index in the frame, saturating at nb
        # `consume` is kept a net of its own (a LUT of four flip-flops), so the beat pair's
        # flags are one LUT behind it: left to abc, the pair's `held` flag was built from
        # the head's refill enable (`pop | ~held`), three LUT levels from `held`, 5.3 ns
        # on ECP5
        consume = Signal(attrs={"keep": 1})
        # `done` is kept a net of its own (a LUT of five flip-flops), so what it drives (the
        # verdict pair's pointers, flags and slot enables) is one LUT further: left to
        # abc, `consume` and `done` were two LUTs before those, 5.8-6.0 ns on ECP5. It
        # reads a copy of `ocredit` (reset-less, so yosys keeps it apart), so abc cannot
        # build it from `consume`'s LUT: that was a LUT and a 0.7-0.9 ns route more,
        # 5.1-5.2 ns on ECP5. The two agree whenever a beat is held: after a reset the
        # beat pair is empty for a cycle, and from the next the copy has the count's.
        # The beat pair's slot enables read `consume` computed apart (`b_pop_slots`, see
        # `register_pair`) from a third copy of `ocredit` (power-on value 0, which keeps
        # yosys from merging it with `ocredit_d`; no beat is held in the first cycle).
        ocredit_d = Signal(name="ocredit_d", init=1, reset_less=True)
        ocredit_s = Signal(name="ocredit_s", init=0, reset_less=True)
        done = Signal(attrs={"keep": 1})
        emit = Signal()

        def read_with(credit):
            """The beat read (a beat and its verdict held, and room or a drop), decided
            from one of the copies of `ocredit`."""
            return b_valid & v2_valid & (v2.drop | credit)

        m.d.comb += [
            consume.eq(read_with(ocredit)),
            b_pop.eq(consume),
            b_pop_slots.eq(read_with(ocredit_s)),
            done.eq(read_with(ocredit_d) & beat.last),
            v2_pop.eq(done),
        ]
        with m.If(consume):
            m.d.sync += ob.eq(Mux(beat.last, 0, Mux(ob == nb, nb, ob + 1)))
        # registered by the read, then once more to travel to the datapath's credit
        # count and counters (one flip-flop by the read logic: a 2.5 ns route ended at
        # `frame_done` placed by its loads)
        outcome = [Signal(name=f"{n}_q") for n in ("done", "dropped", "rewritten")]
        m.d.sync += [outcome[0].eq(done), outcome[1].eq(done & v2.drop),
                     outcome[2].eq(done & v2.rw),
                     self.frame_done.eq(outcome[0]), self.frame_dropped.eq(outcome[1]),
                     self.frame_rewritten.eq(outcome[2])]
        if ch:
            past = Signal()     # beyond the reply's last beat: consumed, not sent
            m.d.comb += [
                past.eq(Cat(*((v2.tags == t) & (ob > (reply_length(t) - 1) // W)
                              for t in range(3))).any() | (v2.tags == 3)),
                emit.eq(consume & ~v2.drop & ~(v2.ch & past)),
            ]
        else:
            m.d.comb += emit.eq(consume & ~v2.drop)

        # r: the beat and, per patch, whether it lands in this beat (its lanes, its value)
        r_valid = Signal()      # = emit, registered
        r_beat = Signal(beat_layout(W), name="r_beat", reset_less=True)
        # (the lanes are gated by `here` in h: gated here, the compare drove the reset
        # pins of r_sel through a third LUT). `here` = the patch's enable and its beat
        # index equal to `ob`, registered as the enable and the compare in groups of up
        # to four bits, ANDed in h's lane select (the whole compare, behind the pair's
        # read multiplexer, was three LUT levels, 5.05 ns on ECP5)
        groups = [(lo, min(lo + 4, len(ob))) for lo in range(0, len(ob), 4)]
        r_here = [[Signal(name=f"r_here{k}_en", reset_less=True)]
                  + [Signal(name=f"r_here{k}_eq{g}", reset_less=True)
                     for g in range(len(groups))] for k in range(_PATCHES)]
        r_lane = [Signal(W // 2, name=f"r_lane{k}", reset_less=True) for k in range(_PATCHES)]
        r_val = [Signal(16, name=f"r_val{k}", reset_less=True) for k in range(_PATCHES)]
        m.d.sync += [r_valid.eq(emit), r_beat.eq(beat)]
        for k in range(_PATCHES):
            m.d.sync += [r_here[k][0].eq(v2.at[k].en),
                         r_lane[k].eq(v2.p[k].lane), r_val[k].eq(v2.p[k].value)]
            m.d.sync += [r_here[k][1 + g].eq(v2.at[k].beat[lo:hi] == ob[lo:hi])
                         for g, (lo, hi) in enumerate(groups)]
        # outstanding: beats emitted and not yet taken from `m`, counted from registered
        # events like the verdict credit above (takes registered twice, as its pops).
        # A beat is counted as it is written into the output queue (`o_valid`, defined
        # below), so the count sits by the queue (counted from `r_valid`, a 3.8 ns route
        # on ECP5); that is four cycles after its read, so the credit is "at most cap - 6
        # a cycle ago": five reads may not be counted yet, and with this one, cap.
        otake_q = Signal()
        otake_qq = Signal()
        o_valid = Signal()
        out_n = up_down_thermometer(m, ocap, o_valid, otake_qq, "out_beats")
        m.d.sync += [otake_q.eq(oq.r.valid & oq.r.ready), otake_qq.eq(otake_q),
                     *(c.eq(~out_n[ocap - 6]) for c in (ocredit, ocredit_d, ocredit_s))]

        # h: r registered once more (each patch's lanes where it lands in this beat), so
        # r sits by the beat read and h travels to the lanes (r_sel, placed by the lanes
        # it fed, ended a 2.8 ns route)
        h_valid = nxt(r_valid, "h_valid")
        h_beat = nxt(r_beat, "h_beat")
        h_sel = [Signal(W // 2, name=f"h_sel{k}", reset_less=True) for k in range(_PATCHES)]
        m.d.sync += [h_sel[k].eq(Mux(Cat(*r_here[k]).all(), r_lane[k], 0))
                     for k in range(_PATCHES)]
        h_val = [nxt(x, f"h_val{k}") for k, x in enumerate(r_val)]

        # p: per lane, whether a patch lands there and its value (patches never share a
        # lane of a beat)
        p_valid = Signal()
        p_beat = Signal(beat_layout(W), name="p_beat", reset_less=True)
        p_en = Signal(W // 2, name="p_en", reset_less=True)
        p_val = [Signal(16, name=f"p_val{j}", reset_less=True) for j in range(W // 2)]
        m.d.sync += [p_valid.eq(h_valid), p_beat.eq(h_beat)]
        for j in range(W // 2):
            m.d.sync += [
                p_en[j].eq(Cat(*(h_sel[k][j] for k in range(_PATCHES))).any()),
                p_val[j].eq(functools.reduce(operator.or_, (
                    h_val[k] & h_sel[k][j].replicate(16) for k in range(_PATCHES)))),
            ]
        # o: the patched beat (or the reply's), into the output queue
        patched = Cat(*(Mux(p_en[j], Cat(p_val[j][8:], p_val[j][:8]),
                            p_beat.data[16 * j:16 * j + 16]) for j in range(W // 2)))
        o = Signal(beat_layout(W), name="o", reset_less=True)
        m.d.sync += o_valid.eq(p_valid)
        if ch:
            # the reply's beat, from the registered verdict fields and beat index
            r_ch = Signal(name="r_ch", reset_less=True)
            r_reply = Signal(CHALLENGE_LAYOUT, name="r_reply", reset_less=True)
            r_index = Signal(8, name="r_index", reset_less=True)
            m.d.sync += [r_ch.eq(v2.ch), r_reply.eq(v2.reply), r_index.eq(ob)]
            h_ch, h_reply, h_index = (nxt(r_ch, "h_ch"), nxt(r_reply, "h_reply"),
                                      nxt(r_index, "h_index"))
            m.submodules.reply = reply = ChallengeBeats(W)
            m.d.comb += [reply.fields.eq(h_reply), reply.index.eq(h_index),
                         reply.beat_in.eq(h_beat.data)]
            p_ch = Signal(name="p_ch", reset_less=True)
            p_reply = Signal(beat_layout(W), name="p_reply", reset_less=True)
            m.d.sync += [p_ch.eq(h_ch), p_reply.data.eq(reply.data),
                         p_reply.keep.eq(reply.keep), p_reply.last.eq(reply.last)]
            m.d.sync += [o.data.eq(Mux(p_ch, p_reply.data, patched)),
                         o.keep.eq(Mux(p_ch, p_reply.keep, p_beat.keep)),
                         o.last.eq(Mux(p_ch, p_reply.last, p_beat.last))]
        else:
            m.d.sync += [o.data.eq(patched), o.keep.eq(p_beat.keep), o.last.eq(p_beat.last)]
        m.d.comb += [oq.w.valid.eq(o_valid), oq.w.payload.eq(o)]
        wiring.connect(m, oq.r, wiring.flipped(self.m))
        # for tests: the join taken a cycle ahead and what it equals in its own cycle
        # (tests/test_hdl_rewriter.py); no logic
        self._probes = {"go": go, "rec_valid": rec_valid, "rec_core": rec.core,
                        "dec_valid": dec_valid, "verdicts": outstanding, "cap": cap}
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
        m.d.sync += [c6.ch.eq(c5x.ch), c6.tags.eq(c5x.f.tags), c6.reply.eq(c5x.f),
                     c6.reply.tcp_csum.eq(~c5_s)]
