# amaranth: UnusedElaboratable=no
"""hdl/rewriter.py in the Amaranth simulator against model.frame.rewrite_destination:
records, decisions and beats in, frames out -- LB (TCP, UDP, a UDP checksum of 0 kept 0,
an updated UDP checksum of 0 sent as 0xFFFF, tags and options), FORWARD, core DROP and
record drops, with output backpressure and late decisions; one-beat frames one per cycle."""

import itertools
import random

import pytest

from hdl.challenge import challenge_constants
from hdl.rewriter import REWRITE_LATENCY, Rewriter
from l4lb.framegen import build_frame
from model.frame import challenge_frame, rewrite_destination
from model.layout import Action
from model.parse import PROTO_TCP, parse_frame
from model.pipeline import Packet

from .hdl_simutil import run_sim
from .test_hdl_parser import beats_of


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def record_of(frame: bytes, drop: bool = False) -> dict:
    """The record the datapath derives from the parser for a well-formed frame."""
    p = parse_frame(frame)
    k = p.packet
    ipc = int.from_bytes(frame[p.l3 + 10:p.l3 + 12], "big")
    at = p.l4 + (16 if k.proto == PROTO_TCP else 6)
    l4c = int.from_bytes(frame[at:at + 2], "big")
    hi, lo = ~(k.dst_ip >> 16) & 0xFFFF, ~k.dst_ip & 0xFFFF
    return {"drop": int(drop), "core": int(not drop), "tags": p.tags,
            "ihl": (p.l4 - p.l3) // 4, "tcp": int(k.proto == PROTO_TCP),
            "udp_zero": int(l4c == 0),
            "ip_part": _fold((~ipc & 0xFFFF) + hi + lo),
            "l4_part": _fold((~l4c & 0xFFFF) + hi + lo + (~k.dst_port & 0xFFFF))}


