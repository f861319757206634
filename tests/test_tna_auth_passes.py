"""The passes of the TNA program's SYN authentication (docs/lifecycle.md, "P4 TNA"),
transcribed from step 3b of codegen/templates/p4/_tna_auth.p4.j2, against the model.

No Tofino model runs here, so this checks the design, not the compiled program: many
packets' passes interleave at random -- first passes, rounds through the recirculation
port, final passes, retries and restarts -- with rotate_auth's clears, key and epoch
writes in between; each packet's decision at its final pass, and the verified-source
words after every pass, must equal model.pipeline.DataPlane.authenticate run in the
order of the packets' decision points. The passes' transcription follows the template
line by line (the ALUs' compares, the order auth_gen, auth0, auth1, the verdict)."""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from model.config import parse_config
from model.controlplane import ControlPlane
from model.cookie import COOKIE_FLIP, MASK32, cookie
from model.layout import Action
from model.lifecycle import pack_auth, unpack_auth
from model.pipeline import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, DataPlane, Packet

ROOT = Path(__file__).resolve().parent.parent

VALID, STAMP = 0x80000000, 0x40000000
MATCH, CURRENT = 0xBFFFFFFF, 0xC0000000     # AUTH_MATCH_MASK, AUTH_CURRENT_MASK


@dataclass(frozen=True)
class Carried:
    """auth_h: key index, the first pass's epoch, key, cookie (after the rounds),
    predictions, auth_gen."""

    parity: int
    epoch: int
    key: int
    h: int
    p0: int
    p1: int
    gen: int


class TnaAuth:
    """The memories step 3b touches (the model's, plus auth_gen) and one pass."""

    def __init__(self, mem, sources: int):
        self.reload(mem)
        self.gen = [0] * sources

    def reload(self, mem) -> None:
        """The control plane's words read (again, after a whole rotate_auth); auth_gen is
        the data plane's own and stays."""
        self.auth0 = [int(w) for w in mem["auth0"]]
        self.auth1 = [int(w) for w in mem["auth1"]]
        self.keys = [int(mem.read("auth_key", k)) for k in (0, 1)]   # table auth_key
        self.keys_first = list(self.keys)                             # auth_key_first
        self.epoch = int(mem.read("auth_epoch", 0))

    def run(self, pkt: Packet, slots: tuple[int, int, int], hdr: Carried | None):
        """One ingress pass of a TCP miss of an auth VIP: ("lb" | "verify" |
        "unverified", None), ("challenge", ack), or ("cookie" | "retry", auth_h)."""
        i0, i1, tag = slots
        flags, epoch = pkt.tcp_flags, self.epoch
        syn = flags & (TCP_SYN | TCP_ACK) == TCP_SYN
        final = hdr is not None
        rstf = final and flags & (TCP_RST | TCP_SYN) == TCP_RST
        gexp = hdr.gen if final else 0
        parity = epoch if syn else pkt.seq & 1
        s1 = VALID | STAMP | tag
        fresh, other = (s1, s1 ^ STAMP) if epoch else (s1 ^ STAMP, s1)
        key_ok = ep_ok = ok = pm0 = pm1 = pc0 = pc1 = False
        cd = 1
        if final:
            key_ok = self.keys[hdr.parity] == hdr.key
            ep_ok = epoch == hdr.epoch
            ok = (pkt.seq ^ hdr.h) & 0x7FFFFFFE == 0
            cd = hdr.h ^ ((pkt.seq + 1) & MASK32)
            xq0, xq1 = hdr.p0 ^ s1, hdr.p1 ^ s1
            pm0, pm1 = xq0 & MATCH == 0, xq1 & MATCH == 0
            want = 0 if epoch else STAMP
            pc0, pc1 = xq0 & CURRENT == want, xq1 & CURRENT == want
        # an RST's final pass decides by its predictions only when key and epoch are
        # what its (re)start read; otherwise it is a first pass again
        rstv = rstf and key_ok and ep_ok
        cmp0 = hdr.p0 if rstv else other
        v0pred = v1pred = False
        if rstv and ok and not pm0 and not pm1:
            if pc0 and not pc1:
                v1pred = True
            else:
                v0pred = True
        # auth_gen[i1]
        bump = int(syn or rstf)
        xg = self.gen[i1] ^ gexp
        self.gen[i1] = (self.gen[i1] + bump) & MASK32
        gen_ok = xg == 0
        # way 0
        w0 = self.auth0[i0]
        y0 = w0 ^ cmp0
        if syn:
            if w0 in (fresh, cmp0):
                self.auth0[i0] = fresh
        elif v0pred and gen_ok and w0 == cmp0:
            self.auth0[i0] = fresh
        m0 = y0 & MATCH == 0
        # way 1
        w1 = self.auth1[i1]
        y1 = w1 ^ other
        if syn and y0 & MATCH != 0:
            if w1 in (fresh, other):
                self.auth1[i1] = fresh
        elif v1pred and gen_ok and y0 == 0:
            self.auth1[i1] = fresh
        m1 = y1 & MATCH == 0
        word0, word1 = y0 ^ cmp0, y1 ^ other
        gnext = ((xg ^ gexp) + bump) & MASK32
        start = Carried(parity, epoch, self.keys_first[parity], 0, word0, word1, gnext)
        self.why = (key_ok, ep_ok)
        # the verdict
        if rstv:
            if not gen_ok or y0 != 0:
                return "retry", replace(hdr, p0=word0, p1=word1, gen=gnext)
            if pm0 or pm1:
                return "lb", None
            return ("verify" if ok else "unverified"), None
        if m0 or m1:
            return "lb", None
        if flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) == TCP_SYN:
            if final and key_ok and ep_ok:
                return "challenge", hdr.h ^ COOKIE_FLIP if cd == 0 else hdr.h
            return "cookie", start
        if flags & (TCP_RST | TCP_SYN) == TCP_RST:
            return "cookie", start
        return "unverified", None


