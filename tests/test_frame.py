"""model/parse.py and model/frame.py: classification, policy, and the destination rewrite,
checked against scapy's own dissection and full checksum recomputation."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, IPOption_RR
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q, Ether
from scapy.packet import Raw

from model.config import ConfigError, FramePolicy, load_config, parse_config
from model.controlplane import ControlPlane
from model.frame import FrameDataPlane, csum16_replace
from model.layout import Action
from model.parse import Reason, ones_sum, parse_frame

from .conftest import EXAMPLES

CFG = load_config(EXAMPLES / "default.toml")
MACS = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:fe"}


def fdp_for(cfg=CFG) -> FrameDataPlane:
    cp = ControlPlane(cfg)
    cp.install()
    return FrameDataPlane(cfg, cp.mem)


def with_frames(table: dict):
    """The default config with a ``[frames]`` table."""
    import tomllib
    data = tomllib.loads((EXAMPLES / "default.toml").read_text())
    data["frames"] = table
    return parse_config(data)


def tcp_frame(dst="10.0.0.1", dport=80, payload=b"x", **ip) -> bytes:
    return bytes(Ether(**MACS) / IP(src="100.64.0.7", dst=dst, **ip)
                 / TCP(sport=40000, dport=dport, flags="S") / Raw(payload))


def scapy_recomputed(frame: bytes) -> bytes:
    """The frame with IPv4 and TCP/UDP checksums recomputed in full by scapy (a UDP
    checksum of 0 kept 0)."""
    p = Ether(frame)
    ip = p[IP]
    ip.chksum = None
    l4 = ip[TCP] if TCP in ip else ip[UDP]
    if not (isinstance(l4, UDP) and l4.chksum == 0):
        l4.chksum = None
    return bytes(p)


# ---- checksum arithmetic ----------------------------------------------------------------


@given(st.binary(min_size=8, max_size=64).filter(lambda b: len(b) % 2 == 0 and any(b)),
       st.data())
def test_csum16_replace_equals_full_recomputation(data, draw):
    words = [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]
    csum = ~ones_sum(data) & 0xFFFF
    k = draw.draw(st.integers(0, len(words) - 1))
    new = draw.draw(st.integers(0, 0xFFFF))
    changed = words.copy()
    changed[k] = new
    nb = b"".join(w.to_bytes(2, "big") for w in changed)
    if not any(nb):
        return  # all-zero data: the one case where +0 and -0 differ
    assert csum16_replace(csum, (words[k],), (new,)) == ~ones_sum(nb) & 0xFFFF


# ---- well-formed frames: rewrite against scapy -----------------------------------------


def random_frame(rng: random.Random) -> tuple[bytes, bool]:
    """A well-formed frame: 0-2 tags, IPv4 options, TCP or UDP (zero checksum some of the
    time), to a VIP or not, with Ethernet padding. Returns (frame, udp zero checksum)."""
    vip = rng.choice(CFG.vips)
    to_vip = rng.random() < 0.8
    proto = vip.protocol if to_vip else rng.choice([6, 17])
    l2 = Ether(**MACS)
    tags = rng.randrange(3)
    if tags == 2:
        l2 = l2 / Dot1AD(vlan=rng.randrange(4096)) / Dot1Q(vlan=rng.randrange(4096))
    elif tags == 1:
        l2 = l2 / Dot1Q(vlan=rng.randrange(4096), prio=rng.randrange(8))
    opts = [IPOption_NOP()] * rng.choice([0, 0, 1, 2, 3])
    if rng.random() < 0.3:   # at most 40 option bytes (IHL 15)
        room = (40 - len(opts) - 3) // 4
        opts.append(IPOption_RR(routers=["10.1.2.3"] * rng.randrange(1, room + 1)))
    ip = IP(src=f"{rng.randrange(1, 224)}.{rng.randrange(256)}.{rng.randrange(256)}.1",
            dst=vip.address_str if to_vip else f"172.16.{rng.randrange(256)}.9",
            id=rng.randrange(65536), ttl=rng.randrange(1, 256), options=opts,
            flags=rng.choice(["", "DF"]), tos=rng.randrange(256))
    port = vip.port if to_vip else rng.randrange(65536)
    zero = False
    if proto == 6:
        l4 = TCP(sport=rng.randrange(65536), dport=port, seq=rng.getrandbits(32),
                 flags=rng.choice(["S", "A", "PA", "FA", "R"]))
    else:
        l4 = UDP(sport=rng.randrange(65536), dport=port)
        if rng.random() < 0.25:
            l4.chksum = 0
            zero = True
    frame = bytes(l2 / ip / l4 / Raw(rng.randbytes(rng.choice([0, 1, 2, 7, 64, 333]))))
    if len(frame) < 60 or rng.random() < 0.1:
        frame += bytes(max(60 - len(frame), 0) + rng.choice([0, 0, 3, 17]))
    return frame, zero


def test_rewrite_matches_scapy_recomputation_on_random_frames():
    rng = random.Random(10)
    fdp = fdp_for()
    seen = {"lb": 0, "forward": 0, "options": 0, "tags": 0, "udp0": 0, "padding": 0}
    for _ in range(3000):
        frame, zero = random_frame(rng)
        out, d, reason = fdp.process_frame(frame)
        assert reason == Reason.OK
        p = Ether(frame)
        if d.action == Action.FORWARD:
            assert out == frame
            seen["forward"] += 1
            continue
        assert d.action == Action.LB and out is not None and len(out) == len(frame)
        seen["lb"] += 1
        seen["options"] += p[IP].ihl > 5
        seen["tags"] += Dot1Q in p
        seen["udp0"] += zero
        seen["padding"] += len(frame) > len(p) - len(p[IP]) + p[IP].len
        # the expected frame: scapy sets the DIP and recomputes every checksum in full
        exp = Ether(frame)
        exp[IP].dst = ".".join(str(x) for x in d.dip_ip.to_bytes(4, "big"))
        (exp[TCP] if TCP in exp else exp[UDP]).dport = d.dip_port
        assert out == scapy_recomputed(bytes(exp))
        # and the output's own checksums are what scapy computes for it
        assert out == scapy_recomputed(out)
        if zero:
            assert Ether(out)[UDP].chksum == 0
    assert min(seen.values()) > 50, seen


def test_udp_checksum_that_becomes_zero_is_sent_as_ffff():
    fdp = fdp_for()
    dns = next(v for v in CFG.vips if v.protocol == 17)

    def frame(word: int) -> bytes:
        return bytes(Ether(**MACS) / IP(src="100.64.1.1", dst=dns.address_str)
                     / UDP(sport=5353, dport=53) / Raw(word.to_bytes(2, "big")))

    out, d, _ = fdp.process_frame(frame(0))
    c = Ether(out)[UDP].chksum
    # a payload word equal to that checksum makes the rewritten data sum 0xFFFF
    out2, d2, _ = fdp.process_frame(frame(c))
    assert d2.dip_ip == d.dip_ip and d2.dip_port == d.dip_port
    assert Ether(out2)[UDP].chksum == 0xFFFF
    assert out2 == scapy_recomputed(out2)   # scapy, too, sends a computed 0 as 0xFFFF


def test_drop_and_forward_decisions():
    cp = ControlPlane(CFG)
    cp.install()
    fdp = FrameDataPlane(CFG, cp.mem)
    f = tcp_frame(dst="10.0.0.99")
    out, d, reason = fdp.process_frame(f)
    assert (out, d.action, d.vip_id, reason) == (f, Action.FORWARD, 0, Reason.OK)
    # a VIP whose slot map entry is invalid: the data plane drops, no frame out
    cp.mem.write("slot_map", 0, 0)
    out, d, reason = fdp.process_frame(tcp_frame())
    assert (out, d.action, reason) == (None, Action.DROP, Reason.OK)
    assert fdp.actions == {"lb": 0, "forward": 1, "drop": 1, "malformed_forward": 0,
                           "malformed_drop": 0}


# ---- malformed frames: one reason each, forwarded or dropped, never rewritten ------------


def _edit(frame: bytes, at: int, data: bytes) -> bytes:
    return frame[:at] + data + frame[at + len(data):]


def _fix_ip_csum(frame: bytes, l3: int = 14) -> bytes:
    hl = (frame[l3] & 15) * 4
    f = _edit(frame, l3 + 10, b"\0\0")
    return _edit(f, l3 + 10, (~ones_sum(f[l3:l3 + hl]) & 0xFFFF).to_bytes(2, "big"))


GOOD = tcp_frame(payload=b"hello, world")
MALFORMED = {
    Reason.TRUNCATED: [GOOD[:13], GOOD[:20], GOOD[:33], b"",
                       bytes(Ether(**MACS) / Dot1Q(vlan=3))[:16]],
    Reason.TOO_MANY_TAGS: [GOOD[:12] + b"\x81\x00\x00\x01" * 3 + GOOD[12:],
                           GOOD[:12] + b"\x88\xa8\x00\x01\x81\x00\x00\x02\x91\x00\x00\x03"
                           + GOOD[12:]],
    Reason.NOT_IPV4: [bytes(Ether(**MACS) / ARP(psrc="10.0.0.9", pdst="10.0.0.1")),
                      bytes(Ether(**MACS) / IPv6() / TCP(dport=80)),
                      bytes(Ether(**MACS) / Dot1Q() / IPv6() / UDP(dport=53))],
    Reason.BAD_VERSION: [_fix_ip_csum(_edit(GOOD, 14, b"\x65"))],
    Reason.BAD_IHL: [_fix_ip_csum(_edit(GOOD, 14, b"\x44")), _edit(GOOD, 14, b"\x40"),
                     _edit(GOOD, 14, b"\x4f")],
    Reason.BAD_IP_CHECKSUM: [_edit(GOOD, 24, bytes([GOOD[24] ^ 0x10])),
                             _edit(GOOD, 30, b"\x0a\x00\x00\x02")],
    Reason.BAD_TOTAL_LENGTH: [_fix_ip_csum(_edit(GOOD, 16, (19).to_bytes(2, "big"))),
                              _fix_ip_csum(_edit(GOOD, 16, (len(GOOD) - 13).to_bytes(2, "big"))),
                              GOOD[:-1]],
    Reason.FRAGMENT: [tcp_frame(flags="MF"), tcp_frame(frag=1), tcp_frame(frag=8191)],
    Reason.NOT_TCP_UDP: [bytes(Ether(**MACS) / IP(dst="10.0.0.1") / ICMP()),
                         bytes(Ether(**MACS) / IP(dst="10.0.0.1", proto=132) / Raw(bytes(40)))],
    Reason.L4_TRUNCATED: [_fix_ip_csum(_edit(GOOD, 16, (20 + 19).to_bytes(2, "big"))),
                          bytes(Ether(**MACS) / IP(dst="10.0.0.53", proto=17) / Raw(bytes(7)))
                          + bytes(20)],
}


def test_every_reason_has_cases():
    assert set(MALFORMED) == set(Reason) - {Reason.OK}


@pytest.mark.parametrize("reason", sorted(MALFORMED), ids=lambda r: r.key)
@pytest.mark.parametrize("policy", ["forward", "drop"])
def test_malformed_frames_follow_the_policy(reason, policy):
    fdp = fdp_for(with_frames({"malformed": policy}))
    for frame in MALFORMED[reason]:
        assert parse_frame(frame).reason == reason, frame.hex()
        out, d, got = fdp.process_frame(frame)
        assert got == reason
        if policy == "forward":
            assert out == frame and d.action == Action.FORWARD
        else:
            assert out is None and d.action == Action.DROP
    assert fdp.reasons[reason] == len(MALFORMED[reason])
    assert fdp.actions[f"malformed_{policy}"] == len(MALFORMED[reason])


def test_per_reason_overrides():
    cfg = with_frames({"malformed": "drop", "not_ipv4": "forward", "fragment": "drop"})
    fdp = fdp_for(cfg)
    arp = MALFORMED[Reason.NOT_IPV4][0]
    assert fdp.process_frame(arp)[0] == arp
    assert fdp.process_frame(MALFORMED[Reason.FRAGMENT][0])[0] is None
    assert fdp.process_frame(MALFORMED[Reason.BAD_IHL][0])[0] is None
    cfg = with_frames({"bad_ip_checksum": "drop"})
    assert cfg.frames.action("bad_ip_checksum") == "drop"
    assert cfg.frames.action("truncated") == "forward"


def test_priority_order():
    """A frame with several problems has the reason of the earliest check."""
    bad_csum = lambda f: _edit(f, 24, bytes([f[24] ^ 1]))  # noqa: E731
    cases = [
        (bad_csum(tcp_frame(flags="MF")), Reason.BAD_IP_CHECKSUM),       # 8 before 10
        (_edit(bad_csum(GOOD), 14, b"\x43"), Reason.BAD_IHL),            # 7 before 8
        (_edit(GOOD, 14, b"\x53"), Reason.BAD_VERSION),                  # 6 before 7
        (GOOD[:12] + b"\x81\x00\x00\x01\x81\x00\x00", Reason.TRUNCATED),      # 2 before 4
        (GOOD[:12] + b"\x81\x00\x00\x01" * 3 + b"\x86\xdd" + bytes(40),
         Reason.TOO_MANY_TAGS),                                          # 3 before 4
        (bytes(Ether(**MACS) / ARP())[:15], Reason.NOT_IPV4),            # 4 before 5
        (_fix_ip_csum(_edit(tcp_frame(flags="MF"), 16, b"\x05\xdc")),
         Reason.BAD_TOTAL_LENGTH),                                       # 9 before 10
        (bytes(Ether(**MACS) / IP(dst="10.0.0.1", flags="MF") / ICMP()), Reason.FRAGMENT),
        (bytes(Ether(**MACS) / IP(dst="10.0.0.1", proto=1) / Raw(b"ab")), Reason.NOT_TCP_UDP),
    ]
    for frame, reason in cases:
        assert parse_frame(frame).reason == reason, (reason, frame.hex())


def test_padding_and_options_are_honoured():
    f = bytes(Ether(**MACS) / IP(dst="10.0.0.53", options=[IPOption_RR(routers=["1.2.3.4"])])
              / UDP(sport=9, dport=53) / Raw(b"q"))
    padded = f + bytes(60 - len(f)) if len(f) < 60 else f + bytes(10)
    p = parse_frame(padded)
    assert p.ok and p.l4 == 14 + 28 and p.packet.dst_port == 53
    out, d, _ = fdp_for().process_frame(padded)
    assert d.action == Action.LB and out[len(f):] == padded[len(f):]
    assert out == scapy_recomputed(out)


# ---- fuzzing: never an exception, always one reason, never a change but the rewrite ------


def _check_invariants(fdp: FrameDataPlane, frame: bytes) -> None:
    out, d, reason = fdp.process_frame(frame)
    assert isinstance(reason, Reason)
    if reason != Reason.OK:
        assert d.action in (Action.FORWARD, Action.DROP) and out in (frame, None)
        return
    p = parse_frame(frame)
    if d.action != Action.LB:
        assert out == frame or (out is None and d.action == Action.DROP)
        return
    assert len(out) == len(frame)
    diff = {i for i in range(len(frame)) if out[i] != frame[i]}
    at = p.l4 + (16 if p.packet.proto == 6 else 6)
    allowed = {p.l3 + 10, p.l3 + 11, *range(p.l3 + 16, p.l3 + 20), p.l4 + 2, p.l4 + 3,
               at, at + 1}
    assert diff <= allowed
    hl = (out[p.l3] & 15) * 4
    assert ones_sum(out[p.l3:p.l3 + hl]) == 0xFFFF
    # scapy finds the same 5-tuple (it does not know 0x9100 tags: skip those)
    if b"\x91\x00" not in frame[12:22]:
        s = Ether(frame)
        if IP in s and (TCP in s or UDP in s):
            l4 = s[TCP] if TCP in s else s[UDP]
            assert (l4.sport, l4.dport) == (p.packet.src_port, p.packet.dst_port)


FUZZ_FDP = fdp_for(with_frames({"malformed": "forward", "truncated": "drop"}))
SEEDS = [random_frame(random.Random(s))[0] for s in range(40)] + \
    [f for fs in MALFORMED.values() for f in fs]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_random_bytes_never_raise(data):
    _check_invariants(FUZZ_FDP, data)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.sampled_from(["flip", "cut", "ins",
                                                                   "set"]),
                                                  st.integers(0, 200), st.integers(0, 255)),
                                        max_size=4))
def test_mutated_frames_never_raise(frame, edits):
    b = bytearray(frame)
    for op, at, v in edits:
        at = at % (len(b) + 1)
        if op == "flip" and at < len(b):
            b[at] ^= 1 << (v % 8)
        elif op == "cut":
            del b[at:]
        elif op == "ins":
            b[at:at] = bytes([v])
        elif op == "set" and at < len(b):
            b[at] = v
    _check_invariants(FUZZ_FDP, bytes(b))


# ---- the [frames] config table -----------------------------------------------------------


def test_frames_config_defaults_and_errors():
    for name in ("default", "small", "large"):
        assert load_config(EXAMPLES / f"{name}.toml").frames == FramePolicy()
    assert FramePolicy().action("fragment") == "forward"
    base = copy.deepcopy({"vip": [{"address": "10.0.0.1", "port": 80,
                                   "dips": [{"address": "10.1.0.1"}]}]})
    for table, msg in [
        ({"malformed": "keep"}, r"frames\.malformed: expected one of \['forward', 'drop'\], "
                                r"got 'keep'"),
        ({"fragment": 1}, r"frames\.fragment: expected one of .*, got 1"),
        ({"ok": "drop"}, r"frames\.ok: unknown field 'ok'"),
        ({"bad_checksum": "drop"}, r"frames\.bad_checksum: unknown field"),
        ([], r"frames: expected a table, got \[\]"),
    ]:
        with pytest.raises(ConfigError, match=msg):
            parse_config(dict(base, frames=table))
