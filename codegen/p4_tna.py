"""The TNA program's Tofino constraints and its prime Maglev sizes: register widths, the
configs Tofino cannot take, and ``crc % M`` without a modulo (docs/p4.md, "Tofino
constraints" and "Prime Maglev sizes on Tofino")."""

from __future__ import annotations

from model.config import Config, Geometry

__all__ = ["TNA_MAX_REGISTER_BITS", "TNA_MOD_HALF_BITS", "TNA_MAGLEV_PADDED_MAX_BITS",
           "P4GenError", "tna_register_bits", "tna_unsupported", "tna_mod_lo",
           "tna_maglev_banked", "tna_maglev_mod_tables", "tna_maglev_reduce"]


class P4GenError(ValueError):
    """The configuration cannot be expressed for a P4 target; the message names the
    geometry field."""


#: Largest register word a Tofino 1 stateful ALU reads in one access.
TNA_MAX_REGISTER_BITS = 32


def tna_register_bits(width: int) -> int:
    """Register element width on Tofino: 1, 8, 16 or 32 bits (the word sits in the low
    bits, the rest are zero)."""
    for w in (1, 8, 16, 32):
        if width <= w:
            return w
    raise P4GenError(f"a {width}-bit word does not fit a {TNA_MAX_REGISTER_BITS}-bit "
                     f"Tofino register")


def tna_unsupported(cfg: Config) -> str | None:
    """Why the config cannot be compiled for Tofino (TNA), or None when it can."""
    g = cfg.geometry
    if g.full_key:
        return (f"geometry.digest_bits: 'full' (104-bit key) makes a "
                f"{g.conn_word_bits}-bit ConnTable word; a Tofino register reads at most "
                f"{TNA_MAX_REGISTER_BITS} bits per access (one half of a pair) and the "
                f"word is not split; use digest_bits <= "
                f"{TNA_MAX_REGISTER_BITS - 1 - g.version_bits}")
    if g.conn_word_bits > TNA_MAX_REGISTER_BITS:
        return (f"geometry.digest_bits: valid(1) + version_bits({g.version_bits}) + "
                f"digest_bits({g.digest_bits}) = {g.conn_word_bits} bits exceed the "
                f"{TNA_MAX_REGISTER_BITS}-bit Tofino register word; lower digest_bits or "
                f"version_bits")
    return None


#: The Maglev CRC is reduced mod a prime M from its two 16-bit halves.
TNA_MOD_HALF_BITS = 16


def tna_mod_lo(g: Geometry) -> bool:
    """Whether the TNA program reduces the low CRC half by lookup too (a prime M up to
    2^16; above it, ``lo < M`` already)."""
    return not g.maglev_pow2 and g.maglev_size <= 1 << TNA_MOD_HALF_BITS


#: Largest Maglev memory (bits) a prime-M TNA program keeps in one register padded to
#: ``pool_slots * 2^MAGLEV_INDEX_BITS`` words (16 SRAM blocks of one MAU stage).
TNA_MAGLEV_PADDED_MAX_BITS = 1 << 21


def tna_maglev_banked(g: Geometry) -> bool:
    """Whether the TNA program holds the Maglev memory as one register of M words per
    pool slot (``maglev<slot>``, all read at the index, the slot's word kept) rather than
    one register addressed ``slot ++ index``. Only for a prime M whose padded register
    (``pool_slots << MAGLEV_INDEX_BITS`` words) would exceed
    :data:`TNA_MAGLEV_PADDED_MAX_BITS`: a register lives in one MAU stage, while the
    banks cost one stateful ALU each (four per stage)."""
    return not g.maglev_pow2 and ((g.pool_slots << g.maglev_index_bits)
                                  * tna_register_bits(g.dip_bits)
                                  > TNA_MAGLEV_PADDED_MAX_BITS)


def tna_maglev_mod_tables(g: Geometry) -> dict[str, list[int]]:
    """The constant lookup registers with which the TNA program computes ``crc % M`` for
    a prime Maglev size M without a modulo: ``crc = hi * 2^16 + lo``, so
    ``crc % M = ((hi << 16) % M + lo % M) % M``. ``MOD_LO[lo] = lo % M`` and
    ``MOD_HI[hi] = ((hi << 16) % M - M) mod 2^32``: the stateful ALU of ``MOD_HI`` adds
    the low term, giving ``sum - M`` with ``sum < 2M``, and one conditional add of M
    (when bit 31 is set) finishes it. ``MOD_LO`` is the identity when M > 2^16 and is
    then left out. Empty for a power-of-two M (the index is then the low CRC bits)."""
    m = g.maglev_size
    if g.maglev_pow2:
        return {}
    half = 1 << TNA_MOD_HALF_BITS
    tables = {"maglev_mod_hi": [((hi << TNA_MOD_HALF_BITS) % m - m) & 0xFFFFFFFF
                                for hi in range(half)]}
    if tna_mod_lo(g):
        tables["maglev_mod_lo"] = [lo % m for lo in range(half)]
    return tables


def tna_maglev_reduce(g: Geometry, crc: int) -> int:
    """``crc % M`` computed the way the TNA program does it (lookups, the stateful
    ALU's add, one conditional add of M on the low index bits); equal to ``crc % M``
    for every 32-bit ``crc``."""
    m, half = g.maglev_size, TNA_MOD_HALF_BITS
    if g.maglev_pow2:
        return crc & (m - 1)
    hi, lo = crc >> half, crc & ((1 << half) - 1)
    mod_hi = ((hi << half) % m - m) & 0xFFFFFFFF
    diff = (mod_hi + (lo % m if tna_mod_lo(g) else lo)) & 0xFFFFFFFF
    mask = (1 << g.maglev_index_bits) - 1
    return diff & mask if not diff >> 31 else (diff + m) & mask
