"""What the P4 programs need for the ``[network]`` table (model/network.py): forwarding
by longest-prefix route, port MACs, and the return path; constants, decision fields and
the table entries of the ``rev``, ``route`` and ``port_mac`` memories.

Both programs implement it, with the same tables and entries; TNA holds ``port_mac``
in an exact table instead of a register (48-bit words; ``codegen.p4.tna_entry``).

==============  =====================================================================
memory          P4 object (control ``SwitchIngress``)
==============  =====================================================================
``rev``         table ``rev_table``: exact src ip/port/proto ->
                ``set_reverse(vip_id, dip, vip_ip, vip_port)``; the lowest valid index
                wins a duplicated key, as in ``DataPlane._tables``
``route``       table ``route_table``: LPM on the emitted frame's IPv4 destination ->
                ``set_route(route, port, mac)``; one entry per (prefix, length), the
                lowest valid index wins a duplicate (the model's "longest prefix, then
                lowest index": two routes of one length and different prefixes never
                both match an address)
``port_mac``    v1model: 48-bit register array ``port_mac``, read at the route's port;
                TNA: exact table ``port_mac_table`` on the route's port ->
                ``set_src_mac(mac)``, default ``set_src_mac(0)`` (the zero word)
==============  =====================================================================
"""

from __future__ import annotations

import ipaddress

from model.config import Config, clog2
from model.network import PORT_BITS, unpack_rev, unpack_route

__all__ = ["NETWORK_DECISION_HEADER", "NETWORK_TABLES", "TNA_PORT_MAC_TABLE",
           "network_defines",
           "network_context", "rev_entry", "route_entry", "match_key"]

#: The exported decision of a ``[network]`` config ends with the route of the frame
#: (model.pipeline.NETWORK_DECISION_FIELDS), byte-aligned like the rest.
NETWORK_DECISION_HEADER = (("route_hit", 8), ("route", 16), ("port", 16))

#: Memory -> the match-action table that holds it.
NETWORK_TABLES = {"rev": "rev_table", "route": "route_table"}

#: TNA: (table, action) holding memory ``port_mac``; a 48-bit word does not fit a
#: 32-bit Tofino register word, and an exact table keyed by port needs no split.
TNA_PORT_MAC_TABLE = ("port_mac_table", "set_src_mac")


def network_defines(cfg: Config) -> list[tuple[str, int, str]]:
    """#define rows of the network memories (none without ``[network]``)."""
    net = cfg.network
    if not net.enabled:
        return []
    return [
        ("ROUTE_CAPACITY", net.route_capacity, "network.route_capacity"),
        ("ROUTE_BITS", clog2(net.route_capacity), "holds a route index"),
        ("PORT_BITS", PORT_BITS, "model.network.PORT_BITS (egress_spec)"),
        ("PORT_CAPACITY", net.port_capacity, "port_mac words: largest port id + 1"),
    ]


def network_context(cfg: Config) -> dict:
    """Template variables: ``network`` (the table is present)."""
    return {"network": cfg.network.enabled}


def rev_entry(cfg: Config, addr: int, word: int):
    """The ``rev_table`` entry of ``rev[addr] = word`` (None for an invalid word)."""
    from .p4 import TableAdd

    valid, proto, dip_ip, dip_port, vip_id, vip_ip, vip_port = unpack_rev(
        cfg.geometry.vip_bits, word)
    if not valid:
        return None
    g = cfg.geometry
    return TableAdd("rev_table", "set_reverse",
                    (("src_ip", dip_ip, 32), ("src_port", dip_port, 16), ("proto", proto, 8)),
                    (("vip_id", vip_id, g.vip_bits), ("dip", addr, g.dip_bits),
                     ("vip_ip", vip_ip, 32), ("vip_port", vip_port, 16)),
                    f"reply from {ipaddress.IPv4Address(dip_ip)}:{dip_port} (dip {addr}) "
                    f"-> from {ipaddress.IPv4Address(vip_ip)}:{vip_port} (vip {vip_id})")


def route_entry(cfg: Config, addr: int, word: int):
    """The ``route_table`` entry of ``route[addr] = word`` (None for an invalid word).
    The key is the prefix with its host bits cleared: the model compares
    ``dst & mask == prefix & mask``."""
    from .p4 import P4GenError, TableAdd

    valid, prefix, length, port, mac = unpack_route(word)
    if not valid:
        return None
    if length > 32:
        raise P4GenError(f"route[{addr}]: prefix length {length} > 32 (the model has no "
                         f"such route; network.route prefixes are IPv4)")
    net = prefix & ((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF)
    return TableAdd("route_table", "set_route", (("dst_ip", net, 32),),
                    (("route", addr, clog2(cfg.network.route_capacity)),
                     ("port", port, PORT_BITS), ("mac", mac, 48)),
                    f"route {addr}: {ipaddress.IPv4Address(net)}/{length} -> port {port}",
                    prefix_len=length)


def match_key(e) -> tuple | None:
    """What a table matches on (table, key values, prefix length): two entries with
    the same match key cannot both be in a table; the lowest memory index wins."""
    if e is None:
        return None
    return (e.table, tuple(v for _, v, _ in e.keys), e.prefix_len)
