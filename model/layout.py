"""Word layouts and the memory map: the hardware state every target holds.

Each memory is an array of words of a fixed width. Field positions are given LSB
first; the same packing is used by the vector files (docs/vectors.md), the RTL
(docs/rtl.md), the P4 register arrays and the HLS arrays.

============  =====================  ==============================================
memory        depth                  word (MSB .. LSB)
============  =====================  ==============================================
conn<i>       2**log2_slots          valid(1) | version(V) | digest(D)
vip           vip_capacity           valid(1) | ip(32) | port(16) | proto(8)
vip_state     vip_capacity           phase(2) | old_version(V) | cur_version(V)
slot_map      vip_capacity * 2**V    valid(1) | slot(S)      addr = vip_id<<V | ver
maglev        pool_slots * M         dip_index(dip_bits)     addr = slot*M + index
dip           dip_capacity           ip(32) | port(16)
transit<j>    2**transit_log2_bits   bit(1)
============  =====================  ==============================================

With a ``[lifecycle]`` (model.lifecycle, docs/lifecycle.md) the map also holds

============  =====================  ==============================================
act<i>        2**log2_slots          bit(1): conn<i> word hit since the last scan
vip_auth      vip_capacity           bit(1): the VIP authenticates new sources
auth<w>       2**auth_log2_sources   valid(1) | stamp(1) | tag(30)   w = 0, 1
auth_key      2                      64-bit HalfSipHash key of each epoch parity
auth_epoch    1                      bit(1): the current epoch parity
============  =====================  ==============================================

(``act<i>`` when ``idle_timeout > 0``; the ``auth`` memories when a VIP has ``auth``.)

With a ``[network]`` (model.network, docs/network.md): ``rev`` (dip_capacity words,
the return path), ``route`` (route_capacity next-hop routes) and ``port_mac``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .config import Config, Geometry
from .lifecycle import AUTH_WORD_BITS, Lifecycle
from .network import ROUTE_WORD_BITS, Network, rev_word_bits

__all__ = [
    "Phase",
    "Action",
    "MemorySpec",
    "memory_specs",
    "Memories",
    "Read",
    "MemoryError_",
    "pack_conn",
    "unpack_conn",
    "pack_vip",
    "pack_vip_state",
    "unpack_vip_state",
    "pack_slot",
    "unpack_slot",
    "pack_dip",
    "unpack_dip",
]


class Phase(IntEnum):
    """Per-VIP two-phase-commit state held in ``vip_state`` (model.pools)."""

    IDLE = 0    # misses use cur_version
    RECORD = 1  # misses use cur_version (the old one) and are recorded in the TransitTable
    FLIP = 2    # misses found in the TransitTable use old_version, others cur_version


class Action(IntEnum):
    """What the data plane does with a packet."""

    FORWARD = 0  # not a VIP: forwarded unchanged
    LB = 1       # VIP: destination rewritten to the selected DIP
    DROP = 2     # VIP, but its (VIP, version) has no live pool slot
    # SYN authentication (model.lifecycle), only for VIPs with ``auth``:
    CHALLENGE = 3   # SYN of an unverified source: answered with a cookie SYN-ACK
    VERIFY = 4      # RST carrying a valid cookie: source marked verified, RST consumed
    UNVERIFIED = 5  # other miss of an unverified source: dropped
    # the return path (model.network), only with a ``[network]`` table:
    REVERSE = 6     # a DIP's reply: source rewritten to the VIP's address and port


@dataclass(frozen=True)
class MemorySpec:
    """Name, word width and depth of one memory."""

    name: str
    width: int
    depth: int

    @property
    def addr_bits(self) -> int:
        return max(1, (self.depth - 1).bit_length())


def memory_specs(geo: Geometry, lifecycle: Lifecycle | None = None,
                 network: Network | None = None) -> list[MemorySpec]:
    """The memory map of a geometry, in a fixed order (the order of manifest.json);
    with ``lifecycle``, its memories follow the base map, then with ``network``
    (``model.network``) the return-path and forwarding memories."""
    V = geo.version_bits
    specs = [MemorySpec(f"conn{i}", geo.conn_word_bits, geo.slots) for i in range(geo.stages)]
    specs += [
        MemorySpec("vip", 57, geo.vip_capacity),
        MemorySpec("vip_state", 2 * V + 2, geo.vip_capacity),
        MemorySpec("slot_map", 1 + geo.slot_bits, geo.vip_capacity << V),
        MemorySpec("maglev", geo.dip_bits, geo.maglev_depth),
        MemorySpec("dip", 48, geo.dip_capacity),
    ]
    specs += [MemorySpec(f"transit{j}", 1, geo.transit_bits) for j in range(geo.transit_hashes)]
    if lifecycle is not None and lifecycle.aging:
        specs += [MemorySpec(f"act{i}", 1, geo.slots) for i in range(geo.stages)]
    if lifecycle is not None and lifecycle.auth:
        specs += [
            MemorySpec("vip_auth", 1, geo.vip_capacity),
            MemorySpec("auth0", AUTH_WORD_BITS, lifecycle.auth_sources),
            MemorySpec("auth1", AUTH_WORD_BITS, lifecycle.auth_sources),
            MemorySpec("auth_key", 64, 2),
            MemorySpec("auth_epoch", 1, 1),
        ]
    if network is not None and network.enabled:
        specs += [
            MemorySpec("rev", rev_word_bits(geo.vip_bits), geo.dip_capacity),
            MemorySpec("route", ROUTE_WORD_BITS, network.route_capacity),
            MemorySpec("port_mac", 48, network.port_capacity),
        ]
    return specs


# ---- packing ----------------------------------------------------------------------

def pack_conn(geo: Geometry, valid: bool, version: int, digest: int) -> int:
    D, V = geo.digest_bits, geo.version_bits
    return (int(valid) << (V + D)) | (version << D) | digest


def unpack_conn(geo: Geometry, word: int) -> tuple[bool, int, int]:
    D, V = geo.digest_bits, geo.version_bits
    return bool(word >> (V + D) & 1), (word >> D) & ((1 << V) - 1), word & ((1 << D) - 1)


def pack_vip(valid: bool, ip: int, port: int, proto: int) -> int:
    return (int(valid) << 56) | (ip << 24) | (port << 8) | proto


def pack_vip_state(geo: Geometry, phase: Phase, old_version: int, cur_version: int) -> int:
    V = geo.version_bits
    return (int(phase) << (2 * V)) | (old_version << V) | cur_version


def unpack_vip_state(geo: Geometry, word: int) -> tuple[int, int, int]:
    """(phase, old_version, cur_version). Phase 3 is reserved and behaves as IDLE in
    every target (only RECORD and FLIP change what a miss does)."""
    V = geo.version_bits
    m = (1 << V) - 1
    return word >> (2 * V) & 3, (word >> V) & m, word & m


def pack_slot(geo: Geometry, valid: bool, slot: int) -> int:
    return (int(valid) << geo.slot_bits) | slot


def unpack_slot(geo: Geometry, word: int) -> tuple[bool, int]:
    return bool(word >> geo.slot_bits & 1), word & ((1 << geo.slot_bits) - 1)


def pack_dip(ip: int, port: int) -> int:
    return (ip << 16) | port


def unpack_dip(word: int) -> tuple[int, int]:
    return word >> 16, word & 0xFFFF


# ---- the memories themselves --------------------------------------------------------

class MemoryError_(ValueError):
    """A write names an unknown memory, an address out of range or a too-wide word."""


@dataclass(frozen=True)
class Read:
    """A control-plane read of a word the data plane changes (an activity bit, a
    verified-source entry), logged with the value the model read."""

    mem: str
    addr: int
    word: int


class Memories:
    """All data-plane memories of a config, word-addressed, with an optional write log.

    Words up to 63 bits live in int64 numpy arrays; wider ones (full-key ConnTable
    words) in object arrays of Python ints. Every control-plane change is a call to
    :meth:`write`; when ``log`` is a list each write is appended as ``(name, addr, word)``
    so the vector writer can interleave them with packets, and each :meth:`cp_read`
    as a :class:`Read`.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.specs = {s.name: s for s in memory_specs(cfg.geometry, cfg.lifecycle,
                                                      cfg.network)}
        self.arrays: dict[str, np.ndarray] = {}
        for s in self.specs.values():
            dtype = np.int64 if s.width <= 63 else object
            self.arrays[s.name] = np.zeros(s.depth, dtype=dtype)
            if dtype is object:
                self.arrays[s.name][:] = 0
        self.log: list[tuple[str, int, int] | Read] | None = None
        self._generation: dict[str, int] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def write(self, name: str, addr: int, word: int) -> None:
        spec = self.specs.get(name)
        if spec is None:
            raise MemoryError_(f"write: unknown memory {name!r}")
        if not 0 <= addr < spec.depth:
            raise MemoryError_(f"write {name}: address {addr!r} outside 0..{spec.depth - 1}")
        if not 0 <= word < (1 << spec.width):
            raise MemoryError_(f"write {name}[{addr}]: word {word:#x} wider than {spec.width} bits")
        self.arrays[name][addr] = word
        self._generation[name] = self._generation.get(name, 0) + 1
        if self.log is not None:
            self.log.append((name, addr, int(word)))

    def generation(self, name: str) -> int:
        """Control-plane writes to ``name`` so far (for caches derived from a memory
        only the control plane writes)."""
        return self._generation.get(name, 0)

    def read(self, name: str, addr: int) -> int:
        return int(self.arrays[name][addr])

    def cp_read(self, name: str, addr: int) -> int:
        """A control-plane read (logged): the word a target must show at this point."""
        word = self.read(name, addr)
        if self.log is not None:
            self.log.append(Read(name, addr, word))
        return word

    def snapshot(self) -> dict[str, list[int]]:
        """Word-exact contents of every memory (for image files)."""
        return {k: [int(x) for x in v] for k, v in self.arrays.items()}
