# amaranth: UnusedElaboratable=no
"""The connection lifecycle in the RTL frame datapath (``l4lb_datapath``) against
model/frame.py, byte for byte: challenge SYN-ACKs out of ``m``, VERIFY and UNVERIFIED
dropped, the sequence number into the core, control-plane reads through the top.

Top: the traffic (:func:`lifecycle_frames`: spoofed SYNs to the auth VIPs, handshakes
-- SYN, challenge, the client's RST carrying the challenge's acknowledgement number,
the retransmitted SYN --, RSTs with wrong cookies, other misses of unverified sources,
cookies equal to ``seq + 1``, verified clients' new connections, known connections,
UDP, non-VIP and malformed frames), generated while the model decides it so that the
RSTs carry the cookies the model sent. Then an Amaranth-simulator run of the small
lifecycle config of tests/test_lifecycle.py at W = 32. Middle: the cocotb test (inside
Verilator; the bench class of cocotb_tests/test_datapath.py with ``rd``/``rdata``).
Bottom: the pytest function that builds ``examples/lifecycle.toml`` at W = 8 and W = 64
(cached by cocotb_tests/rtl_env.py) and runs it: every output frame compared with the
model's, the learn events, the reason counters, every verified-source word and the
activity bits read back through ``rd``; then one expected frame altered, which the
scoreboard must report as exactly that one mismatch.
"""

import itertools
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import cocotb
import pytest
from cocotb.triggers import ReadOnly, RisingEdge

from hdl.datapath import FrameDatapath
from l4lb.framegen import MALFORMED, build_frame, malform
from model.config import Config, load_config
from model.controlplane import ControlPlane
from model.cookie import cookie
from model.frame import FrameDataPlane, FrameResult
from model.hashing import FiveTuple
from model.layout import Action, Memories
from model.lifecycle import pack_auth
from model.parse import PROTO_TCP, Reason, ones_sum, parse_frame
from model.pipeline import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Packet

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE_TOML = ROOT / "examples" / "lifecycle.toml"

# ======================================================================================
# traffic
# ======================================================================================


def with_seq(frame: bytes, seq: int) -> bytes:
    """A well-formed TCP frame with its sequence number set (TCP checksum recomputed)."""
    p = parse_frame(frame)
    assert p.ok and p.packet.proto == PROTO_TCP
    b = bytearray(frame)
    b[p.l4 + 4:p.l4 + 8] = seq.to_bytes(4, "big")
    end = p.l3 + int.from_bytes(frame[p.l3 + 2:p.l3 + 4], "big")
    b[p.l4 + 16:p.l4 + 18] = b"\x00\x00"
    seg = bytes(b[p.l4:end])
    pseudo = bytes(b[p.l3 + 12:p.l3 + 20]) + bytes([0, PROTO_TCP]) + len(seg).to_bytes(2, "big")
    b[p.l4 + 16:p.l4 + 18] = (~ones_sum(pseudo + seg) & 0xFFFF).to_bytes(2, "big")
    return bytes(b)


def lifecycle_state(cfg: Config, seed: int, conns: int) -> tuple[Memories, list[FiveTuple]]:
    """Installed pools (fixed keys), ``conns`` connections in the ConnTable, a pool
    update per VIP, a random key epoch, and a few pre-verified client sources (the
    first 16 of :func:`client`)."""
    rng = random.Random(seed)
    cp = ControlPlane(cfg, auth_seed=seed)
    cp.install()
    keys = []
    for _ in range(conns):
        vid = rng.randrange(len(cfg.vips))
        v = cfg.vips[vid]
        k = FiveTuple(client(rng.randrange(400)), v.address, rng.randrange(1024, 65536), v.port,
                      v.protocol)
        cp.learn(k, vid, cp.pools.current(vid).version)
        cp.insert_pending()
        keys.append(k)
    mem = cp.mem
    epoch = rng.randrange(2)
    mem.write("auth_epoch", 0, epoch)
    for c in range(16):
        i0, i1, tag = cp.hasher.auth_slots(FiveTuple(client(c), 0, 0, 0, PROTO_TCP))
        way, i = rng.choice(((0, i0), (1, i1)))
        mem.write(f"auth{way}", i, pack_auth(True, rng.randrange(2) if c % 3 else epoch, tag))
    return mem, keys


