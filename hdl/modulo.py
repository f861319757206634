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

    Power-of-two moduli are a mask (``latency == 0``). Other moduli take two register
    stages (``latency == 2``): ``p = i * R`` (registered with ``i``), then
    ``o = i - (p >> s) * modulus`` (registered). Map the multiplies to DSP blocks.

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
    def latency_for(modulus: int) -> int:
        """Latency a :class:`ConstMod` of this modulus has (0 for powers of two, else 2)."""
        return 0 if modulus & (modulus - 1) == 0 else 2

    @property
    def latency(self) -> int:
        """Cycles from ``i`` to ``o``."""
        return self.latency_for(self._modulus)

    @property
    def modulus(self) -> int:
        return self._modulus

    def elaborate(self, platform) -> Module:
        m = Module()
        if self._pow2:
            m.d.comb += self.o.eq(self.i[:len(self.o)])
            return m
        r, s, w = self._r, self._s, self._width
        x1 = Signal(w)
        prod = Signal(w + r.bit_length())
        m.d.sync += [x1.eq(self.i), prod.eq(self.i * r)]
        q = Signal(w)
        m.d.comb += q.eq(prod >> s)
        rem = Signal(len(self.o))
        m.d.sync += rem.eq((x1 - q * self._modulus)[:len(self.o)])
        m.d.comb += self.o.eq(rem)
        return m
