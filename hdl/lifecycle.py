"""The connection lifecycle's stages of the core (docs/lifecycle.md, docs/rtl.md).

A config with a ``[lifecycle]`` adds to :class:`~hdl.core.L4LBCore`'s pipeline:

* **activity bits** (``idle_timeout > 0``): ``act<i>`` beside ``conn<i>``, a
  :class:`~hdl.bram.PipelinedRam` per stage accessed in the ConnTable result stage ``X``:
  a hit at stage ``s`` sets ``act<s>[index]``, a control write writes, a control read
  reads (one address per memory per cycle, as the TransitTable);
* **SYN authentication** (a VIP with ``auth``): the key registers ``auth_key`` /
  ``auth_epoch`` (stage 0, where the cookie's HalfSipHash starts), ``vip_auth`` (stage 6,
  beside the VIP state), the verified-source hashes (:class:`~hdl.auth.AuthHash`, stage
  ``R``), the cookie (:class:`~hdl.siphash.HalfSipHash`, 25 stages) and its checks, and
  :class:`~hdl.auth.VerifiedSources` (lookup at ``L - 7``, verdict at ``L``). The
  TransitTable moves behind the verdict (``L + 1``): an unverified source's packet must
  not set Bloom bits;
* **control-plane reads**: ops like writes, answered in op order on the ``rdata`` stream.

:class:`LifecycleStages` holds the stage numbers and elaborates these pieces into the
core's slot pipeline (``st``/``nxt``, see :mod:`hdl.core`).
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Config, Geometry
from model.layout import Action
from model.lifecycle import AUTH_TAG_BITS, AUTH_WORD_BITS
from model.pipeline import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN

from .auth import AuthHash, VerifiedSources
from .bram import RAM_LATENCY, PipelinedRam, check_images
from .fifo import BlockRamFifo, up_down_thermometer
from .layouts import MemInfo
from .siphash import HalfSipHash, sip_latency

__all__ = ["ActivityBits", "LifecycleStages", "READABLE", "COOKIE_LENGTH", "readable"]

#: Bytes of the cookie's HalfSipHash message: src_ip, dst_ip, src_port << 16 | dst_port.
COOKIE_LENGTH = 12
#: Memories a control-plane read answers (the words the data plane changes); a read of
#: any other memory answers 0.
READABLE = ("act<i>", "auth0", "auth1")


def readable(name: str) -> bool:
    """Whether a control-plane read of memory ``name`` answers its word."""
    return name in ("auth0", "auth1") or name.startswith("act")


class ActivityBits(wiring.Component):
    """The ``act<i>`` memories: one bit per ConnTable word, one address per memory and
    cycle (a hit's set, a control write or a control read), read-before-write.

    Timing as :class:`~hdl.bram.PipelinedRam`: ``addr`` in cycle ``c`` gives ``bits`` in
    ``c + latency`` (4); a write in ``c`` is seen by accesses in ``c + 1`` or later.

    Parameters
    ----------
    geo : Geometry
        Geometry (``stages``, ``log2_slots``).
    init : sequence of sequence of int, optional
        Initial bits of each memory.

    Members
    -------
    addr : ``In(ArrayLayout(log2_slots, stages))``
        Address of each memory.
    w_en, w_data : ``In(stages)``
        Write enable and bit of each memory.
    bits : ``Out(stages)``
        The bits read, ``latency`` cycles after ``addr``.
    """

    def __init__(self, geo: Geometry, init: Sequence[Sequence[int]] | None = None):
        if not isinstance(geo, Geometry):
            raise TypeError(f"geo must be a model.config.Geometry, not {geo!r}")
        self._geo = geo
        self._init = check_images(init, geo.stages, geo.slots, "activity")
        super().__init__({
            "addr": In(data.ArrayLayout(geo.log2_slots, geo.stages)),
            "w_en": In(geo.stages),
            "w_data": In(geo.stages),
            "bits": Out(geo.stages),
        })

    @property
    def latency(self) -> int:
        return RAM_LATENCY

    def elaborate(self, platform) -> Module:
        m = Module()
        g = self._geo
        for i in range(g.stages):
            ram = PipelinedRam(1, g.slots, self._init[i] if self._init else ())
            m.submodules[f"act{i}"] = ram
            m.d.comb += [ram.addr.eq(self.addr[i]), ram.w_en.eq(self.w_en[i]),
                         ram.w_data.eq(self.w_data[i]), self.bits[i].eq(ram.r_data)]
        return m


@dataclass
class Pipe:
    """The core's pipeline as the lifecycle stages see it."""

    st: list
    nxt: list
    is_pkt: Callable
    write_to: Callable
    read_of: Callable
    mm: Mapping[str, MemInfo]


class LifecycleStages:
    """Stage numbers and elaboration of the lifecycle in the core (module docstring).

    Parameters
    ----------
    cfg : Config
        A configuration with ``lifecycle.enabled``.
    hash_stages : int
        The core's ``R``.
    conn_result : int
        The core's ``X`` (the ConnTable result stage).
    images : mapping of str to list of int
        Power-on words by memory name (the lifecycle memories among them are used).
    """

    def __init__(self, cfg: Config, hash_stages: int, conn_result: int,
                 images: Mapping[str, list[int]]):
        lc = cfg.lifecycle
        assert lc.enabled
        self.cfg, self.R, self.X = cfg, hash_stages, conn_result
        self.aging, self.auth = lc.aging, lc.auth
        self.images = images
        #: the stage where the cookie (h) is out of the HalfSipHash, presented in stage 0
        self.H = sip_latency(COOKIE_LENGTH)
        #: the verdict stage: the cookie checks are registered twice after H, and the
        #: lookup (L - 7) needs the source's hashes and the decision the ConnTable hit
        self.L = max(self.H + 2, hash_stages + 9) if lc.auth else None
        #: the TransitTable stage: right behind the verdict
        self.XT = self.L + 1 if lc.auth else conn_result

    @property
    def delay(self) -> int:
        """Stages the lifecycle adds in front of the TransitTable (0 without auth)."""
        return self.XT - self.X

    # ---- layouts -----------------------------------------------------------------------
    def slot_fields(self, n_mems: int) -> dict:
        """Slot fields the lifecycle adds (``n_mems``: memories in the map)."""
        g = self.cfg.geometry
        f: dict = {"is_rd": 1, "rd_hit": n_mems, "rdata": AUTH_WORD_BITS}
        if self.aging:
            f["sidx"] = data.ArrayLayout(g.log2_slots, g.stages)
        if self.auth:
            a = self.cfg.lifecycle.auth_log2_sources
            f |= {"epoch": 1, "kpar": 1, "seq1": 32, "aidx": data.ArrayLayout(a, 2),
                  "atag": AUTH_TAG_BITS, "vip_auth": 1, "cookie": 32,
                  "ck_part": 15, "fl_part": 16, "cookie_ok": 1, "flip": 1,
                  "cand": 1, "syn": 1, "chal": 1, "rst": 1, "verdict": 3, "rec_miss": 1}
        return f

    def control_fields(self) -> tuple[str, ...]:
        """Slot fields the reset clears (what makes an op act)."""
        return ("is_rd", "rd_hit") + (("cand", "verdict", "rec_miss") if self.auth else ())

    # ---- elaboration -------------------------------------------------------------------
    def elaborate(self, m: Module, p: Pipe, hash_unit, conn, key0) -> None:
        """Everything but the TransitTable and the decision (see the core)."""
        if self.aging:
            self._activity(m, p, hash_unit, conn)
        if self.auth:
            self._authentication(m, p, key0)

    def _activity(self, m: Module, p: Pipe, hash_unit, conn) -> None:
        g = self.cfg.geometry
        R, X = self.R, self.X
        st, nxt = p.st, p.nxt
        m.d.comb += nxt[R].sidx.eq(hash_unit.stage_index)
        init = None
        if any(f"act{i}" in self.images for i in range(g.stages)):
            init = [self.images.get(f"act{i}", []) for i in range(g.stages)]
        act = ActivityBits(g, init)
        m.submodules.act = act
        sx = st[X]
        hit = p.is_pkt(X) & sx.vip_hit & conn.hit
        for i in range(g.stages):
            name = f"act{i}"
            wt, rd = p.write_to(X, name), p.read_of(X, name)
            m.d.comb += [
                act.addr[i].eq(Mux(wt | rd, sx.op.wr.addr, sx.sidx[i])),
                act.w_en[i].eq(wt | (hit & (conn.stage == i))),
                act.w_data[i].eq(~wt | sx.op.wr.data[0]),
            ]
        # the bit read arrives 4 stages later
        Xr = X + act.latency
        bit = Cat(*[p.read_of(Xr, f"act{i}") & act.bits[i] for i in range(g.stages)]).any()
        with m.If(bit):
            m.d.comb += p.nxt[Xr].rdata.eq(1)

    def _authentication(self, m: Module, p: Pipe, key0) -> None:
        cfg, st, nxt = self.cfg, p.st, p.nxt
        lc, mm, img = cfg.lifecycle, p.mm, self.images
        # ---- stage 0: auth_key / auth_epoch registers; the cookie's HalfSipHash -------
        kinit = img.get("auth_key", []) + [0, 0]
        keys = [Signal(64, name=f"auth_key{k}", reset_less=True, init=kinit[k])
                for k in range(2)]
        epoch = Signal(name="auth_epoch", reset_less=True,
                       init=(img.get("auth_epoch", []) + [0])[0])
        s0 = st[0]
        w0 = s0.op.wr
        for k in range(2):
            with m.If(p.write_to(0, "auth_key") & (w0.addr[0] == k)):
                m.d.sync += keys[k].eq(w0.data[:64])
        with m.If(p.write_to(0, "auth_epoch")):
            m.d.sync += epoch.eq(w0.data[0])
        pk = s0.op.pkt
        flags = pk.tcp_flags
        # the key the cookie is made or checked with: an RST (without SYN) names it in
        # its sequence number's low bit, everything else uses the current epoch's
        kpar = Signal()
        m.d.comb += kpar.eq(Mux((flags & TCP_RST).any() & ~(flags & TCP_SYN).any(),
                                pk.seq[0], epoch))
        sip = HalfSipHash(COOKIE_LENGTH)
        m.submodules.cookie = sip
        assert sip.latency == self.H
        m.d.comb += [
            sip.key.eq(Mux(kpar, keys[1], keys[0])),
            sip.words[0].eq(key0.src_ip), sip.words[1].eq(key0.dst_ip),
            sip.words[2].eq(Cat(key0.dst_port, key0.src_port)), sip.words[3].eq(0),
            nxt[0].epoch.eq(epoch), nxt[0].kpar.eq(kpar), nxt[0].seq1.eq(pk.seq + 1),
        ]
        # ---- stage R: the source's verified-source indices and tag ----------------------
        ah = AuthHash(cfg, self.R)
        m.submodules.auth_hash = ah
        m.d.comb += [ah.key.eq(key0), nxt[self.R].aidx.eq(ah.index),
                     nxt[self.R].atag.eq(ah.tag)]
        # ---- stage 6: vip_auth, beside the VIP state (vip_id is in the slot) -----------
        S = 6
        va_init = img.get("vip_auth", [])
        vcap = cfg.geometry.vip_capacity
        va = [Signal(name=f"vip_auth{k}", reset_less=True,
                     init=va_init[k] if k < len(va_init) else 0) for k in range(vcap)]
        sv = st[S]
        for k in range(vcap):
            with m.If(p.write_to(S, "vip_auth") & (sv.op.wr.addr == k)):
                m.d.sync += va[k].eq(sv.op.wr.data[0])
        m.d.comb += nxt[S].vip_auth.eq(Cat(*[va[k] & (sv.vip_id == k) for k in range(vcap)]).any())
        # ---- stage H: the cookie and its two comparisons (two bits per LUT, then AND) ---
        H = self.H
        sh = st[H]
        cookie = Cat(sh.kpar, sip.h[1:])
        pkh = sh.op.pkt
        m.d.comb += [
            nxt[H].cookie.eq(cookie),
            # an RST's cookie: seq == c or c ^ 0x80000000, i.e. bits 1..30 equal (bit 0 is
            # the key parity it names)
            nxt[H].ck_part.eq(Cat(*[pkh.seq[k:k + 2] == sip.h[k:k + 2]
                                    for k in range(1, 31, 2)])),
            # the challenge's flip: c == seq + 1
            nxt[H].fl_part.eq(Cat(*[cookie[k:k + 2] == sh.seq1[k:k + 2]
                                    for k in range(0, 32, 2)])),
        ]
        m.d.comb += [nxt[H + 1].cookie_ok.eq(st[H + 1].ck_part.all()),
                     nxt[H + 1].flip.eq(st[H + 1].fl_part.all())]
        # ---- stage L - 1: what the verdict needs from the packet, registered -----------
        L = self.L
        sc = st[L - 1]
        f = sc.op.pkt.tcp_flags
        syn = (f & TCP_SYN).any() & ~(f & TCP_ACK).any()
        m.d.comb += [
            nxt[L - 1].cand.eq(p.is_pkt(L - 1) & sc.vip_hit & sc.vip_auth
                               & (sc.op.pkt.key.proto == 6) & ~sc.hit),
            nxt[L - 1].syn.eq(syn),
            nxt[L - 1].chal.eq(syn & ~(f & (TCP_RST | TCP_FIN)).any()),
            nxt[L - 1].rst.eq((f & TCP_RST).any() & ~(f & TCP_SYN).any()),
        ]
        # ---- stages L - 7 .. L + 1: the verified-source table ---------------------------
        vs_init = None
        if "auth0" in img or "auth1" in img:
            vs_init = [img.get("auth0", []), img.get("auth1", [])]
        vs = VerifiedSources(lc.auth_log2_sources, vs_init)
        m.submodules.sources = vs
        Y = L - vs.decide_offset
        assert Y > self.R and vs.latency == L + 1 - Y
        sy = st[Y]
        a = lc.auth_log2_sources
        ctl = sy.is_wr  # a control write or read: its address in both ways
        m.d.comb += [
            vs.addr[0].eq(Mux(ctl, sy.op.wr.addr[:a], sy.aidx[0])),
            vs.addr[1].eq(Mux(ctl, sy.op.wr.addr[:a], sy.aidx[1])),
            vs.tag.eq(sy.atag), vs.epoch.eq(sy.epoch),
            vs.word.eq(Mux(ctl, sy.op.wr.data[:AUTH_WORD_BITS], Cat(sy.atag, sy.epoch, 1))),
            vs.rway.eq(p.read_of(Y, "auth1")),
        ]
        sl = st[L]
        m.d.comb += [vs.cand.eq(sl.cand), vs.syn.eq(sl.syn), vs.chal.eq(sl.chal),
                     vs.rst_ok.eq(sl.rst & sl.cookie_ok),
                     vs.cw.eq(Cat(p.write_to(L, "auth0"), p.write_to(L, "auth1")))]
        # ---- stage L + 1: the verdict and a read's word --------------------------------
        XT = self.XT
        verdict = Mux(vs.challenge, Action.CHALLENGE,
                      Mux(vs.verify, Action.VERIFY, Mux(vs.unverified, Action.UNVERIFIED, 0)))
        m.d.comb += nxt[XT].verdict.eq(verdict)
        with m.If(p.read_of(XT, "auth0") | p.read_of(XT, "auth1")):
            m.d.comb += nxt[XT].rdata.eq(vs.rword)
        self.stop = vs.stop
        assert mm["auth0"].width == AUTH_WORD_BITS

    # ---- the core's input and output ends --------------------------------------------
    def read_answers(self, m: Module, core) -> tuple[Signal, BlockRamFifo]:
        """The core's ``rdata`` FIFO and read credits (as for decisions: at most the
        FIFO's capacity of reads accepted and not yet answered); returns the read
        transfer signal and the FIFO (written where reads retire)."""
        rfifo = BlockRamFifo(len(core.rdata.payload.as_value()), core.latency + 2)
        m.submodules.rdata_fifo = rfifo
        rcap = rfifo.capacity
        rd_credit = Signal()
        take_rd = Signal()
        take_rd_q = Signal()
        out_q = Signal()
        pending = up_down_thermometer(m, rcap, take_rd_q, out_q, "rd_inflight")
        m.d.comb += [
            core.rd.ready.eq(rd_credit & ~core.wr.valid),
            take_rd.eq(core.rd.valid & core.rd.ready),
            core.rdata.valid.eq(rfifo.r.valid),
            core.rdata.payload.eq(rfifo.r.payload),
            rfifo.r.ready.eq(core.rdata.ready),
        ]
        m.d.sync += [take_rd_q.eq(take_rd), out_q.eq(core.rdata.valid & core.rdata.ready),
                     rd_credit.eq(~pending[rcap - 3])]
        return take_rd, rfifo

    def retire_reads(self, m: Module, rfifo: BlockRamFifo, valid, rdata) -> None:
        """A control-plane read's answer retires like a decision: ``valid`` (a read's
        slot at the retire stage) and its ``rdata`` are registered into ``rfifo`` (the
        FIFO of :meth:`read_answers`)."""
        retire_rd = Signal()
        rdata_q = Signal(len(rdata), reset_less=True)
        m.d.sync += [retire_rd.eq(valid), rdata_q.eq(rdata)]
        m.d.comb += [rfifo.w.valid.eq(retire_rd), rfifo.w.payload.eq(rdata_q)]

    def accept_reads(self, m: Module, core, s0, take_rd, take_wr_q, take_pkt_q,
                     mm: Mapping[str, MemInfo]) -> None:
        """A control-plane read becomes an op like a write (its address in ``op.wr``),
        after a waiting write and before a waiting packet; these statements follow and
        override the core's stage-0 loads."""
        take_rd_q = Signal()
        rd_q = Signal.like(core.rd.payload, reset_less=True)
        m.d.sync += [take_rd_q.eq(take_rd), rd_q.eq(core.rd.payload),
                     s0.valid.eq(take_wr_q | take_pkt_q | take_rd_q),
                     s0.is_wr.eq(take_wr_q | take_rd_q), s0.is_rd.eq(take_rd_q)]
        with m.If(take_rd_q):
            m.d.sync += [s0.op.wr.mem.eq(rd_q.mem), s0.op.wr.addr.eq(rd_q.addr)]
        for info in mm.values():
            m.d.sync += s0.rd_hit[info.id].eq(take_rd_q & (rd_q.mem == info.id)
                                              & (rd_q.addr < info.depth))

    def override_decision(self, m: Module, dec, slot) -> None:
        """CHALLENGE / VERIFY / UNVERIFIED: the VIP and (CHALLENGE) the cookie only, the
        packet's destination unchanged (these statements follow the core's decision)."""
        p = slot.op.pkt
        with m.If(slot.vip_hit & slot.verdict.any()):
            m.d.comb += [
                dec.eq(0),
                dec.action.eq(slot.verdict),
                dec.vip_id.eq(slot.vip_id),
                dec.meta.eq(p.meta),
                dec.out_dst_ip.eq(p.key.dst_ip),
                dec.out_dst_port.eq(p.key.dst_port),
            ]
            with m.If(slot.verdict == Action.CHALLENGE):
                # the acknowledgement number: the cookie, its bit 31 flipped when it
                # equals seq + 1
                c = slot.cookie
                m.d.comb += dec.cookie.eq(Cat(c[:31], c[31] ^ slot.flip))
