"""Stream FIFOs whose every control signal is a register, for a 200 MHz clock.

:class:`amaranth.lib.fifo.SyncFIFOBuffered` derives ``w_rdy`` from its level counter
with a comparator and updates that counter from ``w_en`` and ``r_en`` through an adder:
four logic levels and 6.8 ns on ECP5 in this core. :class:`StreamFifo` keeps the
occupancy of its storage as a thermometer code, so "full" and "empty" are single
flip-flops and each occupancy bit changes from its two neighbours; the output is a
pair of registers refilled from the storage (a LUT RAM read asynchronously at a
registered pointer). It suits shallow queues (one 16-word LUT-RAM bank): a 64-word one
spent 6.5-7 ns in its LUT-RAM write and read paths. :class:`BlockRamFifo` is the deep
one: a block-RAM ring behind registers, feeding a shallow :class:`StreamFifo`.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .bram import check_size

__all__ = ["StreamFifo", "BlockRamFifo", "up_down_thermometer", "KEEP_HIERARCHY_ATTR"]

#: A signal carrying this attribute (in the Verilog, ``(* l4lb_keep_hierarchy = ... *)``)
#: makes the synthesis flow (``l4lb/synth/yosys.py``) keep its module a module of its
#: own. Every queue here is marked (and the rewriter): flattened into the datapath, abc
#: maps a queue's control logic for the depth of the design's longest paths and chained
#: three LUTs where one or two do (two of five seeds' worst paths on ECP5, 5.9 ns).
KEEP_HIERARCHY_ATTR = "l4lb_keep_hierarchy"

_STREAM_FIFO_LATENCY = 2


def up_down_thermometer(m: Module, n: int, up, down, name: str, reset=None,
                        enable=None) -> Signal:
    """A count ``0..n`` kept as a thermometer code ``t`` (``t[k]`` = "count > k"), one up
    on ``up``, one down on ``down``, unchanged on both. Each bit depends only on its two
    neighbours and the two events, so "count < K" is the single flip-flop ``~t[K - 1]``
    and no adder or comparator is needed (a 6-bit counter with a compare spent 4.9 ns
    on ECP5). With ``reset`` (a signal), the count is cleared by it instead of by the
    domain's reset. With ``enable``, a flip-flop the caller keeps equal to ``up ^ down``
    (registered from the events' own inputs), the bits' enable is that flip-flop rather
    than a LUT of the events."""
    t = Signal(n, name=name, reset_less=reset is not None)
    # the events enable the bits (one LUT of both), and `up` alone picks the direction
    # (both in the data input, an event that is a LUT itself reached the bits through two
    # more on ECP5)
    with m.If(up ^ down if enable is None else enable):
        m.d.sync += t.eq(Mux(up, Cat(Const(1, 1), t[:n - 1]), Cat(t[1:], Const(0, 1))))
    if reset is not None:
        with m.If(reset):
            m.d.sync += t.eq(0)
    return t


class StreamFifo(wiring.Component):
    """First-in first-out queue between two :mod:`amaranth.lib.stream` interfaces.

    ``w.ready`` and ``r.valid`` depend on neither ``w.valid`` nor ``r.ready`` in the same
    cycle. A word written in cycle ``c`` is on ``r`` from cycle ``c + latency``
    (``latency == 2``) if the queue was empty.

    The output is a pair of registers read alternately (``r.payload`` is a 2:1
    multiplexer whose select is a flip-flop, ``r.valid`` a flip-flop): ``r.ready`` only
    toggles that select and enters the occupancy flags, and the pair is refilled from the
    storage by enables that are flip-flops, so the consumer's ``ready`` has no fan-out
    into the payload registers. The refill decision is one function of ``w.valid``,
    ``r.ready`` and three flip-flops, and every flag's next state one of those and of a
    few flip-flops more.

    Parameters
    ----------
    width : int
        Payload width in bits.
    depth : int
        Words the queue must hold (at least 3); :attr:`capacity` is at least this (the
        storage is rounded up to a power of two).
    checked : bool
        Refuse writes while full (the default). With ``False`` the writer promises never
        to write while ``w.ready`` is low (a write then would overwrite a stored word);
        the write path is then a flip-flop away from the storage (used by
        :class:`BlockRamFifo`, whose reader reserves room before it reads).

    Members
    -------
    w : ``In(stream.Signature(width))``
        Write side.
    r : ``Out(stream.Signature(width))``
        Read side.
    w_ready_next : ``Out(1)``
        What ``w.ready`` will be in the next cycle, given this cycle's transfers: a writer
        can decide now, into a register, whether its next word fits (the core's learn
        events).
    """

    def __init__(self, width: int, depth: int, *, checked: bool = True):
        check_size("width", width, 1)
        check_size("depth", depth, 3)
        self._width = width
        self._depth = depth
        self._checked = bool(checked)
        self._abits = (depth - 2).bit_length()
        super().__init__({
            "w": In(stream.Signature(width)),
            "r": Out(stream.Signature(width)),
            "w_ready_next": Out(1),
        })

    @staticmethod
    def capacity_for(depth: int) -> int:
        """:attr:`capacity` of a queue built for ``depth`` words."""
        return (1 << (depth - 2).bit_length()) + 1

    @property
    def capacity(self) -> int:
        """Words a writer may keep outstanding (written, not yet read) and always find
        ``w.ready`` high: the storage (a power of two) plus one. The queue may hold one
        more word (the storage and both output registers full)."""
        return self.capacity_for(self._depth)

    @property
    def latency(self) -> int:
        """Cycles from a write into an empty queue to ``r.valid``."""
        return _STREAM_FIFO_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        n, W = 1 << self._abits, self._width
        mem = Memory(shape=W, depth=n, init=[])
        m.submodules.storage = mem
        wp = Signal(self._abits)
        rp = Signal(self._abits)
        do_write = Signal()
        load = Signal()  # = ld.any(), a flip-flop of its own for the occupancy update
        # occupancy of the storage: fill[i] = "more than i words stored"
        fill = up_down_thermometer(m, n, do_write, load, "fill")
        full = fill[n - 1]

        # the output pair: two buffers read alternately
        buf = [Signal(W, name=f"buf{k}", reset_less=True) for k in range(2)]

        # The pair is counted by `c`, the words in it plus the one being refilled in this
        # cycle (a thermometer: c1 = "c >= 1", c2 = "c == 2"); `rv` (= ``r.valid``) says a
        # word has landed. The refill "storage -> buf[wn]" is decided a cycle ahead, from
        # the next state, and registered one-hot per buffer (`ld`), so each buffer's load
        # enable (a fan-out of `width`) comes straight from a flip-flop. Every decision
        # reads ``r.ready`` and ``w.valid`` through one function of them and of
        # flip-flops (the refill was three LUT levels from ``r.ready`` on ECP5, 5.2 ns).
        pop = Signal()
        ld = Signal(2)
        c1 = Signal(name="c1")
        c2 = Signal(name="c2")
        rv = Signal(name="rv")
        wn = Signal(name="wn")      # the buffer the next refill goes to
        rsel = Signal(attrs={KEEP_HIERARCHY_ATTR: 1})  # the buffer r shows
        m.d.comb += [
            self.w.ready.eq(~full),
            do_write.eq(self.w.valid & ~full if self._checked else self.w.valid),
            self.r.valid.eq(rv),
            self.r.payload.eq(Mux(rsel, buf[1], buf[0])),
            pop.eq(rv & self.r.ready),
        ]
        # `avail`: the words stored and not being refilled (the count of `fill` less
        # `load`), its own thermometer, so the refill decision reads one flip-flop of it
        # (computed from `fill` and `load`, it was three LUT levels from ``w.valid``).
        # A refill is decided when the pair will have room and a word is stored or
        # written; with none, `avail` is 0 and a "down" leaves it 0, so `room` alone
        # counts it down (and its update is one LUT level from ``r.ready``).
        load_next = Signal()
        room = Signal(name="room")
        m.d.comb += room.eq(pop | ~c2)
        avail = up_down_thermometer(m, n, do_write, room, "avail")
        m.d.comb += load_next.eq((do_write | avail[0]) & room)
        # c - pop + load_next, and the words landed: c - pop
        m.d.sync += [
            c1.eq(c2 | (c1 & ~pop) | load_next),
            c2.eq((c2 & ~pop) | (((c2 & pop) | (c1 & ~c2 & ~pop)) & load_next)),
            rv.eq(c2 | (c1 & ~pop)),
            ld[0].eq(load_next & ~wn), ld[1].eq(load_next & wn),
            load.eq(load_next),
            wn.eq(wn ^ load_next),
            rsel.eq(rsel ^ pop),
        ]

        wr = mem.write_port()
        rd = mem.read_port(domain="comb")
        m.d.comb += [wr.addr.eq(wp), wr.data.eq(self.w.payload), wr.en.eq(do_write),
                     rd.addr.eq(rp)]
        with m.If(do_write):
            m.d.sync += wp.eq(wp + 1)
        with m.If(load):
            m.d.sync += rp.eq(rp + 1)
        for k in range(2):
            with m.If(ld[k]):
                m.d.sync += buf[k].eq(rd.data)

        # `fill` shifts up on a write alone, down on a refill alone
        up, down = do_write & ~load, load & ~do_write
        m.d.comb += self.w_ready_next.eq(~Mux(up, fill[n - 2], Mux(down, 0, full)))
        return m


class BlockRamFifo(wiring.Component):
    """A deep stream FIFO in block RAM whose every control path is one or two LUT levels.

    The storage is a ring of ``2**k`` words in block RAM, written through registers and
    read at a registered pointer, its data through the block RAM's output register and one
    fabric register (like :class:`~hdl.bram.PipelinedRam`), so no logic touches a
    block-RAM pin. Words read from the ring go into a small :class:`StreamFifo` (the
    *output queue*), which drives ``r``. The read side issues a ring read when the ring
    holds a word that is already written and the output queue will have room for it.

    The ring is read at ``rp`` in every cycle; a read in the cycle the same word is
    written happens only while the reader does not use it (a word is readable from the
    second cycle after its write on), so the value of such a read does not matter, and
    the synthesis flow says so to yosys (``RD_COLLISION_X_MASK`` in ``l4lb/synth/yosys.py``),
    which then needs no bypass multiplexer behind the block RAM.

    Counts are kept so that every decision is taken from flip-flops: the ring occupancy
    seen by the reader is a thermometer code updated from *registered* write/read
    events (one cycle late), and the exact "a word is readable now" test combines that
    code with the two registered events (:meth:`elaborate`). A thermometer's events
    drive every one of its ``2**k`` bits, so a ring of more than :attr:`THERMOMETER_MAX`
    words counts with pointer differences instead (registered subtractions, flags
    compared from them a cycle later, corrected by the events of the two cycles since);
    both make exactly the same decisions in every cycle. The writer's ``w.ready`` is
    derived from a count three cycles old, so it is conservative: it is low only if, three
    cycles earlier, the ring held more than ``capacity`` words. A writer that never has
    more than ``capacity`` words outstanding (as the core's credits guarantee) therefore
    always sees ``w.ready`` high.

    Parameters
    ----------
    width : int
        Payload width in bits.
    depth : int
        Words the queue must hold (at least 2); :attr:`capacity` is at least this.
    pointer_counts : bool, optional
        Count with pointer differences (True) or thermometer codes (False); by default
        pointers for rings of more than :attr:`THERMOMETER_MAX` words. The two are
        cycle-for-cycle identical on the ports (``tests/test_hdl_fifo.py``).
    ready_ahead : bool
        Add ``w_ready_ahead`` (without it the Verilog is what it was).
    issue_ahead : bool
        With thermometer counts only: decide the ring read a cycle ahead (``issue`` a
        flip-flop; without it the Verilog is what it was).
    late_reads : bool
        With pointer counts only: a word becomes readable two cycles later than it could
        (the reader ignores the last two cycles' writes), so "a word is readable" is one
        LUT of flip-flops. Words still leave one per cycle (the ring holds two more); the
        queue is no longer cycle-for-cycle the same as without it.
    checked : bool
        Refuse writes while ``w.ready`` is low (the default). With ``False`` the writer
        promises never to write then (as a writer gated by ``w_ready_ahead`` does), and
        a write is ``w.valid`` alone, one LUT level less on the write pointer's enable.

    Members
    -------
    w : ``In(stream.Signature(width))``
        Write side.
    r : ``Out(stream.Signature(width))``
        Read side (the output queue).
    w_ready_ahead : ``Out(1)``
        Only with ``ready_ahead``. A flip-flop: high only if a write in the *next* cycle
        is sure to find ``w.ready`` high (the ring count ``w.ready`` will use, a cycle
        earlier, compared with one word less), so a writer can fold it into a ready
        flip-flop of its own through one LUT (the frame datapath's ``s.ready``).
    """

    #: Cycles from the issue of a ring read to its word entering the output queue.
    _READ = 3
    #: Depth of the output queue (a single 16-word LUT-RAM bank on ECP5).
    _QUEUE = 16
    #: Largest ring counted with thermometer codes. A 512-word frame buffer's write
    #: event drove its 512-bit thermometer over 8.2 ns of routing on ECP5 (the W = 8
    #: datapath's critical path); pointer differences load an event with ~10 bits.
    THERMOMETER_MAX = 128

    def __init__(self, width: int, depth: int, *, pointer_counts: bool | None = None,
                 ready_ahead: bool = False, issue_ahead: bool = False,
                 late_reads: bool = False, checked: bool = True):
        check_size("width", width, 1)
        check_size("depth", depth, 2)
        self._width = width
        self._depth = depth
        self._abits = (depth + 3).bit_length()  # ring of 2**abits >= depth + 4 words
        self._pointers = ((1 << self._abits) > self.THERMOMETER_MAX
                          if pointer_counts is None else bool(pointer_counts))
        self._ahead = bool(ready_ahead)
        self._checked = bool(checked)
        self._issue_ahead = bool(issue_ahead) and not self._pointers
        self._late = bool(late_reads) and self._pointers
        super().__init__({
            "w": In(stream.Signature(width)),
            "r": Out(stream.Signature(width)),
        } | ({"w_ready_ahead": Out(1, init=1)} if self._ahead else {}))

    @staticmethod
    def capacity_for(depth: int) -> int:
        """:attr:`capacity` of a queue built for ``depth`` words."""
        return (1 << (depth + 3).bit_length()) - 4

    @property
    def capacity(self) -> int:
        """Words that may be outstanding with ``w.ready`` guaranteed high (see above)."""
        return self.capacity_for(self._depth)

    @property
    def latency(self) -> int:
        """Cycles from a write into an empty queue to ``r.valid``: the write registered
        and stored (2), seen by the reader (1, or 3 with ``late_reads``), read into the
        output queue (3), the queue (2)."""
        return 3 + 2 * self._late + self._READ + _STREAM_FIFO_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        n, ab, W = 1 << self._abits, self._abits, self._width
        queue = StreamFifo(W, self._QUEUE + 1, checked=False)
        m.submodules.queue = queue
        qcap = queue.capacity

        # ---- write side: registered into the ring (stored at the end of the next cycle)
        wp = Signal(ab)
        do_write = Signal()
        ready = Signal(init=1)  # registered, see the class docstring
        m.d.comb += [self.w.ready.eq(ready),
                     do_write.eq(self.w.valid & ready if self._checked else self.w.valid)]
        with m.If(do_write):
            m.d.sync += wp.eq(wp + 1)
        w_en_q = Signal()
        w_addr_q = Signal(ab, reset_less=True)
        w_data_q = Signal(W, reset_less=True)
        m.d.sync += [w_en_q.eq(do_write), w_addr_q.eq(wp), w_data_q.eq(self.w.payload)]
        # The ring's write enable is a copy of `w_en_q` of its own (a block-RAM pin per
        # column; the reset copy also feeds `settle`). It is
        # reset-less, which keeps yosys from merging the two: a write it carries over a
        # reset lands at a ring slot that is empty after the reset and is rewritten
        # before it is read again.
        ring_we = Signal(name="ring_we", reset_less=True)
        m.d.sync += ring_we.eq(do_write)

        # ---- the ring, in columns of at most 18 bits (true dual-port block RAMs)
        rp = Signal(ab, attrs={KEEP_HIERARCHY_ATTR: 1})
        cols = [(lo, min(18, W - lo)) for lo in range(0, W, 18)]
        words = []
        for c, (lo, w) in enumerate(cols):
            mem = Memory(shape=w, depth=n, init=[])
            m.submodules[f"ring_c{c}"] = mem
            wr = mem.write_port()
            rd = mem.read_port(domain="sync")
            m.d.comb += [wr.en.eq(ring_we), wr.addr.eq(w_addr_q), wr.data.eq(w_data_q[lo:lo + w]),
                         rd.addr.eq(rp)]
            words.append(rd.data)
        r_q = Signal(W, reset_less=True)    # the block RAM's output register
        r_qq = Signal(W, reset_less=True)   # a fabric register
        m.d.sync += [r_q.eq(Cat(*words)), r_qq.eq(r_q)]

        # ---- read side: events of the previous cycle, registered
        settle = Signal()   # a write presented two cycles ago is stored and readable now
        issue = Signal()    # the ring word at rp is read in this cycle
        s_q = Signal()      # settle, one cycle ago
        i_q = Signal()      # issue, one cycle ago
        m.d.sync += [settle.eq(w_en_q), s_q.eq(settle), i_q.eq(issue)]
        # readable now: the words settled up to the previous cycle, less those issued up
        # to the previous cycle, at least 1
        if self._pointers:
            readable = self._readable_from_pointers(m, ab, settle, s_q, i_q, rp, self._late)
        else:
            # avail: readable words not yet issued, one cycle late (it counts the events
            # up to two cycles ago), as a thermometer: avail[k] = "more than k words".
            # Decided a cycle ahead, `issue` lets its enable be a flip-flop too (from a
            # LUT of `s_q` and `i_q`, a 5.0 ns route to the far bits on ECP5).
            enable = None
            if self._issue_ahead:
                enable = Signal(name="avail_en")
                m.d.sync += enable.eq(settle ^ issue)   # = s_q ^ i_q
            avail = up_down_thermometer(m, n + 1, s_q, i_q, "avail", enable=enable)
            # readable now = avail + s_q - i_q >= 1
            readable = avail[1] | (avail[0] & ~(i_q & ~s_q)) | (~avail[0] & s_q & ~i_q)
        # ---- the word read arrives _READ cycles after its issue
        arrives = [issue]
        for k in range(self._READ):
            q = Signal(name=f"arrive_{k + 1}")
            m.d.sync += q.eq(arrives[-1])
            arrives.append(q)
        arrive = arrives[-1]
        # room in the output queue: words issued and not yet taken from `r`, counted
        # from registered events: the issues up to k_up + 1 cycles ago (`arrive_<k_up>`),
        # the takes up to two cycles ago. Issue only while that count is at most
        # qcap - k_up - 2: with an issue in each of the k_up + 2 cycles it has not seen,
        # the queue still holds at most qcap words (it never refuses one). The count
        # takes its issues from `arrive_2`, not `i_q` (k_up = 1): the ring's reader and
        # the queue may sit far apart on the die (a 4.4 ns route from `i_q` into `pend`),
        # and the arrive chain is a flip-flop hop between them.
        k_up = 2
        pop_q = Signal()
        room = Signal()
        pend = up_down_thermometer(m, qcap, arrives[k_up], pop_q, "pend")
        m.d.sync += [pop_q.eq(self.r.valid & self.r.ready),
                     room.eq(~pend[qcap - k_up - 2])]  # pend <= qcap - k_up - 2
        if not self._issue_ahead:
            m.d.comb += issue.eq(readable & room)
        else:
            # `issue` is a flip-flop, decided a cycle ahead: it moves `rp`, which sits by
            # the block RAMs (computed in its own cycle it reached `rp` over a 4.2 ns
            # route in the frame datapath on ECP5). `room` of the next cycle is
            # `room_ahead`, registered from the count's next state (from the count
            # itself, a 4.3 ns route into `issue` in the core on ECP5).
            # readable in the next cycle = avail' + settle - issue >= 1, where avail' is
            # the thermometer's next state (avail + s_q - i_q)
            up, down = s_q & ~i_q, i_q & ~s_q
            a0 = Mux(up, 1, Mux(down, avail[1], avail[0]))
            a1 = Mux(up, avail[0], Mux(down, avail[2], avail[1]))
            readable_next = a1 | (a0 & ~(issue & ~settle)) | (~a0 & settle & ~issue)
            K = qcap - k_up - 2
            up, down = arrives[k_up] & ~pop_q, pop_q & ~arrives[k_up]
            room_ahead = Signal(name="room_ahead", init=1)
            m.d.sync += [
                room_ahead.eq(~Mux(up, pend[K - 1], Mux(down, pend[K + 1], pend[K]))),
                issue.eq(readable_next & room_ahead),
            ]
        with m.If(issue):
            m.d.sync += rp.eq(rp + 1)

        m.d.comb += [queue.w.valid.eq(arrive), queue.w.payload.eq(r_qq)]
        wiring.connect(m, queue.r, wiring.flipped(self.r))

        # ---- write side's ready: the ring held at most n - 4 words three cycles ago, so
        # it holds at most n - 1 now and this write fits
        if self._pointers:
            # written and not yet issued up to two cycles ago: the pointers one cycle ago
            count = Signal(ab, name="count")
            m.d.sync += [count.eq(wp - rp), ready.eq(count < n - 3)]
            if self._ahead:
                m.d.sync += self.w_ready_ahead.eq(count < n - 4)
            return m
        wr_q = Signal()
        # `issue` one cycle ago, like `i_q`, but a flip-flop of its own: `i_q` already
        # drives the 2**k + 1 bits of `avail`. Reset-less (so that yosys does not merge
        # it with `i_q`): the one issue it may carry over a reset meets `count` at 0 and
        # no write (`wr_q` is reset), and a thermometer at 0 stays at 0.
        i_cnt = Signal(name="i_cnt", reset_less=True)
        m.d.sync += i_cnt.eq(issue)
        # written and not yet issued up to two cycles ago
        count = up_down_thermometer(m, n, wr_q, i_cnt, "count")
        m.d.sync += [wr_q.eq(do_write), ready.eq(~count[n - 4])]    # count < n - 3
        if self._ahead:
            m.d.sync += self.w_ready_ahead.eq(~count[n - 5])         # count < n - 4
        return m

    @staticmethod
    def _readable_from_pointers(m: Module, ab: int, settle, s_q, i_q, rp,
                                late: bool) -> Signal:
        """"A word is readable now" from pointer differences, for a deep ring.

        With ``a(c)`` = settles before cycle ``c`` less issues before ``c`` (what the
        thermometer's test computes), ``diff`` holds ``a(c - 1)`` and the flags ``a(c -
        2) >= 1, 2, 3``; ``a(c)`` is ``a(c - 2)`` plus the settles and less the issues of
        cycles ``c - 2`` and ``c - 1``, each a flip-flop. At most two issues can be
        subtracted, so ``a(c - 2) >= 3`` is readable whatever they were. With ``late``,
        the settles are left out: ``a(c - 2)`` less the two issues is at least 1 (a lower
        bound of ``a(c)``; the exact sum was four LUT levels into ``rp``'s enable, 5.2 ns
        on ECP5)."""
        sp = Signal(ab, name="settled")    # settles before this cycle
        diff = Signal(ab, name="avail")    # a(c - 1)
        ge = [Signal(name=f"avail_ge{k}") for k in (1, 2, 3)]   # a(c - 2) >= k
        s2, i2 = Signal(name="s_qq"), Signal(name="i_qq")       # events of cycle c - 2
        with m.If(settle):
            m.d.sync += sp.eq(sp + 1)
        m.d.sync += [diff.eq(sp - rp), s2.eq(s_q), i2.eq(i_q)]
        m.d.sync += [ge[k - 1].eq(diff >= k) for k in (1, 2, 3)]
        if late:
            return ge[2] | (ge[1] & ~(i_q & i2)) | (ge[0] & ~i_q & ~i2)
        # a(c) >= 1 for a(c - 2) in {0, 1, 2}: a(c) - 1 is in -3..3, and its sign bit
        # decides (no comparison of unequal widths, which Verilator -Wall flags)
        a2 = Mux(ge[1], 2, Mux(ge[0], 1, 0))
        a_less_1 = Signal(signed(4), name="avail_less_1")
        m.d.comb += a_less_1.eq(a2 + s_q + s2 - i_q - i2 - 1)
        return ge[2] | ~a_less_1[3]