def _model_outcome(dp: DataPlane, pkt: Packet):
    d = dp.authenticate(pkt, 0)
    if d is None:
        return "lb", None
    name = {Action.CHALLENGE: "challenge", Action.VERIFY: "verify",
            Action.UNVERIFIED: "unverified"}[Action(d.action)]
    return name, (d.cookie if d.action == Action.CHALLENGE else None)


def _config():
    raw = tomllib.loads((ROOT / "examples" / "lifecycle.toml").read_text())
    raw["lifecycle"]["auth_log2_sources"] = 2    # 4 words per way: sources collide
    return parse_config(raw, source="lifecycle-small.toml")


def _is_rst(pkt: Packet) -> bool:
    return pkt.tcp_flags & (TCP_RST | TCP_SYN) == TCP_RST


@pytest.mark.parametrize("seed,n_clients", [(0, 14), (1, 14), (2, 40), (3, 40), (4, 120),
                                            (5, 120)])
def test_interleaved_passes_decide_as_the_model(seed, n_clients):
    rng = random.Random(seed)
    cfg = _config()
    cp = ControlPlane(cfg, auth_seed=seed)
    cp.install()
    mem = cp.mem
    dp = DataPlane(cfg, mem)
    sources = cfg.lifecycle.auth_sources
    tna = TnaAuth(mem, sources)
    vip = cfg.vips[0]
    vip_ip, vip_port = int(vip.address), vip.port
    clients = [0x0B000000 + rng.randrange(1 << 16) for _ in range(n_clients)]
    acks: dict[tuple[int, int], int] = {}            # (client, port) -> challenge ack
    inflight: list[list] = []                        # [pkt, slots, carried, rounds, flight]
    flights = [0, 0]                                 # the next flight, the first after a key
    rotation: list[tuple] = []                       # the steps of rotate_auth under way
    straddling: set[int] = set()                     # flights begun between key and epoch
    seen = {"challenge": 0, "verify": 0, "unverified": 0, "lb": 0, "retry": 0,
            "cookie": 0, "restart": 0, "epoch restart": 0, "rotation": 0, "race": 0}

    def check_memories(where: str) -> None:
        assert tna.auth0 == [int(w) for w in mem["auth0"]], where
        assert tna.auth1 == [int(w) for w in mem["auth1"]], where

    def new_packet() -> Packet:
        src = rng.choice(clients)
        port = rng.choice((1000, 1001, 1002))
        r = rng.random()
        if r < 0.4:
            return Packet(src, vip_ip, port, vip_port, 6, TCP_SYN, rng.getrandbits(32))
        if r < 0.8:
            seq = acks.get((src, port)) if rng.random() < 0.8 else None
            seq = rng.getrandbits(32) if seq is None else seq
            return Packet(src, vip_ip, port, vip_port, 6,
                          TCP_RST | (TCP_ACK if rng.random() < 0.3 else 0), seq)
        flags = rng.choice((TCP_ACK, TCP_SYN | TCP_ACK, TCP_SYN | TCP_FIN, TCP_FIN | TCP_ACK))
        return Packet(src, vip_ip, port, vip_port, 6, flags, rng.getrandbits(32))

    def one_pass(pkt: Packet, slots, hdr: Carried | None, flight: int | None) -> None:
        outcome, extra = tna.run(pkt, slots, hdr)
        if outcome in ("cookie", "retry"):
            # no model memory changed: the pass is not the packet's decision point
            check_memories(f"{outcome} pass of {pkt}")
            if outcome == "cookie":
                seen["restart" if hdr is not None else "cookie"] += 1
                if hdr is not None and _is_rst(pkt) and tna.why == (True, False):
                    seen["epoch restart"] += 1   # the key held, the epoch moved
                h = cookie(extra.key, extra.parity, pkt.src_ip, pkt.dst_ip, pkt.src_port,
                           pkt.dst_port)             # the egress chunks (test_tna_auth.py)
                flights[0] += 1
                inflight.append([pkt, slots, replace(extra, h=h), 3, flights[0]])
            else:
                seen["retry"] += 1
                inflight.append([pkt, slots, extra, 1, flight])
            return
        want = _model_outcome(dp, pkt)
        assert (outcome, extra) == want, f"{pkt}: TNA {outcome, extra}, model {want}"
        check_memories(f"decision of {pkt}")
        seen[outcome] += 1
        if outcome == "challenge":
            acks[(pkt.src_ip, pkt.src_port)] = extra

    def races(i: int) -> int:
        """RSTs in the air whose prediction p1 is auth1[i], which a clear removes: the
        race the epoch comparison closes (auth_gen does not see control-plane writes)."""
        return sum(1 for it in inflight
                   if _is_rst(it[0]) and it[1][1] == i and it[2].p1 == tna.auth1[i])

    def epoch_written() -> None:
        straddling.clear()
        straddling.update(it[4] for it in inflight if it[4] > flights[1])

    def rotation_step() -> None:
        """One step of rotate_auth as bfrt runs it, passes in between: the clear of one
        word (read and written at once), the key (auth_key_first and auth_key), the
        epoch, in ControlPlane.rotate_auth's order."""
        step = rotation.pop(0)
        if step[0] == "clear":
            _, way, i, nxt = step
            words = getattr(tna, way)
            valid, stamp, _ = unpack_auth(words[i])
            if valid and stamp == nxt:
                if way == "auth1":
                    seen["race"] += races(i)
                mem.write(way, i, 0)
                words[i] = 0
                check_memories("clear")
        elif step[0] == "key":
            _, nxt, value = step
            mem.write("auth_key", nxt, value)
            tna.keys[nxt] = value
            tna.keys_first[nxt] = value
            flights[1] = flights[0]
        else:
            tna.epoch = step[1]
            mem.write("auth_epoch", 0, tna.epoch)
            epoch_written()

    for _ in range(6000):
        r = rng.random()
        if rotation and r < 0.08:
            rotation_step()
        elif r < 0.985 and (not inflight or len(inflight) < 10 and rng.random() < 0.35):
            pkt = new_packet()
            one_pass(pkt, dp.hasher.auth_slots(pkt.key), None, None)
        elif r < 0.985:
            item = inflight[rng.randrange(len(inflight))]
            item[3] -= 1                                  # one round through egress
            if item[3] <= 0:
                inflight.remove(item)
                one_pass(item[0], item[1], item[2], item[4])
        elif not rotation and not straddling & {it[4] for it in inflight}:
            # rotate_auth: clears, key, epoch. The next rotation waits until every
            # flight that saw the last epoch write has ended: rotations come
            # milliseconds apart, a flight lasts microseconds (a one-bit epoch cannot
            # tell two writes from none; docs/lifecycle.md)
            seen["rotation"] += 1
            if rng.random() < 0.3:                        # all of it between two passes
                seen["race"] += sum(races(i) for i in range(sources)
                                    if unpack_auth(tna.auth1[i])[0]
                                    and unpack_auth(tna.auth1[i])[1] != tna.epoch)
                cp.rotate_auth()
                tna.reload(mem)
                flights[1] = flights[0]
                epoch_written()
            else:
                nxt = tna.epoch ^ 1
                rotation.extend(("clear", way, i, nxt) for way in ("auth0", "auth1")
                                for i in range(sources))
                rotation += [("key", nxt, rng.getrandbits(64)), ("epoch", nxt)]
                rotation_step()
    # the scenario reached every path: challenges, verifications (both ways), the
    # unverified, verified sources, first passes, restarts after key or epoch changes,
    # retries after auth0 or auth_gen moved, and clears of an RST's predicted auth1
    # word between its passes

    assert all(seen[k] > 0 for k in seen), seen


