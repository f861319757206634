"""Payload layouts of the core's streams and the write interface's memory map.

All layouts are :class:`amaranth.lib.data.StructLayout`, which packs fields LSB first:
the *first* field listed is bit 0. :data:`KEY_LAYOUT` is ordered so that its packed
value equals :func:`model.hashing.pack_key` (src_ip most significant, proto in bits
7..0), the same 104-bit integer the hash matrices are derived over.

The memory ids of the write interface are the positions of the memories in
:func:`model.layout.memory_specs` (the order of ``manifest.json``):
``conn0 .. conn{d-1}, vip, vip_state, slot_map, maglev, dip, transit0 .. transit{t-1}``,
then with a ``[lifecycle]`` ``act0 .. act{d-1}, vip_auth, auth0, auth1, auth_key,
auth_epoch`` (those the config has), then with a ``[network]`` ``rev, route, port_mac``.
"""

from dataclasses import dataclass

from amaranth.lib import data

from model.config import Config, Geometry, clog2
from model.layout import memory_specs
from model.lifecycle import AUTH_WORD_BITS, Lifecycle
from model.network import PORT_BITS, Network

__all__ = [
    "KEY_LAYOUT",
    "MemInfo",
    "memory_map",
    "stage_bits",
    "packet_layout",
    "write_layout",
    "decision_layout",
    "learn_layout",
    "counters_layout",
    "read_layout",
    "rdata_layout",
    "COUNTERS",
    "config_summary",
]

#: The 5-tuple, packed exactly like :func:`model.hashing.pack_key`.
KEY_LAYOUT = data.StructLayout({
    "proto": 8,
    "dst_port": 16,
    "src_port": 16,
    "dst_ip": 32,
    "src_ip": 32,
})

#: Counter names, in port order.
COUNTERS = ("packets", "vip_hits", "conn_misses", "drops", "learn_drops")


@dataclass(frozen=True)
class MemInfo:
    """One memory of the write interface: id, name, word width, depth, address bits."""

    id: int
    name: str
    width: int
    depth: int

    @property
    def addr_bits(self) -> int:
        return clog2(self.depth)


def memory_map(geo: Geometry, lifecycle: Lifecycle | None = None,
               network: Network | None = None) -> dict[str, MemInfo]:
    """Memories addressable through the write interface, by name (ids = manifest order);
    with a ``lifecycle``, its memories follow, then with an enabled ``network`` its
    memories (:func:`model.layout.memory_specs`)."""
    return {s.name: MemInfo(i, s.name, s.width, s.depth)
            for i, s in enumerate(memory_specs(geo, lifecycle, network))}


def stage_bits(geo: Geometry) -> int:
    """Width of the decision's ``stage`` field (at least 1)."""
    return clog2(geo.stages)


def packet_layout(meta_width: int, seq: bool = False) -> data.StructLayout:
    """Input packet: 5-tuple, TCP flags and an opaque pass-through ``meta``; with ``seq``
    (SYN authentication) also the TCP sequence number."""
    if seq:
        return data.StructLayout({"key": KEY_LAYOUT, "tcp_flags": 8, "meta": meta_width,
                                  "seq": 32})
    return data.StructLayout({"key": KEY_LAYOUT, "tcp_flags": 8, "meta": meta_width})


def write_layout(geo: Geometry, lifecycle: Lifecycle | None = None,
                 network: Network | None = None) -> data.StructLayout:
    """Control-plane write: memory id, word address, word (LSB-aligned)."""
    mm = memory_map(geo, lifecycle, network).values()
    return data.StructLayout({
        "mem": clog2(len(mm)),
        "addr": max(m.addr_bits for m in mm),
        "data": max(m.width for m in mm),
    })


def decision_layout(geo: Geometry, meta_width: int, cookie: bool = False,
                    network: Network | None = None) -> data.StructLayout:
    """Output: the 12 :class:`model.pipeline.Decision` fields, the destination of the
    emitted packet (``out_dst_ip``/``out_dst_port``: the DIP on LB, else unchanged) and
    ``meta``; with ``cookie`` (SYN authentication) a 3-bit ``action`` (CHALLENGE, VERIFY,
    UNVERIFIED) and the ``cookie`` field; with an enabled ``network`` a 3-bit ``action``
    (REVERSE) and the forwarding fields ``route_hit``, ``route`` (index), ``port``."""
    net = network is not None and network.enabled
    fields = {
        "action": 3 if cookie or net else 2,
        "vip_id": geo.vip_bits,
        "hit": 1,
        "stage": stage_bits(geo),
        "version": geo.version_bits,
        "transit_hit": 1,
        "slot": geo.slot_bits,
        "dip": geo.dip_bits,
        "dip_ip": 32,
        "dip_port": 16,
        "learn": 1,
        "close": 1,
        "out_dst_ip": 32,
        "out_dst_port": 16,
        "meta": meta_width,
    }
    if cookie:
        fields["cookie"] = 32
    if net:
        fields |= {"route_hit": 1, "route": clog2(network.route_capacity), "port": PORT_BITS}
    return data.StructLayout(fields)


def read_layout(geo: Geometry, lifecycle: Lifecycle, network: Network | None = None
                ) -> data.StructLayout:
    """Control-plane read request: memory id and word address (as a write's)."""
    wl = write_layout(geo, lifecycle, network)
    return data.StructLayout({"mem": wl["mem"].shape, "addr": wl["addr"].shape})


def rdata_layout() -> data.StructLayout:
    """Answer of a control-plane read: the word (LSB-aligned)."""
    return data.StructLayout({"data": AUTH_WORD_BITS})


def learn_layout(geo: Geometry) -> data.StructLayout:
    """Learn event: the new connection's key, its VIP and the version it was given."""
    return data.StructLayout({"key": KEY_LAYOUT, "vip_id": geo.vip_bits,
                              "version": geo.version_bits})


def counters_layout(width: int) -> data.StructLayout:
    """Free-running statistics counters (wrap at ``2**width``)."""
    return data.StructLayout({name: width for name in COUNTERS})


def config_summary(cfg: Config) -> str:
    """One line naming the geometry (for generated file headers)."""
    g = cfg.geometry
    return (f"config {cfg.name!r}: d={g.stages} x 2^{g.log2_slots} words, digest "
            f"{'full key' if g.full_key else g.digest_bits}, version {g.version_bits}, "
            f"Maglev M={g.maglev_size} x {g.pool_slots} slots, {g.vip_capacity} VIPs, "
            f"{g.dip_capacity} DIPs, transit {g.transit_hashes} x 2^{g.transit_log2_bits}")
