"""``l4lb replay`` on the shipped capture, the capture's reproducibility, and l4lb/pcap.py."""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import bind_layers

from l4lb.cli import main
from l4lb.pcap import PcapError, PcapWriter, read_pcap
from model.parse import Reason, parse_frame

from .conftest import EXAMPLES

ROOT = EXAMPLES.parent
# scapy dissects 0x8100 and 0x88a8 tags; the capture also has the pre-standard 0x9100
bind_layers(Ether, Dot1Q, type=0x9100)
CAPTURE = EXAMPLES / "capture.pcap"


def test_capture_is_reproducible(tmp_path):
    out = tmp_path / "capture.pcap"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_capture.py"), "-o", str(out)],
                   check=True, capture_output=True)
    assert out.read_bytes() == CAPTURE.read_bytes(), (
        "examples/capture.pcap is not what scripts/make_capture.py writes: re-run it")


def test_capture_has_every_class():
    reasons = {parse_frame(r.data).reason for r in read_pcap(CAPTURE)}
    assert reasons == set(Reason)


def _valid_checksums(frame: bytes) -> bool:
    """scapy recomputes the IPv4 and TCP/UDP checksums in full and finds the same."""
    p = Ether(frame)
    q = Ether(frame)
    q[IP].chksum = None
    l4 = q[TCP] if TCP in q else q[UDP]
    if not (isinstance(l4, UDP) and l4.chksum == 0):
        l4.chksum = None
    return bytes(Ether(bytes(q))) == bytes(p)


def test_replay_of_the_shipped_capture(tmp_path, capsys):
    out, js = tmp_path / "out.pcap", tmp_path / "rep.json"
    assert main(["replay", str(EXAMPLES / "default.toml"), str(CAPTURE), "-o", str(out),
                 "--json", str(js), "--progress", "1000"]) == 0
    text = capsys.readouterr()
    assert "per reason" in text.out and "frames/s" in text.out
    assert text.err.count("l4lb replay: ") >= 2       # progress lines at 1,000 and 2,000
    rep = json.loads(js.read_text())
    ins, outs = list(read_pcap(CAPTURE)), list(read_pcap(out))
    n = len(ins)
    # the counters add up
    assert rep["frames_in"] == n and sum(rep["reasons"].values()) == n
    assert sum(rep["outcomes"].values()) == n
    assert sum(rep["decisions"][k] for k in ("forward", "lb", "drop")) == n
    assert rep["decisions"]["lb"] == rep["outcomes"]["lb"] == rep["rewritten"]
    assert rep["frames_out"] == len(outs) == n - rep["decisions"]["drop"]
    assert rep["reasons"]["ok"] == rep["outcomes"]["lb"] + rep["outcomes"]["forward"] \
        + rep["outcomes"]["drop"]
    assert all(v > 0 for v in rep["reasons"].values())
    cp = rep["control_plane"]
    assert cp["learned"] == cp["inserted"] > 0 and cp["deleted"] > 0
    assert rep["decisions"]["close"] > 0
    # with the default policy nothing is dropped: frames pair up in order
    assert rep["decisions"]["drop"] == 0
    changed = 0
    for a, b in zip(ins, outs, strict=True):
        assert (a.sec, a.nsec // 1000, len(a.data)) == (b.sec, b.nsec // 1000, len(b.data))
        if a.data != b.data:
            changed += 1
            assert parse_frame(a.data).reason == Reason.OK
            assert _valid_checksums(b.data), b.data.hex()
    assert changed == rep["rewritten"]


def test_replay_with_a_drop_policy(tmp_path):
    cfg = tmp_path / "drop.toml"
    cfg.write_text((EXAMPLES / "default.toml").read_text()
                   + '\n[frames]\nmalformed = "drop"\nnot_ipv4 = "forward"\n')
    out, js = tmp_path / "out.pcap", tmp_path / "rep.json"
    assert main(["replay", str(cfg), str(CAPTURE), "-o", str(out), "--json", str(js),
                 "--progress", "0"]) == 0
    rep = json.loads(js.read_text())
    kept = rep["reasons"]["ok"] + rep["reasons"]["not_ipv4"]
    assert rep["frames_out"] == len(list(read_pcap(out))) == kept
    assert rep["outcomes"]["malformed_drop"] == rep["frames_in"] - kept


def test_replay_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))
    assert main(["replay", str(EXAMPLES / "default.toml"), str(bad), "-o",
                 str(tmp_path / "o.pcap")]) == 1
    assert "pcapng is not supported" in capsys.readouterr().err


# ---- l4lb/pcap.py --------------------------------------------------------------------------


