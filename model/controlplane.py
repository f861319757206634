"""The control plane shared by every target: installs tables, inserts learned
connections, deletes closed ones, and updates DIP pools with a two-phase commit.

Two-phase commit (SilkRoad, SIGCOMM'17, section 4.3), per pool update of a VIP:

1. ``RECORD``: build the new (VIP, version) table; set the VIP's phase to RECORD.
   Data-plane misses still use the old version and set their TransitTable bits.
   Wait until every connection that was pending (learned, not yet inserted) when the
   update started is inserted.
2. ``FLIP``: write ``vip_state`` = (FLIP, old, new). Misses found in the TransitTable
   keep the old version; others use the new one. Wait until no pending connection of
   the VIP uses the old version, then clear the bits the recorded keys set and go
   ``IDLE``.

Updates are serialised (one VIP in RECORD/FLIP at a time, others queue), so the
TransitTable is never shared. With ``two_phase=False`` the version flips at once:
pending connections then change DIP, which the trace counts as PCC violations.
All hardware changes are :meth:`Memories.write` calls, logged for the vector files.

The connection lifecycle (``cfg.lifecycle``, docs/lifecycle.md) runs on the clock the
driver advances with :meth:`ControlPlane.tick` (seconds): FIN/RST removal after
``close_grace``, idle aging by activity-bit scans every ``idle_timeout``, rotation of
the SYN-authentication key every ``auth_epoch``, and the table-full fallback (a key
that neither the table nor the stash can take is *unplaced*: its packets keep the
data plane's miss decision, and it is retried when a VIP is idle and space was freed).
"""

from __future__ import annotations

import heapq
import random
import secrets
from collections import deque
from dataclasses import dataclass

from .config import Config, Dip
from .conntable import ConnTable, TableFullError
from .hashing import FiveTuple, Hasher
from .layout import Memories, Phase, pack_vip, pack_vip_state
from .lifecycle import unpack_auth
from .network import pack_route
from .pipeline import Decision
from .pools import PoolManager

__all__ = ["ControlPlane", "PendingUpdate"]


@dataclass
class PendingUpdate:
    vip_id: int
    phase: Phase = Phase.IDLE
    old: int = 0
    new: int = 0
    start_seq: int = 0
    started: float = 0.0  # clock time the current phase began (``record_hold``)


