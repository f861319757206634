# amaranth: UnusedElaboratable=no
"""hdl/parser.py in the Amaranth simulator against model/parse.py: the reason of every
frame (every malformed class, the priority cases, random and mutated frames), the
5-tuple, flags, offsets and partial sums of the well-formed ones; frames back to back
(one per beat at W = 64), the rx_error and oversize flags, constructor validation."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module

from hdl.parser import PARSE_LATENCY, FrameParser, beat_layout
from l4lb.framegen import (
    MALFORMED,
    build_frame,
    fix_ip_checksum,
    frame_mix,
    fuzz_frame,
    malform,
)
from model.frame import challenge_frame
from model.parse import PROTO_TCP, Reason, parse_frame
from model.pipeline import Packet

from .hdl_simutil import run_sim


def beats_of(frame: bytes, width: int, user: bool = False) -> list[dict]:
    """A frame as beats (the keep run of a short last beat; an empty frame is one beat
    with keep 0)."""
    out = []
    chunks = [frame[i:i + width] for i in range(0, len(frame), width)] or [b""]
    for k, c in enumerate(chunks):
        last = k == len(chunks) - 1
        out.append({"data": int.from_bytes(c, "little"), "keep": (1 << len(c)) - 1,
                    "last": int(last), "user": int(user and last)})
    return out


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def run_parser(frames: list[bytes], width: int, gaps: float = 0.0, max_frame: int = 1536,
               users: list[bool] | None = None, seed: int = 0, challenge: bool = False
               ) -> tuple[list[dict], list[int]]:
    """Feed the frames (beats with random idle cycles); returns the records and the
    cycles from each last beat to its record."""
    dut = FrameParser(width, max_frame=max_frame, challenge=challenge)
    rng = random.Random(seed)
    got: list[dict] = []
    last_at: list[int] = []
    lat: list[int] = []
    seq = [(i, b) for i, f in enumerate(frames)
           for b in beats_of(f, width, users[i] if users else False)]

    async def tb(ctx):
        cycle = 0
        k = 0
        while len(got) < len(frames):
            if k < len(seq) and rng.random() >= gaps:
                ctx.set(dut.beat.valid, 1)
                ctx.set(dut.beat.payload, seq[k][1])
                if seq[k][1]["last"]:
                    last_at.append(cycle)
                k += 1
            else:
                ctx.set(dut.beat.valid, 0)
            if ctx.get(dut.frame.valid):
                got.append(ctx.get(dut.frame.payload))
                lat.append(cycle - last_at[len(got) - 1])
            await ctx.tick()
            cycle += 1
            assert cycle < 20 * len(seq) + 100, "parser hung"

    run_sim(dut, tb)
    return [_record(v, challenge) for v in got], lat


def _record(v, challenge: bool = False) -> dict:
    """A parser record (as sampled from ``frame.payload``) as a dict of ints."""
    rec = {"reason": int(v.reason), "rx_error": int(v.rx_error),
           "oversize": int(v.oversize), "src_ip": int(v.key.src_ip),
           "dst_ip": int(v.key.dst_ip), "src_port": int(v.key.src_port),
           "dst_port": int(v.key.dst_port), "proto": int(v.key.proto),
           "tcp_flags": int(v.tcp_flags), "tags": int(v.tags), "ihl": int(v.ihl),
           "ip_csum": int(v.ip_csum), "l4_csum": int(v.l4_csum),
           "ip_part": int(v.ip_part), "l4_part": int(v.l4_part)}
    if challenge:
        rec |= {"seq": int(v.seq), "macs": int(v.macs), "ch_ip": int(v.ch_ip),
                "ch_l4": int(v.ch_l4)}
    return rec


def check_against_model(frames: list[bytes], recs: list[dict]) -> dict[Reason, int]:
    seen = dict.fromkeys(Reason, 0)
    for i, (f, r) in enumerate(zip(frames, recs, strict=True)):
        p = parse_frame(f)
        assert r["reason"] == p.reason, \
            f"frame {i} {f.hex()}: {Reason(r['reason'])!r} != {p.reason!r}"
        seen[p.reason] += 1
        if not p.ok:
            continue
        k = p.packet
        got = tuple(r[n] for n in ("src_ip", "dst_ip", "src_port", "dst_port", "proto",
                                   "tcp_flags"))
        assert got == (k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto, k.tcp_flags)
        assert (r["tags"], 14 + 4 * r["tags"] + 4 * r["ihl"]) == (p.tags, p.l4)
        ipc = int.from_bytes(f[p.l3 + 10:p.l3 + 12], "big")
        at = p.l4 + (16 if k.proto == PROTO_TCP else 6)
        l4c = int.from_bytes(f[at:at + 2], "big")
        assert (r["ip_csum"], r["l4_csum"]) == (ipc, l4c)
        hi, lo = k.dst_ip >> 16, k.dst_ip & 0xFFFF
        assert r["ip_part"] == _fold((~ipc & 0xFFFF) + (~hi & 0xFFFF) + (~lo & 0xFFFF))
        assert r["l4_part"] == _fold((~l4c & 0xFFFF) + (~hi & 0xFFFF) + (~lo & 0xFFFF)
                                     + (~k.dst_port & 0xFFFF))
    return seen


def _packets(rng: random.Random, n: int) -> list[Packet]:
    return [Packet(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                   rng.getrandbits(16), rng.choice((6, 17)), rng.getrandbits(8))
            for _ in range(n)]


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_every_class_matches_the_model(width):
    rng = random.Random(width)
    frames = []
    for reason in MALFORMED:
        for _ in range(6):
            frames.append(malform(rng, build_frame(rng, _packets(rng, 1)[0]), reason))
    frames += list(frame_mix(rng, _packets(rng, 150), malformed=0.3, fuzz=0.2))
    frames += [b"", b"\x00" * 13, b"\x00" * 14]
    recs, lat = run_parser(frames, width, gaps=0.3, seed=width)
    seen = check_against_model(frames, recs)
    assert all(seen[r] > 0 for r in Reason), seen
    assert set(lat) == {PARSE_LATENCY}
    assert not any(r["rx_error"] or r["oversize"] for r in recs)


def test_priority_cases():
    from tests.test_frame import MALFORMED as CASES
    frames = [f for fs in CASES.values() for f in fs]
    for width in (8, 64):
        recs, _ = run_parser(frames, width)
        check_against_model(frames, recs)


def test_total_length_with_high_bits_set():
    """An IPv4 total length whose low bits fit the frame but whose high bits (above the
    width of the parser's byte count) do not: BAD_TOTAL_LENGTH, as the model says."""
    rng = random.Random(9)
    frames = []
    for p in _packets(rng, 20):
        b = bytearray(build_frame(rng, p, tags=rng.randrange(3), payload=40))
        l3 = parse_frame(bytes(b)).l3
        t = (1 << rng.randrange(11, 16)) | rng.randrange(20, len(b) - l3 + 1)
        b[l3 + 2:l3 + 4] = t.to_bytes(2, "big")
        fix_ip_checksum(b, l3)
        frames.append(bytes(b))
    seen = {}
    for width in (8, 64):
        recs, _ = run_parser(frames, width)
        seen = check_against_model(frames, recs)
    assert seen[Reason.BAD_TOTAL_LENGTH] == len(frames), seen


@pytest.mark.parametrize("width", [8, 64])
def test_fuzz_back_to_back(width):
    """Random and mutated frames without gaps: one record per frame, all as the model."""
    rng = random.Random(100 + width)
    goods = [build_frame(rng, p) for p in _packets(rng, 60)]
    frames = [fuzz_frame(rng, rng.choice(goods)) for _ in range(300)] + goods
    rng.shuffle(frames)
    recs, lat = run_parser(frames, width)
    check_against_model(frames, recs)
    assert set(lat) == {PARSE_LATENCY}


def test_min_frames_one_per_cycle_at_w64():
    rng = random.Random(5)
    frames = [build_frame(rng, p, tags=0, options=0, payload=0)[:64].ljust(64, b"\0")
              for p in _packets(rng, 100)]
    recs, lat = run_parser(frames, 64)
    check_against_model(frames, recs)
    assert set(lat) == {PARSE_LATENCY}


@pytest.mark.parametrize("width", [8, 64])
def test_reset_mid_frame_with_a_beat_offered(width):
    """A one-cycle reset while a frame's beats flow, one offered in the reset cycle: that
    frame is forgotten, and the frames after it parse as the model's (the window's
    write-enable copies, some of them reset-less, restart in step)."""
    rng = random.Random(11)
    first = beats_of(build_frame(rng, _packets(rng, 1)[0], payload=400), width)
    frames = [build_frame(rng, p) for p in _packets(rng, 20)]
    dut = FrameParser(width)
    top = Module()
    top.domains.sync = cd = ClockDomain()
    top.submodules.dut = dut
    got = []

    async def tb(ctx):
        ctx.set(dut.beat.valid, 1)
        for k in range(5):      # four beats, the fifth (not the last) during the reset
            ctx.set(dut.beat.payload, first[k])
            ctx.set(cd.rst, k == 4)
            await ctx.tick()
        ctx.set(cd.rst, 0)
        seq = [b for f in frames for b in beats_of(f, width)]
        for cycle in range(len(seq) + 4 * PARSE_LATENCY):
            ctx.set(dut.beat.valid, cycle < len(seq))
            if cycle < len(seq):
                ctx.set(dut.beat.payload, seq[cycle])
            if ctx.get(dut.frame.valid):
                got.append(_record(ctx.get(dut.frame.payload)))
            await ctx.tick()

    run_sim(top, tb)
    check_against_model(frames, got)


def test_rx_error_and_oversize_flags():
    rng = random.Random(7)
    frames = [build_frame(rng, p, payload=rng.choice((10, 300))) for p in _packets(rng, 40)]
    users = [i % 3 == 0 for i in range(40)]
    recs, _ = run_parser(frames, 8, max_frame=200, users=users)
    for f, u, r in zip(frames, users, recs, strict=True):
        assert (r["rx_error"], r["oversize"]) == (int(u), int(len(f) > 200))
        if len(f) <= 200:   # an oversize frame's length is saturated: its reason is moot
            assert r["reason"] == parse_frame(f).reason


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"width must be one of \[8, 16, 32, 64\] bytes, not 12"):
        FrameParser(12)
    with pytest.raises(ValueError, match="max_frame must be an integer within 64..65535, not 10"):
        FrameParser(8, max_frame=10)
    assert beat_layout(8).size == 64 + 8 + 2


