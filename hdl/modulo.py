"""Exact ``x mod M`` for a constant ``M``: a mask for powers of two, else a pipelined
multiply by a precomputed reciprocal followed by a multiply-subtract.

For ``w``-bit ``x`` and ``l = ceil(log2 M)`` let ``s = w + l`` and ``R = ceil(2**s / M)``.
Then ``q = (x * R) >> s`` equals ``floor(x / M)`` for every ``x < 2**w``: writing
``e = R*M - 2**s`` (``0 <= e < M <= 2**l``), ``x*R / 2**s = x/M + x*e / (M * 2**s)``
and the error term is below ``1/M`` because ``x * e < 2**w * 2**l = 2**s``; the
fractional part of ``x/M`` is at most ``(M-1)/M``, so the floor does not change.
:func:`reciprocal` checks this bound for the actual numbers; ``r = x - q*M``.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ConstMod", "reciprocal", "mod_reference"]


def _clog2(n: int) -> int:
    return max(1, (n - 1).bit_length())


def reciprocal(width: int, modulus: int) -> tuple[int, int]:
    """``(R, s)`` such that ``(x * R) >> s == x // modulus`` for all ``x < 2**width``.

    Raises
    ------
    ValueError
        If the arguments are out of range (or the exactness bound fails, which the
        construction rules out).
    """
    if not isinstance(width, int) or not 1 <= width <= 64:
        raise ValueError(f"width must be an integer within 1..64, not {width!r}")
    if not isinstance(modulus, int) or modulus < 2:
        raise ValueError(f"modulus must be an integer >= 2, not {modulus!r}")
    s = width + (modulus - 1).bit_length()
    r = -(-(1 << s) // modulus)
    e = r * modulus - (1 << s)
    if not e * ((1 << width) - 1) < (1 << s):
        raise ValueError(f"reciprocal of {modulus!r} is not exact over {width} bits")
    return r, s


def mod_reference(x: int, width: int, modulus: int) -> int:
    """Python model of the hardware arithmetic (used by the tests against ``%``)."""
    if modulus & (modulus - 1) == 0:
        return x & (modulus - 1)
    r, s = reciprocal(width, modulus)
    q = (x * r) >> s
    return x - q * modulus


class ConstMod(wiring.Component):
    """``o = i % modulus`` for a constant ``modulus``.

    Power-of-two moduli are a mask (``latency == 0``). Other moduli are pipelined so that
    every register stage holds at most one DSP-sized multiply or one add: ``i * R`` as
    registered partial products of 16-bit chunks of ``i`` by 17-bit chunks of ``R``
    (each fits an 18x18 multiplier) summed pairwise in a registered adder tree,
    ``q = p >> s``, then ``q * modulus`` the same way, and ``o = i - q * modulus``
    (registered). ``latency`` is 5 for 32-bit inputs and moduli below 2**17, at most 7
    up to 2**22 (:meth:`latency_for`).

    Parameters
    ----------
    width : int
        Width of ``i`` (1..64).
    modulus : int
        The constant divisor (>= 2).

    Members
    -------
    i : ``In(width)``
        Dividend.
    o : ``Out(ceil(log2(modulus)))``
        Remainder, ``latency`` cycles after ``i``.

    Raises
    ------
    ValueError
        If ``width`` or ``modulus`` is out of range.
    """

    def __init__(self, width: int, modulus: int):
        if not isinstance(width, int) or not 1 <= width <= 64:
            raise ValueError(f"width must be an integer within 1..64, not {width!r}")
        if not isinstance(modulus, int) or modulus < 2:
            raise ValueError(f"modulus must be an integer >= 2, not {modulus!r}")
        self._width = width
        self._modulus = modulus
        self._pow2 = modulus & (modulus - 1) == 0
        if not self._pow2:
            self._r, self._s = reciprocal(width, modulus)
        super().__init__({"i": In(width), "o": Out(_clog2(modulus))})

    @staticmethod
    def latency_for(modulus: int, width: int = 32) -> int:
        """Latency a :class:`ConstMod` of this modulus and input width has (0 for powers
        of two)."""
        if modulus & (modulus - 1) == 0:
            return 0
        r, s = reciprocal(width, modulus)
        q_bits = max(1, width + r.bit_length() - s)
        return _mul_latency(width, r) + _mul_latency(q_bits, modulus) + 1

    @property
    def latency(self) -> int:
        """Cycles from ``i`` to ``o``."""
        return self.latency_for(self._modulus, self._width)

    @property
    def modulus(self) -> int:
        return self._modulus

    def elaborate(self, platform) -> Module:
        m = Module()
        if self._pow2:
            m.d.comb += self.o.eq(self.i[:len(self.o)])
            return m
        r, s, w = self._r, self._s, self._width
        prod = _const_mul(m, self.i, r, "p")
        q = Signal(max(1, len(prod) - s))
        m.d.comb += q.eq(prod >> s)
        qm = _const_mul(m, q, self._modulus, "qm")
        lat = _mul_latency(w, r) + _mul_latency(len(q), self._modulus)
        x = self.i
        for k in range(lat):
            d = Signal(w, name=f"x{k + 1}")
            m.d.sync += d.eq(x)
            x = d
        rem = Signal(len(self.o))
        m.d.sync += rem.eq((x - qm)[:len(self.o)])
        m.d.comb += self.o.eq(rem)
        return m


_X_CHUNK = 16   # chunk widths of a partial product: 16 x 17 bits fits an 18x18 DSP
_C_CHUNK = 17


def _chunks(width: int, size: int) -> list[tuple[int, int]]:
    return [(lo, min(size, width - lo)) for lo in range(0, width, size)]


def _mul_latency(width: int, const: int) -> int:
    """Register stages of :func:`_const_mul`: the partial products, then the adder tree."""
    n = len(_chunks(width, _X_CHUNK)) * len(_chunks(const.bit_length(), _C_CHUNK))
    return 1 + max(0, (n - 1).bit_length())


def _const_mul(m: Module, x, const: int, name: str) -> Signal:
    """``x * const``, registered partial products and a registered pairwise adder tree
    (:func:`_mul_latency` stages)."""
    width = len(x)
    terms = []
    for xi, (xlo, xw) in enumerate(_chunks(width, _X_CHUNK)):
        for ci, (clo, cw) in enumerate(_chunks(const.bit_length(), _C_CHUNK)):
            c = (const >> clo) & ((1 << cw) - 1)
            pp = Signal(xw + cw, name=f"{name}_pp{xi}_{ci}")
            m.d.sync += pp.eq(x[xlo:xlo + xw] * c)
            terms.append((pp, xlo + clo))
    level = 0
    while len(terms) > 1:
        nxt = []
        for k in range(0, len(terms), 2):
            if k + 1 == len(terms):
                a, sa = terms[k]
                reg = Signal(len(a), name=f"{name}_l{level}_{k // 2}")
                m.d.sync += reg.eq(a)
                nxt.append((reg, sa))
                continue
            (a, sa), (b, sb) = terms[k], terms[k + 1]
            lo = min(sa, sb)
            val = (a << (sa - lo)) + (b << (sb - lo))
            reg = Signal(len(val), name=f"{name}_l{level}_{k // 2}")
            m.d.sync += reg.eq(val)
            nxt.append((reg, lo))
        terms = nxt
        level += 1
    t, sh = terms[0]
    out = Signal(width + const.bit_length(), name=f"{name}_out")
    m.d.comb += out.eq(t << sh)
    return out
