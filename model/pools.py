"""Versioned DIP pools: (VIP, version) -> pool slot -> Maglev table, and the DIP table.

Version numbers are ``version_bits`` wide (6, as in SilkRoad), but the hardware holds
only ``pool_slots`` Maglev tables. The ``slot_map`` memory says which slot a live
(VIP, version) uses. Running out of slots, versions or DIP-table entries raises
:class:`PoolError` naming the geometry field; nothing is silently reused.
A version is retired (slot and DIPs freed) only when no ConnTable entry, pending
connection or current/old pointer uses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import Config, Dip
from .layout import Memories, pack_dip, pack_slot
from .maglev import build_table
from .network import pack_rev

__all__ = ["PoolError", "PoolVersion", "PoolManager"]


class PoolError(RuntimeError):
    """A pool operation cannot be done within the configured geometry."""


@dataclass
class PoolVersion:
    """One live (VIP, version): its slot, its DIPs (global DIP indices) and users."""

    vip_id: int
    version: int
    slot: int
    dips: tuple[Dip, ...]
    dip_ids: tuple[int, ...]
    users: int = 0  # ConnTable entries + pending connections using this version


@dataclass
class _Vip:
    cur: int = 0
    versions: dict[int, PoolVersion] = field(default_factory=dict)


class PoolManager:
    """Owns ``slot_map``, ``maglev`` and ``dip`` memories; all changes are word writes."""

    def __init__(self, cfg: Config, mem: Memories):
        self.cfg = cfg
        self.geo = cfg.geometry
        self.mem = mem
        self.vips = [_Vip() for _ in cfg.vips]
        self.free_slots = list(range(self.geo.pool_slots))
        self.dip_index: dict[tuple[int, int], int] = {}
        self.dip_refs: dict[int, int] = {}
        self.free_dips = list(range(self.geo.dip_capacity))
        self.dip_vip: dict[int, int] = {}  # DIP index -> the VIP it serves ([network])

    # ---- DIP table ----------------------------------------------------------------
    def _acquire_dip(self, d: Dip, vip_id: int) -> int:
        k = (d.address, d.port)
        net = self.cfg.network.enabled
        if net and k in self.dip_index and self.dip_vip[self.dip_index[k]] != vip_id:
            other = self.cfg.vips[self.dip_vip[self.dip_index[k]]].name
            raise PoolError(
                f"DIP {d} serves VIP {other!r}; with a [network] table the return path "
                f"maps a DIP back to one VIP, so it cannot join VIP "
                f"{self.cfg.vips[vip_id].name!r}")
        if k not in self.dip_index:
            if not self.free_dips:
                raise PoolError(
                    f"geometry.dip_capacity: all {self.geo.dip_capacity} DIP-table entries "
                    f"are in use; cannot add DIP {d}"
                )
            idx = self.free_dips.pop(0)
            self.dip_index[k] = idx
            self.dip_refs[idx] = 0
            self.mem.write("dip", idx, pack_dip(d.address, d.port))
            if net:  # the return path: replies from this DIP get the VIP's address
                vip = self.cfg.vips[vip_id]
                self.dip_vip[idx] = vip_id
                self.mem.write("rev", idx, pack_rev(self.geo.vip_bits, True, vip.protocol,
                                                    d.address, d.port, vip_id, vip.address,
                                                    vip.port))
        idx = self.dip_index[k]
        self.dip_refs[idx] += 1
        return idx

    def _release_dip(self, idx: int) -> None:
        self.dip_refs[idx] -= 1
        if self.dip_refs[idx] == 0:
            del self.dip_refs[idx]
            k = next(k for k, v in self.dip_index.items() if v == idx)
            del self.dip_index[k]
            self.free_dips.append(idx)
            self.free_dips.sort()
            if self.dip_vip.pop(idx, None) is not None:
                self.mem.write("rev", idx, 0)

    # ---- versions -----------------------------------------------------------------
    def current(self, vip_id: int) -> PoolVersion:
        v = self.vips[vip_id]
        return v.versions[v.cur]

    def version(self, vip_id: int, version: int) -> PoolVersion | None:
        return self.vips[vip_id].versions.get(version)

    def live_versions(self) -> list[PoolVersion]:
        return [pv for v in self.vips for pv in v.versions.values()]

    def create(self, vip_id: int, dips: tuple[Dip, ...], version: int | None = None
               ) -> PoolVersion:
        """Build a new (VIP, version): slot, DIP entries, Maglev table, slot_map entry.

        The VIP's current version is not changed (see ``set_current``)."""
        geo = self.geo
        vip = self.vips[vip_id]
        name = self.cfg.vips[vip_id].name
        if not dips:
            raise PoolError(f"pool of VIP {name!r}: a pool update must keep at least one DIP")
        if len(dips) > geo.maglev_size:
            raise PoolError(
                f"geometry.maglev_size: {geo.maglev_size} is smaller than the new pool of "
                f"VIP {name!r} ({len(dips)} DIPs)")
        if version is None:
            nv = 1 << geo.version_bits
            version = next((x % nv for x in range(vip.cur + 1, vip.cur + 1 + nv)
                            if x % nv not in vip.versions), None)
            if version is None:
                raise PoolError(
                    f"geometry.version_bits: all {1 << geo.version_bits} versions of VIP "
                    f"{name!r} are live")
        if not self.free_slots:
            live = ", ".join(f"({self.cfg.vips[p.vip_id].name}, v{p.version})"
                             for p in self.live_versions())
            raise PoolError(
                f"geometry.pool_slots: all {geo.pool_slots} Maglev table slots are live "
                f"[{live}]; retire a version before updating VIP {name!r}")
        dip_ids: list[int] = []
        try:
            for d in dips:
                dip_ids.append(self._acquire_dip(d, vip_id))
        except PoolError:
            for i in dip_ids:
                self._release_dip(i)
            raise
        slot = self.free_slots.pop(0)
        table = build_table(list(dips), geo.maglev_size, self.cfg.salts)
        base = slot * geo.maglev_size
        for i, b in enumerate(table):
            self.mem.write("maglev", base + i, dip_ids[int(b)])
        self.mem.write("slot_map", (vip_id << geo.version_bits) | version,
                       pack_slot(geo, True, slot))
        pv = PoolVersion(vip_id, version, slot, tuple(dips), tuple(dip_ids))
        vip.versions[version] = pv
        return pv

    def set_current(self, vip_id: int, version: int) -> None:
        self.vips[vip_id].cur = version

    def retire(self, vip_id: int, version: int) -> None:
        """Free a version's slot and DIPs; only legal when nothing uses it."""
        vip = self.vips[vip_id]
        pv = vip.versions[version]
        if pv.users or version == vip.cur:
            raise PoolError(
                f"cannot retire version {version} of VIP {self.cfg.vips[vip_id].name!r}: "
                f"{pv.users} connections use it" + (" and it is current"
                                                      if version == vip.cur else ""))
        self.mem.write("slot_map", (vip_id << self.geo.version_bits) | version,
                       pack_slot(self.geo, False, 0))
        del vip.versions[version]
        self.free_slots.append(pv.slot)
        self.free_slots.sort()
        for i in pv.dip_ids:
            self._release_dip(i)
