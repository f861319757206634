"""The challenge SYN-ACK of SYN authentication, built in the frame datapath.

A CHALLENGE decision (docs/lifecycle.md) answers the SYN with the reply frame of
:func:`model.frame.challenge_frame`, which leaves on the datapath's output stream in the
place of the SYN:

* Ethernet: the SYN's MAC addresses swapped, its VLAN tags and EtherType kept;
* IPv4, 20 bytes: fixed fields (version 4, IHL 5, total length 40, DF, TTL, protocol 6),
  a full header checksum, source and destination swapped;
* TCP, 20 bytes: ports swapped, sequence number 0, acknowledgement number = the core's
  ``cookie``, data offset 5, SYN|ACK, the fixed window, a full checksum;
* nothing else: no options, payload or padding (``l3 + 40`` bytes, ``l3 = 14 + 4 * tags``).

A well-formed TCP frame has at least ``l3 + 40`` bytes (total length >= 40 bytes from
``l3`` on), so the reply is never longer than the SYN and its bytes sit at the same
offsets: output beat ``k`` is made from input beat ``k`` of the SYN (whose tag bytes at
``12 .. l3`` are the reply's), with every other byte taken from the *template*, and the
SYN's beats after the reply's last one are consumed without output. The template is
fixed wiring of the connection's fields; which bytes come from it is a constant per
(tag count, beat), so :class:`ChallengeBeats` is one multiplexer over (tags, beat) of
wired words.

The checksums are full sums, but everything in them except the addresses, ports and
the cookie is constant: :func:`challenge_constants` takes the constant parts from the
model's own :func:`~model.frame.challenge_frame` of an all-zero connection, the parser
adds the addresses and ports while it classifies the frame (``ch_ip``, ``ch_l4`` of
:func:`hdl.parser.parse_layout`) and the rewriter adds the cookie's two words.
Ones'-complement sums may be folded in any grouping: every partial sum here contains a
non-zero constant, so each fold yields the same representative in ``1 .. 0xFFFF`` as the
model's single fold, and the complement is exactly the model's checksum.
"""

import functools

from amaranth.hdl import Cat, Const, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from model.frame import challenge_frame
from model.parse import ETHERTYPE_IPV4, PROTO_TCP, ones_sum, parse_frame

from .parser import check_beat_width

__all__ = ["ChallengeBeats", "CHALLENGE_LAYOUT", "REPLY_L4_BYTES", "challenge_constants",
           "reply_length"]

#: IPv4 + TCP header bytes of a challenge reply.
REPLY_L4_BYTES = 40

#: What the beat stage needs to build a reply: the SYN's fields (``src`` = the client)
#: and the two checksums.
CHALLENGE_LAYOUT = data.StructLayout({
    "macs": 96,         # bytes 0..11 of the SYN (destination MAC, source MAC), lane order
    "src_ip": 32,
    "dst_ip": 32,
    "src_port": 16,
    "dst_port": 16,
    "cookie": 32,
    "ip_csum": 16,
    "tcp_csum": 16,
    "tags": 2,
})


def reply_length(tags: int) -> int:
    """Bytes of a challenge reply to a frame with ``tags`` VLAN tags."""
    return 14 + 4 * tags + REPLY_L4_BYTES


@functools.cache
def challenge_constants() -> tuple[bytes, int, int]:
    """``(header, c_ip, c_tcp)`` from :func:`model.frame.challenge_frame` of a SYN
    from 0.0.0.0:0 to 0.0.0.0:0 with cookie 0: its 40-byte IPv4 + TCP header (checksums
    included, the variable fields zero), and the ones'-complement sums of its constant
    words, ``c_ip`` (IPv4 header) and ``c_tcp`` (TCP pseudo-header and header) -- the
    complements of its two checksums."""
    ip = bytearray(20)
    ip[0], ip[2:4], ip[9] = 0x45, (40).to_bytes(2, "big"), PROTO_TCP
    ip[10:12] = (~ones_sum(bytes(ip)) & 0xFFFF).to_bytes(2, "big")
    tcp = bytearray(20)
    tcp[12], tcp[13] = 5 << 4, 0x02
    syn = bytes(12) + ETHERTYPE_IPV4.to_bytes(2, "big") + bytes(ip) + bytes(tcp)
    parsed = parse_frame(syn)
    assert parsed.ok
    reply = challenge_frame(syn, parsed, 0)
    assert len(reply) == reply_length(0)
    hdr = reply[14:]
    c_ip = ~int.from_bytes(hdr[10:12], "big") & 0xFFFF
    c_tcp = ~int.from_bytes(hdr[36:38], "big") & 0xFFFF
    return hdr, c_ip, c_tcp