def client(k: int) -> int:
    """Address of client ``k`` (clients 0..15 start verified, see :func:`lifecycle_state`)."""
    return 0x64400000 + 7 * k


def lifecycle_frames(cfg: Config, mem: Memories, keys: list[FiveTuple], seed: int, n: int,
                     malformed: float = 0.06) -> tuple[list[bytes], list[FrameResult]]:
    """``n`` frames and the model's result for each, decided in order on ``mem`` (which
    they change as the data plane does). Follow-up frames of a handshake (the RST with
    the challenge's acknowledgement number, the retransmitted SYN, the first ACK) are
    queued and sent a few frames later, interleaved with the rest."""
    rng = random.Random(seed)
    fdp = FrameDataPlane(cfg, mem)
    auth_vips = [v for v in cfg.vips if v.auth]
    other_vips = [v for v in cfg.vips if not v.auth]
    frames: list[bytes] = []
    results: list[FrameResult] = []
    later: list[tuple[int, Callable[[], None]]] = []

    def send(pkt: Packet, mal: bool = False) -> FrameResult:
        f = build_frame(rng, pkt, payload=rng.choice((0, 0, 0, 6, 40, 300)))
        if pkt.proto == PROTO_TCP:
            f = with_seq(f, pkt.seq)
        if mal:   # (AXI4-Stream has no empty frame: cocotbext-axi would not send one)
            f = malform(rng, f, rng.choice(MALFORMED)) or b"\x00"
        r = fdp.decide(f)
        frames.append(f)
        results.append(r)
        return r

    def conn(src: int, v=None, flags: int = TCP_SYN, seq: int | None = None) -> Packet:
        v = v or rng.choice(auth_vips)
        return Packet(src, v.address, rng.randrange(1024, 65536), v.port, v.protocol, flags,
                      rng.getrandbits(32) if seq is None else seq, rng.getrandbits(32))

    def follow(p: Packet, flags: int, seq: int, delay: int) -> None:
        later.append((len(frames) + delay, lambda: send(Packet(
            p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto, flags, seq, 0))))

    def handshake(p: Packet) -> None:
        r = send(p)
        if r.decision.action == Action.CHALLENGE:   # the client: RST, then the SYN again
            follow(p, TCP_RST, r.decision.cookie, rng.randrange(1, 12))
            follow(p, p.tcp_flags, p.seq, rng.randrange(12, 30))
        follow(p, TCP_ACK, p.seq + 1, rng.randrange(30, 40))

    kinds = ("spoof", "spoof", "handshake", "handshake", "wrong_rst", "other", "flip",
             "verified", "known", "known", "udp", "nonvip")
    while len(frames) < n:
        due = [k for k, (at, _) in enumerate(later) if at <= len(frames)]
        if due:
            later.pop(due[0])[1]()
            continue
        if rng.random() < malformed:
            send(conn(rng.getrandbits(32)), mal=True)
            continue
        kind = rng.choice(kinds)
        if kind == "spoof":        # random source, SYN (sometimes with ECE/CWR)
            send(conn(rng.getrandbits(32), flags=rng.choice((TCP_SYN, TCP_SYN, 0xC2))))
        elif kind == "handshake":  # a client (perhaps verified already) connects
            handshake(conn(client(rng.randrange(16, 400))))
        elif kind == "wrong_rst":
            send(conn(client(rng.randrange(16, 400)), flags=TCP_RST))
        elif kind == "other":      # other misses: UNVERIFIED unless the source is verified
            send(conn(rng.choice((client(rng.randrange(400)), rng.getrandbits(32))),
                      flags=rng.choice((TCP_ACK, TCP_ACK | TCP_FIN, TCP_SYN | TCP_ACK,
                                        TCP_SYN | TCP_RST, TCP_SYN | TCP_FIN, 0, 0x18))))
        elif kind == "flip":       # a SYN whose cookie equals seq + 1: the ack is flipped
            p = conn(client(rng.randrange(16, 400)))
            e = mem.read("auth_epoch", 0)
            c = cookie(mem.read("auth_key", e), e, p.src_ip, p.dst_ip, p.src_port, p.dst_port)
            handshake(Packet(p.src_ip, p.dst_ip, p.src_port, p.dst_port, p.proto, TCP_SYN,
                             (c - 1) & 0xFFFFFFFF))
        elif kind == "verified":   # a pre-verified client
            handshake(conn(client(rng.randrange(16))))
        elif kind == "known":      # an established connection (ConnTable hit)
            k = rng.choice(keys)
            send(Packet(k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto,
                        rng.choice((TCP_ACK, TCP_ACK | 0x08, TCP_SYN, TCP_RST, TCP_FIN)),
                        rng.getrandbits(32)))
        elif kind == "udp" and other_vips:
            send(conn(rng.getrandbits(32), v=rng.choice(other_vips), flags=0, seq=0))
        else:
            send(Packet(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                        rng.getrandbits(16), rng.choice((6, 17)), rng.getrandbits(8),
                        rng.getrandbits(32)))
    return frames, results


