"""Event-driven queueing simulator of l4lb's DIP-selection policies (docs/sim.md).

Connections arrive at one VIP (Poisson, or bursty: a Markov-modulated Poisson process
alternating between ``(1 + b)`` and ``(1 - b)`` times the mean rate); each brings an
amount of work (exponential, or heavy-tailed: bounded Pareto, alpha 1.5, max/min
1e4), normalised to mean 1. Each DIP is a **processor-sharing** server (every active
connection gets ``speed / active`` of it: a server working on many connections at
once); speeds may differ (``Scenario.speeds``) and one server may stall for a while
and come back (``Scenario.outage``; the load balancer is not told). A connection's
response time is its departure minus its arrival.

Policies (new connections only; a connection stays on its server):

``random``, ``round-robin``;
``maglev``: the model's Maglev table of the VIP's pool (model.maglev) at the
connection's real Maglev hash (model.hashing);
``maglev-p2c``: two Maglev indices (the Maglev hash and one with another salt), the
candidate with fewer connections in the load balancer's count wins;
``jsq``: join the shortest queue, full and exact state (true active connections,
ties at random); ``jsq2``: JSQ(2), two servers sampled uniformly;
``least-conn``: fewest connections in the load balancer's count, which learns of a
close ``close_delay`` after the server finished (the FIN's way back through the LB);
``l4lb``: the real model: every connection's packets (SYN at arrival, one more
``data_delay`` later, FIN after it finished) go through model.pipeline.DataPlane, the
learn/close stream drives model.loadaware.LoadAwareControlPlane (weighted-by-load:
weights installed through the two-phase commit; inserts ``insert_delay`` after the
learn, idle-timeout deletes ``2 * insert_delay`` after the FIN). The DIP of each packet
is compared with the connection's first: ``pcc_violations``.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .config import Config
from .hashing import FIELD_ORDERS, FiveTuple, Hasher, crc32_tuples
from .loadaware import LoadAwareControlPlane
from .maglev import build_table
from .pipeline import TCP_ACK, TCP_FIN, TCP_SYN, DataPlane, Packet

__all__ = ["POLICIES", "Scenario", "SimResult", "Workload", "make_workload", "simulate"]

POLICIES = ("random", "round-robin", "maglev", "maglev-p2c", "jsq", "jsq2", "least-conn",
            "l4lb")

_DEP, _CLOSE, _PKT2, _AGE, _SPEED = range(5)


@dataclass(frozen=True)
class Scenario:
    """One workload: offered load ``rho`` = arrival rate x mean work / total speed."""

    connections: int = 100_000
    rho: float = 0.8
    arrivals: str = "poisson"          # or "bursty"
    sizes: str = "exp"                 # or "pareto"
    speeds: tuple[float, ...] | None = None   # per DIP; None: all 1.0
    outage: tuple[int, float, float] | None = None  # (DIP, start, end) as run fractions
    burst: float = 0.5                 # bursty: rate x (1 +- burst)
    burst_len: float = 20.0            # bursty: mean phase length, in mean works
    close_delay: float = 0.25          # LB sees a close this long after the departure
    insert_delay: float = 0.05         # l4lb: learn -> ConnTable insert
    data_delay: float = 0.02           # l4lb: SYN -> second packet
    seed: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.rho < 1:
            raise ValueError(f"rho: {self.rho!r} is not in (0, 1)")
        if self.arrivals not in ("poisson", "bursty"):
            raise ValueError(f"arrivals: {self.arrivals!r} is not 'poisson' or 'bursty'")
        if self.sizes not in ("exp", "pareto"):
            raise ValueError(f"sizes: {self.sizes!r} is not 'exp' or 'pareto'")
        if self.connections < 1:
            raise ValueError(f"connections: {self.connections!r} is below the minimum 1")


@dataclass
class SimResult:
    policy: str
    rho: float
    connections: int
    mean: float
    p99: float
    p999: float
    active_mean: float       # time-average active connections per server, mean
    active_max: float        # ... of the busiest server
    active_peak: int         # most active connections on one server at any time
    pcc_violations: int
    rebalances: int = 0
    elapsed: float = 0.0
    stats: dict[str, int] = field(default_factory=dict)
    responses: np.ndarray | None = None  # per connection, with ``keep_responses``

    def row(self) -> dict:
        return {k: getattr(self, k) for k in ("policy", "rho", "connections", "mean", "p99",
                                              "p999", "active_mean", "active_max",
                                              "active_peak", "pcc_violations", "rebalances",
                                              "elapsed")}


@dataclass
class Workload:
    """Per-connection arrays (times, work, addresses, hash indices, random draws)."""

    t: np.ndarray
    work: np.ndarray
    src_ip: np.ndarray
    src_port: np.ndarray
    mag1: np.ndarray
    mag2: np.ndarray
    rnd: np.ndarray          # uniform server
    pair: np.ndarray         # two distinct uniform servers
    tie: np.ndarray          # tie-break draws
    speeds: list[float]


def _bounded_pareto(rng: np.random.Generator, n: int, alpha: float = 1.5,
                    ratio: float = 1e4) -> np.ndarray:
    u = rng.random(n)
    x = (1.0 - u * (1.0 - ratio ** -alpha)) ** (-1.0 / alpha)
    mean = alpha / (alpha - 1) * (1 - ratio ** (1 - alpha)) / (1 - ratio ** -alpha)
    return x / mean


def _arrivals(rng: np.random.Generator, n: int, lam: float, s: Scenario) -> np.ndarray:
    if s.arrivals == "poisson":
        return np.cumsum(rng.exponential(1.0 / lam, n))
    # MMPP-2 by time change: unit-rate Poisson in "operational time" Lambda(t)
    op = np.cumsum(rng.exponential(1.0, n))
    k = int(2 * op[-1] / (lam * s.burst_len)) + 16
    while True:
        dur = rng.exponential(s.burst_len, k)
        rate = lam * np.where(np.arange(k) % 2 == 0, 1 + s.burst, 1 - s.burst)
        tb = np.concatenate(([0.0], np.cumsum(dur)))
        lb = np.concatenate(([0.0], np.cumsum(rate * dur)))
        if lb[-1] > op[-1]:
            return np.interp(op, lb, tb)
        k *= 2


def make_workload(cfg: Config, s: Scenario) -> Workload:
    """Draw a scenario's connections (vectorised, deterministic for ``s.seed``)."""
    rng = np.random.default_rng(s.seed)
    vip = cfg.vips[0]
    n_srv = len(vip.dips)
    speeds = list(s.speeds) if s.speeds is not None else [1.0] * n_srv
    if len(speeds) != n_srv or min(speeds) <= 0:
        raise ValueError(f"speeds: expected {n_srv} positive speeds, got {speeds!r}")
    n = s.connections
    lam = s.rho * sum(speeds)
    t = _arrivals(rng, n, lam, s)
    work = rng.exponential(1.0, n) if s.sizes == "exp" else _bounded_pareto(rng, n)
    keys = {"src_ip": 0x64400000 + rng.integers(0, 1 << 22, n),
            "dst_ip": np.full(n, vip.address), "src_port": rng.integers(1024, 65536, n),
            "dst_port": np.full(n, vip.port), "proto": np.full(n, vip.protocol)}
    keys = {k: v.astype(np.int64) for k, v in keys.items()}
    M = cfg.geometry.maglev_size
    mag1 = Hasher(cfg).batch(keys)["maglev"]
    mag2 = crc32_tuples(cfg.salts.stages[0], keys, FIELD_ORDERS["maglev"]).astype(np.int64) % M
    a = rng.integers(0, n_srv, n)
    b = (a + rng.integers(1, max(n_srv, 2), n)) % n_srv if n_srv > 1 else a
    return Workload(t=t, work=work, src_ip=keys["src_ip"], src_port=keys["src_port"],
                    mag1=mag1, mag2=mag2, rnd=rng.integers(0, n_srv, n),
                    pair=np.stack([a, b], axis=1), tie=rng.integers(0, 1 << 30, n),
                    speeds=speeds)


