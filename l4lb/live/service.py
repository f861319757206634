"""The control plane of a running load balancer (docs/live.md): the model's
:class:`~model.controlplane.ControlPlane` fed with the data plane's learn and close
events as they happen, on the wall clock, with live pool updates, status and counters.

Every table change is a :meth:`model.layout.Memories.write` -- the same code path that
the vector files record -- so a data plane that applies the writes in order holds the
model's memories at every moment.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from model.config import Config, Dip
from model.controlplane import ControlPlane
from model.hashing import FiveTuple
from model.layout import Memories, Phase, unpack_vip_state
from model.network import format_mac
from model.pipeline import Decision
from model.pools import PoolError

__all__ = ["LiveService", "ManagementError", "POOL_OPS", "parse_dip"]

#: Pool operations of the management API (docs/live.md, "Pool updates").
POOL_OPS = ("add", "remove", "drain")


class ManagementError(ValueError):
    """A management request that cannot be done; the message names the field and value."""


def parse_dip(text: object) -> Dip:
    """``"10.0.2.1:80"`` -> :class:`Dip`; a :class:`ManagementError` otherwise."""
    import ipaddress

    if not isinstance(text, str) or text.count(":") != 1:
        raise ManagementError(f"dip: expected ADDRESS:PORT like \"10.0.2.1:80\", got "
                              f"{text!r}")
    addr, port = text.split(":")
    try:
        ip = int(ipaddress.IPv4Address(addr))
        p = int(port)
    except ValueError:
        raise ManagementError(f"dip: expected ADDRESS:PORT like \"10.0.2.1:80\", got "
                              f"{text!r}") from None
    if not 0 < p < 65536:
        raise ManagementError(f"dip: port {p} outside 1..65535 in {text!r}")
    return Dip(ip, p)


@dataclass
class _Latency:
    """Learn-to-insert latencies (seconds) of the last ``keep`` inserts."""

    keep: int = 100_000

    def __post_init__(self) -> None:
        self.values: deque[float] = deque(maxlen=self.keep)
        self.count = 0
        self.total = 0.0

    def add(self, v: float) -> None:
        self.values.append(v)
        self.count += 1
        self.total += v

    def quantile(self, q: float) -> float:
        if not self.values:
            return 0.0
        s = sorted(self.values)
        return s[min(len(s) - 1, int(q * len(s)))]


class LiveService:
    """Learn/close events in, table writes out, on the wall clock.

    ``mem`` is the data plane's memories (the model switch shares them; a BMv2 or
    hardware data plane mirrors every write); ``record_hold`` is the control plane's
    (a data plane whose learn reports arrive late needs it)."""

    def __init__(self, cfg: Config, mem: Memories | None = None,
                 clock=time.monotonic, record_hold: float = 0.0) -> None:
        self.cfg = cfg
        self.cp = ControlPlane(cfg, mem, record_hold=record_hold)
        self.mem = self.cp.mem
        self.clock = clock
        self.started = clock()
        self.cp.install()
        self.learned_at: dict[FiveTuple, float] = {}
        self.latency = _Latency()
        self.events = {"learn": 0, "close": 0}
        self.pool_ops = {op: 0 for op in POOL_OPS}
        self.rejected = 0  # management requests refused

    # ---- data-plane events ----------------------------------------------------------
    def event(self, key: FiveTuple, d: Decision) -> None:
        """One packet's learn/close report (the learn digest)."""
        if d.learn:
            self.events["learn"] += 1
            if key not in self.learned_at and key not in self.cp.pending \
                    and key not in self.cp.conn_version:
                self.learned_at[key] = self.clock()
        if d.close:
            self.events["close"] += 1
        self.cp.observe(key, d)

    def service(self) -> int:
        """Insert every pending connection and advance the lifecycle clock; returns
        the number inserted."""
        cp = self.cp
        cp.tick(self.clock() - self.started)
        if not cp.pending:
            return 0
        keys = list(cp.pending)
        n = cp.insert_pending()
        now = self.clock()
        for k in keys:
            t = self.learned_at.pop(k, None)
            if t is not None and k in cp.conn_version:
                self.latency.add(now - t)
        return n

    # ---- pool updates ----------------------------------------------------------------
    def _vip(self, name: object) -> int:
        vips = self.cfg.vips
        if name is None:
            if len(vips) == 1:
                return 0
            raise ManagementError(f"vip: the config has {len(vips)} VIPs "
                                  f"({', '.join(v.name for v in vips)}); name one")
        for i, v in enumerate(vips):
            if v.name == name:
                return i
        raise ManagementError(f"vip: no VIP named {name!r} (VIPs: "
                              f"{', '.join(v.name for v in vips)})")

    def pool(self, op: object, dip: object, vip: object = None) -> dict:
        """``add``, ``drain`` or ``remove`` one DIP of a VIP's pool with a two-phase
        update. ``drain``: new connections avoid the DIP, established ones stay on it
        until they end (per-connection consistency). ``remove``: ``drain``, and its
        established connections leave the ConnTable at once (a dead server): their
        next packets are new connections of the new pool."""
        try:
            if op not in POOL_OPS:
                raise ManagementError(f"op: expected one of {', '.join(POOL_OPS)}, got {op!r}")
            d = parse_dip(dip)
            vid = self._vip(vip)
            cur = list(self.cp.pools.current(vid).dips)
            name = self.cfg.vips[vid].name
            same = [x for x in cur if (x.address, x.port) == (d.address, d.port)]
            if op == "add":
                if same:
                    raise ManagementError(f"dip: {d} is already in the pool of VIP {name!r}")
                new = cur + [d]
            else:
                if not same:
                    raise ManagementError(
                        f"dip: {d} is not in the pool of VIP {name!r} (pool: "
                        f"{', '.join(str(x) for x in cur)})")
                new = [x for x in cur if x not in same]
                if not new:
                    raise ManagementError(f"dip: {d} is the last DIP of VIP {name!r}; a "
                                          f"pool keeps at least one")
            try:
                self.cp.update_pool(vid, new)
            except PoolError as e:
                raise ManagementError(str(e)) from None
        except ManagementError:
            self.rejected += 1
            raise
        deleted = self._delete_connections_to(vid, d) if op == "remove" else 0
        self.pool_ops[op] += 1
        return {"vip": name, "op": op, "dip": str(d), "pool": [str(x) for x in new],
                "version": self.cp.updates[-1].new if self.cp.updates
                else self.cp.pools.vips[vid].cur,
                "deleted_connections": deleted}

    def _dip_of(self, key: FiveTuple, vid: int, ver: int) -> int:
        g = self.cfg.geometry
        pv = self.cp.pools.version(vid, ver)
        return self.mem.read("maglev", pv.slot * g.maglev_size
                             + self.cp.hasher.maglev_index(key))

    def _delete_connections_to(self, vid: int, d: Dip) -> int:
        idx = self.cp.pools.dip_index.get((d.address, d.port))
        victims = [k for k, (v, ver) in self.cp.conn_version.items()
                   if v == vid and self._dip_of(k, v, ver) == idx]
        for k in victims:
            self.cp.delete(k)
        return len(victims)

    # ---- status and counters ------------------------------------------------------
    def connections_per_dip(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        rev = {i: f"{ip >> 24}.{ip >> 16 & 255}.{ip >> 8 & 255}.{ip & 255}:{port}"
               for (ip, port), i in self.cp.pools.dip_index.items()}
        for k, (vid, ver) in self.cp.conn_version.items():
            name = (self.cfg.vips[vid].name, rev.get(self._dip_of(k, vid, ver), "?"))
            out[name] = out.get(name, 0) + 1
        return out

    def status(self, dataplane: dict | None = None) -> dict:
        """Occupancy, versions, pools, counters (the JSON of ``l4lb status``)."""
        cp, g = self.cp, self.cfg.geometry
        per_dip = self.connections_per_dip()
        vips = []
        for vid, v in enumerate(self.cfg.vips):
            phase, old, cur = unpack_vip_state(g, self.mem.read("vip_state", vid))
            pv = cp.pools.current(vid)
            vips.append({
                "name": v.name, "address": f"{v.address_str}:{v.port}/{v.protocol_name}",
                "version": cur, "old_version": old, "phase": Phase(phase).name,
                "pool": [str(d) for d in pv.dips],
                "live_versions": sorted(p.version for p in cp.pools.live_versions()
                                        if p.vip_id == vid),
                "connections": {dip: n for (vn, dip), n in sorted(per_dip.items())
                                if vn == v.name},
            })
        return {
            "config": self.cfg.name,
            "uptime_s": round(self.clock() - self.started, 3),
            "conntable": {"entries": len(cp.conn_version), "pending": len(cp.pending),
                          "capacity": g.stages * g.slots, "stash": len(cp.table.stash),
                          "unplaced": len(cp.unplaced), "closing": len(cp.closing)},
            "vips": vips,
            "updates_in_progress": len(cp.updates),
            "control_plane": dict(cp.stats),
            "events": dict(self.events),
            "pool_ops": dict(self.pool_ops),
            "rejected_requests": self.rejected,
            "insert_latency_s": {"count": self.latency.count, "sum": self.latency.total,
                                 "p50": self.latency.quantile(0.5),
                                 "p99": self.latency.quantile(0.99),
                                 "max": max(self.latency.values, default=0.0)},
            "ports": [{"id": p.id, "name": p.name, "mac": format_mac(p.mac)}
                      for p in self.cfg.network.ports],
            "dataplane": dataplane or {},
        }
