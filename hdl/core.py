"""The data-plane core: one packet decision per clock, bit-exact with the model.

Pipeline (``R = hash_stages``; stage ``k`` is the ``k``-th register after the input). It is
free-running: no stage ever holds, a slot is a packet, a write or a bubble. Every
block RAM is a :class:`~hdl.bram.PipelinedRam`: its address, write enable and write
data come straight from flip-flops and its data go through its output register and one
more flip-flop before any logic (4 cycles)::

    input         payloads and transfer flags registered as they are
    stage 0       VipTable compare, HashUnit key in                  | vip writes
    stage 4       VipTable result; VipState read                     | vip_state writes
    stage 6       VipState result
    stage R       ConnTable access                                   | conn writes
    stage X-1     RECORD / FLIP candidates (VIP packet and its phase)
    stage X=R+7   ConnTable result; Bloom test (read) or set (write) | transit writes
    stage B=X+4   Bloom bits; transit_hit, version
    stage A=B+1   MaglevLookup (slot_map, maglev, dip; 15 cycles)    | slot_map/maglev/dip writes
    stage D=A+15  MaglevLookup result -> decision
    retire        decision register -> decision FIFO, learn FIFO push, counters

Streams follow :mod:`amaranth.lib.stream` transfer rules: a transfer happens in a
cycle where ``valid`` and ``ready`` are both high; a source must not wait for ``ready``
before asserting ``valid``, and once ``valid`` is high it keeps the payload stable until
the transfer. The core's ``ready`` outputs do not depend on the same stream's ``valid``.

**Writes are pipeline slots.** The two inputs ``pkt`` and ``wr`` are merged into one
sequence of *ops*: each cycle at most one op is accepted, and a waiting write wins over
a waiting packet (control-plane writes are rare and must not starve under line-rate
traffic; ``pkt.ready = credit & ~wr.valid``, ``wr.ready = 1``; a control-plane
read, with a ``[lifecycle]``, also goes before a packet). A write op travels down
the pipeline like a packet and is applied when it reaches the stage where its memory is
read. Hence every packet accepted before the write sees the old word and every packet
accepted after it sees the new word -- exactly the model's semantics of a write between
two packets, without draining the pipeline. Within one stage a memory is read by at most
one op per cycle, so "lookup and write of the same word in the same cycle" cannot happen.
The TransitTable bits are read and written in the same stage ``X``: an op there tests its
bits (FLIP-phase miss), sets them (RECORD-phase miss) or is a control write, never two
of these, so each memory needs one address per cycle and every test sees the bits set
by all earlier packets, with no bypass. Every block RAM's read and write share one
address (the write's in a write slot, whose lookup result is unused), so that the block
RAM's own read-before-write mode gives this ordering.

**Backpressure** uses credits and an output FIFO instead of a stall: decisions retire
into a FIFO (:class:`~hdl.fifo.BlockRamFifo`) of ``output_fifo_depth`` entries regardless
of ``dec.ready``; a counter holds the packets accepted and not yet taken from ``dec``, and
``pkt.ready`` is low unless that count was at most ``output_fifo_depth - 3`` two cycles
earlier (a registered flag fed by registered events, so neither a comparator nor an
adder sits behind ``dec.ready`` or ``pkt.valid``; the count grows by at most one per
cycle), so the FIFO never overflows,
nothing is lost or duplicated, and decisions stay in order. Without backpressure the
count settles about ``latency`` (below ``output_fifo_depth - 3``; a take from ``dec``
is counted two cycles after it) and the input never
stalls. ``dec.ready`` only reaches the FIFO read and the counter.

**The connection lifecycle** (a config with a ``[lifecycle]``; the stages are
:class:`~hdl.lifecycle.LifecycleStages`): the
activity bits ``act<i>`` are set, written and read in stage ``X``; SYN authentication
(HalfSipHash from stage 0, the verified-source table with its verdict at stage ``L = 27``)
moves the TransitTable behind the verdict, to ``XT = L + 1``, and everything after it by
``XT - X`` stages (latency 59 for every ``hash_stages``, instead of 41 with 3). A control-plane
*read* (``rd`` stream) is an op like a write: it waits behind a waiting write, wins over a
waiting packet, reads its word in the stage where the data plane changes it, and its
answer leaves on ``rdata`` in op order, ``latency`` cycles after it was accepted (with
credits and a FIFO like the decisions). Without a ``[lifecycle]`` none of this exists
and the ports, memory map and Verilog are those of format 1.

**The network table** (a config with a ``[network]``; the stages are
:class:`~hdl.core_network.NetworkStages`, the tables :mod:`hdl.network`): the return
path's ``rev`` keys are matched in parallel (registers) against every packet's source at
stage ``D - rev.latency``, so the lowest matching word and its VIP (read from a block RAM)
arrive at the decision stage ``D``, where a packet that matched no VIP becomes
``REVERSE``. After ``D`` every decision is registered once more (its destination chosen:
the DIP for LB, the client for CHALLENGE, the packet's destination otherwise) and
routed by a longest-prefix match over the ``route`` registers (``RouteTable``,
``3 + ceil(log2 route_capacity)`` cycles) before it retires: ``route_hit``, ``route``,
``port`` (0 for DROP, VERIFY, UNVERIFIED and without a route). Writes to ``rev`` land at
the ``rev`` lookup stage and writes to ``route`` at the decision stage, so both keep the
ordering above. ``port_mac`` and the routes' next-hop MACs are in the write map but not
kept: the decision does not need them. Latency grows by ``1 + route latency`` (8 for 16
routes); the counters count a REVERSE decision as a packet, not as a VIP hit.

**Learn events** (``key``, ``vip_id``, ``version`` of each decision with ``learn = 1``) are
pushed into a FIFO of at least ``learn_fifo_depth`` entries (a
:class:`~hdl.fifo.StreamFifo`, whose storage is a power of two plus its output
register) one cycle after the decision retires; when it is full the event is dropped and
``counters.learn_drops`` increments (the decision still says ``learn = 1``).
"""

