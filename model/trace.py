"""Workload traces: connection arrivals, packets, closes and pool updates, replayed
through the data plane and the control plane to count per-connection consistency
(PCC) violations, table occupancy and the model's packet rate.

A connection has ``1 + Geometric`` packets spread over its lifetime; TCP connections
open with SYN and close with FIN (the data plane reports the close and the control
plane deletes the entry); UDP connections are deleted by an idle timeout after their
last packet. The control plane sees the learn stream with a delay of
``insert_delay`` packets (the CPU's insertion latency) and works in chunks of
``chunk`` packets, as hardware batches learn digests.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .config import Config, Dip
from .controlplane import ControlPlane
from .hashing import FIELDS, FiveTuple
from .layout import Action
from .pipeline import TCP_ACK, TCP_FIN, TCP_SYN, DataPlane, Decision
from .pools import PoolError

__all__ = ["TraceParams", "Trace", "TraceReport", "make_trace", "replay", "new_pool",
           "control_round"]


@dataclass(frozen=True)
class TraceParams:
    connections: int = 10_000
    mean_packets: float = 4.0
    mean_lifetime: float = 1_000.0  # in connection arrivals (sets the live-connection count)
    non_vip_fraction: float = 0.02
    updates: int = 20            # pool updates spread evenly over the trace
    insert_delay: int = 256      # packets between a learn and its insertion
    chunk: int = 256             # packets per control-plane round
    two_phase: bool = True
    seed: int = 1


@dataclass
class Trace:
    """Packets in time order (arrays) plus the connection id of each packet (-1: not VIP)."""

    arrays: dict[str, np.ndarray]
    conn: np.ndarray
    last: np.ndarray        # True on the last packet of a connection
    update_at: list[int]

    def __len__(self) -> int:
        return len(self.conn)


@dataclass
class TraceReport:
    packets: int
    connections: int
    violations: int             # connections that saw more than one DIP
    violating_packets: int
    updates_applied: int
    updates_rejected: int
    peak_occupancy: float       # ConnTable load factor, maximum over the run
    final_occupancy: float
    stashed: int
    packets_per_second: float   # model data plane + control plane, wall clock
    stats: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.packets} packets, {self.connections} connections, "
                f"{self.updates_applied} pool updates ({self.updates_rejected} rejected): "
                f"{self.violations} PCC violations ({self.violating_packets} packets), "
                f"peak ConnTable load {self.peak_occupancy:.1%}, "
                f"{self.packets_per_second:,.0f} packets/s")


def make_trace(cfg: Config, p: TraceParams) -> Trace:
    """Generate a trace: vectorised, deterministic for a seed."""
    rng = np.random.default_rng(p.seed)
    nconn = p.connections
    vip_idx = rng.integers(0, len(cfg.vips), nconn)
    vips = cfg.vips
    dst_ip = np.array([v.address for v in vips], dtype=np.int64)[vip_idx]
    dst_port = np.array([v.port for v in vips], dtype=np.int64)[vip_idx]
    proto = np.array([v.protocol for v in vips], dtype=np.int64)[vip_idx]
    # distinct clients: random address in 100.64/10 and an ephemeral port
    src_ip = (0x64400000 + rng.integers(0, 1 << 22, nconn)).astype(np.int64)
    src_port = rng.integers(1024, 65536, nconn).astype(np.int64)
    npk = 1 + rng.geometric(1.0 / max(p.mean_packets - 1, 1e-9) if p.mean_packets > 1 else 1.0,
                            nconn) - (1 if p.mean_packets > 1 else 0)
    npk = np.maximum(npk, 1)
    start = np.sort(rng.random(nconn)) * nconn
    total = int(npk.sum())
    conn = np.repeat(np.arange(nconn), npk)
    first = np.zeros(total, dtype=bool)
    offs = np.concatenate(([0], np.cumsum(npk)[:-1]))
    first[offs] = True
    last = np.zeros(total, dtype=bool)
    last[offs + npk - 1] = True
    # packet times: start + cumulative exponential gaps (mean lifetime in arrivals)
    gaps = rng.exponential(p.mean_lifetime / np.maximum(npk, 1)[conn])
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    base = np.repeat(cum[offs], npk)
    t = start[conn] + (cum - base)
    flags = np.where(first, TCP_SYN, np.where(last, TCP_FIN | TCP_ACK, TCP_ACK))
    flags = np.where(proto[conn] == 6, flags, 0)
    arrays = {
        "src_ip": src_ip[conn], "dst_ip": dst_ip[conn], "src_port": src_port[conn],
        "dst_port": dst_port[conn], "proto": proto[conn], "tcp_flags": flags,
    }
    # background traffic that is not for any VIP
    nbg = int(total * p.non_vip_fraction)
    if nbg:
        bg = {
            "src_ip": rng.integers(0, 1 << 32, nbg), "dst_ip": rng.integers(0, 1 << 32, nbg),
            "src_port": rng.integers(0, 65536, nbg), "dst_port": rng.integers(0, 65536, nbg),
            "proto": rng.choice([6, 17, 1], nbg), "tcp_flags": np.zeros(nbg, dtype=np.int64),
        }
        arrays = {k: np.concatenate([arrays[k], bg[k].astype(np.int64)]) for k in arrays}
        t = np.concatenate([t, rng.random(nbg) * t.max()])
        conn = np.concatenate([conn, np.full(nbg, -1)])
        last = np.concatenate([last, np.zeros(nbg, dtype=bool)])
    order = np.argsort(t, kind="stable")
    arrays = {k: v[order].astype(np.int64) for k, v in arrays.items()}
    conn, last = conn[order], last[order]
    n = len(conn)
    update_at = [int(n * (i + 1) / (p.updates + 1)) for i in range(p.updates)]
    return Trace(arrays, conn, last, update_at)


def new_pool(cfg: Config, cp: ControlPlane, vid: int, step: int) -> tuple[Dip, ...]:
    """The ``step``-th pool of a VIP in a churn trace: alternately remove and add one
    DIP (so pools keep their size)."""
    cur = cp.pools.current(vid).dips
    if step % 2 == 0 and len(cur) > 1:
        drop = (step // 2) % len(cur)
        return cur[:drop] + cur[drop + 1:]
    base = cfg.vips[vid].dips[0]
    fresh = Dip(0xC6120000 + (vid << 8) + (step // 2) % 250 + 1, base.port, 1)  # 198.18/15
    if fresh in cur or any((d.address, d.port) == (fresh.address, fresh.port) for d in cur):
        return cur[1:] if len(cur) > 1 else cur
    return cur + (fresh,)


def control_round(cp: ControlPlane, ended: deque[tuple[int, FiveTuple]], now: int,
                  insert_delay: int) -> None:
    """One round of the CPU at packet ``now``: idle-timeout deletes, then inserts.

    A connection is deleted ``2 * insert_delay`` packets after its last packet (UDP has
    no FIN, and a TCP FIN that missed the table reports no close); learned
    connections older than ``insert_delay`` packets are inserted."""
    while ended and ended[0][0] < now - 2 * insert_delay:
        cp.delete(ended.popleft()[1])
    cp.seq = now
    cp.insert_pending(older_than=now - insert_delay)


def replay(cfg: Config, p: TraceParams, trace: Trace | None = None,
           control_plane: type[ControlPlane] = ControlPlane) -> TraceReport:
    """Run a trace through model data plane + control plane; count PCC violations.

    ``control_plane`` is the class to run (e.g. model.loadaware.LoadAwareControlPlane)."""
    trace = trace or make_trace(cfg, p)
    cp = control_plane(cfg, two_phase=p.two_phase)
    cp.install()
    dp = DataPlane(cfg, cp.mem, cp.hasher)
    n = len(trace)
    first_dip = np.full(p.connections, -1, dtype=np.int64)
    bad = np.zeros(p.connections, dtype=bool)
    bad_pkts = 0
    applied = rejected = 0
    peak = 0.0
    upd_iter = iter(trace.update_at)
    next_upd = next(upd_iter, None)
    step = 0
    ended: deque[tuple[int, FiveTuple]] = deque()
    t0 = time.perf_counter()
    for lo in range(0, n, p.chunk):
        hi = min(n, lo + p.chunk)
        while next_upd is not None and next_upd < hi:
            vid = step % len(cfg.vips)
            try:
                cp.update_pool(vid, new_pool(cfg, cp, vid, step // len(cfg.vips)))
                applied += 1
            except PoolError:
                rejected += 1
            step += 1
            next_upd = next(upd_iter, None)
        chunk = {k: v[lo:hi] for k, v in trace.arrays.items()}
        out = dp.process_batch(chunk)
        c = trace.conn[lo:hi]
        lb = (out["action"] == Action.LB) & (c >= 0)
        dipkey = (out["dip_ip"] << 16) | out["dip_port"]
        for r in np.flatnonzero(lb):
            cid = c[r]
            if first_dip[cid] < 0:
                first_dip[cid] = dipkey[r]
            elif first_dip[cid] != dipkey[r]:
                bad[cid] = True
                bad_pkts += 1
        # learn / close stream to the control plane
        for r in np.flatnonzero((out["learn"] | out["close"]) == 1):
            key = FiveTuple(*(int(chunk[f][r]) for f in FIELDS))
            d = Decision(**{k: int(v[r]) for k, v in out.items()})
            cp.observe(key, d, seq=lo + r)
        for r in np.flatnonzero(trace.last[lo:hi]):
            ended.append((lo + r, FiveTuple(*(int(chunk[f][r]) for f in FIELDS))))
        control_round(cp, ended, hi, p.insert_delay)
        peak = max(peak, cp.table.load_factor)
    # drain: the CPU catches up
    cp.insert_pending()
    elapsed = time.perf_counter() - t0
    return TraceReport(
        packets=n, connections=p.connections, violations=int(bad.sum()),
        violating_packets=bad_pkts, updates_applied=applied, updates_rejected=rejected,
        peak_occupancy=peak, final_occupancy=cp.table.load_factor,
        stashed=len(cp.table.stash), packets_per_second=n / elapsed, stats=dict(cp.stats),
    )