def counts(results: list[FrameResult]) -> dict[str, int]:
    """Frames per decision action (well-formed frames) and set-aside frames."""
    out: dict[str, int] = {}
    for r in results:
        name = Action(r.decision.action).name.lower() if r.reason == Reason.OK else "set_aside"
        out[name] = out.get(name, 0) + 1
    return out


# ======================================================================================
# Amaranth simulator
# ======================================================================================

def test_small_lifecycle_config_in_the_amaranth_simulator():
    """The small lifecycle config (2 ways of 16 verified sources, fast key rotation) at
    W = 32 with input gaps and output backpressure: frames as the model's."""
    from .test_hdl_datapath import _compare, run_datapath
    from .test_lifecycle import LC, _cfg

    cfg = _cfg(LC)
    mem, keys = lifecycle_state(cfg, 3, 12)
    dut = FrameDatapath(cfg, 32, init_images=mem.snapshot(), hash_stages=1)
    frames, results = lifecycle_frames(cfg, mem, keys, 4, 150)
    c = counts(results)
    assert min(c.get(a, 0) for a in ("challenge", "verify", "unverified", "lb")) >= 5, c
    want = [r.out for r in results if r.out is not None]
    res = run_datapath(dut, frames, len(want), idle=itertools.cycle([1, 1, 0, 1, 0]),
                       ready=itertools.cycle([1, 1, 1, 0, 0, 1, 0]))
    _compare(res["out"], want)


def test_datapath_ports_with_and_without_a_lifecycle():
    """A lifecycle config's datapath has the read ports; one without keeps the format-1
    interface."""
    from hdl.datapath_top import datapath_ports

    from .test_hdl_datapath import SMALL
    from .test_lifecycle import LC, _cfg

    lc = datapath_ports(_cfg(LC), 8)
    assert {"rd_valid", "rd_ready", "rd_mem", "rd_addr", "rdata_valid", "rdata_ready",
            "rdata_data"} <= set(lc)
    assert not any(n.startswith("rd") for n in datapath_ports(SMALL, 8))


def test_datapath_refuses_a_network_config():
    """The core routes a [network] config; the frame datapath does not (no MAC rewrite,
    no return-path source rewrite, one output stream): it refuses, naming itself."""
    from model.network import NetworkUnsupported

    with pytest.raises(NetworkUnsupported, match="RTL frame datapath"):
        FrameDatapath(load_config(ROOT / "examples" / "network.toml"), 8)


# ======================================================================================
# cocotb (inside Verilator)
# ======================================================================================

def _fields(k: FiveTuple) -> tuple[int, int, int, int, int]:
    return k.src_ip, k.dst_ip, k.src_port, k.dst_port, k.proto


def _bench_module():
    sys.path.insert(0, str(ROOT / "cocotb_tests"))
    import test_datapath

    return test_datapath


