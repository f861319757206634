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

A config with a ``[network]`` table (format-3 vectors) runs on one veth per port: frames
are sent on the lowest port, and every output frame must leave on the port of the model's
decision and equal, byte for byte, what :class:`model.frame.FrameDataPlane` emits for the
sent frame and decision -- :func:`model.frame.rewrite_destination` /
:func:`~model.frame.rewrite_source` / :func:`~model.frame.challenge_frame`, then
:func:`~model.frame.set_macs` with the route's MAC and the port's -- or nothing when the
model drops it (no route, or a frame the parser does not accept). Frames are then told
apart by their payload tag, not their MAC addresses, and the completion marker is an
IPv4/UDP frame the model forwards along a route (:func:`network_marker`).
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from codegen.p4 import DECISION_HEADER
from codegen.p4_lifecycle import decision_header
from model.config import Config
from model.frame import challenge_frame, rewrite_destination, rewrite_source, set_macs
from model.layout import Action, Read
from model.network import unpack_route
from model.parse import parse_frame
from model.pipeline import DataPlane, Decision, Packet
from model.vectors import Scenario, Write, load_memories

from .bmv2 import Bmv2Error, Receiver, Runtime, Switch, TableLoader

__all__ = ["SRC_MAC", "DST_MAC", "frame_of", "expected_output", "parse_output",
           "Mismatch", "ReplayReport", "replay", "Codec", "NetState", "network_marker"]

SRC_MAC = bytes.fromhex("02000000" "4c01")
DST_MAC = bytes.fromhex("02000000" "4c02")
#: Payload: a tag, then the packet's sequence number (big-endian, 4 bytes).
TAG = b"l4lb-p4"
#: Payload tag of a completion marker of a ``[network]`` replay (:func:`network_marker`).
MARKER_TAG = b"l4lb-mk"


def _decision_struct(header: tuple[tuple[str, int], ...]) -> struct.Struct:
    """The byte layout of an exported decision header (big-endian, byte-aligned fields)."""
    return struct.Struct(">" + "".join({8: "B", 16: "H", 32: "I"}[w] for _, w in header))


DECISION_STRUCT = _decision_struct(DECISION_HEADER)


@dataclass(frozen=True)
class Codec:
    """The decision header of one config's program (format 1's, with ``cookie``, with
    the route fields of a ``[network]`` config); ``network``: frames are told apart by
    their payload tag alone (their MAC addresses are the route's)."""

    fields: tuple[str, ...]
    struct: struct.Struct
    network: bool = False

    @classmethod
    def of(cls, cfg: Config) -> Codec:
        hdr = decision_header(cfg, DECISION_HEADER)
        return cls(tuple(n for n, _ in hdr), _decision_struct(hdr), cfg.network.enabled)

    def pack(self, d: Decision) -> bytes:
        return self.struct.pack(*d.as_tuple(self.fields))


_V1 = Codec(tuple(n for n, _ in DECISION_HEADER), DECISION_STRUCT)
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


