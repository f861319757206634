"""SYN authentication in the RTL: the verified-source hashes and the two-way table.

:class:`AuthHash` computes :meth:`model.hashing.Hasher.auth_slots` (two indices and a
30-bit tag, CRC-32s of ``salt || src_ip``) as :class:`~hdl.crc.AffineXorNetwork` s.

:class:`VerifiedSources` holds ``auth0`` / ``auth1`` and performs the table part of
:meth:`model.pipeline.DataPlane.authenticate` for one op per clock: lookup, the
CHALLENGE / VERIFY / UNVERIFIED verdict, the refresh of a verified SYN's word and the
insertion of a VERIFY, control-plane writes and reads of the two ways.

**Read-modify-write at one op per clock.** A packet's write depends on the words it
read, and the next packet must see that write. The ways are
:class:`~hdl.bram.SimpleDualPortRam` s read 4 cycles before the data arrive and written
8 cycles after the read (``j = 0`` read, ``j = 7`` decision, ``j = 8`` write), so a read
misses the writes of up to the 8 ops ahead of it. Those writes are *forwarded*, without
putting a wide comparator into the one-cycle loop:

* what a word means to a packet is two bits, ``m`` (valid and its tag) and ``s`` (valid
  and stamped in its epoch); every op carries the word it would write (a packet: valid,
  its epoch, its tag; a control write: its data) and its addresses in both ways, so the
  packet compares its tag, epoch and addresses with those of each op ahead (and with the
  two words read) in ``j = 4, 5``, before it knows which of them wrote;
* in ``j = 6`` the ops 2..8 ahead have decided: the nearest one that wrote the packet's
  word gives ``m``/``s`` (else the block-RAM word);
* in ``j = 7`` only the op just ahead is still open: its registered write flags select
  between its ``m``/``s`` and those of ``j = 6``, and the packet decides. The loop is a
  few LUTs: flags -> select -> verdict -> write flags.

A control-plane read forwards the whole word the same way (``rword``).
"""

from collections.abc import Sequence

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.config import Config
from model.hashing import AUTH_FIELDS
from model.lifecycle import AUTH_TAG_BITS, AUTH_WORD_BITS

from .bram import RAM_LATENCY, SimpleDualPortRam, check_images
from .crc import AffineXorNetwork, crc_role_matrix
from .layouts import KEY_LAYOUT

__all__ = ["AuthHash", "VerifiedSources", "FORWARD_DEPTH"]

#: Ops ahead of a reader whose writes it can miss (read at j = 0, write at j = 8).
FORWARD_DEPTH = 8
_DECIDE = 7   # the decision stage j
_LAST = _DECIDE - 1 + FORWARD_DEPTH  # the oldest op a lookup looks at (from j = 6)


class AuthHash(wiring.Component):
    """``auth_slots`` of :class:`model.hashing.Hasher`: indices in both ways and the tag.

    Parameters
    ----------
    cfg : Config
        Configuration (``lifecycle.auth_log2_sources``, ``salts.auth``).
    stages : int
        Register stages of the XOR networks (1..4); ``latency == stages``.

    Members
    -------
    key : ``In(KEY_LAYOUT)``
        The 5-tuple (only ``src_ip`` is hashed).
    index : ``Out(ArrayLayout(auth_log2_sources, 2))``
        Word index in ``auth0`` and ``auth1``, ``latency`` cycles after ``key``.
    tag : ``Out(30)``
        The source's tag, ``latency`` cycles after ``key``.
    """

    def __init__(self, cfg: Config, stages: int = 1):
        if not isinstance(cfg, Config):
            raise TypeError(f"cfg must be a model.config.Config, not {cfg!r}")
        if not isinstance(stages, int) or not 1 <= stages <= 4:
            raise ValueError(f"stages must be an integer within 1..4, not {stages!r}")
        self._cfg, self._stages = cfg, stages
        a = cfg.lifecycle.auth_log2_sources
        super().__init__({"key": In(KEY_LAYOUT), "index": Out(data.ArrayLayout(a, 2)),
                          "tag": Out(AUTH_TAG_BITS)})

    @property
    def latency(self) -> int:
        return self._stages

    def elaborate(self, platform) -> Module:
        m = Module()
        salts = self._cfg.salts.auth
        a = self._cfg.lifecycle.auth_log2_sources
        outs = []
        for k, (name, bits) in enumerate((("way0", a), ("way1", a), ("tag", AUTH_TAG_BITS))):
            rows, const = crc_role_matrix(salts[k], AUTH_FIELDS, bits)
            net = AffineXorNetwork(KEY_LAYOUT.size, rows, const, self._stages)
            m.submodules[name] = net
            m.d.comb += net.i.eq(self.key.as_value())
            outs.append(net.o)
        m.d.comb += [self.index[0].eq(outs[0]), self.index[1].eq(outs[1]),
                     self.tag.eq(outs[2])]
        return m