@pytest.mark.parametrize("width", [8, 64])
def test_challenge_fields_match_the_model(width):
    """With ``challenge``: the sequence number, the MACs, and partial sums from which one
    cookie addition and a complement give exactly the checksums of the model's
    challenge SYN-ACK (model.frame.challenge_frame), for random TCP frames (tags,
    options, payloads); the other records are unchanged."""
    rng = random.Random(100 + width)
    frames = []
    for p in _packets(rng, 120):
        f = bytearray(build_frame(rng, Packet(p.src_ip, p.dst_ip, p.src_port, p.dst_port,
                                              6 if rng.random() < 0.8 else 17, 0x02)))
        frames.append(bytes(f))
    frames += list(frame_mix(rng, _packets(rng, 30), malformed=0.5))
    recs, lat = run_parser(frames, width, gaps=0.3, challenge=True)
    assert set(lat) == {PARSE_LATENCY}
    check_against_model(frames, recs)
    n = 0
    for f, r in zip(frames, recs, strict=True):
        p = parse_frame(f)
        if not p.ok:
            continue
        assert r["seq"] == p.packet.seq and r["macs"] == int.from_bytes(f[:12], "little")
        if p.packet.proto != PROTO_TCP:
            assert r["seq"] == 0
            continue
        cookie = rng.getrandbits(32)
        reply = challenge_frame(f, p, cookie)
        l3 = p.l3
        assert ~r["ch_ip"] & 0xFFFF == int.from_bytes(reply[l3 + 10:l3 + 12], "big")
        tcp = ~_fold(r["ch_l4"] + (cookie >> 16) + (cookie & 0xFFFF)) & 0xFFFF
        assert tcp == int.from_bytes(reply[l3 + 36:l3 + 38], "big")
        n += 1
    assert n > 60
