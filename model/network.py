"""The ``[network]`` table: data-plane ports, next-hop routes and the return path
(docs/network.md).

Without a ``[network]`` table every frame leaves through the port it came in on with
its MAC addresses untouched (a bump in the wire), and servers' replies pass unchanged.
With one, the data plane is a load balancer someone can put between clients and
servers:

* **Forwarding**: every frame it emits is routed by its (rewritten) IPv4 destination
  in ``route`` (longest prefix, then lowest index): it leaves through the route's port,
  with the route's next-hop MAC as destination and ``port_mac[port]`` as source. No
  route: the frame is dropped. TTL is not decremented (an L4 load balancer in a
  switch pipeline, not an IP router hop).
* **Return path**: a frame that is not for a VIP but comes *from* a DIP of a pool --
  source (address, port, protocol) equal to a valid ``rev`` word -- is a server's
  reply: its source is rewritten to the VIP's address and port (checksums updated
  incrementally) before it is routed back to the client. A DIP (address, port) may
  therefore serve one VIP only; the config and the control plane refuse a second.

Memories (after the base and lifecycle ones, ``model.layout``):

============  =====================  ==================================================
rev           dip_capacity           valid(1) | proto(8) | dip_ip(32) | dip_port(16) |
                                     vip_id(vip_bits) | vip_ip(32) | vip_port(16)
route         route_capacity         valid(1) | prefix(32) | length(6) | port(9) | mac(48)
port_mac      max port id + 1        mac(48): source MAC of frames leaving the port
============  =====================  ==================================================

``rev[i]`` describes DIP-table entry ``i`` (written with it by the control plane).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["Port", "Route", "Network", "parse_network", "PORT_BITS", "ROUTE_WORD_BITS",
           "rev_word_bits", "pack_rev", "unpack_rev", "pack_route", "unpack_route",
           "format_mac", "parse_mac", "NetworkUnsupported", "network_unsupported",
           "require_no_network"]

#: Width of a port number (as BMv2's and Tofino's egress_spec / egress port).
PORT_BITS = 9
MAC_BITS = 48
#: valid(1) | prefix(32) | length(6) | port(9) | mac(48)
ROUTE_WORD_BITS = 1 + 32 + 6 + PORT_BITS + MAC_BITS

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def parse_mac(value: Any, path: str) -> int:
    """``"02:00:00:00:00:01"`` -> 48-bit integer; a :class:`ConfigError` naming
    ``path`` otherwise."""
    from .config import ConfigError

    if not isinstance(value, str) or not _MAC.match(value):
        raise ConfigError(f"{path}: expected a MAC address like \"02:00:00:00:00:01\", "
                          f"got {value!r}")
    return int(value.replace(":", ""), 16)


def format_mac(mac: int) -> str:
    return ":".join(f"{mac >> (8 * k) & 0xFF:02x}" for k in range(5, -1, -1))


@dataclass(frozen=True)
class Port:
    """A data-plane port: its number and the MAC frames leaving it carry as source."""

    id: int
    mac: int
    name: str = ""


@dataclass(frozen=True)
class Route:
    """Frames to ``prefix/length`` leave through ``port`` to next-hop MAC ``mac``."""

    prefix: int
    length: int
    port: int
    mac: int

    def __str__(self) -> str:
        return f"{ipaddress.IPv4Address(self.prefix)}/{self.length}"


@dataclass(frozen=True)
class Network:
    """The ``[network]`` settings; ``enabled`` is False without the table."""

    ports: tuple[Port, ...] = ()
    routes: tuple[Route, ...] = ()
    route_capacity: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.ports)

    @property
    def port_capacity(self) -> int:
        """Words of ``port_mac``: the largest port number + 1."""
        return max((p.id for p in self.ports), default=-1) + 1

    def port(self, pid: int) -> Port:
        for p in self.ports:
            if p.id == pid:
                return p
        raise KeyError(pid)


def parse_network(raw: Any, vips: tuple) -> Network:
    """Validate the ``[network]`` table (ports, routes, route_capacity) and the rule
    the return path needs: a DIP (address, port) serves one VIP."""
    from .config import ConfigError, _check_keys, _int, _table

    if raw is None or raw == {}:
        return Network()
    t = _table(raw, "network")
    _check_keys(t, {"port", "route", "route_capacity"}, "network")
    ports_raw, routes_raw = t.get("port"), t.get("route", [])
    if not isinstance(ports_raw, list) or not ports_raw:
        raise ConfigError(f"network.port: expected at least one [[network.port]] table, "
                          f"got {ports_raw!r}")
    ports: list[Port] = []
    for i, p in enumerate(ports_raw):
        path = f"network.port[{i}]"
        p = _table(p, path)
        _check_keys(p, {"id", "mac", "name"}, path)
        pid = _int(p.get("id"), f"{path}.id", 0, (1 << PORT_BITS) - 1)
        if any(q.id == pid for q in ports):
            raise ConfigError(f"{path}.id: port {pid} is defined twice")
        name = p.get("name", "")
        if not isinstance(name, str):
            raise ConfigError(f"{path}.name: expected a string, got {name!r}")
        ports.append(Port(pid, parse_mac(p.get("mac"), f"{path}.mac"), name))
    if not isinstance(routes_raw, list):
        raise ConfigError(f"network.route: expected [[network.route]] tables, got "
                          f"{routes_raw!r}")
    routes: list[Route] = []
    ids = {p.id for p in ports}
    for i, r in enumerate(routes_raw):
        path = f"network.route[{i}]"
        r = _table(r, path)
        _check_keys(r, {"prefix", "port", "mac"}, path)
        try:
            net = ipaddress.IPv4Network(str(r.get("prefix")), strict=True)
        except ValueError as e:
            raise ConfigError(f"{path}.prefix: expected an IPv4 prefix like "
                              f"\"10.0.1.0/24\" with no host bits set, got "
                              f"{r.get('prefix')!r} ({e})") from None
        pid = _int(r.get("port"), f"{path}.port", 0, (1 << PORT_BITS) - 1)
        if pid not in ids:
            raise ConfigError(f"{path}.port: port {pid} is not a [[network.port]] "
                              f"(ports: {sorted(ids)})")
        route = Route(int(net.network_address), net.prefixlen, pid,
                      parse_mac(r.get("mac"), f"{path}.mac"))
        if any((q.prefix, q.length) == (route.prefix, route.length) for q in routes):
            raise ConfigError(f"{path}.prefix: {route} is routed twice")
        routes.append(route)
    cap = _int(t.get("route_capacity", max(16, len(routes))), "network.route_capacity",
               1, 4096)
    if cap < len(routes):
        raise ConfigError(f"network.route_capacity: {cap} is smaller than the number of "
                          f"routes ({len(routes)})")
    served: dict[tuple[int, int], str] = {}
    for v in vips:
        for d in v.dips:
            k = (d.address, d.port)
            if k in served and served[k] != v.name:
                raise ConfigError(
                    f"vip {v.name!r}: DIP {d} already serves VIP {served[k]!r}; with a "
                    f"[network] table the return path maps a DIP back to one VIP")
            served[k] = v.name
    return Network(tuple(ports), tuple(routes), cap)


# ---- words -----------------------------------------------------------------------

def rev_word_bits(vip_bits: int) -> int:
    """Width of a ``rev`` word for ``vip_bits``-bit VIP ids."""
    return 1 + 8 + 32 + 16 + vip_bits + 32 + 16


def pack_rev(vip_bits: int, valid: bool, proto: int, dip_ip: int, dip_port: int,
             vip_id: int, vip_ip: int, vip_port: int) -> int:
    """valid(1) | proto(8) | dip_ip(32) | dip_port(16) | vip_id | vip_ip(32) | vip_port(16)."""
    w = vip_port | vip_ip << 16 | vip_id << 48
    at = 48 + vip_bits
    return w | dip_port << at | dip_ip << (at + 16) | proto << (at + 48) \
        | int(valid) << (at + 56)


def unpack_rev(vip_bits: int, word: int) -> tuple[bool, int, int, int, int, int, int]:
    """(valid, proto, dip_ip, dip_port, vip_id, vip_ip, vip_port) of a ``rev`` word."""
    at = 48 + vip_bits
    return (bool(word >> (at + 56) & 1), word >> (at + 48) & 0xFF,
            word >> (at + 16) & 0xFFFFFFFF, word >> at & 0xFFFF,
            word >> 48 & ((1 << vip_bits) - 1), word >> 16 & 0xFFFFFFFF, word & 0xFFFF)


def pack_route(valid: bool, prefix: int, length: int, port: int, mac: int) -> int:
    """valid(1) | prefix(32) | length(6) | port(9) | mac(48)."""
    return mac | port << 48 | length << 57 | prefix << 63 | int(valid) << 95


def unpack_route(word: int) -> tuple[bool, int, int, int, int]:
    """(valid, prefix, length, port, mac) of a ``route`` word."""
    return (bool(word >> 95 & 1), word >> 63 & 0xFFFFFFFF, word >> 57 & 0x3F,
            word >> 48 & 0x1FF, word & ((1 << 48) - 1))


# ---- targets ----------------------------------------------------------------------

class NetworkUnsupported(ValueError):
    """A target that does not implement the ``[network]`` table was given one."""


def network_unsupported(cfg: Any, target: str) -> str | None:
    """Why ``target`` cannot take ``cfg`` (it has a ``[network]`` table), or None."""
    if not cfg.network.enabled:
        return None
    return (f"{target}: network (forwarding to {len(cfg.network.ports)} ports, "
            f"{len(cfg.network.routes)} routes, and the return path) is not implemented "
            f"for this target yet; remove [network] from {cfg.source}, or use the model, "
            f"the P4 programs or HLS (l4lb run --target model|bmv2)")


def require_no_network(cfg: Any, target: str) -> None:
    """Raise :class:`NetworkUnsupported` when ``cfg`` has a ``[network]`` table."""
    why = network_unsupported(cfg, target)
    if why is not None:
        raise NetworkUnsupported(why)