def _be_bytes(v, n: int) -> list:
    """The ``n`` bytes of value ``v`` in network (big-endian) order."""
    return [v[8 * (n - 1 - i):8 * (n - i)] for i in range(n)]


class ChallengeBeats(wiring.Component):
    """Output beats of a challenge reply (combinational; see the module docstring).

    Parameters
    ----------
    width : int
        Bytes per beat (one of :data:`hdl.parser.WIDTHS`).

    Members
    -------
    fields : ``In(CHALLENGE_LAYOUT)``
        The reply's connection fields and checksums.
    index : ``In(8)``
        The index of the SYN's beat passing now (saturating at any value past the reply).
    beat_in : ``In(8 * width)``
        That beat's data.
    data, keep : ``Out(8 * width)``, ``Out(width)``
        The reply's beat ``index``.
    last : ``Out(1)``
        ``index`` is the reply's last beat.
    past : ``Out(1)``
        ``index`` is after the reply's last beat: consume the SYN's beat, emit nothing.

    Raises
    ------
    ValueError
        If ``width`` is not supported.
    """

    def __init__(self, width: int):
        check_beat_width(width)
        self._width = width
        super().__init__({
            "fields": In(CHALLENGE_LAYOUT),
            "index": In(8),
            "beat_in": In(8 * width),
            "data": Out(8 * width),
            "keep": Out(width),
            "last": Out(1),
            "past": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        W = self._width
        f = self.fields
        hdr, _, _ = challenge_constants()
        var = {  # header byte offset -> the variable bytes placed there
            10: _be_bytes(f.ip_csum, 2), 12: _be_bytes(f.dst_ip, 4),
            16: _be_bytes(f.src_ip, 4), 20: _be_bytes(f.dst_port, 2),
            22: _be_bytes(f.src_port, 2), 28: _be_bytes(f.cookie, 4),
            36: _be_bytes(f.tcp_csum, 2),
        }
        header = [Const(b, 8) for b in hdr]
        for at, bs in var.items():
            header[at:at + len(bs)] = bs
        macs = [f.macs[8 * i:8 * i + 8] for i in range(12)]
        with m.Switch(f.tags):
            for tags in range(3):
                l3 = 14 + 4 * tags
                n = reply_length(tags)
                last = (n - 1) // W
                with m.Case(tags):
                    m.d.comb += self.past.eq(self.index > last)
                    with m.Switch(self.index):
                        for b in range(last + 1):
                            lanes = []
                            for j in range(W):
                                o = b * W + j
                                if o < 12:
                                    lanes.append(macs[(o + 6) % 12])
                                elif o < l3:
                                    lanes.append(self.beat_in[8 * j:8 * j + 8])
                                elif o < n:
                                    lanes.append(header[o - l3])
                                else:
                                    lanes.append(Const(0, 8))
                            with m.Case(b):
                                m.d.comb += [
                                    self.data.eq(Cat(*lanes)),
                                    self.keep.eq((1 << min(W, n - b * W)) - 1),
                                    self.last.eq(b == last),
                                ]
                        with m.Default():   # past the reply: nothing is emitted
                            m.d.comb += [self.data.eq(0), self.keep.eq(0), self.last.eq(0)]
            with m.Default():   # tags is at most 2
                m.d.comb += [self.data.eq(0), self.keep.eq(0), self.last.eq(0),
                             self.past.eq(1)]
        return m
