"""Replay a model scenario through a running BMv2 ``l4lb_v1model`` and compare, packet by
packet, the exported decision and the emitted frame with the model's.

Each vector packet becomes an Ethernet/IPv4/TCP-or-UDP frame that carries its sequence
number in the last four payload bytes. With ``decision_export`` enabled the switch puts the
model's :class:`~model.pipeline.Decision` (``codegen.p4.DECISION_HEADER``) in front of every
frame it emits. At most :data:`BURST` frames are in the switch's input at a time, and
before each control-plane write, the replay waits for a marker frame sent after the
packets to come back, so each write lands between the same two packets as in the vectors
(BMv2 runs ingress in one thread, in arrival order; :func:`replay` says more). Expected frames
are the sent frames with the destination rewritten and both checksums recomputed in full
(not incrementally, unlike the program).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from codegen.p4 import DECISION_HEADER
from model.layout import Action
from model.pipeline import DECISION_FIELDS, Decision, Packet
from model.vectors import Scenario, Write

from .bmv2 import Bmv2Error, Receiver, Runtime, Switch, TableLoader

__all__ = ["SRC_MAC", "DST_MAC", "frame_of", "expected_output", "parse_output",
           "Mismatch", "ReplayReport", "replay"]

SRC_MAC = bytes.fromhex("02000000" "4c01")
DST_MAC = bytes.fromhex("02000000" "4c02")
#: Payload: a tag, then the packet's sequence number (big-endian, 4 bytes).
TAG = b"l4lb-p4"
DECISION_STRUCT = struct.Struct(">" + "".join({8: "B", 16: "H", 32: "I"}[w]
                                              for _, w in DECISION_HEADER))
_ETH, _IP = 14, 20
#: Frames sent before waiting for the switch to count them. BMv2 reads its ports with
#: libpcap, whose capture ring on a veth with offloads on (the default) has 32 slots of
#: 64 KiB in its 2 MiB buffer: a larger burst loses frames before the switch sees them.
BURST = 16
MARKER_MAC = bytes.fromhex("02000000" "4cff")
MARKER_ETHERTYPE = b"\x88\xb5"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _l4_checksum(src: int, dst: int, proto: int, segment: bytes) -> int:
    pseudo = struct.pack("!IIBBH", src, dst, 0, proto, len(segment))
    c = checksum(pseudo + segment)
    return 0xFFFF if proto == 17 and c == 0 else c


def _ipv4(src: int, dst: int, proto: int, ident: int, payload_len: int) -> bytearray:
    hdr = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, _IP + payload_len, ident, 0, 64,
                                proto, 0, src, dst))
    hdr[10:12] = checksum(bytes(hdr)).to_bytes(2, "big")
    return hdr


def frame_of(p: Packet, seq: int) -> bytes:
    """The frame of vector packet ``p``; UDP frames with ``seq % 5 == 0`` carry no
    checksum (0, RFC 768), which the rewrite must keep."""
    payload = TAG + seq.to_bytes(4, "big")
    if p.proto == 6:
        l4 = bytearray(struct.pack("!HHIIBBHHH", p.src_port, p.dst_port, seq, 0, 5 << 4,
                                   p.tcp_flags, 8192, 0, 0)) + payload
        l4[16:18] = _l4_checksum(p.src_ip, p.dst_ip, 6, bytes(l4)).to_bytes(2, "big")
    elif p.proto == 17:
        l4 = bytearray(struct.pack("!HHHH", p.src_port, p.dst_port, 8 + len(payload), 0)) \
            + payload
        if seq % 5:
            l4[6:8] = _l4_checksum(p.src_ip, p.dst_ip, 17, bytes(l4)).to_bytes(2, "big")
    else:
        l4 = bytearray(payload)
    ip = _ipv4(p.src_ip, p.dst_ip, p.proto, seq & 0xFFFF, len(l4))
    return DST_MAC + SRC_MAC + b"\x08\x00" + bytes(ip) + bytes(l4)


def expected_output(frame: bytes, d: Decision) -> bytes | None:
    """What the switch emits for ``frame`` with decision ``d`` (decision header, then the
    frame, rewritten for LB); None for DROP."""
    if d.action == Action.DROP:
        return None
    out = bytearray(frame)
    if d.action == Action.LB:
        proto = out[_ETH + 9]
        out[_ETH + 16:_ETH + 20] = d.dip_ip.to_bytes(4, "big")
        out[_ETH + 10:_ETH + 12] = b"\0\0"
        out[_ETH + 10:_ETH + 12] = checksum(bytes(out[_ETH:_ETH + _IP])).to_bytes(2, "big")
        l4 = _ETH + _IP
        out[l4 + 2:l4 + 4] = d.dip_port.to_bytes(2, "big")
        at = l4 + (16 if proto == 6 else 6)
        if proto == 6 or out[at:at + 2] != b"\0\0":
            out[at:at + 2] = b"\0\0"
            src = int.from_bytes(out[_ETH + 12:_ETH + 16], "big")
            c = _l4_checksum(src, d.dip_ip, proto, bytes(out[l4:]))
            out[at:at + 2] = c.to_bytes(2, "big")
    return DECISION_STRUCT.pack(*d.as_tuple()) + bytes(out)


def parse_output(data: bytes) -> tuple[int, dict[str, int], bytes] | None:
    """(sequence number, decision, frame) of an emitted frame, or None if it is not one
    of ours (another source MAC, no tag)."""
    body = data[DECISION_STRUCT.size:]
    if len(body) < _ETH + _IP + len(TAG) + 4 or body[6:12] != SRC_MAC:
        return None
    end = _ETH + int.from_bytes(body[_ETH + 2:_ETH + 4], "big")
    if body[end - 4 - len(TAG):end - 4] != TAG:
        return None
    seq = int.from_bytes(body[end - 4:end], "big")
    values = DECISION_STRUCT.unpack(data[:DECISION_STRUCT.size])
    return seq, dict(zip(DECISION_FIELDS, values, strict=True)), body


@dataclass
class Mismatch:
    """One packet on which BMv2 and the model differ."""

    packet: int                 # packet number in the scenario (0-based)
    op: int                     # index in scenario.ops (the vector line)
    sent: Packet
    problem: str                # e.g. "dip_port: BMv2 9000, model 8080"

    def __str__(self) -> str:
        p = self.sent
        return (f"packet {self.packet} (op {self.op}: {p.src_ip:#010x}:{p.src_port} -> "
                f"{p.dst_ip:#010x}:{p.dst_port} proto {p.proto} flags {p.tcp_flags:#04x}): "
                f"{self.problem}")


@dataclass
class ReplayReport:
    packets: int = 0
    writes: int = 0
    frames_expected: int = 0
    frames_received: int = 0
    drops: int = 0
    load_seconds: float = 0.0   # the initial images
    receiver_drops: int = 0     # frames the harness's own socket lost (kernel counter)
    seconds: float = 0.0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def packets_per_second(self) -> float:
        return self.packets / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (f"{self.packets} packets ({self.drops} dropped by the model), {self.writes} "
                f"table writes, {self.frames_received}/{self.frames_expected} frames back "
                f"({self.receiver_drops} lost by the receiving socket), "
                f"{len(self.mismatches)} mismatches, {self.seconds:.1f} s, "
                f"{self.packets_per_second:,.0f} packets/s (initial load "
                f"{self.load_seconds:.1f} s)")


def _compare(want: bytes | None, got: list[bytes], decision: Decision) -> str | None:
    if want is None:
        return f"the model drops it, BMv2 emitted {len(got)} frame(s)" if got else None
    if not got:
        return "no frame from BMv2"
    if len(got) > 1:
        return f"BMv2 emitted {len(got)} frames"
    parsed = parse_output(got[0])
    assert parsed is not None
    _, dec, frame = parsed
    diffs = [f"{k}: BMv2 {dec[k]}, model {v}" for k, v in decision.as_dict().items()
             if dec[k] != v]
    if diffs:
        return "; ".join(diffs)
    body = want[DECISION_STRUCT.size:]
    if frame != body:
        at = next((i for i in range(min(len(frame), len(body))) if frame[i] != body[i]),
                  min(len(frame), len(body)))
        return (f"frame differs at byte {at}: BMv2 {frame[at:at + 8].hex()}, "
                f"model {body[at:at + 8].hex()} (lengths {len(frame)}, {len(body)})")
    return None


def marker_frame(n: int) -> bytes:
    """Completion marker ``n``: a frame the program forwards untouched (IEEE 802 local
    experimental EtherType), so its return proves every earlier frame left ingress."""
    return DST_MAC + MARKER_MAC + MARKER_ETHERTYPE + TAG + n.to_bytes(4, "big") + bytes(35)


def parse_marker(data: bytes) -> int | None:
    """The number of an emitted completion marker, or None."""
    body = data[DECISION_STRUCT.size:]
    if body[6:12] != MARKER_MAC or body[12:14] != MARKER_ETHERTYPE:
        return None
    return int.from_bytes(body[14 + len(TAG):18 + len(TAG)], "big")


def replay(scen: Scenario, switch: Switch, rt: Runtime, iface: str, burst: int = BURST,
           progress: Callable[[int, int], None] | None = None,
           timeout: float = 20.0) -> ReplayReport:
    """Load ``scen.initial`` into a freshly started switch, enable ``decision_export``,
    then replay ``scen.ops`` (writes and packets, in order); ``iface`` is the host end
    of the switch's port. ``progress(done, total)`` is called now and then.

    Two waits keep the replay exact. Flow control: at most ``burst`` frames are in the
    switch's input at a time (its ``packets`` counter, counted at the start of ingress,
    says how many it has taken). Completion: before a control-plane write, a marker frame
    is sent after the packets and the write waits for the marker to come back -- the
    counter alone is not enough, since it counts a packet before its ingress has read
    the registers the write changes."""
    loader = TableLoader(scen.cfg, rt)
    t_load = time.perf_counter()
    loader.load(scen.initial)
    rt.set_default("decision_export", "export_decision")
    received: dict[int, list[bytes]] = {}
    markers: set[int] = set()
    cond = threading.Condition()

    def on_frame(data: bytes) -> None:
        marker = parse_marker(data)
        with cond:
            if marker is not None:
                markers.add(marker)
                cond.notify_all()
            elif (parsed := parse_output(data)) is not None:
                received.setdefault(parsed[0], []).append(data)

    rx = Receiver(iface, on_frame)
    report = ReplayReport(load_seconds=time.perf_counter() - t_load)
    expected: list[tuple[int, int, Packet, Decision, bytes | None]] = []
    base = rt.counter("packets")
    state = {"sent": 0, "counted": 0, "markers": 0, "unfenced": 0}
    total = len(scen.packets)
    t0 = time.perf_counter()

    def wait_counted() -> None:
        deadline = time.monotonic() + timeout
        while (count := rt.counter("packets") - base) < state["sent"]:
            switch.check_alive()
            if time.monotonic() > deadline:
                raise Bmv2Error(f"BMv2 counted {count} of {state['sent']} frames after "
                                f"{timeout} s: frames lost on the way in "
                                f"(log: {switch.log_path})")
        state["counted"] = count
        if progress is not None:
            progress(len(expected), total)

    def send(frame: bytes) -> None:
        if state["sent"] - state["counted"] >= burst:
            wait_counted()
        rx.send(frame)
        state["sent"] += 1

    def complete() -> None:
        n = state["markers"]
        state["markers"] += 1
        send(marker_frame(n))
        with cond:
            if not cond.wait_for(lambda: n in markers, timeout):
                switch.check_alive()
                raise Bmv2Error(f"completion marker {n} not back after {timeout} s "
                                f"(log: {switch.log_path})")
        state["unfenced"] = 0

    try:
        for i, op in enumerate(scen.ops):
            if isinstance(op, Write):
                if state["unfenced"]:
                    complete()
                loader.write(op.mem, op.addr, op.word)
                continue
            seq = len(expected)
            fr = frame_of(op.packet, seq)
            expected.append((seq, i, op.packet, op.decision, expected_output(fr, op.decision)))
            send(fr)
            state["unfenced"] += 1
        complete()
        wait_counted()
        time.sleep(0.2)  # frames the model drops but a broken program might still emit
        report.receiver_drops = rx.drops()
    finally:
        rx.close()
    report.seconds = time.perf_counter() - t0
    want_frames = {seq for seq, *_, w in expected if w is not None}
    report.packets, report.writes = len(expected), loader.writes
    report.frames_expected = len(want_frames)
    report.frames_received = sum(len(v) for v in received.values())
    report.drops = len(expected) - len(want_frames)
    for seq, op_index, pkt, dec, want in expected:
        problem = _compare(want, received.get(seq, []), dec)
        if problem:
            report.mismatches.append(Mismatch(seq, op_index, pkt, problem))
    return report
