"""Frames in, frames out: the parser, the data plane and the destination rewrite.

:meth:`FrameDataPlane.process_frame` is the frame-level specification (docs/frames.md)
that every frame datapath follows:

* a frame the parser (:func:`model.parse.parse_frame`) does not accept is forwarded
  byte for byte or dropped, as the config's ``[frames]`` policy says for its reason;
  its decision is ``Decision()`` (FORWARD) or ``Decision(action=DROP)``;
* a well-formed IPv4 TCP/UDP frame is decided by :meth:`model.pipeline.DataPlane.process`:
  FORWARD (not a VIP) returns it byte for byte, DROP returns ``None``, LB returns it
  with the destination address and port replaced by the DIP's and the checksums
  updated incrementally (:func:`rewrite_destination`);
* SYN authentication (docs/lifecycle.md): CHALLENGE returns the reply
  :func:`challenge_frame` (to be sent back out of the port the frame came in on),
  VERIFY and UNVERIFIED return ``None``;
* with a ``[network]`` (model.network, docs/network.md): REVERSE returns the frame with
  its source rewritten to the VIP (:func:`rewrite_source`); every frame that leaves
  gets the destination MAC of its route and the source MAC of the route's port
  (:func:`set_macs`), and leaves through ``decision.port``; a frame without a route,
  and every frame the parser does not accept, is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import Config
from .layout import Action, Memories
from .network import unpack_route
from .parse import PROTO_TCP, PROTO_UDP, ParsedFrame, Reason, ones_sum, parse_frame
from .pipeline import DataPlane, Decision, Packet

__all__ = ["FrameDataPlane", "FrameResult", "csum16_replace", "rewrite_destination",
           "rewrite_source", "set_macs", "challenge_frame", "DROP_DECISION",
           "CHALLENGE_WINDOW", "CHALLENGE_TTL"]

#: Window and TTL of a challenge SYN-ACK (the client rejects it before reading either).
CHALLENGE_WINDOW = 8192
CHALLENGE_TTL = 64

_ACTION_NAMES = {a: a.name.lower() for a in Action} | {Action.LB: "lb"}

#: The decision reported for a frame the ``[frames]`` policy drops.
DROP_DECISION = Decision(action=Action.DROP)
_FORWARD_DECISION = Decision()


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum16_replace(csum: int, old: tuple[int, ...], new: tuple[int, ...]) -> int:
    """RFC 1624 eqn. 3, ``HC' = ~(~HC + ~m + m')``, for the 16-bit words ``old`` (m)
    replaced by ``new`` (m'), in ones'-complement arithmetic (end-around carry)."""
    s = (~csum & 0xFFFF) + sum(~m & 0xFFFF for m in old) + sum(new)
    return ~_fold(s) & 0xFFFF


def _words32(x: int) -> tuple[int, int]:
    return x >> 16, x & 0xFFFF


def rewrite_destination(frame: bytes, parsed: ParsedFrame, dip_ip: int, dip_port: int
                        ) -> bytes:
    """The frame with destination address and port set to ``(dip_ip, dip_port)``.

    Only these bytes change: the IPv4 destination address and header checksum, the
    TCP/UDP destination port and checksum. The IPv4 header checksum is updated over the
    two address words; the TCP/UDP checksum over the address words (pseudo-header) and
    the port. A UDP checksum of 0 (none, RFC 768) stays 0; an updated UDP checksum of
    0 is sent as 0xFFFF (its other ones'-complement form). Ethernet padding, IPv4
    options and payload are untouched."""
    return _rewrite(frame, parsed, dip_ip, dip_port, source=False)


def rewrite_source(frame: bytes, parsed: ParsedFrame, vip_ip: int, vip_port: int) -> bytes:
    """The frame with *source* address and port set to ``(vip_ip, vip_port)`` (the
    return path, model.network): the mirror of :func:`rewrite_destination`, with the
    same incremental checksum updates."""
    return _rewrite(frame, parsed, vip_ip, vip_port, source=True)


def _rewrite(frame: bytes, parsed: ParsedFrame, ip: int, port: int, source: bool) -> bytes:
    """The frame with its source (``source``) or destination address and port replaced,
    the checksums updated incrementally (see :func:`rewrite_destination`)."""
    pkt = parsed.packet
    assert pkt is not None and parsed.ok, "rewrite of a frame that was not parsed OK"
    l3, l4 = parsed.l3, parsed.l4
    out = bytearray(frame)
    old_addr, old_port = (pkt.src_ip, pkt.src_port) if source else (pkt.dst_ip, pkt.dst_port)
    ip_at, port_at = (l3 + 12, l4) if source else (l3 + 16, l4 + 2)
    old_ip, new_ip = _words32(old_addr), _words32(ip)
    ip_csum = int.from_bytes(frame[l3 + 10:l3 + 12], "big")
    out[l3 + 10:l3 + 12] = csum16_replace(ip_csum, old_ip, new_ip).to_bytes(2, "big")
    out[ip_at:ip_at + 4] = ip.to_bytes(4, "big")
    at = l4 + (16 if pkt.proto == PROTO_TCP else 6)
    l4_csum = int.from_bytes(frame[at:at + 2], "big")
    if pkt.proto == PROTO_TCP or l4_csum != 0:
        c = csum16_replace(l4_csum, (*old_ip, old_port), (*new_ip, port))
        if pkt.proto == PROTO_UDP and c == 0:
            c = 0xFFFF
        out[at:at + 2] = c.to_bytes(2, "big")
    out[port_at:port_at + 2] = port.to_bytes(2, "big")
    return bytes(out)


def set_macs(frame: bytes, dst_mac: int, src_mac: int) -> bytes:
    """The frame with its Ethernet destination and source MAC addresses replaced."""
    return dst_mac.to_bytes(6, "big") + src_mac.to_bytes(6, "big") + frame[12:]


def challenge_frame(frame: bytes, parsed: ParsedFrame, cookie: int) -> bytes:
    """The SYN-ACK that answers an unverified SYN (a CHALLENGE decision).

    Ethernet: the frame's MAC addresses swapped, its VLAN tags and EtherType kept.
    IPv4, 20 bytes: version 4, IHL 5, DSCP/ECN 0, total length 40, identification 0,
    DF, TTL :data:`CHALLENGE_TTL`, protocol 6, full header checksum, source and
    destination swapped. TCP, 20 bytes: ports swapped, sequence number 0,
    acknowledgement number ``cookie``, data offset 5, flags SYN|ACK, window
    :data:`CHALLENGE_WINDOW`, full checksum, urgent pointer 0. No options, no payload,
    no padding (54 bytes untagged; a MAC pads it on the wire)."""
    pkt = parsed.packet
    assert pkt is not None and parsed.ok and pkt.proto == PROTO_TCP
    l3 = parsed.l3
    eth = frame[6:12] + frame[0:6] + frame[12:l3]
    ip = bytearray(20)
    ip[0], ip[2:4], ip[6:8], ip[8], ip[9] = 0x45, (40).to_bytes(2, "big"), b"\x40\x00", \
        CHALLENGE_TTL, PROTO_TCP
    ip[12:16], ip[16:20] = pkt.dst_ip.to_bytes(4, "big"), pkt.src_ip.to_bytes(4, "big")
    ip[10:12] = (~ones_sum(bytes(ip)) & 0xFFFF).to_bytes(2, "big")
    tcp = bytearray(20)
    tcp[0:2], tcp[2:4] = pkt.dst_port.to_bytes(2, "big"), pkt.src_port.to_bytes(2, "big")
    tcp[8:12] = cookie.to_bytes(4, "big")
    tcp[12], tcp[13], tcp[14:16] = 5 << 4, 0x12, CHALLENGE_WINDOW.to_bytes(2, "big")
    pseudo = ip[12:20] + bytes([0, PROTO_TCP]) + (20).to_bytes(2, "big")
    tcp[16:18] = (~ones_sum(bytes(pseudo) + bytes(tcp)) & 0xFFFF).to_bytes(2, "big")
    return bytes(eth) + bytes(ip) + bytes(tcp)


@dataclass(frozen=True)
class FrameResult:
    """One frame's outcome: output (None: dropped), decision, reason, parsed packet."""

    out: bytes | None
    decision: Decision
    reason: Reason
    packet: Packet | None = None


class FrameDataPlane:
    """A :class:`~model.pipeline.DataPlane` behind the frame parser and rewriter.

    Parameters
    ----------
    cfg : Config
        Gives the ``[frames]`` policy (and the geometry when ``dataplane`` is None).
    mem : Memories, optional
        The data plane's memories (a fresh :class:`DataPlane` is built on them).
    dataplane : DataPlane, optional
        Use this data plane (sharing its memories and TransitTable state).

    Members
    -------
    reasons : dict[Reason, int]
        Frames seen per parser reason.
    actions : dict[str, int]
        Frames per outcome: ``lb``, ``forward`` (not a VIP), ``drop`` (no valid slot),
        ``malformed_forward`` and ``malformed_drop`` (the policy's), and with SYN
        authentication ``challenge``, ``verify`` and ``unverified``.
    """

    def __init__(self, cfg: Config, mem: Memories | None = None,
                 dataplane: DataPlane | None = None):
        if dataplane is None:
            if mem is None:
                raise ValueError("FrameDataPlane needs mem or dataplane, got neither")
            dataplane = DataPlane(cfg, mem)
        self.cfg = cfg
        self.dp = dataplane
        self.drop_reason = {r: cfg.frames.action(r.key) == "drop" for r in Reason
                            if r != Reason.OK}
        self.reasons: dict[Reason, int] = dict.fromkeys(Reason, 0)
        self.network = cfg.network.enabled
        self.actions: dict[str, int] = dict.fromkeys(
            ("lb", "forward", "drop", "malformed_forward", "malformed_drop")
            + (("challenge", "verify", "unverified") if cfg.lifecycle.auth else ())
            + (("reverse", "no_route") if self.network else ()), 0)

    def process_frame(self, frame: bytes) -> tuple[bytes | None, Decision, Reason]:
        """Decide one frame: (output frame or None for a drop, decision, reason)."""
        r = self.decide(frame)
        return r.out, r.decision, r.reason

    def decide(self, frame: bytes) -> FrameResult:
        """:meth:`process_frame` with the parsed packet (for the learn stream)."""
        parsed = parse_frame(frame)
        reason = parsed.reason
        self.reasons[reason] += 1
        if reason != Reason.OK:
            if self.drop_reason[reason] or self.network:  # [network]: nothing to route by
                self.actions["malformed_drop"] += 1
                return FrameResult(None, DROP_DECISION, reason)
            self.actions["malformed_forward"] += 1
            return FrameResult(frame, _FORWARD_DECISION, reason)
        pkt = parsed.packet
        d = self.dp.process(pkt)
        self.actions[_ACTION_NAMES[d.action]] += 1
        if d.action == Action.LB:
            out = rewrite_destination(frame, parsed, d.dip_ip, d.dip_port)
        elif d.action == Action.REVERSE:
            out = rewrite_source(frame, parsed, d.dip_ip, d.dip_port)
        elif d.action == Action.CHALLENGE:
            out = challenge_frame(frame, parsed, d.cookie)
        elif d.action == Action.FORWARD:
            out = frame
        else:  # DROP, VERIFY, UNVERIFIED
            return FrameResult(None, d, reason, pkt)
        if self.network:
            if not d.route_hit:
                self.actions["no_route"] += 1
                return FrameResult(None, d, reason, pkt)
            mem = self.dp.mem
            _, _, _, port, mac = unpack_route(mem.read("route", d.route))
            out = set_macs(out, mac, mem.read("port_mac", port))
        return FrameResult(out, d, reason, pkt)
