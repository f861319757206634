"""Frame stimulus for the frame datapath benches and fuzz runs (pure Python, no scapy).

:func:`build_frame` makes a well-formed Ethernet / IPv4 / TCP or UDP frame for a
:class:`~model.pipeline.Packet` with random encapsulation (0-2 tags of any accepted
TPID), IPv4 options, payload, UDP zero checksums and Ethernet padding; :func:`malform`
damages one into a chosen :class:`~model.parse.Reason` class; :func:`fuzz_frame` makes
random and randomly mutated frames. :func:`frame_mix` puts them together into a
stream with every class. The benches never trust the label a generator meant: the
expected output and the reason always come from :mod:`model.frame`.

Checksums are computed here independently of the model (RFC 1071 sums); scapy agrees
with them (``tests/test_hdl_datapath.py`` checks a sample).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

from model.parse import TPIDS, Reason, parse_frame
from model.pipeline import Packet

__all__ = ["build_frame", "malform", "fuzz_frame", "frame_mix", "fix_ip_checksum", "MALFORMED"]

#: Malformed classes :func:`malform` can make (every reason but OK).
MALFORMED = tuple(r for r in Reason if r != Reason.OK)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _payload_len(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.5:
        return rng.choice((0, 0, 1, 2, 6, 7, 17))
    if r < 0.85:
        return rng.randrange(8, 200)
    return rng.randrange(200, 1400)


def build_frame(rng: random.Random, pkt: Packet, *, tags: int | None = None,
                options: int | None = None, payload: int | None = None) -> bytes:
    """A well-formed frame carrying ``pkt`` (its 5-tuple and TCP flags).

    ``tags`` (0-2), ``options`` (IPv4 option bytes, a multiple of 4 up to 40) and
    ``payload`` (bytes) are drawn at random when None. UDP gets a zero checksum a fifth
    of the time; short frames are padded to 60 bytes, and some get a random trailer."""
    if tags is None:
        tags = rng.choices((0, 1, 2), (6, 2, 2))[0]
    if options is None:
        options = 0 if rng.random() < 0.7 else 4 * rng.randrange(1, 11)
    if payload is None:
        payload = _payload_len(rng)
    l2 = bytes.fromhex("02000000fe01") + rng.randbytes(6)
    for _ in range(tags):
        l2 += rng.choice(TPIDS).to_bytes(2, "big") + rng.getrandbits(16).to_bytes(2, "big")
    l2 += b"\x08\x00"
    body = rng.randbytes(payload)
    tcp = pkt.proto == 6
    if tcp:
        doff = rng.choice((5, 5, 5, 8))
        l4 = (pkt.src_port.to_bytes(2, "big") + pkt.dst_port.to_bytes(2, "big")
              + rng.randbytes(8) + bytes([doff << 4, pkt.tcp_flags & 0xFF])
              + rng.randbytes(2) + b"\x00\x00" + rng.randbytes(2)
              + rng.randbytes(4 * (doff - 5)))
    else:
        l4 = (pkt.src_port.to_bytes(2, "big") + pkt.dst_port.to_bytes(2, "big")
              + (8 + payload).to_bytes(2, "big") + b"\x00\x00")
    seg = l4 + body
    hlen = 20 + options
    total = hlen + len(seg)
    ip = bytearray(bytes([0x40 | hlen // 4, rng.getrandbits(8)]) + total.to_bytes(2, "big")
                   + rng.getrandbits(16).to_bytes(2, "big")
                   + rng.choice((b"\x00\x00", b"\x40\x00")) + bytes([rng.randrange(1, 256),
                                                                      pkt.proto])
                   + b"\x00\x00" + pkt.src_ip.to_bytes(4, "big") + pkt.dst_ip.to_bytes(4, "big")
                   + rng.randbytes(options))
    ip[10:12] = _csum(bytes(ip)).to_bytes(2, "big")
    pseudo = ip[12:20] + bytes([0, pkt.proto]) + len(seg).to_bytes(2, "big")
    c = _csum(bytes(pseudo) + seg)
    at = 16 if tcp else 6
    if not tcp:
        c = 0 if rng.random() < 0.2 else (c or 0xFFFF)
    seg = seg[:at] + c.to_bytes(2, "big") + seg[at + 2:]
    frame = l2 + bytes(ip) + seg
    if len(frame) < 60:
        frame += bytes(60 - len(frame))
    if rng.random() < 0.08:
        frame += rng.randbytes(rng.randrange(1, 24))
    return frame


def fix_ip_checksum(b: bytearray, l3: int) -> None:
    """Recompute the IPv4 header checksum (over IHL * 4 bytes, as far as present)."""
    hl = max((b[l3] & 15) * 4, 20)
    b[l3 + 10:l3 + 12] = b"\x00\x00"
    b[l3 + 10:l3 + 12] = _csum(bytes(b[l3:l3 + hl])).to_bytes(2, "big")


def malform(rng: random.Random, frame: bytes, reason: Reason) -> bytes:
    """``frame`` (from :func:`build_frame`) damaged so that it most likely gets ``reason``
    (the model has the last word: a cut may, rarely, land elsewhere)."""
    p = parse_frame(frame)
    assert p.ok, "malform needs a well-formed frame"
    l3 = p.l3
    b = bytearray(frame)
    hl = (b[l3] & 15) * 4
    total = int.from_bytes(b[l3 + 2:l3 + 4], "big")
    if reason == Reason.TRUNCATED:
        return bytes(b[:rng.randrange(0, l3 + 20)])
    if reason == Reason.TOO_MANY_TAGS:
        tags = b"".join(rng.choice(TPIDS).to_bytes(2, "big") + rng.randbytes(2)
                        for _ in range(3 - p.tags))
        return bytes(b[:l3 - 2] + tags + b[l3 - 2:])
    if reason == Reason.NOT_IPV4:
        et = rng.choice((0x86DD, 0x0806, 0x88CC, 0x0801, 0x0008, rng.getrandbits(16)))
        while et in TPIDS or et == 0x0800:
            et = rng.getrandbits(16)
        b[l3 - 2:l3] = et.to_bytes(2, "big")
        if rng.random() < 0.3:
            b = b[:rng.randrange(l3, len(b) + 1)]
        return bytes(b)
    if reason == Reason.BAD_VERSION:
        b[l3] = (rng.choice((0, 1, 5, 6, 15)) << 4) | (b[l3] & 15)
        fix_ip_checksum(b, l3)
        return bytes(b)
    if reason == Reason.BAD_IHL:
        if rng.random() < 0.5:
            b[l3] = 0x40 | rng.randrange(0, 5)
            return bytes(b)
        b[l3] = 0x40 | 15
        return bytes(b[:rng.randrange(l3 + 20, min(l3 + 60, len(b)))])
    if reason == Reason.BAD_IP_CHECKSUM:
        i = rng.choice([k for k in range(1, hl) if k not in (2, 3)])
        b[l3 + i] ^= 1 << rng.randrange(8)
        return bytes(b)
    if reason == Reason.BAD_TOTAL_LENGTH:
        t = (rng.randrange(0, hl) if rng.random() < 0.4
             else len(b) - l3 + rng.randrange(1, 300))
        b[l3 + 2:l3 + 4] = t.to_bytes(2, "big")
        fix_ip_checksum(b, l3)
        return bytes(b)
    if reason == Reason.FRAGMENT:
        f = int.from_bytes(b[l3 + 6:l3 + 8], "big") & 0x4000
        f |= rng.choice((0x2000, 0x2000 | rng.randrange(1, 8192), rng.randrange(1, 8192)))
        b[l3 + 6:l3 + 8] = f.to_bytes(2, "big")
        fix_ip_checksum(b, l3)
        return bytes(b)
    if reason == Reason.NOT_TCP_UDP:
        b[l3 + 9] = rng.choice((1, 2, 47, 50, 58, 132, 0, 255))
        fix_ip_checksum(b, l3)
        return bytes(b)
    if reason == Reason.L4_TRUNCATED:
        room = 20 if b[l3 + 9] == 6 else 8
        t = hl + rng.randrange(0, room)
        assert t < total
        b[l3 + 2:l3 + 4] = t.to_bytes(2, "big")
        fix_ip_checksum(b, l3)
        return bytes(b)
    raise ValueError(f"reason must be a malformed class, not {reason!r}")


def fuzz_frame(rng: random.Random, good: bytes | None = None) -> bytes:
    """Random bytes (sometimes behind a plausible Ethernet/IPv4 start), or ``good`` with
    random bytes overwritten, inserted or cut."""
    if good is None or rng.random() < 0.3:
        n = rng.choice((rng.randrange(0, 64), rng.randrange(64, 200), rng.randrange(200, 1600)))
        b = bytearray(rng.randbytes(n))
        if n >= 24 and rng.random() < 0.6:
            b[12:14] = rng.choice((b"\x08\x00", b"\x81\x00", b"\x88\xa8", b"\x91\x00"))
            b[14] = 0x40 | rng.randrange(16)
        return bytes(b)
    b = bytearray(good)
    for _ in range(rng.randrange(1, 4)):
        how = rng.random()
        if how < 0.6 and b:
            i = rng.randrange(min(len(b), 100))
            b[i] = rng.getrandbits(8)
        elif how < 0.8:
            b = b[:rng.randrange(len(b) + 1)]
        else:
            i = rng.randrange(min(len(b), 100) + 1)
            b[i:i] = rng.randbytes(rng.choice((1, 2, 4)))
    return bytes(b)


def frame_mix(rng: random.Random, packets: Iterable[Packet], *, malformed: float = 0.25,
              fuzz: float = 0.0) -> Iterator[bytes]:
    """One frame per packet: well-formed, or (with probability ``malformed``) damaged into
    a malformed class taken round-robin, or (``fuzz``) a random or mutated frame. A
    packet of another protocol than TCP or UDP gives its frame as built (NOT_TCP_UDP)."""
    k = 0
    for pkt in packets:
        good = build_frame(rng, pkt)
        r = rng.random()
        if not parse_frame(good).ok:      # neither TCP nor UDP: already set aside
            yield good
        elif r < malformed:
            yield malform(rng, good, MALFORMED[k % len(MALFORMED)])
            k += 1
        elif r < malformed + fuzz:
            yield fuzz_frame(rng, good)
        else:
            yield good