def udp_to_ffff(rng: random.Random, pkt: Packet, dip: int, port: int) -> bytes:
    """A UDP frame whose checksum after the rewrite to (dip, port) computes to 0."""
    while True:
        f = build_frame(rng, pkt, tags=0, options=0, payload=2)
        p = parse_frame(f)
        at = p.l4 + 6
        if f[at:at + 2] != b"\x00\x00":
            break
    out = rewrite_destination(f, p, dip, port)
    c = int.from_bytes(out[at:at + 2], "big")
    # adding c to the payload makes the rewritten segment's sum 0xFFFF (checksum 0)
    b = bytearray(f)
    pay = p.l4 + 8
    b[pay:pay + 2] = c.to_bytes(2, "big")
    old = int.from_bytes(f[at:at + 2], "big")
    b[at:at + 2] = (~_fold((~old & 0xFFFF) + c) & 0xFFFF or 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def run(frames: list[bytes], recs: list[dict], decs: list[dict | None], width: int,
        ready=None, dec_delay: int = 0, challenge: bool = False, ahead: dict | None = None
        ) -> tuple[list[bytes], list[int]]:
    """Drive the rewriter and collect its output frames and first-beat cycles. With
    ``ahead`` (a dict, filled with counts), check in every cycle that the join, decided
    a cycle ahead, equals its definition in its own cycle."""
    dut = Rewriter(width, challenge=challenge)
    ready = ready or itertools.repeat(1)
    beats = [b for f in frames for b in beats_of(f, width)]
    core_decs = [d for d in decs if d is not None]
    out: list[bytes] = []
    firsts: list[int] = []
    dropped = (Action.DROP, Action.VERIFY, Action.UNVERIFIED)
    n_out = sum(1 for r, d in zip(recs, decs, strict=True)
                if not r["drop"] and not (d and d["action"] in dropped))

    async def tb(ctx):
        bi = ri = di = 0
        cur = bytearray()
        for cycle in range(40 * len(beats) + 200):
            ctx.set(dut.beats.valid, bi < len(beats))
            if bi < len(beats):
                ctx.set(dut.beats.payload, beats[bi])
            ctx.set(dut.rec.valid, ri < len(recs))
            if ri < len(recs):
                ctx.set(dut.rec.payload, recs[ri])
            dv = di < len(core_decs) and cycle >= dec_delay * (di + 1)
            ctx.set(dut.dec.valid, dv)
            if dv:
                ctx.set(dut.dec.payload, core_decs[di])
            r = next(ready)
            ctx.set(dut.m.ready, r)
            await ctx.delay(1e-9)
            if ahead is not None:
                _check_ahead(ctx, dut._probes, ahead)
            bi += ctx.get(dut.beats.valid) and ctx.get(dut.beats.ready)
            ri += ctx.get(dut.rec.valid) and ctx.get(dut.rec.ready)
            di += ctx.get(dut.dec.valid) and ctx.get(dut.dec.ready)
            if r and ctx.get(dut.m.valid):
                b = ctx.get(dut.m.payload)
                if not cur:
                    firsts.append(cycle)
                cur.extend(int(b.data).to_bytes(width, "little")[:int(b.keep).bit_length()])
                if b.last:
                    out.append(bytes(cur))
                    cur.clear()
            await ctx.tick()
            if len(out) == n_out and bi == len(beats):
                break

    run_sim(dut, tb)
    return out, firsts


def _check_ahead(ctx, p: dict, counts: dict) -> None:
    """``go`` = verdict credit & a record & (its decision, if it went through the
    core), the credit being "at most capacity - 3 outstanding" one cycle before."""
    g = lambda k: ctx.get(p[k])  # noqa: E731
    if "verdicts" in counts:
        credit = not counts["verdicts"] >> (p["cap"] - 3) & 1
        go = credit and g("rec_valid") and (not g("rec_core") or g("dec_valid"))
        assert g("go") == go, counts
        counts["go"] = counts.get("go", 0) + go
        counts["waited"] = counts.get("waited", 0) + (g("rec_valid") and not go)
    counts["verdicts"] = g("verdicts")


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_rewrite_matches_the_model(width):
    rng = random.Random(width)
    frames, recs, decs, want = [], [], [], []
    for k in range(120):
        proto = rng.choice((6, 17))
        pkt = Packet(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                     rng.getrandbits(16), proto, rng.getrandbits(8))
        dip, port = rng.getrandbits(32), rng.getrandbits(16)
        f = (udp_to_ffff(rng, pkt, dip, port) if proto == 17 and k % 5 == 0
             else build_frame(rng, pkt))
        kind = rng.choice(("lb", "lb", "lb", "forward", "drop", "rec_drop"))
        frames.append(f)
        recs.append(record_of(f, drop=kind == "rec_drop"))
        act = {"lb": Action.LB, "forward": Action.FORWARD, "drop": Action.DROP}.get(kind)
        decs.append(None if act is None else {"action": act, "ip": dip if act == Action.LB
                                              else pkt.dst_ip,
                                              "port": port if act == Action.LB
                                              else pkt.dst_port})
        if kind == "lb":
            want.append(rewrite_destination(f, parse_frame(f), dip, port))
        elif kind == "forward":
            want.append(f)
    assert any(w != f for w, f in zip(want, frames, strict=False))
    ahead: dict = {}
    got, _ = run(frames, recs, decs, width, ready=itertools.cycle([1, 1, 0, 1, 0, 0, 1]),
                 dec_delay=3, ahead=ahead)
    assert got == want
    # the join taken a cycle ahead was checked in every cycle, and records waited (for
    # a late decision or for credit) as well as went
    assert ahead["go"] == len(frames) and ahead["waited"] > 0
    ffff = [w for w, f in zip(want, frames, strict=False) if parse_frame(w).packet.proto == 17
            and w[parse_frame(w).l4 + 6:parse_frame(w).l4 + 8] == b"\xff\xff"]
    assert ffff, "no UDP checksum was sent as 0xFFFF"


def test_one_beat_frames_one_per_cycle():
    rng = random.Random(9)
    frames, recs, decs, want = [], [], [], []
    for _ in range(50):
        pkt = Packet(1, 2, 3, 4, 17, 0)
        f = build_frame(rng, pkt, tags=0, options=0, payload=0)[:64].ljust(64, b"\x00")
        frames.append(f)
        recs.append(record_of(f))
        decs.append({"action": Action.LB, "ip": 0x0A000001, "port": 8080})
        want.append(rewrite_destination(f, parse_frame(f), 0x0A000001, 8080))
    got, firsts = run(frames, recs, decs, 64)
    assert got == want
    assert firsts[0] == REWRITE_LATENCY and firsts[-1] - firsts[0] == len(frames) - 1


def challenge_record_of(frame: bytes, drop: bool = False) -> dict:
    """:func:`record_of` with the SYN-authentication fields the parser adds."""
    p = parse_frame(frame)
    k = p.packet
    _, c_ip, c_tcp = challenge_constants()
    addr = (k.src_ip >> 16) + (k.src_ip & 0xFFFF) + (k.dst_ip >> 16) + (k.dst_ip & 0xFFFF)
    return record_of(frame, drop) | {
        "macs": int.from_bytes(frame[:12], "little"), "src_ip": k.src_ip,
        "dst_ip": k.dst_ip, "src_port": k.src_port, "dst_port": k.dst_port,
        "ch_ip": _fold(c_ip + addr), "ch_l4": _fold(c_tcp + addr + k.src_port + k.dst_port)}


@pytest.mark.parametrize("width", [8, 16, 32, 64])
def test_challenge_replies_match_the_model(width):
    """With ``challenge``: CHALLENGE frames (0-2 tags, options, payloads, padding) leave
    as model.frame.challenge_frame's SYN-ACK, VERIFY and UNVERIFIED are dropped, LB,
    FORWARD and DROP as without; output backpressure and late decisions."""
    rng = random.Random(50 + width)
    frames, recs, decs, want = [], [], [], []
    for _ in range(100):
        kind = rng.choice(("challenge", "challenge", "challenge", "lb", "forward", "drop",
                           "verify", "unverified", "rec_drop"))
        proto = 6 if kind in ("challenge", "verify", "unverified") else rng.choice((6, 17))
        pkt = Packet(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                     rng.getrandbits(16), proto, 0x02)
        f = build_frame(rng, pkt, payload=rng.choice((0, 0, 5, 300)))
        dip, port, cookie = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
        frames.append(f)
        recs.append(challenge_record_of(f, drop=kind == "rec_drop"))
        act = {"lb": Action.LB, "forward": Action.FORWARD, "drop": Action.DROP,
               "challenge": Action.CHALLENGE, "verify": Action.VERIFY,
               "unverified": Action.UNVERIFIED}.get(kind)
        lb = act == Action.LB
        decs.append(None if act is None else {
            "action": act, "ip": dip if lb else pkt.dst_ip, "port": port if lb else pkt.dst_port,
            "cookie": cookie if act == Action.CHALLENGE else 0})
        if lb:
            want.append(rewrite_destination(f, parse_frame(f), dip, port))
        elif kind == "forward":
            want.append(f)
        elif kind == "challenge":
            want.append(challenge_frame(f, parse_frame(f), cookie))
    assert sum(len(w) in (54, 58, 62) for w in want) > 20
    got, _ = run(frames, recs, decs, width, ready=itertools.cycle([1, 1, 0, 1, 0, 0, 1]),
                 dec_delay=3, challenge=True)
    assert got == want


def test_constructor_validation():
    with pytest.raises(ValueError, match=r"width must be one of \[8, 16, 32, 64\] bytes, not 3"):
        Rewriter(3)