def test_a_rotation_between_an_rsts_first_and_final_pass():
    """The race the epoch comparison closes, as one interleaving. An RST of source S
    (connection a) takes its first pass in epoch `old`; S's connection b verifies S
    into way 1; a whole rotate_auth lands (key of `new`, epoch `new`); T refreshes its
    way-0 word. At the RST's final pass the key of its parity `old` still holds, the
    epoch does not: the pass runs as a first pass and finds S verified, as the model
    does. Without the epoch comparison it would retry (auth_gen moved) with S's word
    as prediction p1, the next rotation's clears would remove that word (the control
    plane bumps no auth_gen), and the next final pass would let the RST through as
    verified while the model verifies it again (VERIFY)."""
    cfg = _config()
    cp = ControlPlane(cfg, auth_seed=7)
    cp.install()
    mem = cp.mem
    dp = DataPlane(cfg, mem)
    vip = cfg.vips[0]

    def packet(src: int, port: int, flags: int, seq: int = 0) -> Packet:
        return Packet(src, int(vip.address), port, vip.port, 6, flags, seq)

    def slots(pkt: Packet) -> tuple[int, int, int]:
        return dp.hasher.auth_slots(pkt.key)

    old = int(mem.read("auth_epoch", 0))
    new = old ^ 1
    clients = [0x0B000000 + n for n in range(1, 4096)]
    s = clients[0]
    i0, i1, tag_s = slots(packet(s, 1000, TCP_SYN))
    t = next(c for c in clients[1:] if slots(packet(c, 1000, TCP_SYN))[0] == i0)
    word_t = pack_auth(True, old, slots(packet(t, 1000, TCP_SYN))[2])
    mem.write("auth0", i0, word_t)           # T verified in this epoch, in way 0
    tna = TnaAuth(mem, cfg.lifecycle.auth_sources)

    def check(pkt: Packet, outcome, extra) -> None:
        assert (outcome, extra) == _model_outcome(dp, pkt), pkt
        assert tna.auth0 == [int(w) for w in mem["auth0"]], pkt
        assert tna.auth1 == [int(w) for w in mem["auth1"]], pkt

    def passes(pkt: Packet):
        """A packet's passes until its decision, nothing in between."""
        hdr = None
        while True:
            outcome, extra = tna.run(pkt, slots(pkt), hdr)
            if outcome == "cookie":
                hdr = replace(extra, h=cookie(extra.key, extra.parity, pkt.src_ip,
                                              pkt.dst_ip, pkt.src_port, pkt.dst_port))
            elif outcome == "retry":
                hdr = extra
            else:
                check(pkt, outcome, extra)
                return outcome, extra

    acks = {}
    for port in (1000, 1001):
        outcome, acks[port] = passes(packet(s, port, TCP_SYN, port))
        assert outcome == "challenge" and acks[port] & 1 == old
    rst = packet(s, 1000, TCP_RST, acks[1000])
    flight = {"hdr": None, "decided": None}

    def rst_pass() -> None:
        """The RST's next pass (its rounds through egress in between)."""
        if flight["decided"] is not None:
            return
        outcome, extra = tna.run(rst, (i0, i1, tag_s), flight["hdr"])
        if outcome == "cookie":
            extra = replace(extra, h=cookie(extra.key, extra.parity, s, rst.dst_ip,
                                            rst.src_port, rst.dst_port))
        if outcome in ("cookie", "retry"):
            flight["hdr"] = extra
        else:
            check(rst, outcome, extra)
            flight["decided"] = (outcome, tna.why)

    rst_pass()                                                # first pass, epoch old
    assert flight["hdr"].epoch == old and flight["hdr"].p1 == 0
    assert passes(packet(s, 1001, TCP_RST, acks[1001])) == ("verify", None)
    assert unpack_auth(tna.auth1[i1]) == (True, old, tag_s)  # S in way 1
    cp.rotate_auth()                                          # clears, key, epoch
    tna.reload(mem)
    assert tna.epoch == new and tna.keys[old] == flight["hdr"].key   # the RST's key held
    assert passes(packet(t, 1000, TCP_SYN, 3)) == ("lb", None)   # T's word: epoch new
    rst_pass()                                                # final pass: epoch moved
    # the next rotation's clears (words of `old`), then its key and epoch: an RST
    # still in the air would now decide by a cleared word
    nxt = tna.epoch ^ 1
    for way in ("auth0", "auth1"):
        for i, w in enumerate(getattr(tna, way)):
            valid, stamp, _ = unpack_auth(w)
            if valid and stamp == nxt:
                mem.write(way, i, 0)
                getattr(tna, way)[i] = 0
    rst_pass()
    cp.rotate_auth()
    tna.reload(mem)
    rst_pass()
    rst_pass()
    # decided at the final pass after the first rotation: key held, epoch moved
    assert flight["decided"] == ("lb", (True, False))


