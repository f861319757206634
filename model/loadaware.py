"""Load-aware DIP selection in the control plane (``policy = "weighted-by-load"``).

The data plane is unchanged: it keeps mapping a new connection through the Maglev
table of its VIP's current version. The control plane counts the active connections
of every DIP from the events it already receives (learn, close, idle-timeout delete;
optionally server-reported queue lengths, :meth:`LoadTracker.report`), turns the
counts into Maglev weights (:func:`load_weights`) and installs them as a new pool
version through the existing two-phase commit (:meth:`ControlPlane.update_pool`).
Existing connections keep their stored version, and connections that missed but are
not yet inserted keep theirs through the TransitTable, so no connection ever changes
DIP (docs/load_aware.md gives the argument).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from .config import Config, Policy
from .controlplane import ControlPlane
from .hashing import FiveTuple
from .layout import Memories, unpack_dip
from .pools import PoolError

__all__ = ["load_weights", "load_imbalance", "LoadTracker", "LoadAwareControlPlane",
           "RebalanceResult", "dip_of"]

DipKey = tuple[int, int]  # (address, port): a DIP's identity, whatever its weight


def load_imbalance(loads: Sequence[float] | np.ndarray,
                   base: Sequence[float] | np.ndarray) -> float:
    """``max_i (load_i / base_i)`` divided by ``sum(load) / sum(base)``; 1.0 when balanced
    (and when nothing is loaded)."""
    ld = np.asarray(loads, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    if ld.shape != b.shape or ld.ndim != 1 or ld.size == 0:
        raise ValueError(f"loads and base: expected two equal non-empty 1-D sequences, "
                         f"got shapes {ld.shape} and {b.shape}")
    if (b <= 0).any():
        raise ValueError("base: every base weight must be positive")
    if (ld < 0).any():
        raise ValueError("loads: every load must be >= 0")
    total = ld.sum()
    if total == 0:
        return 1.0
    return float((ld / b).max() / (total / b.sum()))


def load_weights(loads: Sequence[float] | np.ndarray, base: Sequence[float] | np.ndarray,
                 resolution: int, min_weight: int, horizon: float) -> np.ndarray:
    """Integer Maglev weights that steer the next ``horizon`` new connections to the
    least-loaded DIPs (water filling).

    Every DIP's target is its base share of the load after ``horizon`` more
    connections, ``(sum(loads) + horizon) * base_i / sum(base)``; its deficit is how far
    it is below the target (0 when above). Weights are the deficits scaled so the
    largest is ``resolution``, rounded, and clipped to ``[min_weight, resolution]``.
    With equal normalised loads the weights are proportional to ``base`` (plain
    weighted Maglev); an overloaded DIP gets ``min_weight``.

    Returns
    -------
    np.ndarray
        int64 weights, one per DIP.
    """
    ld = np.asarray(loads, dtype=np.float64)
    b = np.asarray(base, dtype=np.float64)
    load_imbalance(ld, b)  # validates shapes and signs
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution: expected an integer >= 1, got {resolution!r}")
    if (isinstance(min_weight, bool) or not isinstance(min_weight, int)
            or not 1 <= min_weight <= resolution):
        raise ValueError(f"min_weight: expected an integer in [1, resolution={resolution}], "
                         f"got {min_weight!r}")
    if not horizon > 0:
        raise ValueError(f"horizon: expected a positive number, got {horizon!r}")
    target = (ld.sum() + horizon) * b / b.sum()
    deficit = np.maximum(target - ld, 0.0)
    w = np.rint(resolution * deficit / deficit.max()).astype(np.int64)
    return np.clip(w, min_weight, resolution)


class LoadTracker:
    """Active connections per (VIP, DIP), counted from learn and close/delete events.

    A server-reported queue length (:meth:`report`) replaces the count of that DIP
    until :meth:`clear_report`."""

    def __init__(self) -> None:
        self.active: dict[tuple[int, DipKey], int] = {}
        self.reported: dict[tuple[int, DipKey], float] = {}
        self.conn: dict[FiveTuple, tuple[int, DipKey]] = {}

    def opened(self, key: FiveTuple, vip_id: int, dip: DipKey) -> None:
        """A new connection of ``vip_id`` was sent to ``dip`` (a learn event)."""
        if key in self.conn:
            return
        self.conn[key] = (vip_id, dip)
        self.active[(vip_id, dip)] = self.active.get((vip_id, dip), 0) + 1

    def closed(self, key: FiveTuple) -> None:
        """The connection ended (FIN/RST close or idle-timeout delete)."""
        where = self.conn.pop(key, None)
        if where is not None:
            self.active[where] -= 1

    def report(self, vip_id: int, dip: DipKey, queue: float) -> None:
        """A server's own load figure (e.g. its queue length) for ``dip``."""
        if queue < 0:
            raise ValueError(f"queue: {queue!r} is below the minimum 0")
        self.reported[(vip_id, dip)] = float(queue)

    def clear_report(self, vip_id: int, dip: DipKey) -> None:
        self.reported.pop((vip_id, dip), None)

    def loads(self, vip_id: int, dips: Sequence[DipKey]) -> np.ndarray:
        """Load of each DIP: the reported figure if any, else the active connections."""
        return np.array([self.reported.get((vip_id, d), self.active.get((vip_id, d), 0))
                         for d in dips], dtype=np.float64)


