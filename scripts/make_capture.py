"""Make examples/capture.pcap: a small deterministic capture for ``l4lb replay``.

Frames are built with scapy (explicit MAC addresses, IP ids, sequence numbers and
timestamps, so nothing depends on the machine) from a seeded ``random.Random``; the
same seed writes the same file byte for byte (tests/test_replay.py checks it). Traffic
to the VIPs of examples/default.toml, and everything a frame datapath must survive:

* TCP connections (SYN, ACK, data, FIN or RST, last ACK) to the web, tls and api VIPs,
  untagged, 802.1Q, QinQ (0x88a8 + 0x8100, 0x9100 + 0x8100), some with IPv4 options;
  short frames padded to the 60-byte Ethernet minimum;
* UDP to the dns VIP, some with a zero (absent) UDP checksum;
* non-VIP traffic: server replies from the DIPs, other ports of the VIP addresses;
* ARP, IPv6, ICMP, fragments, three-tag frames, and damaged frames: cut short, bad
  IPv4 header checksum, bad IHL, bad total length, bad version, an L4 header that does
  not fit the IPv4 payload.

Usage: ``python scripts/make_capture.py [-o examples/capture.pcap] [--seed 1]``.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402

from l4lb.pcap import PcapWriter  # noqa: E402
from model.config import load_config  # noqa: E402

DEFAULT_OUT = ROOT / "examples" / "capture.pcap"
T0 = 1_767_225_600  # 2026-01-01 00:00:00 UTC
CLIENT_MAC, LB_MAC = "02:00:00:00:00:01", "02:00:00:00:00:fe"
MIN_FRAME = 60  # Ethernet minimum without FCS


def _l2(rng: random.Random, encap: str, src: str = CLIENT_MAC, dst: str = LB_MAC):
    """Ethernet with 0, 1 or 2 tags; the EtherType is filled in by scapy."""
    e = Ether(src=src, dst=dst)
    vid = rng.randrange(1, 4095)
    if encap == "dot1q":
        return e / Dot1Q(vlan=vid)
    if encap == "qinq":
        return e / Dot1AD(vlan=rng.randrange(1, 4095)) / Dot1Q(vlan=vid)
    if encap == "qinq9100":
        e.type = 0x9100
        return e / Dot1Q(vlan=rng.randrange(1, 4095)) / Dot1Q(vlan=vid)
    return e


def _encap(rng: random.Random) -> str:
    return rng.choices(["none", "dot1q", "qinq", "qinq9100"], [70, 15, 10, 5])[0]


def _pad(b: bytes) -> bytes:
    return b + bytes(MIN_FRAME - len(b)) if len(b) < MIN_FRAME else b


def _client(rng: random.Random) -> tuple[str, int]:
    ip = f"100.{rng.randrange(64, 128)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    return ip, rng.randrange(1024, 65536)


def _tcp_flow(rng, vip, t: float) -> list[tuple[float, bytes]]:
    """One TCP connection from a client to a VIP: handshake, data, FIN or RST."""
    cip, cport = _client(rng)
    encap = _encap(rng)
    opts = [IPOption_NOP(), IPOption_RR(routers=["10.9.9.9"])] if rng.random() < 0.1 else []
    seq, ack = rng.getrandbits(32), rng.getrandbits(32)
    ipid = rng.randrange(65536)
    segs = [("S", b"")] + [("A", b"")]
    segs += [("PA", rng.randbytes(rng.choice([1, 20, 100, 300])))
             for _ in range(rng.randrange(0, 6))]
    segs += [("R", b"")] if rng.random() < 0.1 else [("FA", b""), ("A", b"")]
    out = []
    for k, (flags, data) in enumerate(segs):
        ip = IP(src=cip, dst=vip.address_str, id=(ipid + k) & 0xFFFF, ttl=63, flags="DF",
                options=opts)
        tcp = TCP(sport=cport, dport=vip.port, flags=flags, seq=seq & 0xFFFFFFFF,
                  ack=0 if flags == "S" else ack, window=64240,
                  options=[("MSS", 1460)] if flags == "S" else [])
        pkt = _l2(rng, encap) / ip / tcp
        if data:
            pkt = pkt / Raw(data)
        seq += len(data) + (1 if flags in ("S", "FA") else 0)
        out.append((t, _pad(bytes(pkt))))
        t += rng.expovariate(1 / 0.1)
    return out


def _udp_flow(rng, vip, t: float) -> list[tuple[float, bytes]]:
    """One to three UDP datagrams from a client to a VIP (some without checksum)."""
    cip, cport = _client(rng)
    encap = _encap(rng)
    zero = rng.random() < 0.2
    out = []
    for _ in range(rng.randrange(1, 4)):
        udp = UDP(sport=cport, dport=vip.port)
        if zero:
            udp.chksum = 0
        pkt = _l2(rng, encap) / IP(src=cip, dst=vip.address_str, id=rng.randrange(65536)) \
            / udp / Raw(rng.randbytes(rng.randrange(12, 120)))
        out.append((t, _pad(bytes(pkt))))
        t += rng.expovariate(1 / 0.2)
    return out


def _other(rng, cfg, t: float) -> list[tuple[float, bytes]]:
    """One frame of non-VIP traffic, or a frame of a class the parser sets aside."""
    vip = rng.choice(cfg.vips)
    cip, cport = _client(rng)
    kind = rng.choice(["reply", "port", "arp", "ipv6", "icmp", "frag", "udp_other"])
    if kind == "reply":       # a DIP answers a client directly
        dip = rng.choice(vip.dips)
        p = _l2(rng, "none") / IP(src=dip.address_str, dst=cip, id=rng.randrange(65536)) / \
            TCP(sport=dip.port, dport=cport, flags="SA", seq=rng.getrandbits(32),
                ack=rng.getrandbits(32))
    elif kind == "port":      # the VIP's address, another port
        p = _l2(rng, _encap(rng)) / IP(src=cip, dst=vip.address_str) / \
            TCP(sport=cport, dport=22, flags="S", seq=rng.getrandbits(32))
    elif kind == "arp":
        p = Ether(src=CLIENT_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
            hwsrc=CLIENT_MAC, psrc=cip, pdst=vip.address_str)
    elif kind == "ipv6":
        p = _l2(rng, _encap(rng)) / IPv6(src="2001:db8::1", dst="2001:db8::80") / \
            TCP(sport=cport, dport=vip.port, flags="S", seq=rng.getrandbits(32))
    elif kind == "icmp":
        p = _l2(rng, _encap(rng)) / IP(src=cip, dst=vip.address_str) / \
            ICMP(id=rng.randrange(65536)) / Raw(rng.randbytes(32))
    elif kind == "frag":      # a UDP datagram to the dns VIP in three fragments
        dns = next(v for v in cfg.vips if v.protocol == 17)
        ip = IP(src=cip, dst=dns.address_str, id=rng.randrange(65536))
        whole = bytes(ip / UDP(sport=cport, dport=dns.port) / Raw(rng.randbytes(1000)))
        frames = []
        for off, more in ((0, 1), (400, 1), (800, 0)):
            body = whole[20 + off:20 + off + 400] if more else whole[20 + off:]
            f = IP(src=cip, dst=dns.address_str, id=ip.id, proto=17, flags="MF" if more
                   else 0, frag=off // 8) / Raw(body)
            frames.append((t, _pad(bytes(_l2(rng, "none") / f))))
            t += 1e-5
        return frames
    else:                     # UDP to the dns VIP's address, not port 53
        p = _l2(rng, "none") / IP(src=cip, dst=vip.address_str) / \
            UDP(sport=cport, dport=123) / Raw(rng.randbytes(48))
    return [(t, _pad(bytes(p)))]


def _damaged(rng, frame: bytes) -> bytes:
    """A well-formed untagged IPv4 frame, damaged one way (chosen at random)."""
    b = bytearray(frame)
    how = rng.choice(["cut", "cut", "csum", "ihl", "len", "version", "tags", "l4"])
    if how == "cut":
        return bytes(b[:rng.randrange(0, len(b))])
    if how == "csum":
        b[24] ^= 1 << rng.randrange(8)
        return bytes(b)

    def fix_csum() -> None:
        b[24:26] = b"\x00\x00"
        s = sum(int.from_bytes(b[i:i + 2], "big") for i in range(14, 14 + (b[14] & 15) * 4, 2))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        b[24:26] = (~s & 0xFFFF).to_bytes(2, "big")

    if how == "ihl":
        b[14] = 0x40 | rng.choice([0, 3, 4, 15])
        return bytes(b)
    if how == "len":
        total = rng.choice([12, len(b) - 14 + rng.randrange(1, 200)])
        b[16:18] = total.to_bytes(2, "big")
        fix_csum()
        return bytes(b)
    if how == "version":
        b[14] = 0x60 | (b[14] & 15)
        return bytes(b)
    if how == "tags":         # three 802.1Q tags
        return bytes(b[:12] + b"\x81\x00\x00\x05" * 3 + b[12:])
    # the TCP/UDP header does not fit the IPv4 payload: total length = IHL*4 + 4
    b[16:18] = ((b[14] & 15) * 4 + 4).to_bytes(2, "big")
    fix_csum()
    return bytes(b)


def make_capture(seed: int = 1, tcp_flows: int = 220, udp_flows: int = 180,
                 others: int = 500, damaged: int = 300) -> list[tuple[float, bytes]]:
    """The frames, in time order, with their timestamps (seconds after T0)."""
    cfg = load_config(ROOT / "examples" / "default.toml")
    rng = random.Random(seed)
    tcp_vips = [v for v in cfg.vips if v.protocol == 6]
    udp_vips = [v for v in cfg.vips if v.protocol == 17]
    span = 10.0
    frames: list[tuple[float, bytes]] = []
    for _ in range(tcp_flows):
        frames += _tcp_flow(rng, rng.choice(tcp_vips), rng.random() * span)
    for _ in range(udp_flows):
        frames += _udp_flow(rng, rng.choice(udp_vips), rng.random() * span)
    for _ in range(others):
        frames += _other(rng, cfg, rng.random() * span)
    plain = [f for _, f in frames if f[12:14] == b"\x08\x00" and f[14] == 0x45]
    for _ in range(damaged):
        frames.append((rng.random() * span, _damaged(rng, rng.choice(plain))))
    frames.sort(key=lambda tf: tf[0])
    return frames


def write_capture(path: str | Path, seed: int = 1) -> int:
    """Write the capture; returns the number of frames."""
    frames = make_capture(seed)
    with PcapWriter(path) as w:
        for t, f in frames:
            us = round(t * 1e6)
            w.write(f, T0 + us // 1_000_000, (us % 1_000_000) * 1000)
    return len(frames)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(DEFAULT_OUT))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    n = write_capture(a.output, a.seed)
    print(f"wrote {a.output}: {n} frames")
    return 0


if __name__ == "__main__":
    sys.exit(main())
