"""The hash family every target implements: CRC-32 (zlib/IEEE) over salt + 5-tuple.

Byte layout of one hash input (17 bytes, network order, MSB first)::

    salt[31:24] salt[23:16] salt[15:8] salt[7:0]  field_a ... field_e

where ``field_a .. field_e`` are the five key fields -- src_ip (4 bytes), dst_ip (4),
src_port (2), dst_port (2), proto (1) -- each big-endian, in the *field order of the
hash's role* (:data:`FIELD_ORDERS`). The result is ``zlib.crc32`` of those bytes:
reflected CRC-32, polynomial 0x04C11DB7, init 0xFFFFFFFF, final xor 0xFFFFFFFF.

Why per-role field orders and not only per-role salts: CRC is affine over GF(2), so
for a fixed-length message a salt prefix only XORs a constant into the result. With
salts alone every cuckoo stage index would be ``L(key) ^ c_i`` -- keys that collide in
one stage collide in all of them and the table saturates at a few percent load.
Permuting the fields changes the linear map itself, which gives the stages
independent buckets (measured in docs/model.md: d=4 reaches ~97 % load).
In P4 the order is simply the order of the field list; in C++ and RTL the order in
which bytes are fed.

Uses of the 32-bit result ``h``:

* stage ``i`` index: ``h_stage_i & (2**log2_slots - 1)``
* digest: ``h_digest & (2**digest_bits - 1)`` (or the packed 104-bit key when "full")
* Maglev index: ``h_maglev % maglev_size`` (``& (M-1)`` for power-of-two M)
* TransitTable Bloom index ``j``: ``h_transit_j & (2**transit_log2_bits - 1)``
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .config import Config

__all__ = [
    "FIELDS",
    "FIELD_BYTES",
    "FIELD_ORDERS",
    "AUTH_FIELDS",
    "FiveTuple",
    "hash_bytes",
    "crc32_tuple",
    "crc32_tuples",
    "pack_key",
    "Hasher",
]

#: Key fields in canonical (network header) order and their sizes in bytes.
FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "proto")
FIELD_BYTES = {"src_ip": 4, "dst_ip": 4, "src_port": 2, "dst_port": 2, "proto": 1}

#: Field order of each hash role. Roles: "stage0".."stage7", "digest", "maglev",
#: "transit0".."transit3". Fixed by this specification; every target copies it.
FIELD_ORDERS: dict[str, tuple[str, ...]] = {
    "stage0": ("src_ip", "dst_ip", "src_port", "dst_port", "proto"),
    "stage1": ("dst_port", "src_ip", "proto", "src_port", "dst_ip"),
    "stage2": ("src_port", "proto", "dst_ip", "src_ip", "dst_port"),
    "stage3": ("proto", "dst_ip", "dst_port", "src_ip", "src_port"),
    "stage4": ("dst_ip", "src_port", "src_ip", "dst_port", "proto"),
    "stage5": ("src_ip", "dst_port", "src_port", "proto", "dst_ip"),
    "stage6": ("dst_port", "proto", "dst_ip", "src_port", "src_ip"),
    "stage7": ("src_port", "src_ip", "proto", "dst_ip", "dst_port"),
    "digest": ("dst_ip", "proto", "src_port", "src_ip", "dst_port"),
    "maglev": ("proto", "src_port", "dst_port", "dst_ip", "src_ip"),
    "transit0": ("src_port", "dst_port", "src_ip", "proto", "dst_ip"),
    "transit1": ("dst_ip", "src_ip", "dst_port", "proto", "src_port"),
    "transit2": ("proto", "src_ip", "src_port", "dst_ip", "dst_port"),
    "transit3": ("dst_port", "dst_ip", "proto", "src_ip", "src_port"),
}

#: The verified-source hashes of SYN authentication cover the source address only:
#: ``h_k = zlib.crc32(salts.auth[k] || src_ip)``; the index in way ``w`` = 0, 1 is the
#: low ``auth_log2_sources`` bits of ``h_w``, the tag (both ways) the low
#: ``model.lifecycle.AUTH_TAG_BITS`` bits of ``h_2``.
AUTH_FIELDS: tuple[str, ...] = ("src_ip",)


@dataclass(frozen=True, order=True)
class FiveTuple:
    """A connection key. Integers in host order (IPv4 addresses as 32-bit ints)."""

    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int
    proto: int

    def field_bytes(self, order: tuple[str, ...] = FIELDS) -> bytes:
        return b"".join(
            getattr(self, f).to_bytes(FIELD_BYTES[f], "big") for f in order
        )


def pack_key(t: FiveTuple) -> int:
    """The 104-bit key as one integer, fields in canonical order, src_ip most significant."""
    return int.from_bytes(t.field_bytes(FIELDS), "big")


def hash_bytes(salt: int, t: FiveTuple, order: tuple[str, ...]) -> bytes:
    """The exact bytes hashed for one role (documented at the top of this module)."""
    return salt.to_bytes(4, "big") + t.field_bytes(order)


def crc32_tuple(salt: int, t: FiveTuple, order: tuple[str, ...] = FIELDS) -> int:
    """Scalar reference: ``zlib.crc32(salt || fields in order)``."""
    return zlib.crc32(hash_bytes(salt, t, order))


# ---- vectorised CRC-32 (table driven, one byte column at a time) ------------------

def _make_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0xEDB88320 if c & 1 else 0)
        table[i] = c
    return table


_CRC_TABLE = _make_table()


def _field_columns(arrays: dict[str, np.ndarray], order: tuple[str, ...]) -> list[np.ndarray]:
    cols = []
    for f in order:
        a = arrays[f].astype(np.uint64)
        for b in reversed(range(FIELD_BYTES[f])):
            cols.append(((a >> np.uint64(8 * b)) & np.uint64(0xFF)).astype(np.uint32))
    return cols


def crc32_tuples(salt: int, arrays: dict[str, np.ndarray], order: tuple[str, ...] = FIELDS
                 ) -> np.ndarray:
    """Vectorised :func:`crc32_tuple` over arrays of key fields (uint32 result)."""
    n = len(arrays["src_ip"])
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    # The salt is the same for every row: fold it scalar-wise first.
    state = 0xFFFFFFFF
    for byte in salt.to_bytes(4, "big"):
        state = int(_CRC_TABLE[(state ^ byte) & 0xFF]) ^ (state >> 8)
    crc[:] = state
    for col in _field_columns(arrays, order):
        crc = _CRC_TABLE[(crc ^ col) & 0xFF] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


class Hasher:
    """All hashes of one config: stage indices, digest, Maglev index, Bloom indices."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        g = cfg.geometry
        self.stage_mask = g.slots - 1
        self.digest_mask = (1 << g.digest_bits) - 1
        self.transit_mask = g.transit_bits - 1

    # -- scalar ---------------------------------------------------------------------
    def stage_index(self, i: int, t: FiveTuple) -> int:
        return crc32_tuple(self.cfg.salts.stages[i], t, FIELD_ORDERS[f"stage{i}"]) \
            & self.stage_mask

    def stage_indices(self, t: FiveTuple) -> list[int]:
        return [self.stage_index(i, t) for i in range(self.cfg.geometry.stages)]

    def digest(self, t: FiveTuple) -> int:
        if self.cfg.geometry.full_key:
            return pack_key(t)
        return crc32_tuple(self.cfg.salts.digest, t, FIELD_ORDERS["digest"]) & self.digest_mask

    def maglev_hash(self, t: FiveTuple) -> int:
        return crc32_tuple(self.cfg.salts.maglev, t, FIELD_ORDERS["maglev"])

    def maglev_index(self, t: FiveTuple) -> int:
        return self.maglev_hash(t) % self.cfg.geometry.maglev_size

    def transit_indices(self, t: FiveTuple) -> list[int]:
        return [
            crc32_tuple(s, t, FIELD_ORDERS[f"transit{j}"]) & self.transit_mask
            for j, s in enumerate(self.cfg.salts.transit)
        ]

    def auth_slots(self, t: FiveTuple) -> tuple[int, int, int]:
        """(index in way 0, index in way 1, tag) of the key's source in the
        verified-source table."""
        from .lifecycle import AUTH_TAG_BITS

        a = self.cfg.lifecycle.auth_log2_sources
        h0, h1, h2 = (crc32_tuple(s, t, AUTH_FIELDS) for s in self.cfg.salts.auth)
        mask = (1 << a) - 1
        return h0 & mask, h1 & mask, h2 & ((1 << AUTH_TAG_BITS) - 1)

    # -- vectorised -----------------------------------------------------------------
    def batch(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All hash outputs for arrays of keys: ``stage`` (d x n), ``digest``,
        ``maglev`` (index), ``transit`` (t x n). Full-key digests are returned as
        Python ints in an object array."""
        g = self.cfg.geometry
        s = self.cfg.salts
        stage = np.stack([
            crc32_tuples(s.stages[i], arrays, FIELD_ORDERS[f"stage{i}"]) & self.stage_mask
            for i in range(g.stages)
        ]).astype(np.int64)
        if g.full_key:
            digest = np.array([
                (int(a) << 72) | (int(b) << 40) | (int(c) << 24) | (int(d) << 8) | int(e)
                for a, b, c, d, e in zip(*(arrays[f] for f in FIELDS), strict=True)
            ], dtype=object)
        else:
            digest = (crc32_tuples(s.digest, arrays, FIELD_ORDERS["digest"])
                      & np.uint32(self.digest_mask)).astype(np.int64)
        mag = crc32_tuples(s.maglev, arrays, FIELD_ORDERS["maglev"]).astype(np.int64) \
            % g.maglev_size
        transit = np.stack([
            crc32_tuples(sj, arrays, FIELD_ORDERS[f"transit{j}"]) & self.transit_mask
            for j, sj in enumerate(s.transit)
        ]).astype(np.int64)
        return {"stage": stage, "digest": digest, "maglev": mag, "transit": transit}