async def _read_words(tb, reads: list[tuple[int, int]]) -> list[int]:
    """Control-plane reads ``(mem id, addr)`` on ``rd_*``, one per clock while
    ``rd_ready``; the words from ``rdata_*`` in order."""
    d = tb.dut
    clk, ro = RisingEdge(d.clk), ReadOnly()
    words: list[int] = []
    i = 0
    while len(words) < len(reads):
        await clk
        if i < len(reads):
            d.rd_valid.value = 1
            d.rd_mem.value, d.rd_addr.value = reads[i]
        else:
            d.rd_valid.value = 0
        await ro
        if i < len(reads) and int(d.rd_ready.value):
            i += 1
        if int(d.rdata_valid.value):
            words.append(d.rdata_data.value.to_unsigned())
    await clk
    d.rd_valid.value = 0
    return words


async def _run_frames(tb, frames: list[bytes], want: list[bytes]) -> list[str]:
    """Send the frames, receive as many as expected, compare; the mismatches."""
    from cocotbext.axi import AxiStreamFrame

    for f in frames:
        await tb.source.send(AxiStreamFrame(f))
    bad = []
    for k, w in enumerate(want):
        got = bytes((await tb.sink.recv()).tdata)
        if got != w:
            bad.append(f"output frame {k}: got {got.hex()} want {w.hex()}")
    for _ in range(300):
        await RisingEdge(tb.dut.clk)
    if not tb.sink.empty():
        bad.append(f"{tb.sink.count()} extra output frames")
    return bad


@cocotb.test()
async def lifecycle_frames_test(dut):
    """Lifecycle traffic with gaps and backpressure; reads of the lifecycle words; then
    one altered expected frame, which must be the only mismatch reported."""
    bench = _bench_module()
    cfg = load_config(os.environ["L4LB_CONFIG"])
    info = json.loads(Path(os.environ["L4LB_INFO_JSON"]).read_text())
    tb = bench.TB(dut, info)
    await tb.reset()
    seed = int(os.environ.get("L4LB_SEED", "1"))
    n = int(os.environ.get("L4LB_FRAMES", "1500"))
    mem, keys = lifecycle_state(cfg, seed, 800)
    model_mem, writes = await tb.load_tables(cfg, mem)
    frames, results = lifecycle_frames(cfg, model_mem, keys, seed + 1, n)
    want = [r.out for r in results if r.out is not None]
    learns = [(*_fields(r.packet.key), r.decision.vip_id, r.decision.version)
              for r in results if r.decision.learn]
    idle, bp = bench.PATTERNS[os.environ.get("L4LB_PATTERN", "both")]
    tb.set_idle_generator(bench._pattern(idle))
    tb.set_backpressure_generator(bench._pattern(bp))
    c0 = tb.cycle
    in0, out0 = len(tb.first_in), len(tb.first_out)
    mism = await _run_frames(tb, frames, want)
    cycles = tb.cycle - c0
    if tb.learn != learns:
        mism.append(f"learn events: {len(tb.learn)} vs model {len(learns)}")
    fdp_reasons = dict.fromkeys((r.key for r in Reason), 0)
    for r in results:
        fdp_reasons[r.reason.key] += 1
    reasons = {k: tb.counter(k) for k in fdp_reasons}
    if reasons != fdp_reasons:
        mism.append(f"reason counters {reasons} != model {fdp_reasons}")
    # the words the data plane changed, read back through rd/rdata
    ids = {m["name"]: m["id"] for m in info["memories"]}
    reads = [(ids[f"auth{w}"], a) for w in (0, 1) for a in range(cfg.lifecycle.auth_sources)]
    rng = random.Random(seed)
    for s in range(cfg.geometry.stages):
        act = model_mem[f"act{s}"]
        reads += [(ids[f"act{s}"], a) for a in range(len(act))
                  if act[a] or rng.random() < 0.02]
    names = {v: k for k, v in ids.items()}
    words = await _read_words(tb, reads)
    bad_reads = [f"read {names[m]}[{a}]: {w:#x} != model {int(model_mem[names[m]][a]):#x}"
                 for (m, a), w in zip(reads, words, strict=True)
                 if w != int(model_mem[names[m]][a])]
    mism += bad_reads[:20]
    out_idx = [i for i, r in enumerate(results) if r.out is not None]
    lat = [tb.first_out[out0 + k] - tb.first_in[in0 + i] for k, i in enumerate(out_idx)
           if out0 + k < len(tb.first_out)]
    # the scoreboard must catch one altered frame (the first challenge's acknowledgement)
    frames2, results2 = lifecycle_frames(cfg, model_mem, keys, seed + 2, 120)
    want2 = [r.out for r in results2 if r.out is not None]
    k = next(i for i, r in enumerate(r2 for r2 in results2 if r2.out is not None)
             if r.decision.action == Action.CHALLENGE)
    alt = bytearray(want2[k])
    alt[-12] ^= 0x10
    want2[k] = bytes(alt)
    caught = await _run_frames(tb, frames2, want2)
    if len(caught) != 1 or not caught[0].startswith(f"output frame {k}:"):
        mism.append(f"altered frame {k} not caught exactly: {caught[:3]}")
    stats = {"width": tb.width, "frames": len(frames), "out": len(want),
             "actions": counts(results), "writes": writes, "reads": len(reads),
             "learn": len(learns), "cycles": cycles, "latency_min": min(lat),
             "latency_max": max(lat), "mismatches": len(mism), "altered_caught": caught[:1]}
    Path(os.environ["L4LB_RUN_DIR"], "stats.json").write_text(json.dumps(stats))
    for line in mism[:20]:
        tb.log.error("%s", line)
    assert not mism