from collections.abc import Mapping, Sequence

from amaranth.hdl import Cat, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from model.config import Config
from model.layout import Action, Phase, memory_specs
from model.pipeline import TCP_FIN, TCP_RST

from .bram import RAM_LATENCY
from .conntable import ConnTable
from .core_network import NetworkStages
from .fifo import BlockRamFifo, StreamFifo, up_down_thermometer
from .hash_unit import HashUnit
from .layouts import (
    counters_layout,
    decision_layout,
    learn_layout,
    memory_map,
    packet_layout,
    rdata_layout,
    read_layout,
    stage_bits,
    write_layout,
)
from .lifecycle import LifecycleStages, Pipe
from .maglev import MAGLEV_MEMS, MaglevLookup
from .network import MAX_REV_ENTRIES, MAX_ROUTE_ENTRIES
from .transit import TransitBits
from .vip_table import VipState, VipTable

__all__ = ["L4LBCore", "DEFAULT_HASH_STAGES", "split_counter"]

#: Default register stages of the hash unit: with 3, each XOR level has a fan-in of 4
#: (one LUT4), which the ECP5 place-and-route needs (docs/synth.md: the sweep).
DEFAULT_HASH_STAGES = 3

_VIP_LAT = 4      # VipTable: pair compare, groups, entry match, priority
_STATE_LAT = 2    # VipState: 4:1 per group, group
_CONN_LAT = RAM_LATENCY + 3        # ConnTable: block RAM, 2 compare stages, priority
_TRANSIT_LAT = RAM_LATENCY         # TransitBits: block RAM
_MAGLEV_LAT = 3 * RAM_LATENCY + 3  # MaglevLookup: input regs, 3 block RAMs, add, bank
_FIFO_LAT = 8     # BlockRamFifo: write to r.valid
#: Cycles from the hash result (stage R) to ``dec.valid``: conn, Bloom test, version
#: resolution (1), Maglev, decision register (1), the input and accept registers (2)
#: and the output FIFO.
_TAIL = _CONN_LAT + _TRANSIT_LAT + 1 + _MAGLEV_LAT + 1 + 2 + _FIFO_LAT


def split_counter(m: Module, out, inc, name: str, domain: str = "sync") -> None:
    """``out`` counts the cycles with ``inc`` high, two cycles late, as two halves: the
    carry from the low half is registered before the high half adds it, and the low
    half is shown one cycle late to match, so the value read is always exact (a 48-bit
    carry chain whose first flip-flop the placer put 2 ns away missed 200 MHz). The
    registers are in clock domain ``domain``."""
    w = len(out)
    h = w // 2
    lo = Signal(h, name=f"{name}_lo")
    lo_q = Signal(h, name=f"{name}_lo_q")
    hi = Signal(w - h, name=f"{name}_hi")
    carry = Signal(name=f"{name}_carry")
    with m.If(inc):
        m.d[domain] += lo.eq(lo + 1)
    # "lo is all ones" in two LUT levels, not three: the upper bits of lo are tested a
    # cycle early, into `upper`. Those bits only change in a cycle after the lower
    # eight wrapped to zero, and then the lower bits' test is false anyway.
    if h > 8:
        upper = Signal(name=f"{name}_lo_upper")
        m.d[domain] += upper.eq(lo[8:].all())
        lo_all = lo[:8].all() & upper
    else:
        lo_all = lo.all()
    m.d[domain] += [carry.eq(inc & lo_all), lo_q.eq(lo)]
    with m.If(carry):
        m.d[domain] += hi.eq(hi + 1)
    m.d.comb += out.eq(Cat(lo_q, hi))


