"""Event-driven simulation of the connection lifecycle: real-TCP-like clients, a
spoofed SYN flood, pool updates, and the control plane on its clock.

Legitimate clients behave as Linux's TCP does in SYN-SENT (docs/lifecycle.md, checked
against a real kernel by tests/test_lifecycle_linux.py): a SYN answered by a challenge
SYN-ACK gets an RST whose sequence number is the SYN-ACK's acknowledgement number, and
the SYN is retransmitted ``fast_retry`` later (Linux re-arms its timer to
TCP_TIMEOUT_MIN, 2 jiffies, on the first unacceptable SYN-ACK) or, for later
challenges of the same connection, after the retransmission timeout (1 s, doubling).
Once a SYN is load-balanced the connection sends its packets and ends with FIN (or,
for a fraction ``vanish`` of them and for UDP flows, simply stops). Spoofed SYNs come
from random addresses outside the clients' prefix and never answer anything.

:func:`run` returns the counters the lifecycle must show (0 spoofed learns, every
legitimate connection admitted, 0 PCC violations, bounded occupancy) and, with
``record=True``, the :class:`model.vectors.Scenario` of everything that happened, in
order: the vectors every target replays.
"""

from __future__ import annotations

import heapq
import itertools
import time
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from .config import Config
from .controlplane import ControlPlane
from .layout import Action, Read
from .pipeline import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, DataPlane, Decision, Packet
from .pools import PoolError
from .trace import new_pool

__all__ = ["LifecycleParams", "LifecycleReport", "run", "scenario", "CLIENT_PREFIX"]

#: Legitimate clients live in 100.64.0.0/10; spoofed sources are drawn outside it.
CLIENT_PREFIX = (0x64400000, 10)
_PSH = 0x08


@dataclass(frozen=True)
class LifecycleParams:
    duration: float = 30.0      # seconds of arrivals (the run continues until all end)
    conn_rate: float = 20.0     # legitimate connections per second
    flood: float = 100.0        # spoofed SYNs per legitimate connection
    sources: int = 100          # distinct legitimate client addresses
    packets: float = 6.0        # mean packets after the handshake (geometric)
    gap: float = 0.5            # mean seconds between a connection's packets
    vanish: float = 0.2         # TCP connections that end without FIN or RST
    rtt: float = 0.01           # client <-> load balancer round trip, seconds
    rto: float = 1.0            # initial SYN retransmission timeout (Linux: 1 s)
    fast_retry: float = 0.008   # SYN again after the first challenge (2 jiffies, HZ=250)
    retries: int = 6            # SYN retransmissions before a client gives up
    odd: int = 0                # rounds of unusual packets (flag combinations, seq edges)
    updates: int = 6            # pool updates spread over the arrivals
    insert_delay: float = 0.02  # seconds from a learn to its insertion
    round: float = 0.01         # control-plane period, seconds
    seed: int = 1