@dataclass(frozen=True)
class RebalanceResult:
    """What one evaluation of a VIP did: ``action`` is ``installed``, ``balanced``
    (imbalance below the threshold), ``unchanged`` (same weights), ``busy`` (a
    commit is in progress) or ``no-room`` (no pool slot or version free)."""

    action: str
    imbalance: float
    weights: tuple[int, ...]


def dip_of(mem: Memories, slot: int, maglev_size: int, maglev_index: int) -> DipKey:
    """The DIP the data plane maps ``maglev_index`` to in pool ``slot`` (memory reads)."""
    idx = mem.read("maglev", slot * maglev_size + maglev_index)
    return unpack_dip(mem.read("dip", idx))


class LoadAwareControlPlane(ControlPlane):
    """A :class:`ControlPlane` that rebalances the VIPs whose policy is
    ``weighted-by-load``; other VIPs behave exactly as in the base class.

    Every ``policy.period`` learned connections of such a VIP (evaluated at the next
    control round, :meth:`run_due`), :meth:`rebalance` computes weights from the
    :class:`LoadTracker` and, when the imbalance reaches ``policy.threshold`` and the
    weights differ from the current ones, requests the re-weighted pool with
    :meth:`update_pool` (two-phase commit). An evaluation is skipped while a commit
    is in progress or when no pool slot/version is free.
    """

    def __init__(self, cfg: Config, mem: Memories | None = None, two_phase: bool = True):
        super().__init__(cfg, mem, two_phase)
        self.tracker = LoadTracker()
        self.base = {(vid, (d.address, d.port)): d.weight
                     for vid, v in enumerate(cfg.vips) for d in v.dips}
        self._since = [0] * len(cfg.vips)
        #: VIPs whose ``period`` has elapsed, evaluated at the next control round
        self.due: set[int] = set()
        self.stats |= {"rebalances": 0, "balanced": 0, "unchanged": 0, "busy": 0,
                       "no-room": 0}

    def policy(self, vip_id: int) -> Policy:
        return self.cfg.vips[vip_id].policy

    # ---- events ---------------------------------------------------------------------
    def learn(self, key: FiveTuple, vip_id: int, version: int) -> None:
        new = key not in self.pending and key not in self.conn_version
        super().learn(key, vip_id, version)
        if not new:
            return
        pv = self.pools.version(vip_id, version)
        dip = dip_of(self.mem, pv.slot, self.geo.maglev_size, self.hasher.maglev_index(key))
        self.tracker.opened(key, vip_id, dip)
        pol = self.policy(vip_id)
        if pol.load_aware:
            self._since[vip_id] += 1
            if self._since[vip_id] >= pol.period:
                self._since[vip_id] = 0
                self.due.add(vip_id)

    def insert_pending(self, limit: int | None = None, older_than: int | None = None) -> int:
        """Run the due evaluations (:meth:`run_due`), then insert as the base class."""
        self.run_due()
        return super().insert_pending(limit, older_than)

    def run_due(self) -> list[RebalanceResult]:
        """Evaluate the VIPs whose period has elapsed.

        Called at a control round, never from inside :meth:`learn`: an update must
        start (``update_pool`` records ``seq`` as the start of RECORD) only once the
        control plane has consumed the learn stream up to the data plane's present.
        Started in the middle of a batch of learn reports, connections the data plane
        had already decided in IDLE (their TransitTable bits unset) but reported
        after the start would not be waited for and could flip to the new version
        before insertion: a PCC violation (the trace tests caught exactly this)."""
        out = [self.rebalance(v) for v in sorted(self.due)]
        self.due.clear()
        return out

    def delete(self, key: FiveTuple) -> bool:
        gone = super().delete(key)
        if gone:
            self.tracker.closed(key)
        return gone

    # ---- rebalancing ----------------------------------------------------------------
    def rebalance(self, vip_id: int) -> RebalanceResult:
        """Evaluate one VIP now and install new weights if the policy says so."""
        pol = self.policy(vip_id)
        cur = self.pools.current(vip_id).dips
        keys = [(d.address, d.port) for d in cur]
        base = [self.base.get((vip_id, k), 1) for k in keys]
        loads = self.tracker.loads(vip_id, keys)
        imb = load_imbalance(loads, base)
        w = load_weights(loads, base, pol.resolution, pol.min_weight, float(pol.period))
        weights = tuple(int(x) for x in w)
        if imb < pol.threshold:
            action = "balanced"
        elif _reduced(weights) == _reduced([d.weight for d in cur]):
            action = "unchanged"
        elif self.busy():
            action = "busy"
        else:
            try:
                self.update_pool(vip_id, [replace(d, weight=x)
                                          for d, x in zip(cur, weights, strict=True)])
                action = "installed"
            except PoolError:
                action = "no-room"
        self.stats["rebalances" if action == "installed" else action] += 1
        return RebalanceResult(action, imb, weights)


def _reduced(weights: Sequence[int]) -> tuple[int, ...]:
    """Weights divided by their gcd: equal tuples give the same Maglev table."""
    g = math.gcd(*weights)
    return tuple(int(w) // g for w in weights)
