"""Pipelined GF(2) affine networks and the CRC-32 hash roles of the model as such networks.

A CRC over a message of fixed length is affine over GF(2): every output bit is the
XOR of a fixed subset of the message bits, XOR a constant. For the hashes of
:mod:`model.hashing` the message is ``salt || fields in role order``; the salt is a
constant of the role and so is the field order, hence each output bit of a role is

    ``h[j] = c[j] ^ XOR(key[i] for i in rows[j])``

over the 104 bits of the packed key (:func:`model.hashing.pack_key`, src_ip most
significant). :func:`crc_role_matrix` derives ``rows`` and ``c`` from the model's own
scalar function, so the salt and the field permutation are folded in exactly and the
hardware cannot disagree with the specification about byte order or reflection.

Why not :mod:`amaranth.lib.crc` directly: its :class:`~amaranth.lib.crc.Processor` is a
sequential, one-register design that processes ``data_width`` bits per cycle and
reflects each ``data_width`` word (so 13 bytes fed as one 104-bit word would not give
zlib's result). Here we need a pure function of the key, split over a chosen number
of register stages, and only the few low output bits each role uses (stage indices
are ``log2_slots`` bits); an explicit XOR tree gives exactly that. The library's
software model (:meth:`amaranth.lib.crc.Parameters.compute`) is still used by the
tests as an independent cross-check of the derived matrices.
"""

import math
from collections.abc import Sequence

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from model.config import KEY_BITS
from model.hashing import FIELD_BYTES, FIELDS, FiveTuple, crc32_tuple

__all__ = ["AffineXorNetwork", "crc_role_matrix", "unpack_key", "KEY_BITS"]


def unpack_key(key: int) -> FiveTuple:
    """Inverse of :func:`model.hashing.pack_key` (104-bit integer to a 5-tuple)."""
    if not 0 <= key < (1 << KEY_BITS):
        raise ValueError(f"key must be a {KEY_BITS}-bit unsigned integer, not {key!r}")
    vals = {}
    shift = KEY_BITS
    for f in FIELDS:
        shift -= 8 * FIELD_BYTES[f]
        vals[f] = (key >> shift) & ((1 << (8 * FIELD_BYTES[f])) - 1)
    return FiveTuple(**vals)


def crc_role_matrix(salt: int, order: Sequence[str], out_bits: int = 32
                    ) -> tuple[list[int], int]:
    """GF(2) matrix of ``crc32_tuple(salt, key, order) & (2**out_bits - 1)``.

    Parameters
    ----------
    salt : int
        32-bit salt of the role.
    order : sequence of str
        Field order of the role (:data:`model.hashing.FIELD_ORDERS`).
    out_bits : int
        Number of low result bits needed (1..32).

    Returns
    -------
    rows : list of int
        ``rows[j]`` is a 104-bit mask of the key bits XORed into result bit ``j``.
    const : int
        Result for the all-zero key (the folded salt, init and final XOR).

    Raises
    ------
    ValueError
        If ``salt`` is not a 32-bit value or ``out_bits`` is outside 1..32.
    """
    if not 0 <= salt <= 0xFFFFFFFF:
        raise ValueError(f"salt must be a 32-bit unsigned integer, not {salt!r}")
    if not 1 <= out_bits <= 32:
        raise ValueError(f"out_bits must be within 1..32, not {out_bits!r}")
    order = tuple(order)
    mask = (1 << out_bits) - 1
    const = crc32_tuple(salt, unpack_key(0), order) & mask
    cols = [(crc32_tuple(salt, unpack_key(1 << i), order) & mask) ^ const
            for i in range(KEY_BITS)]
    rows = [sum(1 << i for i in range(KEY_BITS) if cols[i] >> j & 1) for j in range(out_bits)]
    return rows, const


class AffineXorNetwork(wiring.Component):
    """``o = A·i ⊕ c`` over GF(2), as XOR trees split over ``stages`` register stages.

    Output bit ``j`` is ``c[j] ^ XOR(i[k] for k set in rows[j])``. The trees are cut into
    ``stages`` levels of equal fan-in ``ceil(w ** (1 / stages))`` (``w`` = the largest row
    weight); each level ends in a register, so ``o`` is valid ``stages`` cycles after
    ``i`` (combinational when ``stages == 0``).

    Parameters
    ----------
    in_width : int
        Width of the input vector.
    rows : sequence of int
        One input-bit mask per output bit.
    const : int
        Constant XORed into the output.
    stages : int
        Register stages (0 = purely combinational).

    Members
    -------
    i : ``In(in_width)``
        Input vector.
    o : ``Out(len(rows))``
        Result, ``latency`` cycles after ``i``.

    Raises
    ------
    ValueError
        If a width, mask, constant or stage count is out of range.
    """

    def __init__(self, in_width: int, rows: Sequence[int], const: int = 0, stages: int = 1):
        if not isinstance(in_width, int) or in_width < 1:
            raise ValueError(f"in_width must be a positive integer, not {in_width!r}")
        rows = list(rows)
        if not rows:
            raise ValueError(f"rows must not be empty, not {rows!r}")
        for r in rows:
            if not isinstance(r, int) or not 0 <= r < (1 << in_width):
                raise ValueError(f"row mask {r!r} does not fit in {in_width} input bits")
        if not isinstance(const, int) or not 0 <= const < (1 << len(rows)):
            raise ValueError(f"const {const!r} does not fit in {len(rows)} output bits")
        if not isinstance(stages, int) or not 0 <= stages <= 8:
            raise ValueError(f"stages must be an integer within 0..8, not {stages!r}")
        self._in_width = in_width
        self._rows = rows
        self._const = const
        self._stages = stages
        super().__init__({"i": In(in_width), "o": Out(len(rows))})

    @property
    def latency(self) -> int:
        """Cycles from ``i`` to ``o`` (the number of register stages)."""
        return self._stages

    @property
    def rows(self) -> list[int]:
        return list(self._rows)

    @property
    def const(self) -> int:
        return self._const

    def elaborate(self, platform) -> Module:
        m = Module()
        terms: list[list[Value]] = [
            [self.i[k] for k in range(self._in_width) if r >> k & 1] for r in self._rows
        ]
        width = max(1, max(len(t) for t in terms))
        if self._stages == 0:
            outs = [_xor_all(t) ^ (self._const >> j & 1) for j, t in enumerate(terms)]
            m.d.comb += self.o.eq(Cat(*outs))
            return m
        fan_in = max(2, math.ceil(width ** (1 / self._stages)))
        for level in range(self._stages):
            last = level == self._stages - 1
            new_terms = []
            for j, t in enumerate(terms):
                groups = [t] if last else [t[k:k + fan_in] for k in range(0, len(t), fan_in)]
                regs = []
                for g, grp in enumerate(groups):
                    reg = Signal(name=f"x{j}_l{level}_g{g}", reset_less=True)
                    value = _xor_all(grp)
                    if last:
                        value = value ^ (self._const >> j & 1)
                    m.d.sync += reg.eq(value)
                    regs.append(reg)
                new_terms.append(regs)
            terms = new_terms
        m.d.comb += self.o.eq(Cat(*[t[0] for t in terms]))
        return m


def _xor_all(terms: Sequence[Value]) -> Value:
    if not terms:
        return Const(0, 1)
    acc = terms[0]
    for t in terms[1:]:
        acc = acc ^ t
    return acc