def test_the_transcription_follows_the_template():
    """The rendered step 3b holds, in this order, the guards and actions TnaAuth.run
    transcribes (so a change to the template that the transcription misses fails
    here), and the stateful ALUs compare as transcribed."""
    from codegen.p4 import render_tna

    text = render_tna(_config())
    step = text[text.index("// step 3b"):text.index("// steps 4-7 only")]
    pos = 0
    for anchor in (
        "if (ig_md.auth.epoch == hdr.auth.epoch) {\n"
        "                        ig_md.auth.ep_ok = 1;",
        "if (ig_md.auth.rstf == 1 && ig_md.auth.key_ok == 1\n"
        "                    && ig_md.auth.ep_ok == 1) {\n"
        "                    auth_rst_verify();",
        "if (ig_md.auth.rstv == 1 && ig_md.auth.ok == 1\n"
        "                    && ig_md.auth.pm0 == 0 && ig_md.auth.pm1 == 0) {\n"
        "                    if (ig_md.auth.pc0 == 1 && ig_md.auth.pc1 == 0) {\n"
        "                        ig_md.auth.v1pred = 1;",
        "|| ig_md.auth.rstf == 1) {\n"
        "                    ig_md.auth.xg = auth_gen_bump.execute(ig_md.hash.auth1);",
        "if ((ig_md.tcp_flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) == TCP_FLAG_SYN) {\n"
        "                    ig_md.auth.y0 = auth0_refresh.execute(ig_md.hash.auth0);\n"
        "                } else if (ig_md.auth.v0pred == 1 && ig_md.auth.gen_ok == 1) {\n"
        "                    ig_md.auth.y0 = auth0_verify.execute(ig_md.hash.auth0);",
        "&& (ig_md.auth.y0 & AUTH_MATCH_MASK) != 0) {\n"
        "                    ig_md.auth.y1 = auth1_refresh.execute(ig_md.hash.auth1);\n"
        "                } else if (ig_md.auth.v1pred == 1 && ig_md.auth.gen_ok == 1\n"
        "                           && ig_md.auth.y0 == 0) {\n"
        "                    ig_md.auth.y1 = auth1_verify.execute(ig_md.hash.auth1);",
        "if (ig_md.auth.rstv == 1) {",
        "if (ig_md.auth.gen_ok == 0 || ig_md.auth.y0 != 0) {\n"
        "                        auth_retry();",
        "} else if (ig_md.auth.pm0 == 1 || ig_md.auth.pm1 == 1) {",
        "} else if (ig_md.auth.ok == 0) {\n"
        "                        auth_verdict(ACTION_UNVERIFIED);",
        "} else if (ig_md.auth.m0 == 1 || ig_md.auth.m1 == 1) {",
        "if (ig_md.auth.final == 1 && ig_md.auth.key_ok == 1\n"
        "                        && ig_md.auth.ep_ok == 1) {",
        "} else if ((ig_md.tcp_flags & (TCP_FLAG_RST | TCP_FLAG_SYN)) == TCP_FLAG_RST) {\n"
        "                    auth_start_cookie();",
    ):
        at = step.find(anchor, pos)
        assert at >= 0, f"not in step 3b (after offset {pos}):\n{anchor}"
        pos = at + len(anchor)
    for alu in (
        "(auth0) auth0_refresh = {\n        void apply(inout bit<32> word, out bit<32> rv) {\n"
        "            rv = word ^ ig_md.auth.cmp0;\n"
        "            if (word == ig_md.auth.fresh || word == ig_md.auth.cmp0) {",
        "(auth0) auth0_verify = {\n        void apply(inout bit<32> word, out bit<32> rv) {\n"
        "            rv = word ^ ig_md.auth.cmp0;\n"
        "            if (word == ig_md.auth.cmp0) {\n                word = ig_md.auth.fresh;",
        "(auth1) auth1_verify = {\n        void apply(inout bit<32> word, out bit<32> rv) {\n"
        "            rv = word ^ ig_md.auth.other;\n            word = ig_md.auth.fresh;",
        "(auth_gen) auth_gen_bump = {\n        void apply(inout bit<32> value, out bit<32> rv) {\n"
        "            rv = value ^ ig_md.auth.gexp;\n            value = value + 1;",
    ):
        assert alu in text, alu
    for action in (
        "action auth_rst_verify() {\n        ig_md.auth.rstv = 1;\n"
        "        ig_md.auth.cmp0 = hdr.auth.p0;",
        "        auth_stamp1();\n                    auth_cmp_other1();",
        "        auth_stamp0();\n                    auth_cmp_other0();",
        "        hdr.auth.epoch = ig_md.auth.epoch;",
        "        ig_md.auth.parity = k;\n        ig_md.auth.kw = (bit<32>)k;\n"
        "        hdr.auth.parity = k;",
    ):
        assert action in text, action
    retry = text[text.index("action auth_retry()"):]
    assert "hdr.auth.epoch" not in retry[:retry.index("}")]    # a retry keeps the epoch
