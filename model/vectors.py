"""Test vectors: the contract between the model and every target (docs/vectors.md).

A vector directory holds

* ``manifest.json`` -- geometry, hash spec, memory map (name, width, depth, file,
  fields) and the list of decision fields;
* ``mem/<name>.hex`` -- the initial image of each memory, one hex word per line,
  address 0 first, zero-padded to ``ceil(width / 4)`` digits;
* ``vectors.txt`` -- the operations in order, one per line, hex fields:
  ``W <mem> <addr> <word>`` (a control-plane write) or
  ``P <src_ip> <dst_ip> <src_port> <dst_port> <proto> <tcp_flags> <decision...>``
  with the 12 :data:`~model.pipeline.DECISION_FIELDS`.

Format 2 (a config with a ``[lifecycle]``, docs/lifecycle.md) adds the lifecycle
memories, ``R <mem> <addr> <word>`` (a control-plane read: the word the target must
hold there), and ``seq ack`` after ``tcp_flags`` and ``cookie`` after the decision.
Format 3 (a config with a ``[network]``, docs/network.md) adds the ``rev``, ``route``
and ``port_mac`` memories and ``route_hit route port`` after the decision (after
``cookie`` when the config also has a ``[lifecycle]``).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import Config
from .controlplane import ControlPlane
from .hashing import AUTH_FIELDS, FIELD_ORDERS, FIELDS, FiveTuple
from .layout import Action, Memories, Read, memory_specs
from .lifecycle import AUTH_TAG_BITS
from .network import format_mac
from .pipeline import (
    TCP_ACK,
    TCP_SYN,
    DataPlane,
    Decision,
    Packet,
    decision_fields,
)
from .pools import PoolError
from .trace import TraceParams, control_round, make_trace, new_pool

__all__ = ["Write", "Read", "Step", "Scenario", "build_scenario", "withdraw_vip",
           "write_vectors", "read_vectors", "FORMAT_VERSION", "vector_format",
           "PACKET_FIELDS", "LIFECYCLE_PACKET_FIELDS"]

#: Format 1: no lifecycle; format 2: a config with a ``[lifecycle]`` (see above).
FORMAT_VERSION = 1
PACKET_FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "proto", "tcp_flags")
LIFECYCLE_PACKET_FIELDS = PACKET_FIELDS + ("seq", "ack")


def vector_format(cfg: Config) -> int:
    """The vector format of a config's scenarios: 3 with a ``[network]`` table, 2 with
    lifecycle memories, else 1."""
    return 3 if cfg.network.enabled else 2 if cfg.lifecycle.enabled else 1


def _fields_of(cfg: Config) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(packet fields, decision fields) of a P line of the config's vectors."""
    return (LIFECYCLE_PACKET_FIELDS if cfg.lifecycle.enabled else PACKET_FIELDS,
            decision_fields(cfg))


@dataclass(frozen=True)
class Write:
    mem: str
    addr: int
    word: int


@dataclass(frozen=True)
class Step:
    packet: Packet
    decision: Decision


@dataclass
class Scenario:
    """Initial memory images and the ordered operations (writes and packets)."""

    cfg: Config
    initial: dict[str, list[int]]
    ops: list[Write | Read | Step] = field(default_factory=list)

    @property
    def packets(self) -> list[Step]:
        return [o for o in self.ops if isinstance(o, Step)]

    @property
    def writes(self) -> list[Write]:
        return [o for o in self.ops if isinstance(o, Write)]


