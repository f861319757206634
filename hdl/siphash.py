"""HalfSipHash-2-4 (32-bit output) of a fixed-length message, one message per clock.

The function is :func:`model.cookie.halfsiphash24_words` (Aumasson and Bernstein's
32-bit SipHash variant; docs/lifecycle.md). A SipRound is split into two *half rounds*,
each one register stage holding one 32-bit addition and one XOR per lane pair::

    half A:  v0 += v1; v2 += v3; v1 = rotl(v1, 5) ^ v0; v3 = rotl(v3, 8) ^ v2;
             v0 = rotl(v0, 16)
    half B:  v0 += v3; v2 += v1; v3 = rotl(v3, 7) ^ v0; v1 = rotl(v1, 13) ^ v2;
             v2 = rotl(v2, 16)

(the SipRound's statements, reordered between independent lanes). The rotations are
wiring; an addition is one carry chain and the XOR behind it one LUT, so no stage has
more than that (the 200 MHz rule of docs/rtl.md). The message injection folds into the
half-B stage that ends a block (``v0 ^= m`` and the next block's ``v3 ^= m'`` are one
more XOR input of the LUT behind the adder), the finalisation's ``v2 ^= 0xff`` likewise,
and the last stage registers ``v1 ^ v3`` directly.

Stages: one for the key set-up (``v0..v3`` from the key and ``v3 ^= m_0``), four half
rounds per 32-bit block (``length // 4`` message words and the length block), eight for
the four finalisation rounds: ``latency = 1 + 4 * (length // 4 + 1) + 8`` (25 for the
12-byte cookie message).
"""

from amaranth.hdl import Const, Module, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["HalfSipHash", "sip_latency"]

_C0 = 0x6C796765  # "lyge": v2's constant (HalfSipHash: the 32-bit SipHash constants)
_C1 = 0x74656462  # "tedb": v3's constant


def sip_latency(length: int) -> int:
    """Register stages of :class:`HalfSipHash` for a ``length``-byte message."""
    return 1 + 4 * (length // 4 + 1) + 8


def _add(a: Value, b: Value) -> Value:
    return (a + b)[:32]


class HalfSipHash(wiring.Component):
    """HalfSipHash-2-4 with 32-bit output over a ``length``-byte message, pipelined.

    Timing: ``key`` and ``words`` presented in cycle ``c`` give ``h`` in
    ``c + latency``; a new message may be presented in every cycle. The pipeline has no
    enable and no reset (its registers are data only).

    Parameters
    ----------
    length : int
        Message length in bytes (0..255).

    Members
    -------
    key : ``In(64)``
        The key, ``key.to_bytes(8, "little")`` being the reference's key bytes.
    words : ``In(ArrayLayout(32, length // 4 + 1))``
        The message as little-endian 32-bit words; the last one holds the
        ``length % 4`` tail bytes in its low 24 bits (its top byte is ignored, as in
        :func:`model.cookie.halfsiphash24_words`).
    h : ``Out(32)``
        The hash, ``latency`` cycles after ``key`` and ``words``.

    Raises
    ------
    ValueError
        If ``length`` is not an integer within 0..255.
    """

    def __init__(self, length: int):
        if not isinstance(length, int) or not 0 <= length <= 255:
            raise ValueError(f"length must be an integer within 0..255, not {length!r}")
        self._length = length
        self._blocks = length // 4 + 1
        super().__init__({
            "key": In(64),
            "words": In(data.ArrayLayout(32, self._blocks)),
            "h": Out(32),
        })

    @property
    def length(self) -> int:
        return self._length

    @property
    def latency(self) -> int:
        """Cycles from ``key``/``words`` to ``h``."""
        return sip_latency(self._length)

    def elaborate(self, platform) -> Module:
        m = Module()
        nb = self._blocks
        # the blocks: the full message words, then the length block
        blocks: list[Value] = [self.words[k] for k in range(nb - 1)]
        blocks.append(Const(self._length << 24, 32) | self.words[nb - 1][:24])

        def regs(tag: str) -> list[Signal]:
            return [Signal(32, name=f"{tag}_v{i}", reset_less=True) for i in range(4)]

        # message blocks still to inject travel beside the state
        pending: list[Value] = list(blocks)
        k0, k1 = self.key[:32], self.key[32:]
        v = regs("init")
        m.d.sync += [v[0].eq(k0), v[1].eq(k1), v[2].eq(k0 ^ _C0),
                     v[3].eq(k1 ^ _C1 ^ pending[0])]
        carried = [Signal(32, name=f"init_m{i}", reset_less=True) for i in range(nb)]
        m.d.sync += [c.eq(b) for c, b in zip(carried, pending, strict=True)]
        pending = carried

        # (block index or None for finalisation, is the block's last half round)
        schedule: list[tuple[int | None, bool]] = []
        for b in range(nb):
            schedule += [(b, False)] * 3 + [(b, True)]
        schedule += [(None, False)] * 7 + [(None, True)]
        for s, (blk, ends) in enumerate(schedule):
            out = regs(f"h{s}")
            v0, v1, v2, v3 = v
            last = s == len(schedule) - 1
            if s % 2 == 0:  # half A
                a0 = _add(v0, v1)
                a2 = _add(v2, v3)
                m.d.sync += [out[0].eq(a0.rotate_left(16)), out[1].eq(v1.rotate_left(5) ^ a0),
                             out[2].eq(a2), out[3].eq(v3.rotate_left(8) ^ a2)]
            else:  # half B (+ the block's injection when it ends a block)
                a0 = _add(v0, v3)
                a2 = _add(v2, v1)
                n0, n1 = a0, v1.rotate_left(13) ^ a2
                n2, n3 = a2.rotate_left(16), v3.rotate_left(7) ^ a0
                if last:
                    h = Signal(32, name="h_q", reset_less=True)
                    m.d.sync += h.eq(n1 ^ n3)
                    m.d.comb += self.h.eq(h)
                    break
                if ends and blk is not None:
                    n0 = n0 ^ pending[blk]
                    if blk + 1 < nb:
                        n3 = n3 ^ pending[blk + 1]
                    else:
                        n2 = n2 ^ 0xFF
                m.d.sync += [out[0].eq(n0), out[1].eq(n1), out[2].eq(n2), out[3].eq(n3)]
            v = out
            # carry the blocks still to be injected (this one unless it ended, later ones)
            nxt = list(pending)
            if blk is not None:
                for i in range(blk if not ends else blk + 1, nb):
                    q = Signal(32, name=f"h{s}_m{i}", reset_less=True)
                    m.d.sync += q.eq(pending[i])
                    nxt[i] = q
            pending = nxt
        return m