def _local_reset(m: Module, name: str) -> Signal:
    """The domain's reset registered in a flip-flop of its own, for flip-flops the
    placer puts away from the reset's other loads: the output-credit count, cleared by
    the core's reset itself, was a 4.6 ns route from the datapath's reset register on
    ECP5. The count leaves the reset a cycle after the rest, while nothing is taken."""
    r = Signal(name=name, init=1, reset_less=True)
    m.d.sync += r.eq(ResetSignal())
    return r


class L4LBCore(wiring.Component):
    """Stateful L4 load-balancer data plane (see the module docstring for the design).

    Parameters
    ----------
    cfg : Config
        Configuration; all sizes come from ``cfg.geometry`` and the hashes from
        ``cfg.salts``.
    hash_stages : int
        Register stages of the hash XOR networks (1..4).
    meta_width : int
        Width of the opaque ``meta`` field passed from ``pkt`` to ``dec`` (1..256).
    learn_fifo_depth : int
        Events the learn FIFO holds at least (1..4096).
    counter_width : int
        Width of each statistics counter (8..64).
    init_images : mapping of str to sequence of int, optional
        Power-on contents of the memories by name (``model.layout`` words, the
        ``mem/*.hex`` images). Without it every memory starts at zero.

    Members
    -------
    pkt : ``In(stream.Signature(packet_layout(meta_width)))``
        Parsed header vectors: ``key`` (5-tuple), ``tcp_flags``, ``meta`` (and ``seq``,
        the TCP sequence number, with SYN authentication).
    wr : ``In(stream.Signature(write_layout(geo, lifecycle, network)))``
        Control-plane writes: ``mem`` (id, see :func:`~hdl.layouts.memory_map`),
        ``addr``, ``data``. Unknown ids and out-of-range addresses are ignored; ``data``
        bits above the memory's width are ignored.
    dec : ``Out(stream.Signature(decision_layout(geo, meta_width)))``
        One decision per packet, in input order, ``latency`` cycles after acceptance
        when not back-pressured (with SYN authentication ``action`` has 3 bits and a
        ``cookie`` field follows; with a ``[network]`` ``action`` has 3 bits (REVERSE)
        and ``route_hit``, ``route``, ``port`` follow).
    learn : ``Out(stream.Signature(learn_layout(geo)))``
        Learn events.
    rd : ``In(stream.Signature(read_layout(geo, lifecycle)))``
        Only with a ``[lifecycle]``: control-plane reads (``mem``, ``addr``); memories
        other than ``act<i>``, ``auth0``, ``auth1`` (and addresses out of range) read 0.
    rdata : ``Out(stream.Signature(rdata_layout()))``
        Only with a ``[lifecycle]``: the word of each read, in op order.
    counters : ``Out(counters_layout(counter_width))``
        ``packets``, ``vip_hits``, ``conn_misses`` (VIP packets missing the ConnTable),
        ``drops`` (action DROP) and ``learn_drops``; they count decisions three cycles
        after they retire (enter the decision FIFO) and wrap around.

    Raises
    ------
    TypeError
        If ``cfg`` is not a :class:`~model.config.Config`.
    ValueError
        If a parameter is out of range or ``init_images`` names an unknown memory or
        holds too many words.
        With a ``[network]``, also if ``dip_capacity`` exceeds
        :data:`~hdl.network.MAX_REV_ENTRIES` or ``route_capacity``
        :data:`~hdl.network.MAX_ROUTE_ENTRIES` (the tables the core holds in registers).
    """

    def __init__(self, cfg: Config, *, hash_stages: int = DEFAULT_HASH_STAGES, meta_width: int = 32,
                 learn_fifo_depth: int = 16, counter_width: int = 48,
                 init_images: Mapping[str, Sequence[int]] | None = None):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a model.config.Config, not {cfg!r}")
        if not isinstance(hash_stages, int) or not 1 <= hash_stages <= 4:
            raise ValueError(f"hash_stages must be an integer within 1..4, not {hash_stages!r}")
        if not isinstance(meta_width, int) or not 1 <= meta_width <= 256:
            raise ValueError(f"meta_width must be an integer within 1..256, not {meta_width!r}")
        if not isinstance(learn_fifo_depth, int) or not 1 <= learn_fifo_depth <= 4096:
            raise ValueError(f"learn_fifo_depth must be an integer within 1..4096, "
                             f"not {learn_fifo_depth!r}")
        if not isinstance(counter_width, int) or not 8 <= counter_width <= 64:
            raise ValueError(f"counter_width must be an integer within 8..64, "
                             f"not {counter_width!r}")
        g = cfg.geometry
        lc = cfg.lifecycle
        net = cfg.network if cfg.network.enabled else None
        if net is not None:
            if g.dip_capacity > MAX_REV_ENTRIES:
                raise ValueError(
                    f"dip_capacity {g.dip_capacity} is above {MAX_REV_ENTRIES}, the largest "
                    f"return-path (rev) table the RTL core holds in registers")
            if net.route_capacity > MAX_ROUTE_ENTRIES:
                raise ValueError(
                    f"route_capacity {net.route_capacity} is above {MAX_ROUTE_ENTRIES}, the "
                    f"largest route table the RTL core holds in registers")
        specs = {s.name: s for s in memory_specs(g, lc, net)}
        images = dict(init_images or {})
        for name, words in images.items():
            if name not in specs:
                raise ValueError(f"init_images names unknown memory {name!r} "
                                 f"(expected one of {list(specs)})")
            if len(words) > specs[name].depth:
                raise ValueError(f"init_images[{name!r}] has {len(words)} words, more than "
                                 f"the depth {specs[name].depth}")
        self._cfg = cfg
        self._hash_stages = hash_stages
        self._meta_width = meta_width
        self._learn_fifo_depth = learn_fifo_depth
        self._counter_width = counter_width
        self._images = {k: [int(x) for x in v] for k, v in images.items()}
        self._life = (LifecycleStages(cfg, hash_stages, hash_stages + _CONN_LAT, self._images)
                      if lc.enabled else None)
        self._net = net
        self._net_stages = NetworkStages(g, net, self._images) if net else None
        ports = {
            "pkt": In(stream.Signature(packet_layout(meta_width, seq=lc.auth))),
            "wr": In(stream.Signature(write_layout(g, lc, net))),
            "dec": Out(stream.Signature(decision_layout(g, meta_width, cookie=lc.auth,
                                                        network=net))),
            "learn": Out(stream.Signature(learn_layout(g))),
            "counters": Out(counters_layout(counter_width)),
        }
        if lc.enabled:
            ports["rd"] = In(stream.Signature(read_layout(g, lc, net)))
            ports["rdata"] = Out(stream.Signature(rdata_layout()))
        super().__init__(ports)

    # ---- static properties ---------------------------------------------------------
    @property
    def cfg(self) -> Config:
        return self._cfg

    @property
    def hash_stages(self) -> int:
        return self._hash_stages

    @property
    def meta_width(self) -> int:
        return self._meta_width

    @property
    def latency(self) -> int:
        """Cycles from a packet's acceptance (``pkt`` transfer in cycle ``t``) to its
        decision being valid on ``dec`` (cycle ``t + latency``) without backpressure; a
        control-plane read's answer is valid on ``rdata`` as many cycles after it."""
        return (self._hash_stages + _TAIL + (self._life.delay if self._life else 0)
                + (self.route_delay if self._net else 0))

    @property
    def route_delay(self) -> int:
        """With a ``[network]``: the cycles the decision spends after stage ``D`` being
        routed (one register, then :class:`~hdl.network.RouteTable`); 0 without."""
        if self._net is None:
            return 0
        return NetworkStages.delay_for(self._net)

    @property
    def stages(self) -> int:
        """Pipeline depth in ops (the number of ops that can be in flight)."""
        return self.latency

    @property
    def output_fifo_depth(self) -> int:
        """Capacity of the decision FIFO, which bounds the packets accepted and not yet
        taken from ``dec``; at least ``latency + 2``, enough for one packet per clock
        without backpressure (see the module docstring)."""
        return BlockRamFifo.capacity_for(self.latency + 2)

    def _image(self, name: str) -> list[int] | None:
        return self._images.get(name)

    # ---- elaboration ---------------------------------------------------------------
    def elaborate(self, platform) -> Module:
        m = Module()
        cfg, g = self._cfg, self._cfg.geometry
        life = self._life
        net = self._net
        mm = memory_map(g, cfg.lifecycle, net)
        R = self._hash_stages
        X = R + _CONN_LAT          # ConnTable result; Bloom test or set (one stage)
        XT = life.XT if life else X  # the TransitTable (behind SYN authentication)
        A = XT + _TRANSIT_LAT + 1  # MaglevLookup presented
        D = A + _MAGLEV_LAT        # MaglevLookup result -> decision
        n_stages = D + 1           # pipeline registers st[0] .. st[D]
        T, NT = g.transit_log2_bits, g.transit_hashes

        op_layout = data.UnionLayout({
            "pkt": packet_layout(self._meta_width, seq=cfg.lifecycle.auth),
            "wr": write_layout(g, cfg.lifecycle, net)})
        life_fields = life.slot_fields(len(mm)) if life else {}
        slot_layout = data.StructLayout({
            "valid": 1,
            "is_wr": 1,
            "op": op_layout,
            # bit `id`: this op is a write to memory `id` within its depth (decoded once,
            # as the write is accepted, so every stage's write enable is a flip-flop)
            "wr_hit": len(mm),
            "vip_hit": 1,
            "vip_id": g.vip_bits,
            "phase": 2,
            "old_version": g.version_bits,
            "cur_version": g.version_bits,
            "mag_idx": g.maglev_index_bits,
            "tidx": data.ArrayLayout(T, NT),
            "rec_cand": 1,   # a VIP packet in phase RECORD (sets its bits if it misses)
            "flip_cand": 1,  # a VIP packet in phase FLIP (tests its bits if it misses)
            "flip_miss": 1,  # flip_cand and a ConnTable miss
            "hit": 1,
            "stage": stage_bits(g),
            "version": g.version_bits,
            "transit_hit": 1,
            **life_fields,
        })

        # ---- sub-components (free-running: no stall anywhere) -------------------------
        hash_unit = HashUnit(cfg, R)
        vip = VipTable(g, self._image("vip"))
        vip_state = VipState(g, self._image("vip_state"))
        conn_init = None
        if any(f"conn{i}" in self._images for i in range(g.stages)):
            conn_init = [self._images.get(f"conn{i}", []) for i in range(g.stages)]
        conn = ConnTable(g, conn_init)
        transit_init = None
        if any(f"transit{j}" in self._images for j in range(NT)):
            transit_init = [self._images.get(f"transit{j}", []) for j in range(NT)]
        transit = TransitBits(g, transit_init)
        # its write enables are the `wr_hit` bits (within depth): no address compare
        maglev = MaglevLookup(g, init={k: v for k, v in self._images.items()
                                       if k in MAGLEV_MEMS}, checked=False)
        assert hash_unit.latency == R and vip.latency == _VIP_LAT
        assert conn.latency == _CONN_LAT and vip_state.latency == _STATE_LAT
        assert transit.latency == _TRANSIT_LAT and maglev.latency == _MAGLEV_LAT
        # the VIP result (stage V0) and its state (in st[V0 + _STATE_LAT + 1]) are there
        # by stage X - 1
        assert hash_unit.maglev_latency <= A and _VIP_LAT + _STATE_LAT + 1 <= X - 1
        m.submodules.hash = hash_unit
        m.submodules.vip = vip
        m.submodules.vip_state = vip_state
        m.submodules.conn = conn
        m.submodules.transit = transit
        m.submodules.maglev = maglev
        nets = self._net_stages
        if nets:
            nets.add_tables(m, D)

        # ---- pipeline registers ------------------------------------------------------
        # Only the control bits of a slot are reset (below): the data bits are reset-less,
        # which keeps the reset net's fan-out (a 4 ns route at 7,000 loads) small.
        st = [Signal(slot_layout, name=f"st{k}", reset_less=True) for k in range(n_stages)]
        # nxt[k]: the slot of stage k with the results that arrive in stage k merged in;
        # it is what stage k+1 captures.
        nxt = [Signal(slot_layout, name=f"nxt{k}") for k in range(n_stages)]
        for k in range(n_stages):
            m.d.comb += nxt[k].eq(st[k])
            if k + 1 < n_stages:
                m.d.sync += st[k + 1].eq(nxt[k])
        # the control bits of every slot (what makes an op act) are cleared by the reset;
        # these statements come after the loads above, so the reset wins
        control = ("valid", "is_wr", "wr_hit", "vip_hit", "hit", "rec_cand", "flip_cand",
                   "flip_miss", "transit_hit") + (life.control_fields() if life else ())
        with m.If(ResetSignal()):
            for k in range(n_stages):
                m.d.sync += [getattr(st[k], f).eq(0) for f in control]

        def is_pkt(k: int):
            return st[k].valid & ~st[k].is_wr

        def write_to(k: int, name: str):
            """The op in stage k is a write to memory `name` within its depth (decoded
            once, as the write is accepted)."""
            return st[k].wr_hit[mm[name].id]

        # ---- output FIFO and credits -------------------------------------------------
        dfifo = BlockRamFifo(len(self.dec.payload.as_value()), self.latency + 2)
        assert dfifo.latency == _FIFO_LAT
        m.submodules.dec_fifo = dfifo
        cap = dfifo.capacity
        assert cap == self.output_fifo_depth
        # packets accepted and not yet taken from `dec`, counted from registered events
        # (so it is one cycle late); `credit` says it was at most cap - 3 two cycles ago,
        # so at most cap packets are outstanding after this cycle's acceptance. A take
        # from `dec` is registered twice (the count sits by the input, `dec` is read at
        # the far end: once registered, that was a 4.0 ns route into the count's enables
        # on ECP5); it is then counted a cycle later, which only lowers the credit.
        credit = Signal()
        take_q = Signal()         # the packet transfer of the cycle before
        dec_take_q = Signal()
        dec_take_qq = Signal()
        inflight = up_down_thermometer(m, cap, take_q, dec_take_qq, "inflight",
                                       reset=_local_reset(m, "inflight_rst"))
        take_wr = Signal()
        dec_take = Signal()
        m.d.comb += [
            self.dec.valid.eq(dfifo.r.valid),
            self.dec.payload.eq(dfifo.r.payload),
            dfifo.r.ready.eq(self.dec.ready),
            dec_take.eq(self.dec.valid & self.dec.ready),
        ]
        m.d.sync += [dec_take_q.eq(dec_take), dec_take_qq.eq(dec_take_q),
                     credit.eq(~inflight[cap - 3])]  # inflight < cap - 2
        if life:
            take_rd, rfifo = life.read_answers(m, self)

        # ---- input arbitration: writes (and reads) first -----------------------------
        # a packet waits for a waiting write or read (`others`)
        others = [self.wr.valid] + ([self.rd.valid] if life else [])
        m.d.comb += [
            self.wr.ready.eq(1),
            self.pkt.ready.eq(credit & ~Cat(*others).any()),
            take_wr.eq(self.wr.valid & self.wr.ready),
        ]
        # The packet transfer is rebuilt in the next cycle from registered copies of
        # its terms, not registered from `pkt.valid & pkt.ready`: abc shared
        # `pkt.ready`'s LUT for that, the placer put it by the queue that drives `pkt`,
        # and credit -> pkt.ready -> take was a 5.7 ns path in the W = 8 datapath on
        # ECP5. Now every input of the take is a flip-flop of the core.
        # (`others_q` is reset-less, which keeps yosys from merging it with `take_wr_q`,
        # placed by the write's loads: the take is low after a reset by `pkt_valid_q`.)
        pkt_valid_q = Signal()
        credit_q = Signal()
        others_q = Signal(len(others), reset_less=True)
        m.d.sync += [pkt_valid_q.eq(self.pkt.valid), credit_q.eq(credit),
                     others_q.eq(Cat(*others))]
        m.d.comb += take_q.eq(pkt_valid_q & credit_q & ~others_q.any())
        # The input register: both payloads are registered as they are (no enable, no
        # multiplexer, so an input pin drives one flip-flop), with the write's transfer
        # flag; they are merged into the op of stage 0 in the next cycle.
        take_wr_q = Signal()
        take_pkt_q = take_q
        wr_q = Signal.like(self.wr.payload, reset_less=True)
        pkt_q = Signal.like(self.pkt.payload, reset_less=True)
        m.d.sync += [take_wr_q.eq(take_wr),
                     wr_q.eq(self.wr.payload), pkt_q.eq(self.pkt.payload)]
        m.d.sync += [st[0].valid.eq(take_wr_q | take_pkt_q), st[0].is_wr.eq(take_wr_q)]
        with m.If(take_wr_q):
            m.d.sync += st[0].op.wr.eq(wr_q)
        with m.Else():
            m.d.sync += st[0].op.pkt.eq(pkt_q)
        for info in mm.values():
            m.d.sync += st[0].wr_hit[info.id].eq(take_wr_q & (wr_q.mem == info.id)
                                                 & (wr_q.addr < info.depth))
        if life:
            life.accept_reads(m, self, st[0], take_rd, take_wr_q, take_pkt_q, mm)

        # ---- stage 0: VIP CAM and hash input ---------------------------------------
        key0 = st[0].op.pkt.key
        m.d.comb += [
            vip.dst_ip.eq(key0.dst_ip),
            vip.dst_port.eq(key0.dst_port),
            vip.proto.eq(key0.proto),
            vip.w_en.eq(write_to(0, "vip")),
            vip.w_addr.eq(st[0].op.wr.addr),
            vip.w_data.eq(st[0].op.wr.data),
            hash_unit.key.eq(key0),
        ]

        # ---- stage 4: VIP result; VipState read ------------------------------------
        V0 = _VIP_LAT
        m.d.comb += [
            nxt[V0].vip_hit.eq(is_pkt(V0) & vip.hit),
            nxt[V0].vip_id.eq(vip.vip_id),
            vip_state.vip_id.eq(vip.vip_id),
            vip_state.w_en.eq(write_to(V0, "vip_state")),
            vip_state.w_addr.eq(st[V0].op.wr.addr),
            vip_state.w_data.eq(st[V0].op.wr.data),
        ]
        # ---- stage 6: VipState result ----------------------------------------------
        m.d.comb += [
            nxt[V0 + _STATE_LAT].phase.eq(vip_state.phase),
            nxt[V0 + _STATE_LAT].old_version.eq(vip_state.old_version),
            nxt[V0 + _STATE_LAT].cur_version.eq(vip_state.cur_version),
        ]

        # ---- stage R: ConnTable read; the Bloom indices travel on to X ----------------
        wR = st[R].op.wr
        conn_write = Signal()
        for i in range(g.stages):
            with m.If(write_to(R, f"conn{i}")):
                m.d.comb += [conn_write.eq(1), conn.w_stage.eq(i)]
        m.d.comb += [
            conn.index.eq(hash_unit.stage_index),
            conn.digest.eq(hash_unit.digest),
            conn.w_en.eq(conn_write),
            conn.w_addr.eq(wR.addr),
            conn.w_data.eq(wR.data),
            nxt[R].tidx.eq(hash_unit.transit_index),
        ]
        Rm = hash_unit.maglev_latency
        m.d.comb += nxt[Rm].mag_idx.eq(hash_unit.maglev_index)
        if life:
            assert V0 + _STATE_LAT == 6  # where vip_auth sits beside the VIP state
            life.elaborate(m, Pipe(st, nxt, is_pkt, write_to,
                                   lambda k, name: st[k].rd_hit[mm[name].id], mm),
                           hash_unit, conn, key0)
        # ---- stage X-1: what a miss will do, decided before the ConnTable result -----
        sc = st[X - 1]
        vip_pkt_c = is_pkt(X - 1) & sc.vip_hit
        m.d.comb += [nxt[X - 1].rec_cand.eq(vip_pkt_c & (sc.phase == Phase.RECORD)),
                     nxt[X - 1].flip_cand.eq(vip_pkt_c & (sc.phase == Phase.FLIP))]

        # ---- stage X: ConnTable result; TransitTable test (read) or set (write) -------
        # The version of a hit, else the current one; stage B replaces the latter by the
        # old version on a TransitTable hit (a FLIP-phase miss whose bits are all set).
        sx = st[X]
        record = Signal()
        if XT == X:
            m.d.comb += record.eq(sx.rec_cand & ~conn.hit)
            s_t = sx
        else:  # the TransitTable waits for the verdict: no Bloom bits for a spoofed source
            s_t = st[XT]
            m.d.comb += [nxt[X].rec_miss.eq(sx.rec_cand & ~conn.hit),
                         record.eq(s_t.rec_miss & ~life.stop)]
        m.d.comb += [
            nxt[X].hit.eq(is_pkt(X) & sx.vip_hit & conn.hit),
            nxt[X].flip_miss.eq(sx.flip_cand & ~conn.hit),
            nxt[X].stage.eq(Mux(conn.hit, conn.stage, 0)),
            nxt[X].version.eq(Mux(conn.hit, conn.version, sx.cur_version)),
        ]
        # An op here either tests its bits (read), sets them (RECORD miss: at its own
        # index) or is a control write (at the write's address): one address per memory,
        # and every earlier write is visible.
        for j in range(NT):
            wt = write_to(XT, f"transit{j}")
            addr = Signal(T, name=f"transit_addr{j}")
            m.d.comb += [
                addr.eq(Mux(wt, s_t.op.wr.addr[:T], s_t.tidx[j])),
                transit.index[j].eq(addr),
                transit.w_addr[j].eq(addr),
                transit.w_en[j].eq(wt | record),
                transit.w_data[j].eq(~wt | s_t.op.wr.data[0]),
            ]

        # ---- stage B: Bloom bits; resolve the version ---------------------------------
        B = XT + _TRANSIT_LAT
        s1 = st[B]
        transit_hit = Signal()
        m.d.comb += [
            transit_hit.eq(s1.flip_miss & transit.bits.all()),
            nxt[B].transit_hit.eq(transit_hit),
        ]
        with m.If(transit_hit):
            m.d.comb += nxt[B].version.eq(s1.old_version)

        # ---- stage A: Maglev lookup --------------------------------------------------
        s2 = st[A]
        w2 = s2.op.wr
        for name, sel in MAGLEV_MEMS.items():
            m.d.comb += maglev.w_en[sel].eq(write_to(A, name))
        m.d.comb += [
            maglev.vip_id.eq(s2.vip_id),
            maglev.version.eq(s2.version),
            maglev.index.eq(s2.mag_idx),
            maglev.w_addr.eq(w2.addr),
            maglev.w_data.eq(w2.data),
        ]

        # ---- stage K = D - rev.latency: the return path's lookup (result at D) ----------
        if nets:
            nets.lookup(m, st, write_to)

        # ---- stage D: decision ---------------------------------------------------------
        s6 = st[D]
        p6 = s6.op.pkt
        dec = Signal(self.dec.payload.shape())
        # "load-balance" (a VIP packet with a live pool slot) selects about 110 decision
        # bits: it is registered from the stage before (a flip-flop, not a LUT, drives
        # that fan-out) in three copies, one per group of fields. They are data bits
        # (whatever they hold while no packet is in D does not matter), so the copies
        # differ in reset class and power-on value, which keeps yosys from merging them.
        lb_next = nxt[D - 1].vip_hit & maglev.slot_valid_next
        lb = [Signal(name="lb_dip", reset_less=True),
              Signal(name="lb_dst", reset_less=True, init=1),
              Signal(name="lb_misc")]
        m.d.sync += [x.eq(lb_next) for x in lb]
        lb_dip, lb_dst, lb_misc = lb
        # a hit TCP packet with FIN or RST, also registered from the stage before
        p5 = nxt[D - 1].op.pkt
        close = Signal(name="close", reset_less=True)
        m.d.sync += close.eq(nxt[D - 1].hit & (p5.key.proto == 6)
                             & (p5.tcp_flags & (TCP_FIN | TCP_RST)).any())
        m.d.comb += [
            dec.meta.eq(p6.meta),
            dec.out_dst_ip.eq(p6.key.dst_ip),
            dec.out_dst_port.eq(p6.key.dst_port),
        ]
        with m.If(s6.vip_hit):
            m.d.comb += [
                dec.action.eq(Action.DROP),
                dec.vip_id.eq(s6.vip_id),
                dec.hit.eq(s6.hit),
                dec.stage.eq(s6.stage),
                dec.version.eq(s6.version),
                dec.transit_hit.eq(s6.transit_hit),
            ]
        # lb implies vip_hit: these need no vip_hit term
        with m.If(lb_misc):
            m.d.comb += [
                dec.action.eq(Action.LB),
                dec.slot.eq(maglev.slot),
                dec.dip.eq(maglev.dip),
                dec.learn.eq(~s6.hit),
                dec.close.eq(close),
            ]
        with m.If(lb_dip):
            m.d.comb += [dec.dip_ip.eq(maglev.dip_ip), dec.dip_port.eq(maglev.dip_port)]
        with m.If(lb_dst):
            m.d.comb += [dec.out_dst_ip.eq(maglev.dip_ip),
                         dec.out_dst_port.eq(maglev.dip_port)]
        if nets:  # the return path: a server's reply (no VIP, the source is a DIP)
            nets.reverse(m, dec, s6)
        if life and life.auth:
            life.override_decision(m, dec, s6)
        event = Signal(learn_layout(g))
        m.d.comb += [event.key.eq(p6.key), event.vip_id.eq(s6.vip_id),
                     event.version.eq(s6.version)]

        # ---- with [network]: D+1 .. D+route_delay, the decision is routed ---------------
        if nets:
            last, dec_routed = nets.route_decision(
                m, dec, event, s6, is_pkt, write_to, D, len(s6.rdata) if life else None)

        # ---- retire register: decision into the output FIFO, learn event, counters ----
        retire = Signal()  # a packet's decision enters the output FIFO this cycle
        dec_q = Signal.like(dec, reset_less=True)
        event_q = Signal.like(event, reset_less=True)
        if net:
            m.d.sync += [retire.eq(last.pkt), dec_q.eq(dec_routed), event_q.eq(last.event)]
        else:
            m.d.sync += [retire.eq(is_pkt(D)), dec_q.eq(dec), event_q.eq(event)]
        m.d.comb += [dfifo.w.valid.eq(retire), dfifo.w.payload.eq(dec_q)]
        if life:  # a control-plane read's answer retires like a decision
            if net:
                life.retire_reads(m, rfifo, last.rd, last.rdata)
            else:
                life.retire_reads(m, rfifo, s6.valid & s6.is_rd, s6.rdata)

        # ---- learn events: pushed one cycle after the decision retires ------------------
        # Whether an event fits is decided when it retires, from the FIFO's w_ready_next,
        # so the FIFO's write enable is the flip-flop `push` (no full check behind it).
        fifo = StreamFifo(learn_layout(g).size, max(3, self._learn_fifo_depth), checked=False)
        m.submodules.learn_fifo = fifo
        push = Signal()
        learn_drop = Signal()
        event_qq = Signal.like(event, reset_less=True)
        event_due = retire & dec_q.learn
        m.d.sync += [push.eq(event_due & fifo.w_ready_next),
                     learn_drop.eq(event_due & ~fifo.w_ready_next),
                     event_qq.eq(event_q)]
        m.d.comb += [
            fifo.w.payload.eq(event_qq),
            fifo.w.valid.eq(push),
            self.learn.valid.eq(fifo.r.valid),
            self.learn.payload.eq(fifo.r.payload),
            fifo.r.ready.eq(self.learn.ready),
        ]

        # ---- counters ------------------------------------------------------------------
        # Each increment is decided in the retire cycle and registered; the counters
        # then see only a flip-flop enable (see split_counter).
        c = self.counters
        vip_q = Signal()
        if net:  # a server's reply (REVERSE) matched no VIP
            m.d.comb += vip_q.eq((dec_q.action != Action.FORWARD)
                                 & (dec_q.action != Action.REVERSE))
        else:
            m.d.comb += vip_q.eq(dec_q.action != Action.FORWARD)
        incs = {
            "packets": retire,
            "vip_hits": retire & vip_q,
            "conn_misses": retire & vip_q & ~dec_q.hit,
            "drops": retire & (dec_q.action == Action.DROP),
        }
        for name, cond in incs.items():
            inc = Signal(name=f"inc_{name}")
            m.d.sync += inc.eq(cond)
            split_counter(m, c[name], inc, name)
        split_counter(m, c.learn_drops, learn_drop, "learn_drops")
        return m