@dataclass
class LifecycleReport:
    packets: int = 0
    legit_connections: int = 0
    admitted: int = 0                # legitimate connections whose SYN was load-balanced
    gave_up: int = 0                 # legitimate connections that never got through
    legit_dropped: int = 0           # legitimate packets that were not load-balanced
    violations: int = 0              # legitimate connections that saw two DIPs
    spoofed_syns: int = 0
    spoofed_learns: int = 0          # spoofed packets that reached the control plane
    spoofed_admitted: int = 0        # spoofed packets that were load-balanced
    spoofed_digest_hits: int = 0     # of those: ConnTable hits on another key's digest
    actions: dict[str, int] = field(default_factory=dict)
    first_syn_delay: list[float] = field(default_factory=list)  # per admitted connection
    occupancy: list[tuple[float, int]] = field(default_factory=list)  # (t, keys held)
    updates_applied: int = 0
    stats: dict[str, int] = field(default_factory=dict)
    packets_per_second: float = 0.0
    scenario: object | None = None

    @property
    def peak_occupancy(self) -> int:
        return max((n for _, n in self.occupancy), default=0)

    def summary(self) -> str:
        d = sorted(self.first_syn_delay)
        p50 = d[len(d) // 2] if d else 0.0
        p99 = d[min(len(d) - 1, int(len(d) * 0.99))] if d else 0.0
        return (f"{self.packets} packets ({self.spoofed_syns} spoofed SYNs): "
                f"{self.admitted}/{self.legit_connections} legitimate connections admitted "
                f"({self.gave_up} gave up, {self.legit_dropped} legitimate packets dropped), "
                f"{self.violations} PCC violations, {self.spoofed_learns} spoofed learns, "
                f"{self.spoofed_admitted} spoofed packets load-balanced "
                f"({self.spoofed_digest_hits} on digest false positives); handshake delay "
                f"median {p50:.3f} s, p99 {p99:.3f} s; peak occupancy "
                f"{self.peak_occupancy} keys, {self.updates_applied} pool updates")


@dataclass
class _Conn:
    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int
    proto: int
    isn: int
    left: int                  # packets still to send after the handshake
    fin: bool                  # ends with FIN (else vanishes)
    start: float
    syns: int = 0
    admitted: bool = False
    violated: bool = False
    dips: set[int] = field(default_factory=set)


def _arrivals(rng: np.random.Generator, rate: float, duration: float) -> np.ndarray:
    n = rng.poisson(rate * duration)
    return np.sort(rng.random(n) * duration)


def run(cfg: Config, p: LifecycleParams, record: bool = False,
        progress: object | None = None) -> LifecycleReport:
    """Simulate; ``progress(done_fraction)`` is called now and then when given."""
    from .vectors import Scenario, Step, Write

    rng = np.random.default_rng(p.seed)
    cp = ControlPlane(cfg, auth_seed=p.seed)
    cp.install()
    dp = DataPlane(cfg, cp.mem, cp.hasher)
    rep = LifecycleReport()
    scen = Scenario(cfg, cp.mem.snapshot()) if record else None
    log: list = []
    if record:
        cp.mem.log = log

    def flush() -> None:
        if scen is not None:
            scen.ops.extend(o if isinstance(o, Read) else Write(*o) for o in log)
            log.clear()

    events: list[tuple[float, int, str, object]] = []
    tie = itertools.count()

    def at(t: float, kind: str, data: object = None) -> None:
        heapq.heappush(events, (t, next(tie), kind, data))

    tcp_vips = [i for i, v in enumerate(cfg.vips) if v.protocol == 6]
    base, plen = CLIENT_PREFIX
    clients = base + rng.choice(1 << (32 - plen), size=p.sources, replace=False)
    for t in _arrivals(rng, p.conn_rate, p.duration):
        vid = int(rng.integers(len(cfg.vips)))
        v = cfg.vips[vid]
        npk = int(rng.geometric(1.0 / max(p.packets, 1.0)))
        c = _Conn(int(rng.choice(clients)), v.address, int(rng.integers(1024, 65536)),
                  v.port, v.protocol, int(rng.integers(0, 1 << 32)), npk,
                  v.protocol == 6 and rng.random() >= p.vanish, float(t))
        at(float(t), "syn", c)
        rep.legit_connections += 1
    if tcp_vips:
        for t in _arrivals(rng, p.conn_rate * p.flood, p.duration):
            src = int(rng.integers(0, 1 << 32))
            if src >> (32 - plen) == base >> (32 - plen):
                src ^= 1 << 31
            v = cfg.vips[tcp_vips[int(rng.integers(len(tcp_vips)))]]
            at(float(t), "spoof", Packet(src, v.address, int(rng.integers(1024, 65536)),
                                         v.port, 6, TCP_SYN, int(rng.integers(0, 1 << 32))))
    for k in range(p.updates):
        at(p.duration * (k + 1) / (p.updates + 1), "update", k)
    for k in range(p.odd):
        at(p.duration * (k + 0.5) / p.odd, "odd", int(rng.choice(clients)))
    at(0.0, "round")
    n_events = len(events)

    seq_times: list[float] = []   # time of each packet, by sequence number
    counts: dict[str, int] = {a.name: 0 for a in Action}
    t0 = time.perf_counter()

    def send(now: float, pkt: Packet) -> Decision:
        d = dp.process(pkt)
        counts[Action(d.action).name] += 1
        seq = len(seq_times)
        seq_times.append(now)
        if scen is not None:
            scen.ops.append(Step(pkt, d))
        cp.observe(pkt.key, d, seq=seq)
        flush()
        return d

    def conn_pkt(c: _Conn, flags: int, seq: int) -> Packet:
        return Packet(c.src_ip, c.dst_ip, c.src_port, c.dst_port, c.proto,
                      flags if c.proto == 6 else 0, seq if c.proto == 6 else 0,
                      (c.isn + 1) & 0xFFFFFFFF if c.proto == 6 and flags & TCP_ACK else 0)

    def lb(c: _Conn, d: Decision) -> bool:
        if d.action != Action.LB:
            rep.legit_dropped += 1
            return False
        c.dips.add(d.dip_ip << 16 | d.dip_port)
        if len(c.dips) > 1 and not c.violated:
            rep.violations += 1
            c.violated = True
        return True

    step = 0
    done = 0
    while events:
        now, _, kind, data = heapq.heappop(events)
        done += 1
        if progress is not None and done % 5000 == 0:
            progress(min(1.0, done / max(n_events, 1)))
        if kind == "round":
            cp.tick(now)
            cp.insert_pending(older_than=bisect_right(seq_times, now - p.insert_delay) - 1)
            flush()
            rep.occupancy.append((now, len(cp.table) + len(cp.unplaced) + len(cp.pending)))
            if any(e[2] != "round" for e in events) or cp.pending or cp.closing:
                at(now + p.round, "round")
        elif kind == "update":
            vid = tcp_vips[step % len(tcp_vips)] if tcp_vips else 0
            try:
                cp.update_pool(vid, new_pool(cfg, cp, vid, step // max(len(tcp_vips), 1)))
                rep.updates_applied += 1
            except PoolError:
                pass
            step += 1
            flush()
        elif kind == "spoof":
            rep.spoofed_syns += 1
            d = send(now, data)
            rep.spoofed_learns += d.learn
            rep.spoofed_admitted += d.action == Action.LB
            rep.spoofed_digest_hits += d.action == Action.LB and d.hit
        elif kind == "syn":
            c = data
            c.syns += 1
            d = send(now, conn_pkt(c, TCP_SYN, c.isn))
            if d.action == Action.CHALLENGE:
                at(now + p.rtt, "rst", (c, d.cookie))
                if c.syns == 1:
                    at(now + p.rtt + p.fast_retry, "syn", c)
                elif c.syns <= p.retries:
                    at(now + p.rto * (1 << (c.syns - 2)), "syn", c)
                else:
                    rep.gave_up += 1
            elif lb(c, d):
                c.admitted = True
                rep.admitted += 1
                rep.first_syn_delay.append(now - c.start)
                at(now + p.rtt, "data", c)
            elif c.syns <= p.retries:  # dropped: the client retransmits
                at(now + p.rto * (1 << (c.syns - 1)), "syn", c)
            else:
                rep.gave_up += 1
        elif kind == "rst":
            c, cookie = data
            send(now, conn_pkt(c, TCP_RST, cookie))
        elif kind == "odd":
            for pkt in _odd_packets(cfg, cp, data, tcp_vips, rng):
                send(now, pkt)
        elif kind == "data":
            c = data
            if c.left > 0:
                c.left -= 1
                lb(c, send(now, conn_pkt(c, TCP_ACK | _PSH, (c.isn + 1) & 0xFFFFFFFF)))
                at(now + float(rng.exponential(p.gap)), "data", c)
            elif c.fin:
                lb(c, send(now, conn_pkt(c, TCP_FIN | TCP_ACK, (c.isn + 1) & 0xFFFFFFFF)))
                at(now + p.rtt, "last_ack", c)
        elif kind == "last_ack":
            c = data
            lb(c, send(now, conn_pkt(c, TCP_ACK, (c.isn + 2) & 0xFFFFFFFF)))
    cp.insert_pending()
    flush()
    rep.packets = len(seq_times)
    rep.actions = counts
    rep.stats = dict(cp.stats)
    rep.packets_per_second = rep.packets / max(time.perf_counter() - t0, 1e-9)
    rep.scenario = scen
    return rep


def _odd_packets(cfg: Config, cp: ControlPlane, src: int, tcp_vips: list[int],
                 rng: np.random.Generator) -> list[Packet]:
    """Unusual packets for one source and one TCP VIP, from an unverified spoofed
    address and from ``src`` (a client address, verified or not): every SYN/ACK/RST/FIN
    combination a miss can carry, sequence numbers 0 and 2**32 - 1, a SYN whose cookie
    equals ``seq + 1`` (answered with the flipped cookie) and the RST that answers it,
    an RST with a wrong cookie and one with RST|ACK, and two packets for no VIP."""
    from .cookie import COOKIE_FLIP, cookie

    if not tcp_vips:
        return []
    v = cfg.vips[tcp_vips[int(rng.integers(len(tcp_vips)))]]
    out = []
    for s in (src, int(rng.integers(0, 1 << 31)) | 0x80000000):
        port = int(rng.integers(1024, 65536))

        def pkt(flags: int, seq: int, ack: int = 0, s: int = s, port: int = port) -> Packet:
            return Packet(s, v.address, port, v.port, 6, flags, seq & 0xFFFFFFFF, ack)
        for flags in (TCP_SYN | TCP_ACK, TCP_SYN | TCP_RST, TCP_SYN | TCP_FIN, TCP_ACK,
                      TCP_FIN | TCP_ACK, TCP_RST | TCP_ACK, 0, 0xFF):
            out.append(pkt(flags, int(rng.integers(0, 1 << 32)), 1))
        out += [pkt(TCP_SYN, 0), pkt(TCP_SYN, 0xFFFFFFFF), pkt(TCP_RST, 0),
                pkt(TCP_RST, 0xFFFFFFFF),
                # not for a VIP (forwarded unchanged)
                Packet(s, 0x0B000001, port, 80, 6, TCP_SYN, 7),
                Packet(s, v.address, port, v.port ^ 1, 17)]
        if cfg.lifecycle.auth:
            e = cp.mem.read("auth_epoch", 0)
            key = cp.mem.read("auth_key", e)
            c = cookie(key, e, s, v.address, port, v.port)
            out += [pkt(TCP_SYN, c - 1), pkt(TCP_RST, c ^ 2), pkt(TCP_RST | TCP_ACK, c ^ 1),
                    pkt(TCP_RST, c ^ COOKIE_FLIP)]
    return out


def scenario(cfg: Config, connections: int = 300, updates: int = 3, seed: int = 1):
    """The vector scenario of a lifecycle config: about ``connections`` legitimate
    connections over ``4 * idle_timeout`` (at least 8 s) with a 10x spoofed SYN flood,
    unusual packets, pool updates, aging scans and key rotations."""
    lc = cfg.lifecycle
    duration = max(8.0, 4 * lc.idle_timeout, 2.5 * lc.auth_epoch if lc.auth else 0.0)
    p = LifecycleParams(duration=duration, conn_rate=connections / duration, flood=10.0,
                        sources=max(4, connections // 6), gap=duration / 20, updates=updates,
                        odd=4, seed=seed)
    return run(cfg, p, record=True).scenario