class ControlPlane:
    """Owns the full connection keys, the pools and every table write."""

    def __init__(self, cfg: Config, mem: Memories | None = None, two_phase: bool = True,
                 auth_seed: int | None = None, record_hold: float = 0.0):
        """``auth_seed`` makes the SYN-authentication keys reproducible (vector files,
        tests); without it they come from the operating system's CSPRNG.
        ``record_hold`` keeps a pool update in RECORD, and then in FLIP, for at least
        that many seconds of the clock (:meth:`tick`): a data plane whose learn reports
        arrive late (BMv2's digests, docs/live.md) may still be delivering misses from
        before the phase began, which must be pending before the commit moves on."""
        self.cfg = cfg
        self.geo = cfg.geometry
        self.mem = mem or Memories(cfg)
        self.hasher = Hasher(cfg)
        self.table = ConnTable(cfg, self.hasher, self.mem)
        self.pools = PoolManager(cfg, self.mem)
        self.two_phase = two_phase
        self.record_hold = record_hold
        #: learned, not yet inserted: key -> (vip_id, version, learn sequence number)
        self.pending: dict[FiveTuple, tuple[int, int, int]] = {}
        self.conn_version: dict[FiveTuple, tuple[int, int]] = {}
        self.updates: deque[PendingUpdate] = deque()
        self.seq = 0
        self.stats = {"learned": 0, "inserted": 0, "stashed": 0, "deleted": 0,
                      "updates": 0, "retired": 0, "closed": 0, "aged": 0, "table_full": 0,
                      "unplaced_learns": 0, "replaced": 0, "auth_rotations": 0,
                      "auth_expired": 0}
        # ---- lifecycle state (docs/lifecycle.md) ----
        self.lc = cfg.lifecycle
        self.now = 0.0
        self.closing: dict[FiveTuple, float] = {}          # key -> deletion time
        self._closing_q: list[tuple[float, FiveTuple]] = []
        self.unplaced: dict[FiveTuple, int] = {}            # key -> vip_id
        self.last_seen: dict[FiveTuple, float] = {}         # stash and unplaced keys
        self._freed = False                                  # a delete since the last retry
        self._keys = random.Random(auth_seed) if auth_seed is not None \
            else secrets.SystemRandom()
        self.next_scan = self.lc.idle_timeout
        self.next_rotation = self.lc.auth_epoch

    # ---- initial state -----------------------------------------------------------
    def install(self) -> None:
        """Write the VIP table, version registers, DIP table and first Maglev tables."""
        for vid, vip in enumerate(self.cfg.vips):
            pv = self.pools.create(vid, vip.dips, version=0)
            self.pools.set_current(vid, pv.version)
            self._write_state(vid, Phase.IDLE, 0, 0)
            self.mem.write("vip", vid, pack_vip(True, vip.address, vip.port, vip.protocol))
            if self.lc.auth:
                self.mem.write("vip_auth", vid, int(vip.auth))
        net = self.cfg.network
        if net.enabled:  # forwarding (model.network): port MACs, then routes
            for port in net.ports:
                self.mem.write("port_mac", port.id, port.mac)
            for i, r in enumerate(net.routes):
                self.mem.write("route", i, pack_route(True, r.prefix, r.length, r.port,
                                                      r.mac))
        if self.lc.auth:
            for parity in (0, 1):
                self.mem.write("auth_key", parity, self._keys.getrandbits(64))
            self.mem.write("auth_epoch", 0, 0)

    def _write_state(self, vid: int, phase: Phase, old: int, cur: int) -> None:
        self.mem.write("vip_state", vid, pack_vip_state(self.geo, phase, old, cur))

    def vip_id(self, name: str) -> int:
        for i, v in enumerate(self.cfg.vips):
            if v.name == name:
                return i
        raise KeyError(f"unknown VIP name {name!r}")

    # ---- connection events from the data plane -------------------------------------
    def observe(self, key: FiveTuple, d: Decision, seq: int | None = None) -> None:
        """Take the learn/close report of one decision (the learn stream).

        ``seq`` is the packet's sequence number (defaults to one more than the last)."""
        self.seq = self.seq + 1 if seq is None else seq
        if d.learn:
            self.learn(key, d.vip_id, d.version)
        if d.close:
            self.close(key)

    def learn(self, key: FiveTuple, vip_id: int, version: int) -> None:
        """A miss reported by the data plane: remember it until it is inserted."""
        if key in self.last_seen:  # stashed or unplaced: its packets keep missing
            self.last_seen[key] = self.now
            self.stats["unplaced_learns"] += key in self.unplaced
            return
        if key in self.pending or key in self.conn_version:
            return
        self.pending[key] = (vip_id, version, self.seq)
        self.pools.version(vip_id, version).users += 1
        self.stats["learned"] += 1

    def insert_pending(self, limit: int | None = None, older_than: int | None = None) -> int:
        """Insert up to ``limit`` pending connections, oldest first."""
        n = 0
        for key in list(self.pending):
            if limit is not None and n >= limit:
                break
            vid, ver, seq = self.pending[key]
            if older_than is not None and seq > older_than:
                break
            del self.pending[key]
            n += 1
            try:
                res = self.table.insert(key, ver)
            except TableFullError:
                # table and stash full: the connection keeps the data plane's miss
                # decision (the VIP's current version) and is retried later
                self.pools.version(vid, ver).users -= 1
                self.unplaced[key] = vid
                self.last_seen[key] = self.now
                self.stats["table_full"] += 1
                continue
            self.conn_version[key] = (vid, ver)
            self.stats["inserted"] += 1
            self.stats["stashed"] += int(res.stashed)
            if res.stashed:
                self.last_seen[key] = self.now
        self.poll()
        return n

    def delete(self, key: FiveTuple) -> bool:
        """Remove a connection (FIN/RST seen, or idle timeout)."""
        self.closing.pop(key, None)
        self.last_seen.pop(key, None)
        if key in self.unplaced:
            del self.unplaced[key]
            self.stats["deleted"] += 1
            return True
        if key in self.pending:
            vid, ver, _ = self.pending.pop(key)
        elif key in self.conn_version:
            vid, ver = self.conn_version.pop(key)
            self.table.delete(key)
            self._freed = True
        else:
            return False
        self.stats["deleted"] += 1
        self.pools.version(vid, ver).users -= 1
        self.poll()
        return True

    def close(self, key: FiveTuple) -> None:
        """A FIN or RST of a stored connection: delete it ``close_grace`` from now
        (at once without a grace period); later FINs of it change nothing."""
        if self.lc.close_grace <= 0:
            self.delete(key)
        elif key not in self.closing:
            at = self.now + self.lc.close_grace
            self.closing[key] = at
            heapq.heappush(self._closing_q, (at, key))
            self.stats["closed"] += 1

    # ---- the lifecycle clock ----------------------------------------------------------
    def tick(self, now: float) -> None:
        """Advance the clock to ``now`` (seconds): grace deletions that are due, then
        an aging scan and a key rotation when their period has passed, then a retry
        of unplaced connections."""
        self.now = now
        while self._closing_q and self._closing_q[0][0] <= now:
            at, key = heapq.heappop(self._closing_q)
            if self.closing.get(key) == at:
                self.delete(key)
        if self.lc.aging and now >= self.next_scan:
            self.age_scan()
            self.next_scan = now + self.lc.idle_timeout
        if self.lc.auth and now >= self.next_rotation:
            self.rotate_auth()
            self.next_rotation = now + self.lc.auth_epoch
        self.retry_unplaced()
        if self.updates:
            self.poll()

    def age_scan(self) -> int:
        """One aging scan: read the activity bit of every stored connection; a set
        bit is cleared, a clear bit of a connection that has held its slot since the
        previous scan means no packet for a whole period: it is deleted. Stashed and
        unplaced connections age by the time of their last learn. Returns deletions."""
        t = self.table
        for k in [k for k in self.last_seen if k not in t.stash and k not in self.unplaced]:
            del self.last_seen[k]  # drained from the stash into the table since
        idle = []
        for key, (s, b) in list(t.where.items()):
            if self.mem.cp_read(f"act{s}", b):
                self.mem.write(f"act{s}", b, 0)
            elif t.placed_gen[key] < t.generation:
                idle.append(key)
        idle += [k for k, seen in self.last_seen.items()
                 if self.now - seen >= self.lc.idle_timeout]
        t.generation += 1
        for key in idle:
            self.delete(key)
        self.stats["aged"] += len(idle)
        return len(idle)

    def rotate_auth(self) -> None:
        """Start the next SYN-authentication epoch: forget sources last verified two
        epochs ago, give the next parity a fresh key, then switch to it. The data plane
        only stamps entries with the current parity, so the scan races with nothing."""
        nxt = self.mem.read("auth_epoch", 0) ^ 1
        for way in ("auth0", "auth1"):
            for i in range(self.lc.auth_sources):
                valid, stamp, _ = unpack_auth(self.mem.cp_read(way, i))
                if valid and stamp == nxt:
                    self.mem.write(way, i, 0)
                    self.stats["auth_expired"] += 1
        self.mem.write("auth_key", nxt, self._keys.getrandbits(64))
        self.mem.write("auth_epoch", 0, nxt)
        self.stats["auth_rotations"] += 1

    def retry_unplaced(self) -> None:
        """After a delete freed space, insert unplaced connections of VIPs without a
        pool update in progress, with the VIP's current version (the version their
        packets already get)."""
        if not (self._freed and self.unplaced):
            return
        self._freed = False
        busy = {u.vip_id for u in self.updates}
        for key, vid in list(self.unplaced.items()):
            if vid in busy:
                continue
            ver = self.pools.vips[vid].cur
            try:
                res = self.table.insert(key, ver)
            except TableFullError:
                return
            del self.unplaced[key]
            self.pools.version(vid, ver).users += 1
            self.conn_version[key] = (vid, ver)
            self.stats["replaced"] += 1
            if not res.stashed:
                self.last_seen.pop(key, None)

    # ---- pool updates ---------------------------------------------------------------
    def update_pool(self, vip: str | int, dips: list[Dip] | tuple[Dip, ...]) -> None:
        """Request a new DIP pool for a VIP; applied by the two-phase commit."""
        vid = vip if isinstance(vip, int) else self.vip_id(vip)
        # Build the new (VIP, version) now: slot, DIP entries and Maglev table are
        # reserved at request time so a full geometry fails here, with its field named.
        pv = self.pools.create(vid, tuple(dips))
        self.updates.append(PendingUpdate(vid, new=pv.version))
        self.stats["updates"] += 1
        self.poll()

    def busy(self) -> bool:
        return bool(self.updates)

    def poll(self) -> None:
        """Advance the commit state machine and retire unused versions."""
        while self.updates:
            upd = self.updates[0]
            vid = upd.vip_id
            if upd.phase == Phase.IDLE:
                upd.old, upd.start_seq = self.pools.vips[vid].cur, self.seq
                upd.started = self.now
                if not self.two_phase:
                    self.pools.set_current(vid, upd.new)
                    self._write_state(vid, Phase.IDLE, upd.old, upd.new)
                    self.updates.popleft()
                    continue
                upd.phase = Phase.RECORD
                self._write_state(vid, Phase.RECORD, upd.old, upd.old)
            if upd.phase == Phase.RECORD:
                if self.now < upd.started + self.record_hold or any(
                        seq <= upd.start_seq and v == vid
                        for v, _, seq in self.pending.values()):
                    break
                upd.phase = Phase.FLIP
                upd.started = self.now
                self.pools.set_current(vid, upd.new)
                self._write_state(vid, Phase.FLIP, upd.old, upd.new)
            if upd.phase == Phase.FLIP:
                if self.now < upd.started + self.record_hold or any(
                        v == vid and ver == upd.old for v, ver, _ in self.pending.values()):
                    break
                self._write_state(vid, Phase.IDLE, upd.old, upd.new)
                self._clear_transit()
                self.updates.popleft()
        self._retire_unused()

    def _clear_transit(self) -> None:
        """Clear every set TransitTable bit (one word write each)."""
        for j in range(self.geo.transit_hashes):
            for t in self.mem[f"transit{j}"].nonzero()[0]:
                self.mem.write(f"transit{j}", int(t), 0)

    def _retire_unused(self) -> None:
        busy = {(u.vip_id, u.old) for u in self.updates} | {(u.vip_id, u.new)
                                                           for u in self.updates}
        for pv in self.pools.live_versions():
            if (pv.users == 0 and pv.version != self.pools.vips[pv.vip_id].cur
                    and (pv.vip_id, pv.version) not in busy):
                self.pools.retire(pv.vip_id, pv.version)
                self.stats["retired"] += 1