def frame_of(p: Packet, seq: int, tcp_numbers: bool = False, tag: bytes = TAG) -> bytes:
    """The frame of vector packet ``p``; UDP frames with ``seq % 5 == 0`` carry no
    checksum (0, RFC 768), which the rewrite must keep. The TCP sequence number is
    ``seq`` and the acknowledgement number 0, or with ``tcp_numbers`` (format-2
    vectors) the packet's own ``seq`` and ``ack``."""
    payload = tag + seq.to_bytes(4, "big")
    if p.proto == 6:
        tseq, tack = (p.seq, p.ack) if tcp_numbers else (seq, 0)
        l4 = bytearray(struct.pack("!HHIIBBHHH", p.src_port, p.dst_port, tseq, tack, 5 << 4,
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


@dataclass
class NetState:
    """The forwarding memories of a ``[network]`` config as the replay goes (the
    control plane's writes applied): ``route`` and ``port_mac`` words."""

    route: list[int]
    port_mac: list[int]

    @classmethod
    def of(cls, initial: dict[str, list[int]]) -> NetState:
        return cls([int(w) for w in initial["route"]], [int(w) for w in initial["port_mac"]])

    def write(self, mem: str, addr: int, word: int) -> None:
        if mem in ("route", "port_mac"):
            getattr(self, mem)[addr] = int(word)


def _network_output(frame: bytes, d: Decision, net: NetState) -> bytes | None:
    """The frame :meth:`model.frame.FrameDataPlane.decide` emits for ``frame`` with
    decision ``d`` in a ``[network]`` config, or None (dropped)."""
    parsed = parse_frame(frame)
    if not parsed.ok:
        return None                          # nothing to route by
    if d.action == Action.LB:
        out = rewrite_destination(frame, parsed, d.dip_ip, d.dip_port)
    elif d.action == Action.REVERSE:
        out = rewrite_source(frame, parsed, d.dip_ip, d.dip_port)
    elif d.action == Action.CHALLENGE:
        out = challenge_frame(frame, parsed, d.cookie)
    elif d.action == Action.FORWARD:
        out = frame
    else:
        return None
    if not d.route_hit:
        return None
    _, _, _, port, mac = unpack_route(net.route[d.route])
    return set_macs(out, mac, net.port_mac[port])


def expected_output(frame: bytes, d: Decision, codec: Codec = _V1,
                    net: NetState | None = None) -> bytes | None:
    """What the switch emits for ``frame`` with decision ``d`` (decision header, then the
    frame, rewritten for LB; for CHALLENGE the model's challenge SYN-ACK); None for DROP,
    VERIFY and UNVERIFIED. With ``net`` (a ``[network]`` config): the model's frame
    (:func:`_network_output`)."""
    if net is not None:
        out = _network_output(frame, d, net)
        return None if out is None else codec.pack(d) + out
    if d.action in (Action.DROP, Action.VERIFY, Action.UNVERIFIED):
        return None
    if d.action == Action.CHALLENGE:
        return codec.pack(d) + challenge_frame(frame, parse_frame(frame), d.cookie)
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
    return codec.pack(d) + bytes(out)


def reply_key(frame: bytes) -> tuple[int, int, int, int]:
    """What identifies a challenge SYN-ACK: (client address, client port, VIP port,
    acknowledgement number). The reply carries no tag; the harness matches it to the
    oldest outstanding packet with the same key."""
    l4 = _ETH + _IP
    return (int.from_bytes(frame[_ETH + 16:_ETH + 20], "big"),
            int.from_bytes(frame[l4 + 2:l4 + 4], "big"),
            int.from_bytes(frame[l4:l4 + 2], "big"),
            int.from_bytes(frame[l4 + 8:l4 + 12], "big"))


def parse_output(data: bytes, codec: Codec = _V1
                 ) -> tuple[int | tuple[int, int, int, int], dict[str, int], bytes] | None:
    """(sequence number, decision, frame) of an emitted frame -- for a challenge reply
    its :func:`reply_key` instead of the sequence number -- or None if it is not one of
    ours (another source MAC, no tag)."""
    body = data[codec.struct.size:]
    values = dict(zip(codec.fields, codec.struct.unpack(data[:codec.struct.size]),
                      strict=True)) if len(data) >= codec.struct.size else {}
    if codec.network:
        return _parse_network_output(body, values)
    if len(body) >= _ETH + _IP + 20 and body[0:6] == SRC_MAC and body[6:12] == DST_MAC:
        return reply_key(body), values, body      # a reply to one of our frames
    if len(body) < _ETH + _IP + len(TAG) + 4 or body[6:12] != SRC_MAC:
        return None
    end = _ETH + int.from_bytes(body[_ETH + 2:_ETH + 4], "big")
    if body[end - 4 - len(TAG):end - 4] != TAG:
        return None
    seq = int.from_bytes(body[end - 4:end], "big")
    return seq, values, body


def _payload_tag(body: bytes, tag: bytes) -> int | None:
    """The number after ``tag`` at the end of an IPv4 frame's payload, or None."""
    if len(body) < _ETH + _IP + len(tag) + 4 or body[12:14] != b"\x08\x00":
        return None
    end = _ETH + int.from_bytes(body[_ETH + 2:_ETH + 4], "big")
    if end > len(body) or body[end - 4 - len(tag):end - 4] != tag:
        return None
    return int.from_bytes(body[end - 4:end], "big")


def _parse_network_output(body: bytes, values: dict[str, int]):
    """:func:`parse_output` of a ``[network]`` replay: the MAC addresses are the route's,
    so a frame is ours by its payload tag, or is a challenge SYN-ACK (40-byte IPv4/TCP,
    flags SYN|ACK, no payload)."""
    seq = _payload_tag(body, TAG)
    if seq is not None:
        return seq, values, body
    if (len(body) >= _ETH + _IP + 20 and body[12:14] == b"\x08\x00"
            and body[_ETH + 9] == 6 and body[_ETH + 2:_ETH + 4] == b"\x00\x28"
            and body[_ETH + _IP + 13] == 0x12):
        return reply_key(body), values, body
    return None


@dataclass
class Mismatch:
    """One packet on which BMv2 and the model differ."""

    packet: int                 # packet number in the scenario (0-based)
    op: int                     # index in scenario.ops (the vector line)
    sent: Packet | None         # None for a control-plane read
    problem: str                # e.g. "dip_port: BMv2 9000, model 8080"

    def __str__(self) -> str:
        if self.sent is None:
            return f"op {self.op} (before packet {self.packet}): {self.problem}"
        p = self.sent
        return (f"packet {self.packet} (op {self.op}: {p.src_ip:#010x}:{p.src_port} -> "
                f"{p.dst_ip:#010x}:{p.dst_port} proto {p.proto} flags {p.tcp_flags:#04x}): "
                f"{self.problem}")


@dataclass
class ReplayReport:
    packets: int = 0
    writes: int = 0
    reads: int = 0              # control-plane reads checked (format-2 vectors)
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
                f"table writes, {self.reads} register reads checked, "
                f"{self.frames_received}/{self.frames_expected} frames back "
                f"({self.receiver_drops} lost by the receiving socket), "
                f"{len(self.mismatches)} mismatches, {self.seconds:.1f} s, "
                f"{self.packets_per_second:,.0f} packets/s (initial load "
                f"{self.load_seconds:.1f} s)")


def _compare(want: bytes | None, got: list[bytes] | list[tuple[int, bytes]],
             decision: Decision, codec: Codec = _V1) -> str | None:
    """Why the frames BMv2 emitted for one packet differ from the model's, or None.
    ``got`` holds frames, or in a ``[network]`` replay (port, frame) pairs: the frame
    must leave on the decision's port."""
    if want is None:
        return f"the model drops it, BMv2 emitted {len(got)} frame(s)" if got else None
    if not got:
        return "no frame from BMv2"
    if len(got) > 1:
        return f"BMv2 emitted {len(got)} frames"
    data = got[0]
    if isinstance(data, tuple):
        port, data = data
        if port != decision.port:
            return f"port: BMv2 sent the frame out of port {port}, model port {decision.port}"
    parsed = parse_output(data, codec)
    assert parsed is not None
    _, dec, frame = parsed
    diffs = [f"{k}: BMv2 {dec[k]}, model {v}"
             for k, v in decision.as_dict(codec.fields).items() if dec[k] != v]
    if diffs:
        return "; ".join(diffs)
    body = want[codec.struct.size:]
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


def network_marker(scen: Scenario) -> Packet:
    """The completion marker of a ``[network]`` replay: a UDP packet the model forwards
    along a route (not to a VIP, not from a DIP) from the initial memories -- frames the
    program does not parse are dropped there, so the Ethernet marker cannot serve."""
    cfg = scen.cfg
    dp = DataPlane(cfg, load_memories(cfg, scen.initial))
    for w in scen.initial["route"]:
        valid, prefix, length, _, _ = unpack_route(int(w))
        if not valid or length > 32:
            continue
        host = prefix & ((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF) | (length < 32)
        p = Packet(0xC6336401, host, 9, 9, 17)   # 198.51.100.1 (TEST-NET-2), discard
        d = dp.process(p)
        if d.action == Action.FORWARD and d.route_hit:
            return p
    raise Bmv2Error(f"config {cfg.name!r}: no route that a marker frame can take")


def parse_marker(data: bytes, codec: Codec = _V1) -> int | None:
    """The number of an emitted completion marker, or None."""
    body = data[codec.struct.size:]
    if codec.network:
        return _payload_tag(body, MARKER_TAG)
    if body[6:12] != MARKER_MAC or body[12:14] != MARKER_ETHERTYPE:
        return None
    return int.from_bytes(body[14 + len(TAG):18 + len(TAG)], "big")


def replay(scen: Scenario, switch: Switch, rt: Runtime, iface: str | dict[int, str],
           burst: int = BURST, progress: Callable[[int, int], None] | None = None,
           timeout: float = 20.0) -> ReplayReport:
    """Load ``scen.initial`` into a freshly started switch, enable ``decision_export``,
    then replay ``scen.ops`` (writes and packets, in order); ``iface`` is the host end
    of the switch's port, or for a ``[network]`` config ``{port: host end}`` for every
    port of its table (frames are sent on the lowest port and read on all of them).
    ``progress(done, total)`` is called now and then.

    Two waits keep the replay exact. Flow control: at most ``burst`` frames are in the
    switch's input at a time (its ``packets`` counter, counted at the start of ingress,
    says how many it has taken). Completion: before a control-plane write, a marker frame
    is sent after the packets and the write waits for the marker to come back -- the
    counter alone is not enough, since it counts a packet before its ingress has read
    the registers the write changes."""
    cfg = scen.cfg
    loader = TableLoader(cfg, rt)
    codec = Codec.of(cfg)
    tcp_numbers = cfg.lifecycle.enabled
    net = NetState.of(scen.initial) if cfg.network.enabled else None
    ifaces = iface if isinstance(iface, dict) else {0: iface}
    if net is not None:
        missing = sorted({p.id for p in cfg.network.ports} - set(ifaces))
        if missing or not isinstance(iface, dict):
            raise ValueError(f"config {cfg.name!r}: the replay needs a host interface for "
                             f"every [[network.port]]; missing ports {missing}")
        marker_pkt = network_marker(scen)
    t_load = time.perf_counter()
    loader.load(scen.initial)
    rt.set_default("decision_export", "export_decision")
    # frames (or with [network] (port, frame) pairs) per sequence number / reply key
    received: dict[int, list] = {}
    replies: dict[tuple[int, int, int, int], list] = {}
    markers: set[int] = set()
    cond = threading.Condition()

    def on_frame(port: int, data: bytes) -> None:
        marker = parse_marker(data, codec)
        item = (port, data) if net is not None else data
        with cond:
            if marker is not None:
                markers.add(marker)
                cond.notify_all()
            elif (parsed := parse_output(data, codec)) is not None:
                if isinstance(parsed[0], tuple):
                    replies.setdefault(parsed[0], []).append(item)
                else:
                    received.setdefault(parsed[0], []).append(item)

    receivers = {p: Receiver(i, lambda data, p=p: on_frame(p, data))
                 for p, i in sorted(ifaces.items())}
    rx = receivers[min(receivers)]   # sends every frame
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
        send(marker_frame(n) if net is None else frame_of(marker_pkt, n, tag=MARKER_TAG))
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
                if net is not None:
                    net.write(op.mem, op.addr, op.word)
                continue
            if isinstance(op, Read):
                if state["unfenced"]:
                    complete()
                got = rt.register_read(op.mem, op.addr)
                report.reads += 1
                if got != op.word:
                    report.mismatches.append(Mismatch(
                        len(expected), i, None,
                        f"control-plane read {op.mem}[{op.addr}]: BMv2 {got:#x}, "
                        f"model {op.word:#x}"))
                continue
            seq = len(expected)
            fr = frame_of(op.packet, seq, tcp_numbers)
            expected.append((seq, i, op.packet, op.decision,
                             expected_output(fr, op.decision, codec, net)))
            send(fr)
            state["unfenced"] += 1
        complete()
        wait_counted()
        time.sleep(0.2)  # frames the model drops but a broken program might still emit
        report.receiver_drops = sum(r.drops() for r in receivers.values())
    finally:
        for r in receivers.values():
            r.close()
    report.seconds = time.perf_counter() - t0
    want_frames = {seq for seq, *_, w in expected if w is not None}
    report.packets, report.writes = len(expected), loader.writes
    report.frames_expected = len(want_frames)
    report.frames_received = sum(len(v) for v in received.values())
    report.drops = len(expected) - len(want_frames)
    report.frames_received += sum(len(v) for v in replies.values())
    for seq, op_index, pkt, dec, want in expected:
        got = received.get(seq, [])
        if dec.action == Action.CHALLENGE:  # untagged: the oldest reply with its key
            queue = replies.get(reply_key(want[codec.struct.size:]), [])
            got = got + queue[:1]
            del queue[:1]
        problem = _compare(want, got, dec, codec)
        if problem:
            report.mismatches.append(Mismatch(seq, op_index, pkt, problem))
    report.mismatches.sort(key=lambda m: m.op)
    return report