def simulate(cfg: Config, s: Scenario, policy: str, *, two_phase: bool = True,
             workload: Workload | None = None, keep_responses: bool = False,
             progress: Callable[[int, int], None] | None = None) -> SimResult:
    """Run one policy over one scenario (servers: the DIPs of the config's first VIP)."""
    if policy not in POLICIES:
        raise ValueError(f"policy: {policy!r} is not one of {list(POLICIES)}")
    t_start = time.perf_counter()
    w = workload or make_workload(cfg, s)
    vip = cfg.vips[0]
    n = len(vip.dips)
    N = len(w.t)
    arr = w.t.tolist()
    work = w.work.tolist()
    speed = list(w.speeds)
    V = [0.0] * n
    tl = [0.0] * n
    area = [0.0] * n
    nj = [0] * n
    lbn = [0] * n
    H: list[list[tuple[float, int]]] = [[] for _ in range(n)]
    stamp = [0] * n
    srv = [0] * N
    resp = np.zeros(N)
    peak = 0
    E: list[tuple[float, int, int, int]] = []
    if s.outage is not None:
        o_srv, o_a, o_b = s.outage
        T = arr[-1]
        heapq.heappush(E, (o_a * T, _SPEED, o_srv, -1))
        heapq.heappush(E, (o_b * T, _SPEED, o_srv, 1))
    uses_lb_view = policy in ("maglev-p2c", "least-conn")
    cd = s.close_delay

    table: list[int] = []
    if policy in ("maglev", "maglev-p2c"):
        table = build_table(list(vip.dips), cfg.geometry.maglev_size, cfg.salts).tolist()
    mag1, mag2 = w.mag1.tolist(), w.mag2.tolist()
    rnd, tie = w.rnd.tolist(), w.tie.tolist()
    pair = w.pair.tolist()

    # ---- the real model, for the l4lb policy --------------------------------------
    l4 = policy == "l4lb"
    viol = bytearray(N)
    cp = dp = None
    if l4:
        cp = LoadAwareControlPlane(cfg, two_phase=two_phase)
        cp.install()
        dp = DataPlane(cfg, cp.mem, cp.hasher)
    dipsrv = {(d.address, d.port): i for i, d in enumerate(vip.dips)}
    sip, spt = w.src_ip.tolist(), w.src_port.tolist()
    vaddr, vport, vproto = vip.address, vip.port, vip.protocol
    learnq: deque[tuple[float, int]] = deque()
    pseq = 0

    def packet(c: int, flags: int, now: float) -> int:
        nonlocal pseq
        pseq += 1
        pk = Packet(sip[c], vaddr, spt[c], vport, vproto, flags)
        d = dp.process(pk)
        cp.observe(pk.key, d, seq=pseq)
        if d.learn:
            learnq.append((now, pseq))
        return dipsrv[(d.dip_ip, d.dip_port)]

    def control(now: float) -> None:
        lim = now - s.insert_delay
        if cp.due or (learnq and learnq[0][0] <= lim):
            upto = -1
            while learnq and learnq[0][0] <= lim:
                upto = learnq.popleft()[1]
            cp.seq = pseq
            cp.insert_pending(older_than=upto)

    def advance(k: int, now: float) -> None:
        dt = now - tl[k]
        if nj[k]:
            area[k] += nj[k] * dt
            if speed[k] > 0:
                V[k] += dt * speed[k] / nj[k]
        tl[k] = now

    def schedule(k: int, now: float) -> None:
        stamp[k] += 1
        if nj[k] and speed[k] > 0:
            heapq.heappush(E, (now + (H[k][0][0] - V[k]) * nj[k] / speed[k], _DEP, k,
                               stamp[k]))

    i = 0
    inf = float("inf")
    tick = max(1, N // 20)
    while i < N or E:
        ta = arr[i] if i < N else inf
        if E and E[0][0] <= ta:
            now, kind, a, b = heapq.heappop(E)
            if l4:
                control(now)
            if kind == _DEP:
                if b != stamp[a]:
                    continue
                advance(a, now)
                _, c = heapq.heappop(H[a])
                nj[a] -= 1
                resp[c] = now - arr[c]
                schedule(a, now)
                if uses_lb_view or l4:
                    heapq.heappush(E, (now + cd, _CLOSE, c, a))
            elif kind == _CLOSE:
                if l4:
                    if packet(a, TCP_FIN | TCP_ACK, now) != srv[a]:
                        viol[a] = 1
                    heapq.heappush(E, (now + 2 * s.insert_delay, _AGE, a, 0))
                else:
                    lbn[b] -= 1
            elif kind == _PKT2:
                if packet(a, TCP_ACK, now) != srv[a]:
                    viol[a] = 1
            elif kind == _AGE:
                cp.delete(FiveTuple(sip[a], vaddr, spt[a], vport, vproto))
            else:  # _SPEED: outage starts (b < 0) or ends
                advance(a, now)
                speed[a] = 0.0 if b < 0 else w.speeds[a]
                schedule(a, now)
            continue
        # ---- arrival of connection i ----------------------------------------------
        c = i
        i += 1
        if policy == "random":
            k = rnd[c]
        elif policy == "round-robin":
            k = c % n
        elif policy == "maglev":
            k = table[mag1[c]]
        elif policy == "maglev-p2c":
            k, k2 = table[mag1[c]], table[mag2[c]]
            if lbn[k2] < lbn[k]:
                k = k2
        elif policy == "jsq2":
            k, k2 = pair[c]
            if nj[k2] < nj[k]:
                k = k2
        elif policy in ("jsq", "least-conn"):
            q = nj if policy == "jsq" else lbn
            m = min(q)
            ties = [j for j in range(n) if q[j] == m]
            k = ties[tie[c] % len(ties)]
        else:
            control(ta)
            k = packet(c, TCP_SYN, ta)
            heapq.heappush(E, (ta + s.data_delay, _PKT2, c, 0))
        srv[c] = k
        lbn[k] += 1
        advance(k, ta)
        heapq.heappush(H[k], (V[k] + work[c], c))
        nj[k] += 1
        if nj[k] > peak:
            peak = nj[k]
        schedule(k, ta)
        if progress is not None and i % tick == 0:
            progress(i, N)
    t_end = max(tl)
    for k in range(n):
        advance(k, t_end)
    avg = np.array(area) / t_end
    stats = dict(cp.stats) if l4 else {}
    return SimResult(
        policy=policy, rho=s.rho, connections=N, mean=float(resp.mean()),
        p99=float(np.percentile(resp, 99)), p999=float(np.percentile(resp, 99.9)),
        active_mean=float(avg.mean()), active_max=float(avg.max()), active_peak=peak,
        pcc_violations=int(sum(viol)), rebalances=stats.get("rebalances", 0),
        elapsed=time.perf_counter() - t_start, stats=stats,
        responses=resp if keep_responses else None)