@cocotb.test()
async def lifecycle_throughput(dut):
    """Minimum-size frames back to back, no pauses: challenged spoofed SYNs and
    established connections (LB hits), every one answered or forwarded: frames per
    cycle in and out and the latency of each (first beat in to first beat out)."""
    bench = _bench_module()
    from cocotbext.axi import AxiStreamFrame

    cfg = load_config(os.environ["L4LB_CONFIG"])
    info = json.loads(Path(os.environ["L4LB_INFO_JSON"]).read_text())
    tb = bench.TB(dut, info)
    await tb.reset()
    mem, keys = lifecycle_state(cfg, 7, 800)
    model_mem, _ = await tb.load_tables(cfg, mem)
    rng = random.Random(8)
    fdp = FrameDataPlane(cfg, model_mem)
    auth = [v for v in cfg.vips if v.auth]
    frames, want = [], []
    for _ in range(int(os.environ.get("L4LB_THROUGHPUT_FRAMES", "1500"))):
        if rng.random() < 0.5:
            v = rng.choice(auth)
            p = Packet(rng.getrandbits(32), v.address, rng.getrandbits(16), v.port, PROTO_TCP,
                       TCP_SYN, rng.getrandbits(32))
        else:
            k = rng.choice(keys)
            p = Packet(*_fields(k), TCP_ACK, rng.getrandbits(32))
        f = build_frame(rng, p, tags=0, options=0, payload=0)
        if p.proto == PROTO_TCP:
            f = with_seq(f, p.seq)
        f = f[:64].ljust(64, b"\x00")
        out = fdp.decide(f).out
        if out is None:   # a stashed connection of an unverified client: UNVERIFIED
            continue
        frames.append(f)
        want.append(out)
    in0, out0 = len(tb.first_in), len(tb.first_out)
    for f in frames:
        await tb.source.send(AxiStreamFrame(f))
    bad = 0
    for w in want:
        bad += bytes((await tb.sink.recv()).tdata) != w
    fi, fo = tb.first_in[in0:], tb.first_out[out0:]
    lat = [o - i for i, o in zip(fi, fo, strict=True)]
    stats = {"frames": len(frames), "mismatches": bad,
             "challenges": fdp.actions["challenge"], "lb": fdp.actions["lb"],
             "frames_per_cycle_in": len(fi) / (fi[-1] - fi[0] + 1),
             "frames_per_cycle_out": len(fo) / (fo[-1] - fo[0] + 1),
             "latency_min": min(lat), "latency_max": max(lat),
             "latency_expected": int(info["latency"]) + -(-64 // tb.width) - 1}
    Path(os.environ["L4LB_RUN_DIR"], "throughput.json").write_text(json.dumps(stats))
    assert bad == 0


# ======================================================================================
# pytest: examples/lifecycle.toml at W = 8 and W = 64 on Verilator
# ======================================================================================

@pytest.mark.parametrize("width", [8, 64])
def test_rtl_datapath_lifecycle_frames(width):
    """examples/lifecycle.toml's datapath on Verilator: lifecycle traffic with input gaps
    and output backpressure, every output frame as the model's, 0 mismatches."""
    pytest.importorskip("cocotbext.axi", reason="cocotbext-axi comes with the dev extras")
    sys.path.insert(0, str(ROOT / "cocotb_tests"))
    from rtl_env import build_datapath, run_cocotb

    build = build_datapath(LIFECYCLE_TOML, width)
    assert build.info["readable"] == ["act0", "act1", "act2", "act3", "auth0", "auth1"]
    # the core's 59 cycles (41 without a lifecycle); the parser (17), the queue writes (2),
    # the packet queue (8) and the rewriter (17) as without a lifecycle
    assert build.info["core_latency"] == 59 and build.info["latency"] == 103
    frames = os.environ.get("L4LB_FRAMES", "1500")
    results = run_cocotb(build, "tests.test_hdl_datapath_lifecycle",
                         ["lifecycle_frames_test", "lifecycle_throughput"],
                         env={"L4LB_FRAMES": frames})
    s = json.loads((results.parent / "stats.json").read_text())
    t = json.loads((results.parent / "throughput.json").read_text())
    print(f"[datapath lifecycle] W={width}: {s['frames']} frames in, {s['out']} out compared, "
          f"{s['mismatches']} mismatches, actions {s['actions']}, {s['reads']} reads, "
          f"{s['learn']} learn events, {s['cycles']} cycles, latency {s['latency_min']}.."
          f"{s['latency_max']} (datapath latency {build.info['latency']}); throughput "
          f"{t['frames_per_cycle_in']:.3f} frames/cycle in, {t['frames_per_cycle_out']:.3f} "
          f"out, {t['challenges']} challenges + {t['lb']} LB, latency {t['latency_min']}.."
          f"{t['latency_max']} (expected {t['latency_expected']})")
    assert s["mismatches"] == 0
    assert min(s["actions"].get(a, 0) for a in ("challenge", "verify", "unverified", "lb")) > 20
    assert t["mismatches"] == 0 and t["latency_min"] == t["latency_max"] == t["latency_expected"]
    if width == 64:
        assert t["frames_per_cycle_in"] == t["frames_per_cycle_out"] == 1.0


def test_replay_rtl_shipped_capture_on_the_lifecycle_config(tmp_path):
    """``l4lb replay examples/lifecycle.toml examples/capture.pcap --rtl``: the shipped
    capture with its live control plane (aging, FIN grace, key rotations as table
    writes between segments) through the W = 8 lifecycle datapath: every output frame,
    challenge SYN-ACKs included, identical to the model's."""
    pytest.importorskip("cocotbext.axi", reason="cocotbext-axi comes with the dev extras")
    from l4lb.replay import ReplayTrace, replay_pcap
    from l4lb.replay_rtl import replay_rtl

    trace = ReplayTrace()
    rep = replay_pcap(load_config(LIFECYCLE_TOML), ROOT / "examples" / "capture.pcap",
                      tmp_path / "out.pcap", trace=trace)
    rtl = replay_rtl(LIFECYCLE_TOML, trace, 8)
    print(rtl.format())
    assert not rtl.mismatches
    assert rtl.compared == rep.frames_out - sum(1 for f in trace.frames if not f)
    challenges = [o for o in trace.outputs if o is not None and parse_frame(o).ok
                  and parse_frame(o).packet.tcp_flags == 0x12 and parse_frame(o).packet.seq == 0]
    assert len(challenges) > 100 and rtl.writes > 100