def build_scenario(cfg: Config, connections: int = 300, mean_packets: float = 4.0,
                   updates: int = 3, seed: int = 1, insert_delay: int = 40,
                   chunk: int = 8, two_phase: bool = True) -> Scenario:
    """Traffic with learns, inserts (with cuckoo moves), closes and pool updates,
    run packet by packet through the model; every control-plane write is recorded
    at the point between packets where it happens.

    A config with a ``[lifecycle]`` gets :func:`model.lifecycle_sim.scenario` instead
    (clients that answer SYN-authentication challenges, a spoofed SYN flood, aging
    scans): ``connections`` sets its length, ``updates`` and ``seed`` carry over.

    A config with a ``[network]`` (and no lifecycle) gets the same traffic plus the
    servers' replies: after half the LB decisions (drawn from their own random stream,
    so the client traffic is the one without ``[network]``) the DIP answers the client
    at once -- source the DIP's address and port, destination the client's -- which is
    a REVERSE decision while the DIP's ``rev`` word is valid and a routed or unrouted
    FORWARD once the DIP has left every pool."""
    if cfg.lifecycle.enabled:
        from .lifecycle_sim import scenario

        return scenario(cfg, connections=connections, updates=updates, seed=seed)
    cp = ControlPlane(cfg, two_phase=two_phase)
    cp.install()
    scen = Scenario(cfg, cp.mem.snapshot())
    log: list[tuple[str, int, int]] = []
    cp.mem.log = log
    dp = DataPlane(cfg, cp.mem, cp.hasher)
    p = TraceParams(connections=connections, mean_packets=mean_packets, updates=updates,
                    mean_lifetime=60.0,
                    insert_delay=insert_delay, chunk=chunk, seed=seed, non_vip_fraction=0.05)
    tr = make_trace(cfg, p)
    rows = [{f: int(tr.arrays[f][i]) for f in (*FIELDS, "tcp_flags")} for i in range(len(tr))]
    last = [bool(x) for x in tr.last]
    # back-to-back packets of one new connection (pipeline hazards in the targets)
    rng = np.random.default_rng(seed + 7)
    for k in range(3):
        at = int(rng.integers(0, len(rows)))
        v = cfg.vips[k % len(cfg.vips)]
        burst = {"src_ip": 0x0A630000 + k, "dst_ip": v.address, "src_port": 40000 + k,
                 "dst_port": v.port, "proto": v.protocol,
                 "tcp_flags": TCP_SYN if v.protocol == 6 else 0}
        rows[at:at] = [burst] + [dict(burst, tcp_flags=TCP_ACK if v.protocol == 6 else 0)] * 3
        last[at:at] = [False, False, False, True]
    updates_at = {int(len(rows) * (i + 1) / (updates + 1)) for i in range(updates)}
    replies = np.random.default_rng(seed + 11) if cfg.network.enabled else None
    step = 0
    ended: deque[tuple[int, FiveTuple]] = deque()

    def flush() -> None:
        scen.ops.extend(Write(*w) for w in log)
        log.clear()

    for i, r in enumerate(rows):
        if i in updates_at:
            vid = step % len(cfg.vips)
            try:
                cp.update_pool(vid, new_pool(cfg, cp, vid, step // len(cfg.vips)))
            except PoolError:
                pass
            step += 1
            flush()
        pkt = Packet(**r)
        d = dp.process(pkt)
        scen.ops.append(Step(pkt, d))
        cp.observe(pkt.key, d, seq=i)
        flush()  # a close deletes at once: its writes land before the next packet
        if replies is not None and d.action == Action.LB and replies.random() < 0.5:
            reply = Packet(d.dip_ip, pkt.src_ip, d.dip_port, pkt.src_port, pkt.proto,
                           TCP_ACK if pkt.proto == 6 else 0)
            scen.ops.append(Step(reply, dp.process(reply)))  # no learn, no close
        if last[i]:
            ended.append((i, pkt.key))
        if i % chunk == chunk - 1:
            control_round(cp, ended, i, insert_delay)
            flush()
    cp.insert_pending()
    flush()
    return scen


def withdraw_vip(scen: Scenario, vip_id: int, packets: int = 40, seed: int = 3) -> Scenario:
    """The scenario continued: the control plane withdraws VIP ``vip_id`` (every
    ``slot_map`` word of the VIP invalidated, as when its pool is taken out of service)
    while traffic goes on: its packets -- connections the ConnTable still holds and new
    ones -- become DROP decisions; other VIPs are unaffected. Returns a new scenario."""
    cfg = scen.cfg
    g = cfg.geometry
    if not 0 <= vip_id < len(cfg.vips):
        raise ValueError(f"vip_id {vip_id}: the config has {len(cfg.vips)} VIPs")
    mem = load_memories(cfg, scen.initial)
    for op in scen.ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
    dp = DataPlane(cfg, mem)
    for st in scen.packets:  # the TransitTable bits the scenario's packets set
        dp.process(st.packet)
    out = Scenario(cfg, scen.initial, list(scen.ops))
    for version in range(1 << g.version_bits):
        addr = vip_id << g.version_bits | version
        if mem.read("slot_map", addr):
            mem.write("slot_map", addr, 0)
            out.ops.append(Write("slot_map", addr, 0))
    seen = [st.packet for st in scen.packets if st.decision.vip_id == vip_id
            and st.decision.action != 0]
    rng = np.random.default_rng(seed)
    vip = cfg.vips[vip_id]
    others = [st.packet for st in scen.packets if st.decision.action != 0
              and st.decision.vip_id != vip_id]
    for k in range(packets):
        if k % 4 == 3 and others:
            pkt = others[int(rng.integers(len(others)))]
        elif k % 2 and seen:
            pkt = seen[int(rng.integers(len(seen)))]
        else:
            pkt = Packet(0x0A640000 + k, vip.address, 50000 + k, vip.port, vip.protocol,
                         TCP_SYN if vip.protocol == 6 else 0)
        out.ops.append(Step(pkt, dp.process(pkt)))
    return out


# ---- files -----------------------------------------------------------------------

def _digits(width: int) -> int:
    return max(1, (width + 3) // 4)


def _fields(cfg: Config) -> dict[str, list[list]]:
    g = cfg.geometry
    V, D, S = g.version_bits, g.digest_bits, g.slot_bits
    f: dict[str, list[list]] = {f"conn{i}": [["digest", 0, D], ["version", D, V],
                                             ["valid", D + V, 1]] for i in range(g.stages)}
    f["vip"] = [["proto", 0, 8], ["port", 8, 16], ["ip", 24, 32], ["valid", 56, 1]]
    f["vip_state"] = [["cur_version", 0, V], ["old_version", V, V], ["phase", 2 * V, 2]]
    f["slot_map"] = [["slot", 0, S], ["valid", S, 1]]
    f["maglev"] = [["dip_index", 0, g.dip_bits]]
    f["dip"] = [["port", 0, 16], ["ip", 16, 32]]
    for j in range(g.transit_hashes):
        f[f"transit{j}"] = [["bit", 0, 1]]
    for i in range(g.stages):
        f[f"act{i}"] = [["bit", 0, 1]]
    f["vip_auth"] = [["bit", 0, 1]]
    for w in (0, 1):
        f[f"auth{w}"] = [["tag", 0, AUTH_TAG_BITS], ["stamp", AUTH_TAG_BITS, 1],
                         ["valid", AUTH_TAG_BITS + 1, 1]]
    f["auth_key"] = [["key", 0, 64]]
    f["auth_epoch"] = [["parity", 0, 1]]
    vb = g.vip_bits
    f["rev"] = [["vip_port", 0, 16], ["vip_ip", 16, 32], ["vip_id", 48, vb],
                ["dip_port", 48 + vb, 16], ["dip_ip", 64 + vb, 32], ["proto", 96 + vb, 8],
                ["valid", 104 + vb, 1]]
    f["route"] = [["mac", 0, 48], ["port", 48, 9], ["length", 57, 6], ["prefix", 63, 32],
                  ["valid", 95, 1]]
    f["port_mac"] = [["mac", 0, 48]]
    return f


def manifest(cfg: Config, scen: Scenario | None = None) -> dict:
    g = cfg.geometry
    fields = _fields(cfg)
    fmt = vector_format(cfg)
    mems = [{"name": s.name, "width": s.width, "depth": s.depth, "file": f"mem/{s.name}.hex",
             "fields": fields[s.name]} for s in memory_specs(g, cfg.lifecycle, cfg.network)]
    roles = [f"stage{i}" for i in range(g.stages)] + ["digest", "maglev"] + \
        [f"transit{j}" for j in range(g.transit_hashes)]
    salts = cfg.salts
    salt_of = {f"stage{i}": salts.stages[i] for i in range(g.stages)}
    salt_of |= {"digest": salts.digest, "maglev": salts.maglev}
    salt_of |= {f"transit{j}": salts.transit[j] for j in range(g.transit_hashes)}
    pkt_fields, dec_fields = _fields_of(cfg)
    out = {
        "format": fmt,
        "config": cfg.name,
        "geometry": {k: getattr(g, k) for k in g.__dataclass_fields__},
        "hashes": {r: {"salt": f"{salt_of[r]:08x}", "fields": list(FIELD_ORDERS[r])}
                   for r in roles},
        "memories": mems,
        "decision_fields": list(dec_fields),
    }
    if fmt >= 2:
        out["packet_fields"] = list(pkt_fields)
    if cfg.network.enabled:
        net = cfg.network
        out["network"] = {
            "ports": [{"id": p.id, "mac": format_mac(p.mac), "name": p.name}
                      for p in net.ports],
            "routes": [{"prefix": str(r), "port": r.port, "mac": format_mac(r.mac)}
                       for r in net.routes],
            "route_capacity": net.route_capacity,
            "emitted": "FORWARD, LB, REVERSE, CHALLENGE with route_hit = 1 (model/network.py)",
        }
    if cfg.lifecycle.enabled:
        lc = cfg.lifecycle
        out["lifecycle"] = {
            "idle_timeout": lc.idle_timeout, "close_grace": lc.close_grace,
            "auth_epoch": lc.auth_epoch, "auth_log2_sources": lc.auth_log2_sources,
            "auth_hashes": {role: {"salt": f"{cfg.salts.auth[k]:08x}",
                                   "fields": list(AUTH_FIELDS)}
                            for k, role in enumerate(("auth0", "auth1", "auth_tag"))},
            "auth_tag_bits": AUTH_TAG_BITS,
            "cookie": "HalfSipHash-2-4(auth_key[e], src_ip, dst_ip, src_port<<16|dst_port)"
                      " with bit 0 = e (model/cookie.py)",
        }
    if scen is not None:
        out["vectors"] = {"file": "vectors.txt", "packets": len(scen.packets),
                          "writes": len(scen.writes)}
        if fmt >= 2:
            out["vectors"]["reads"] = sum(isinstance(o, Read) for o in scen.ops)
    return out


def write_vectors(scen: Scenario, outdir: str | Path) -> Path:
    """Write manifest.json, mem/*.hex and vectors.txt; returns the manifest path."""
    out = Path(outdir)
    (out / "mem").mkdir(parents=True, exist_ok=True)
    man = manifest(scen.cfg, scen)
    widths = {m["name"]: m["width"] for m in man["memories"]}
    for name, words in scen.initial.items():
        w = _digits(widths[name])
        (out / "mem" / f"{name}.hex").write_text("".join(f"{x:0{w}x}\n" for x in words))
    fmt = man["format"]
    pkt_fields, dec_fields = _fields_of(scen.cfg)
    lines = [f"# l4lb vectors format {fmt}: config {scen.cfg.name}",
             "# W mem addr word | " + ("R mem addr word | " if fmt >= 2 else "")
             + "P " + " ".join(pkt_fields) + " " + " ".join(dec_fields)]
    for op in scen.ops:
        if isinstance(op, Write):
            lines.append(f"W {op.mem} {op.addr:x} {op.word:x}")
        elif isinstance(op, Read):
            lines.append(f"R {op.mem} {op.addr:x} {op.word:x}")
        else:
            ins = tuple(getattr(op.packet, f) for f in pkt_fields)
            lines.append("P " + " ".join(f"{x:x}" for x in ins
                                         + op.decision.as_tuple(dec_fields)))
    (out / "vectors.txt").write_text("\n".join(lines) + "\n")
    (out / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")
    return out / "manifest.json"


def read_vectors(cfg: Config, vecdir: str | Path) -> Scenario:
    """Parse a vector directory back into a :class:`Scenario` (inverse of write)."""
    d = Path(vecdir)
    man = json.loads((d / "manifest.json").read_text())
    fmt = vector_format(cfg)
    if man.get("format") != fmt:
        raise ValueError(f"{d}/manifest.json: format {man.get('format')!r}, but config "
                         f"{cfg.name!r} has vector format {fmt}")
    pkt_fields, dec_fields = _fields_of(cfg)
    initial = {}
    for m in man["memories"]:
        words = [int(x, 16) for x in (d / m["file"]).read_text().split()]
        if len(words) != m["depth"]:
            raise ValueError(f"{m['file']}: {len(words)} words, manifest says {m['depth']}")
        initial[m["name"]] = words
    scen = Scenario(cfg, initial)
    for n, line in enumerate((d / "vectors.txt").read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        t = line.split()
        if t[0] == "W" and len(t) == 4:
            scen.ops.append(Write(t[1], int(t[2], 16), int(t[3], 16)))
        elif t[0] == "R" and len(t) == 4 and fmt >= 2:
            scen.ops.append(Read(t[1], int(t[2], 16), int(t[3], 16)))
        elif t[0] == "P" and len(t) == 1 + len(pkt_fields) + len(dec_fields):
            v = [int(x, 16) for x in t[1:]]
            k = len(pkt_fields)
            scen.ops.append(Step(Packet(**dict(zip(pkt_fields, v[:k], strict=True))),
                                 Decision(**dict(zip(dec_fields, v[k:], strict=True)))))
        else:
            raise ValueError(f"{d}/vectors.txt:{n}: malformed line {line!r}")
    return scen


def load_memories(cfg: Config, images: dict[str, list[int]]) -> Memories:
    """A :class:`Memories` holding the given images."""
    mem = Memories(cfg)
    for name, words in images.items():
        mem.arrays[name][:] = np.array(words, dtype=mem.arrays[name].dtype)
    return mem


def replay_scenario(scen: Scenario) -> list[tuple[int, object, object]]:
    """Re-run a scenario's ops on the model from its initial images; returns the
    mismatches as (packet number, expected, got) -- a decision, or for a control-plane
    read the :class:`Read` and the word found. Empty means the model agrees."""
    mem = load_memories(scen.cfg, scen.initial)
    dp = DataPlane(scen.cfg, mem)
    bad: list[tuple[int, object, object]] = []
    n = 0
    for op in scen.ops:
        if isinstance(op, Write):
            mem.write(op.mem, op.addr, op.word)
        elif isinstance(op, Read):
            if mem.read(op.mem, op.addr) != op.word:
                bad.append((n, op, mem.read(op.mem, op.addr)))
        else:
            got = dp.process(op.packet)
            if got != op.decision:
                bad.append((n, op.decision, got))
            n += 1
    return bad
