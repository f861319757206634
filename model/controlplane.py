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
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .config import Config, Dip
from .conntable import ConnTable
from .hashing import FiveTuple, Hasher
from .layout import Memories, Phase, pack_vip, pack_vip_state
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


class ControlPlane:
    """Owns the full connection keys, the pools and every table write."""

    def __init__(self, cfg: Config, mem: Memories | None = None, two_phase: bool = True):
        self.cfg = cfg
        self.geo = cfg.geometry
        self.mem = mem or Memories(cfg)
        self.hasher = Hasher(cfg)
        self.table = ConnTable(cfg, self.hasher, self.mem)
        self.pools = PoolManager(cfg, self.mem)
        self.two_phase = two_phase
        #: learned, not yet inserted: key -> (vip_id, version, learn sequence number)
        self.pending: dict[FiveTuple, tuple[int, int, int]] = {}
        self.conn_version: dict[FiveTuple, tuple[int, int]] = {}
        self.updates: deque[PendingUpdate] = deque()
        self.seq = 0
        self.stats = {"learned": 0, "inserted": 0, "stashed": 0, "deleted": 0,
                      "updates": 0, "retired": 0}

    # ---- initial state -----------------------------------------------------------
    def install(self) -> None:
        """Write the VIP table, version registers, DIP table and first Maglev tables."""
        for vid, vip in enumerate(self.cfg.vips):
            pv = self.pools.create(vid, vip.dips, version=0)
            self.pools.set_current(vid, pv.version)
            self._write_state(vid, Phase.IDLE, 0, 0)
            self.mem.write("vip", vid, pack_vip(True, vip.address, vip.port, vip.protocol))

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
            self.delete(key)

    def learn(self, key: FiveTuple, vip_id: int, version: int) -> None:
        """A miss reported by the data plane: remember it until it is inserted."""
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
            res = self.table.insert(key, ver)
            del self.pending[key]
            self.conn_version[key] = (vid, ver)
            self.stats["inserted"] += 1
            self.stats["stashed"] += int(res.stashed)
            n += 1
        self.poll()
        return n

    def delete(self, key: FiveTuple) -> bool:
        """Remove a connection (FIN/RST seen, or idle timeout)."""
        if key in self.pending:
            vid, ver, _ = self.pending.pop(key)
        elif key in self.conn_version:
            vid, ver = self.conn_version.pop(key)
            self.table.delete(key)
        else:
            return False
        self.stats["deleted"] += 1
        self.pools.version(vid, ver).users -= 1
        self.poll()
        return True

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
                if not self.two_phase:
                    self.pools.set_current(vid, upd.new)
                    self._write_state(vid, Phase.IDLE, upd.old, upd.new)
                    self.updates.popleft()
                    continue
                upd.phase = Phase.RECORD
                self._write_state(vid, Phase.RECORD, upd.old, upd.old)
            if upd.phase == Phase.RECORD:
                if any(seq <= upd.start_seq and v == vid
                       for v, _, seq in self.pending.values()):
                    break
                upd.phase = Phase.FLIP
                self.pools.set_current(vid, upd.new)
                self._write_state(vid, Phase.FLIP, upd.old, upd.new)
            if upd.phase == Phase.FLIP:
                if any(v == vid and ver == upd.old for v, ver, _ in self.pending.values()):
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