def _pairs_equal(a, b) -> list:
    """Equality of ``a`` and ``b`` as one term per two bits (one LUT4 each)."""
    return [a[k:k + 2] == b[k:k + 2] for k in range(0, len(a), 2)]


class VerifiedSources(wiring.Component):
    """The verified-source ways with their lookup, verdict and write-back.

    Every cycle one op enters (a packet, a control-plane read or write, or a bubble). Its
    *lookup* inputs are presented in cycle ``c``, its *decide* inputs in
    ``c + decide_offset`` (7), its results are valid in ``c + latency`` (8); see the
    module docstring for the stages. Ops keep their order: a packet sees every write of
    every earlier op (data plane or control plane) and none of a later one.

    Parameters
    ----------
    log2_sources : int
        Words per way: ``2**log2_sources``.
    init : sequence of two sequences of int, optional
        Power-on words of ``auth0`` and ``auth1``.

    Members
    -------
    addr : ``In(ArrayLayout(log2_sources, 2))``
        Lookup: the op's word in each way (a control op: its address in both).
    tag, epoch : ``In(30)``, ``In(1)``
        Lookup: the packet's source tag and the current epoch parity.
    word : ``In(32)``
        Lookup: the word this op writes if it writes (a packet: ``valid | epoch | tag``;
        a control write: its data).
    rway : ``In(1)``
        Lookup: the way whose word ``rword`` returns (a control read).
    cand : ``In(1)``
        Decide: a packet to authenticate (a TCP miss of an ``auth`` VIP).
    syn : ``In(1)``
        Decide: SYN set and ACK clear (a verified source's SYN refreshes its word).
    chal : ``In(1)``
        Decide: ``syn`` and neither RST nor FIN (an unverified one is challenged).
    rst_ok : ``In(1)``
        Decide: RST set, SYN clear, and the sequence number is a cookie of the packet.
    cw : ``In(2)``
        Decide: a control-plane write of way 0 / way 1 (at ``addr``, of ``word``).
    stop : ``Out(1)``
        Result: ``cand`` and the source is not verified (the packet gets a verdict).
    challenge, verify, unverified : ``Out(1)``
        Result: the verdict of a ``stop`` packet.
    rword : ``Out(32)``
        Result: the word of way ``rway`` at ``addr`` as this op sees it.
    """

    def __init__(self, log2_sources: int, init: Sequence[Sequence[int]] | None = None):
        if not isinstance(log2_sources, int) or not 1 <= log2_sources <= 24:
            raise ValueError(f"log2_sources must be an integer within 1..24, "
                             f"not {log2_sources!r}")
        self._a = log2_sources
        self._init = check_images(init, 2, 1 << log2_sources, "verified-source")
        super().__init__({
            "addr": In(data.ArrayLayout(log2_sources, 2)),
            "tag": In(AUTH_TAG_BITS),
            "epoch": In(1),
            "word": In(AUTH_WORD_BITS),
            "rway": In(1),
            "cand": In(1),
            "syn": In(1),
            "chal": In(1),
            "rst_ok": In(1),
            "cw": In(2),
            "stop": Out(1),
            "challenge": Out(1),
            "verify": Out(1),
            "unverified": Out(1),
            "rword": Out(AUTH_WORD_BITS),
        })

    @property
    def decide_offset(self) -> int:
        """Cycles from the lookup inputs to the decide inputs."""
        return _DECIDE

    @property
    def latency(self) -> int:
        """Cycles from the lookup inputs to the results (and to the op's write)."""
        return _DECIDE + 1

    def elaborate(self, platform) -> Module:
        m = Module()
        a = self._a
        T = AUTH_TAG_BITS
        rec_layout = data.StructLayout({"addr": data.ArrayLayout(a, 2), "tag": T,
                                        "epoch": 1, "word": AUTH_WORD_BITS, "rway": 1})
        # p[j]: the lookup fields of the op at stage j (p[0] = the inputs)
        p = [Signal(rec_layout, name=f"p{j}", reset_less=True) for j in range(_LAST + 1)]
        m.d.comb += [p[0].addr.eq(self.addr), p[0].tag.eq(self.tag),
                     p[0].epoch.eq(self.epoch), p[0].word.eq(self.word),
                     p[0].rway.eq(self.rway)]
        for j in range(_LAST):
            m.d.sync += p[j + 1].eq(p[j])
        # we[j], way[j]: the op at stage j (> _DECIDE) wrote its word into way `way`
        we = {j: Signal(name=f"we{j}") for j in range(_DECIDE + 1, _LAST + 1)}
        way = {j: Signal(name=f"way{j}", reset_less=True) for j in we}
        for j in range(_DECIDE + 1, _LAST):
            m.d.sync += [we[j + 1].eq(we[j]), way[j + 1].eq(way[j])]

        # ---- the ways: read at j = 0, written at j = 8 ----------------------------------
        w8 = _DECIDE + 1
        ram_words = []
        for w in range(2):
            ram = SimpleDualPortRam(AUTH_WORD_BITS, 1 << a,
                                    self._init[w] if self._init else ())
            m.submodules[f"way{w}"] = ram
            m.d.comb += [ram.r_addr.eq(p[0].addr[w]),
                         ram.w_en.eq(we[w8] & (way[w8] == w)),
                         ram.w_addr.eq(p[w8].addr[w]), ram.w_data.eq(p[w8].word)]
            ram_words.append(ram.r_data)
        assert RAM_LATENCY == 4

        # ---- j = 4: partial compares (pairs of bits) against the ways' words and the
        # lookup fields of the ops 1..8 ahead (stages 5..12) ------------------------------
        P = 4
        me = p[P]

        def word_terms(word) -> list:
            return _pairs_equal(word[:T], me.tag)

        n_tag = len(word_terms(me.word))
        n_addr = len(_pairs_equal(me.addr[0], me.addr[0]))
        part = data.StructLayout({
            "ram_tag": data.ArrayLayout(n_tag, 2), "ram_vs": data.ArrayLayout(2, 2),
            "tag": data.ArrayLayout(n_tag, FORWARD_DEPTH),
            "vs": data.ArrayLayout(2, FORWARD_DEPTH),
            "addr": data.ArrayLayout(data.ArrayLayout(n_addr, 2), FORWARD_DEPTH),
        })
        q5 = Signal(part, name="q5", reset_less=True)

        def valid_stamp(word, epoch):
            return Cat(word[T + 1], word[T] == epoch)

        for w in range(2):
            m.d.sync += [q5.ram_tag[w].eq(Cat(*word_terms(ram_words[w]))),
                         q5.ram_vs[w].eq(valid_stamp(ram_words[w], me.epoch))]
        for d in range(1, FORWARD_DEPTH + 1):
            q = p[P + d]
            m.d.sync += [q5.tag[d - 1].eq(Cat(*word_terms(q.word))),
                         q5.vs[d - 1].eq(valid_stamp(q.word, me.epoch))]
            for w in range(2):
                m.d.sync += q5.addr[d - 1][w].eq(Cat(*_pairs_equal(q.addr[w], me.addr[w])))
        # the words read travel on for a control read (j = 6)
        ram_q5 = [Signal(AUTH_WORD_BITS, name=f"ram{w}_q5", reset_less=True) for w in range(2)]
        ram_q6 = [Signal(AUTH_WORD_BITS, name=f"ram{w}_q6", reset_less=True) for w in range(2)]
        for w in range(2):
            m.d.sync += [ram_q5[w].eq(ram_words[w]), ram_q6[w].eq(ram_q5[w])]

        # ---- j = 5: the predicates m (valid, tag) and s (valid, stamp), address equality
        pred = data.StructLayout({
            "ram_m": 2, "ram_s": 2,
            "m": FORWARD_DEPTH, "s": FORWARD_DEPTH,
            "aeq": data.ArrayLayout(2, FORWARD_DEPTH),
        })
        q6 = Signal(pred, name="q6", reset_less=True)
        for w in range(2):
            vs = q5.ram_vs[w]
            m.d.sync += [q6.ram_m[w].eq(vs[0] & q5.ram_tag[w].all()),
                         q6.ram_s[w].eq(vs[0] & vs[1])]
        for k in range(FORWARD_DEPTH):
            vs = q5.vs[k]
            m.d.sync += [q6.m[k].eq(vs[0] & q5.tag[k].all()), q6.s[k].eq(vs[0] & vs[1])]
            for w in range(2):
                m.d.sync += q6.aeq[k][w].eq(q5.addr[k][w].all())

        # ---- j = 6: the ops 2..8 ahead (stages 8..14) have written or not --------------
        J6 = _DECIDE - 1
        q7_m = Signal(2, name="q7_m", reset_less=True)
        q7_s = Signal(2, name="q7_s", reset_less=True)
        q7_word = Signal(AUTH_WORD_BITS, name="q7_word", reset_less=True)
        q7_m1 = Signal(name="q7_m1", reset_less=True)
        q7_s1 = Signal(name="q7_s1", reset_less=True)
        q7_aeq1 = Signal(2, name="q7_aeq1", reset_less=True)
        rway6 = p[J6].rway
        for w in range(2):
            mv, sv = q6.ram_m[w], q6.ram_s[w]
            for d in range(FORWARD_DEPTH, 1, -1):  # the nearest writer wins: applied last
                j = J6 + d
                hit = we[j] & (way[j] == w) & q6.aeq[d - 1][w]
                mv = Mux(hit, q6.m[d - 1], mv)
                sv = Mux(hit, q6.s[d - 1], sv)
            m.d.sync += [q7_m[w].eq(mv), q7_s[w].eq(sv)]
        wv = Mux(rway6, ram_q6[1], ram_q6[0])
        for d in range(FORWARD_DEPTH, 1, -1):
            j = J6 + d
            hit = we[j] & (way[j] == rway6) & Mux(rway6, q6.aeq[d - 1][1], q6.aeq[d - 1][0])
            wv = Mux(hit, p[j].word, wv)
        m.d.sync += [q7_word.eq(wv), q7_m1.eq(q6.m[0]), q7_s1.eq(q6.s[0]),
                     q7_aeq1.eq(q6.aeq[0])]

        # ---- j = 7: the op just ahead; the verdict and this op's write --------------------
        j8 = _DECIDE + 1
        ms, ss = [], []
        for w in range(2):
            hit1 = we[j8] & (way[j8] == w) & q7_aeq1[w]
            ms.append(Mux(hit1, q7_m1, q7_m[w]))
            ss.append(Mux(hit1, q7_s1, q7_s[w]))
        rway7 = p[_DECIDE].rway
        rhit1 = we[j8] & (way[j8] == rway7) & Mux(rway7, q7_aeq1[1], q7_aeq1[0])
        verified = Signal()
        refresh = Signal()
        stop = Signal()
        verify = Signal()
        m.d.comb += [
            verified.eq(ms[0] | ms[1]),
            refresh.eq(self.cand & verified & self.syn),
            stop.eq(self.cand & ~verified),
            verify.eq(stop & self.rst_ok),
        ]
        m.d.sync += [
            we[j8].eq(refresh | verify | self.cw.any()),
            # a verified SYN refreshes the way that matched (way 0 when both do); a VERIFY
            # takes way 1 only when way 0 holds a source of this epoch and way 1 does not
            way[j8].eq(Mux(refresh, ~ms[0], Mux(verify, ss[0] & ~ss[1], self.cw[1]))),
        ]
        stop_q = Signal()
        chal_q = Signal()
        verify_q = Signal()
        unver_q = Signal()
        rword_q = Signal(AUTH_WORD_BITS, reset_less=True)
        m.d.sync += [stop_q.eq(stop), chal_q.eq(stop & self.chal), verify_q.eq(verify),
                     unver_q.eq(stop & ~self.chal & ~self.rst_ok),
                     rword_q.eq(Mux(rhit1, p[j8].word, q7_word))]
        m.d.comb += [self.stop.eq(stop_q), self.challenge.eq(chal_q),
                     self.verify.eq(verify_q), self.unverified.eq(unver_q),
                     self.rword.eq(rword_q)]
        return m