def test_pcap_round_trip_and_scapy_agree(tmp_path):
    from scapy.utils import rdpcap

    p = tmp_path / "a.pcap"
    frames = [bytes(range(i, i + 60)) for i in range(5)]
    with PcapWriter(p) as w:
        for i, f in enumerate(frames):
            w.write(f, 1000 + i, 123_456_000 + i * 1000)
    recs = list(read_pcap(p))
    assert [r.data for r in recs] == frames
    assert [(r.sec, r.nsec) for r in recs][1] == (1001, 123_457_000)
    pk = rdpcap(str(p))
    assert [bytes(x) for x in pk] == frames
    assert float(pk[1].time) == pytest.approx(1001.123457)


@pytest.mark.parametrize("order,magic,scale", [(">", 0xA1B2C3D4, 1000), ("<", 0xA1B23C4D, 1),
                                               (">", 0xA1B23C4D, 1)])
def test_pcap_byte_orders_and_nanoseconds(tmp_path, order, magic, scale):
    p = tmp_path / "b.pcap"
    data = b"\x01" * 20
    p.write_bytes(struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
                  + struct.pack(order + "IIII", 7, 9, len(data), 100) + data)
    (r,) = read_pcap(p)
    assert (r.sec, r.nsec, r.data, r.orig_len) == (7, 9 * scale, data, 100)


def test_pcap_errors(tmp_path):
    p = tmp_path / "c.pcap"
    p.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
    with pytest.raises(PcapError, match="link type 101, expected 1"):
        list(read_pcap(p))
    p.write_bytes(b"hello world, not a pcap")
    with pytest.raises(PcapError, match="too short|not a pcap"):
        list(read_pcap(p))
    p.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                  + struct.pack("<IIII", 0, 0, 50, 50) + bytes(10))
    with pytest.raises(PcapError, match="record 0 has 10 of 50 bytes"):
        list(read_pcap(p))


def test_replay_trace_reproduces_the_model_run(tmp_path):
    """What ``--rtl`` hands the RTL is complete: the initial images, then every frame with
    the recorded control-plane writes applied after it, give the same output frames on a
    fresh data plane (the data plane's own TransitTable sets happen again by themselves)."""
    from l4lb.replay import ReplayTrace, replay_pcap
    from model.config import load_config
    from model.frame import FrameDataPlane
    from model.layout import Memories

    cfg = load_config(EXAMPLES / "default.toml")
    trace = ReplayTrace()
    rep = replay_pcap(cfg, CAPTURE, tmp_path / "out.pcap", trace=trace)
    assert len(trace.frames) == len(trace.outputs) == len(trace.stamps) == rep.frames_in
    assert sum(len(w) for w in trace.writes.values()) > 500
    mem = Memories(cfg)
    for name, words in trace.initial.items():
        for a, w in enumerate(words):
            if w:
                mem.write(name, a, w)
    fdp = FrameDataPlane(cfg, mem)
    for i, f in enumerate(trace.frames):
        assert fdp.process_frame(f)[0] == trace.outputs[i], f"frame {i}"
        for name, a, w in trace.writes.get(i, []):
            mem.write(name, a, w)


def test_replay_with_syn_authentication_answers_with_challenges(tmp_path):
    """examples/lifecycle.toml: the capture's SYNs from new sources get challenge
    SYN-ACKs (the capture's clients never answer them), their other misses are dropped,
    UDP is load-balanced as before; every challenge frame is the model's."""
    from model.frame import challenge_frame
    from model.parse import parse_frame

    out, js = tmp_path / "out.pcap", tmp_path / "rep.json"
    assert main(["replay", str(EXAMPLES / "lifecycle.toml"), str(CAPTURE), "-o", str(out),
                 "--json", str(js)]) == 0
    rep = json.loads(js.read_text())
    d, o = rep["decisions"], rep["outcomes"]
    assert d["challenge"] == o["challenge"] > 0 and d["unverified"] == o["unverified"] > 0
    assert rep["frames_out"] == rep["frames_in"] - d["drop"] - d["verify"] - d["unverified"]
    syn_acks = [f for f in (r.data for r in read_pcap(out))    # from the VIP 10.0.0.1
                if parse_frame(f).ok and parse_frame(f).packet.tcp_flags == 0x12
                and parse_frame(f).packet.src_ip == 0x0A000001]
    assert len(syn_acks) == d["challenge"]
    first_syn = next(r.data for r in read_pcap(CAPTURE)
                     if parse_frame(r.data).ok and parse_frame(r.data).packet.tcp_flags == 0x02
                     and parse_frame(r.data).packet.dst_port in (80, 443))
    reply = next(f for f in syn_acks
                 if parse_frame(f).packet.dst_ip == parse_frame(first_syn).packet.src_ip)
    cookie = parse_frame(reply).packet.ack
    assert reply == challenge_frame(first_syn, parse_frame(first_syn), cookie)
