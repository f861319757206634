"""The frame parser: Ethernet (up to two VLAN tags) / IPv4 (options skipped) / TCP or UDP.

:func:`parse_frame` is the specification every frame datapath follows (docs/frames.md):
it gives each frame exactly one :class:`Reason` and, for :attr:`Reason.OK`, the offsets
the rewriter needs and the :class:`~model.pipeline.Packet` the data plane decides on.

A frame is the bytes from the destination MAC address to the end of the payload, with
no FCS (what a pcap file holds and what a MAC's AXI4-Stream interface delivers).
Ethernet padding after the IPv4 packet is allowed: only the IPv4 total length
delimits the packet.

The checks run in this order and the first that fails names the reason, so a frame
with several problems has the reason of the earliest check (the priority order):

====  ==========================================================  ===================
 #    check                                                       reason on failure
====  ==========================================================  ===================
 1    at least 14 bytes (Ethernet header)                         TRUNCATED
 2    each tag (TPID 0x8100, 0x88a8 or 0x9100, at most two) has   TRUNCATED
      its 4 bytes
 3    the EtherType after at most two tags is not a TPID          TOO_MANY_TAGS
 4    EtherType 0x0800                                            NOT_IPV4
 5    20 bytes of IPv4 header present                             TRUNCATED
 6    version 4                                                   BAD_VERSION
 7    IHL >= 5 and IHL * 4 bytes present                          BAD_IHL
 8    ones'-complement sum of the IHL * 4 header bytes is 0xFFFF  BAD_IP_CHECKSUM
 9    IHL * 4 <= total length <= bytes present from the IPv4      BAD_TOTAL_LENGTH
      header on
 10   MF clear and fragment offset 0                              FRAGMENT
 11   protocol 6 (TCP) or 17 (UDP)                                NOT_TCP_UDP
 12   total length - IHL * 4 >= 20 (TCP) or 8 (UDP)               L4_TRUNCATED
====  ==========================================================  ===================

Not checked (they do not affect the decision or the incremental rewrite): the DF and
reserved flag bits, TTL, the TCP data offset, the UDP length, and the TCP/UDP
checksum (an incremental update carries an error in it over unchanged, RFC 1624).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from .pipeline import Packet

__all__ = ["Reason", "ParsedFrame", "parse_frame", "TPIDS", "ETHERTYPE_IPV4", "MAX_TAGS",
           "ones_sum"]

#: Tag protocol identifiers accepted as VLAN tags: 802.1Q, 802.1ad, and the pre-standard
#: 0x9100 that some QinQ equipment still sends as the outer tag.
TPIDS = (0x8100, 0x88A8, 0x9100)
ETHERTYPE_IPV4 = 0x0800
MAX_TAGS = 2
PROTO_TCP = 6
PROTO_UDP = 17
#: Fixed L4 header bytes that must lie inside the IPv4 payload.
L4_HEADER = {PROTO_TCP: 20, PROTO_UDP: 8}


class Reason(IntEnum):
    """Why a frame is (or is not) handed to the data plane; one per frame.

    The values are the priority order of the checks (see the module docstring), and
    the counter index a hardware datapath uses.
    """

    OK = 0
    TRUNCATED = 1
    TOO_MANY_TAGS = 2
    NOT_IPV4 = 3
    BAD_VERSION = 4
    BAD_IHL = 5
    BAD_IP_CHECKSUM = 6
    BAD_TOTAL_LENGTH = 7
    FRAGMENT = 8
    NOT_TCP_UDP = 9
    L4_TRUNCATED = 10

    @property
    def key(self) -> str:
        """The name used in configs and counters (``bad_ip_checksum``)."""
        return self.name.lower()


@dataclass(frozen=True)
class ParsedFrame:
    """The result of :func:`parse_frame`. Offsets are byte offsets into the frame.

    ``l3`` is set once the IPv4 header is located (-1 before), ``l4`` only for
    :attr:`Reason.OK`; ``packet`` is the data plane's header vector (OK only).
    """

    reason: Reason
    tags: int = 0
    l3: int = -1
    l4: int = -1
    packet: Packet | None = None

    @property
    def ok(self) -> bool:
        return self.reason == Reason.OK


def ones_sum(data: bytes | memoryview) -> int:
    """16-bit ones'-complement sum (end-around carry) of big-endian words; an odd
    length is padded with a zero byte (RFC 1071)."""
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def parse_frame(frame: bytes) -> ParsedFrame:
    """Classify one Ethernet frame and extract its 5-tuple and TCP flags."""
    n = len(frame)
    if n < 14:
        return ParsedFrame(Reason.TRUNCATED)
    off = 12
    etype = int.from_bytes(frame[12:14], "big")
    tags = 0
    while etype in TPIDS and tags < MAX_TAGS:
        if n < off + 2 + 4:
            return ParsedFrame(Reason.TRUNCATED, tags)
        tags += 1
        off += 4
        etype = int.from_bytes(frame[off:off + 2], "big")
    if etype in TPIDS:
        return ParsedFrame(Reason.TOO_MANY_TAGS, tags)
    if etype != ETHERTYPE_IPV4:
        return ParsedFrame(Reason.NOT_IPV4, tags)
    l3 = off + 2
    if n < l3 + 20:
        return ParsedFrame(Reason.TRUNCATED, tags, l3)
    vihl = frame[l3]
    if vihl >> 4 != 4:
        return ParsedFrame(Reason.BAD_VERSION, tags, l3)
    hlen = (vihl & 0x0F) * 4
    if hlen < 20 or l3 + hlen > n:
        return ParsedFrame(Reason.BAD_IHL, tags, l3)
    if ones_sum(frame[l3:l3 + hlen]) != 0xFFFF:
        return ParsedFrame(Reason.BAD_IP_CHECKSUM, tags, l3)
    total = int.from_bytes(frame[l3 + 2:l3 + 4], "big")
    if total < hlen or l3 + total > n:
        return ParsedFrame(Reason.BAD_TOTAL_LENGTH, tags, l3)
    frag = int.from_bytes(frame[l3 + 6:l3 + 8], "big")
    if frag & 0x3FFF:   # MF (0x2000) or a non-zero offset (0x1FFF)
        return ParsedFrame(Reason.FRAGMENT, tags, l3)
    proto = frame[l3 + 9]
    if proto not in L4_HEADER:
        return ParsedFrame(Reason.NOT_TCP_UDP, tags, l3)
    if total - hlen < L4_HEADER[proto]:
        return ParsedFrame(Reason.L4_TRUNCATED, tags, l3)
    l4 = l3 + hlen
    pkt = Packet(
        src_ip=int.from_bytes(frame[l3 + 12:l3 + 16], "big"),
        dst_ip=int.from_bytes(frame[l3 + 16:l3 + 20], "big"),
        src_port=int.from_bytes(frame[l4:l4 + 2], "big"),
        dst_port=int.from_bytes(frame[l4 + 2:l4 + 4], "big"),
        proto=proto,
        tcp_flags=frame[l4 + 13] if proto == PROTO_TCP else 0,
        seq=int.from_bytes(frame[l4 + 4:l4 + 8], "big") if proto == PROTO_TCP else 0,
        ack=int.from_bytes(frame[l4 + 8:l4 + 12], "big") if proto == PROTO_TCP else 0,
    )
    return ParsedFrame(Reason.OK, tags, l3, l4, pkt)
