"""Stimulus for the RTL benches: table states, random traffic, racing writes, hazards.

Pure Python on top of the model (no cocotb), so the Amaranth-simulator tests in
``tests/test_hdl_core.py`` use the same generators. Every generator returns *ops*
(``("W", mem_name, addr, word)`` or ``("P", Packet)``); :func:`number_ops` turns them
into the bench's form (memory ids, packet sequence numbers).
"""

import random
from collections.abc import Iterable

from model.config import Config
from model.conntable import TableFullError
from model.controlplane import ControlPlane
from model.hashing import FIELD_ORDERS, FIELDS, FiveTuple, Hasher
from model.layout import (
    Memories,
    Phase,
    memory_specs,
    pack_conn,
    pack_vip_state,
    unpack_slot,
)
from model.pipeline import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, DataPlane, Packet
from model.pools import PoolError
from model.trace import new_pool

__all__ = ["TableState", "make_state", "random_traffic", "racing_writes", "hazard_ops",
           "number_ops", "copy_memories"]

_FLAGS = (TCP_SYN, TCP_ACK, TCP_ACK, TCP_ACK, TCP_ACK | TCP_FIN, TCP_RST, 0, TCP_SYN | TCP_ACK)


class TableState:
    """Memories of a populated data plane plus the keys known to be in the ConnTable."""

    def __init__(self, cfg: Config, mem: Memories, keys: list[tuple[FiveTuple, int]]):
        self.cfg = cfg
        self.mem = mem
        self.keys = keys  # (key, vip_id)

    @property
    def images(self) -> dict[str, list[int]]:
        return self.mem.snapshot()


def copy_memories(cfg: Config, mem: Memories) -> Memories:
    out = Memories(cfg)
    for k, v in mem.arrays.items():
        out.arrays[k][:] = v
    return out


def _random_key(rng: random.Random, cfg: Config, vid: int | None) -> FiveTuple:
    if vid is None:
        return FiveTuple(rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16),
                         rng.getrandbits(16), rng.choice((6, 17, 1)))
    v = cfg.vips[vid]
    return FiveTuple(0x64000000 | rng.getrandbits(22), v.address, rng.randrange(1024, 65536),
                     v.port, v.protocol)


def make_state(cfg: Config, seed: int, conns: int, updates: bool = True,
               phases: bool = True, transit_fill: float = 0.05) -> TableState:
    """A control plane with ``conns`` connections inserted (as far as the table holds),
    one pool update per VIP (two live versions), random per-VIP phases (so RECORD and
    FLIP paths run) and a few random TransitTable bits."""
    rng = random.Random(seed)
    g = cfg.geometry
    cp = ControlPlane(cfg)
    cp.install()
    keys: list[tuple[FiveTuple, int]] = []
    for _ in range(conns):
        vid = rng.randrange(len(cfg.vips))
        key = _random_key(rng, cfg, vid)
        cp.learn(key, vid, cp.pools.current(vid).version)
        try:
            cp.insert_pending()
        except TableFullError:
            cp.pending.clear()
            break
        keys.append((key, vid))
    if updates:
        for vid in range(len(cfg.vips)):
            try:
                cp.update_pool(vid, new_pool(cfg, cp, vid, 1))
            except PoolError:
                pass
    mem = cp.mem
    if phases:
        for vid in range(len(cfg.vips)):
            cur = cp.pools.current(vid).version
            old = (cur - 1) % (1 << g.version_bits)
            phase = rng.choice((Phase.IDLE, Phase.RECORD, Phase.FLIP, Phase.FLIP))
            mem.write("vip_state", vid, pack_vip_state(g, phase, old, cur))
    for j in range(g.transit_hashes):
        for t in range(g.transit_bits):
            if rng.random() < transit_fill:
                mem.write(f"transit{j}", t, 1)
    return TableState(cfg, mem, keys)


def _random_write(rng: random.Random, cfg: Config, mem: Memories) -> tuple:
    """One random but well-formed control-plane write (any memory)."""
    g = cfg.geometry
    V = g.version_bits
    kind = rng.choice(("conn", "conn", "vip_state", "transit", "slot_map", "maglev", "dip",
                       "vip"))
    if kind == "conn":
        i = rng.randrange(g.stages)
        a = rng.randrange(g.slots)
        w = rng.choice((0, pack_conn(g, True, rng.getrandbits(V), rng.getrandbits(g.digest_bits)),
                        mem.read(f"conn{i}", a) ^ (1 << g.digest_bits)))  # flip a version bit
        return ("W", f"conn{i}", a, w % (1 << g.conn_word_bits))
    if kind == "vip_state":
        vid = rng.randrange(len(cfg.vips))
        return ("W", "vip_state", vid, pack_vip_state(g, rng.choice(list(Phase)),
                                                      rng.getrandbits(V), rng.getrandbits(V)))
    if kind == "transit":
        j = rng.randrange(g.transit_hashes)
        return ("W", f"transit{j}", rng.randrange(g.transit_bits), rng.getrandbits(1))
    if kind == "slot_map":
        vid = rng.randrange(len(cfg.vips))
        a = (vid << V) | rng.randrange(min(4, 1 << V))
        valid, slot = unpack_slot(g, mem.read("slot_map", a))
        return ("W", "slot_map", a, ((not valid) << g.slot_bits) | slot)
    if kind == "maglev":
        return ("W", "maglev", rng.randrange(g.maglev_depth), rng.randrange(g.dip_capacity))
    if kind == "dip":
        return ("W", "dip", rng.randrange(g.dip_capacity), rng.getrandbits(48))
    vid = rng.randrange(len(cfg.vips))
    return ("W", "vip", vid, mem.read("vip", vid) ^ (1 << 56))  # toggle valid


def random_traffic(state: TableState, seed: int, n: int, write_rate: float = 0.0
                   ) -> list[tuple]:
    """``n`` packets: known connections (hits, some closing), new connections (misses),
    repeats of recent new ones, near-VIP and non-VIP packets; with ``write_rate`` > 0,
    random well-formed writes to every memory interleaved (applied to a scratch copy of
    the memories only to pick plausible words -- the expected decisions are computed
    later by replaying the ops on the model)."""
    cfg = state.cfg
    rng = random.Random(seed)
    scratch = copy_memories(cfg, state.mem)
    recent: list[FiveTuple] = []
    ops: list[tuple] = []
    nv = len(cfg.vips)
    for _ in range(n):
        if write_rate and rng.random() < write_rate:
            w = _random_write(rng, cfg, scratch)
            scratch.write(w[1], w[2], w[3])
            ops.append(w)
        r = rng.random()
        if r < 0.40 and state.keys:
            key = rng.choice(state.keys)[0]
        elif r < 0.65:
            key = _random_key(rng, cfg, rng.randrange(nv))
            recent.append(key)
            recent = recent[-8:]
        elif r < 0.80 and recent:
            key = rng.choice(recent)
        elif r < 0.90:
            v = cfg.vips[rng.randrange(nv)]
            key = FiveTuple(rng.getrandbits(32), v.address, rng.getrandbits(16),
                            v.port ^ rng.choice((0, 1)), rng.choice((6, 17)))
        else:
            key = _random_key(rng, cfg, None)
        flags = rng.choice(_FLAGS) if key.proto == 6 else rng.getrandbits(8) & 0x3F
        ops.append(("P", Packet(*(getattr(key, f) for f in FIELDS), flags)))
    return ops


def racing_writes(state: TableState, seed: int, rounds: int) -> list[tuple]:
    """Writes to the exact words the next packet reads, back to back with the packet
    (and with the same packet before the write): ``P W P``, ``W P``, ``P W W P``."""
    cfg = state.cfg
    g = cfg.geometry
    V = g.version_bits
    rng = random.Random(seed)
    h = Hasher(cfg)
    scratch = copy_memories(cfg, state.mem)
    ops: list[tuple] = []
    for _ in range(rounds):
        if state.keys and rng.random() < 0.6:
            key, vid = rng.choice(state.keys)
        else:
            vid = rng.randrange(len(cfg.vips))
            key = _random_key(rng, cfg, vid)
        pkt = Packet(*(getattr(key, f) for f in FIELDS),
                     rng.choice(_FLAGS) if key.proto == 6 else 0)
        idx = h.stage_indices(key)
        digest = h.digest(key)
        tidx = h.transit_indices(key)
        # what the packet would read now: probe the model on a throwaway copy
        d = DataPlane(cfg, copy_memories(cfg, scratch), h).process(pkt)
        sm_addr = (vid << V) | d.version
        mg_addr = d.slot * g.maglev_size + h.maglev_index(key)
        dip = d.dip
        cur = scratch.read("vip_state", vid) & ((1 << V) - 1)
        candidates = [
            ("W", f"conn{i}", idx[i],
             rng.choice((0, pack_conn(g, True, rng.getrandbits(V), digest))))
            for i in range(g.stages)
        ] + [
            ("W", "vip_state", vid, pack_vip_state(g, rng.choice(list(Phase)),
                                                  rng.getrandbits(V) & 1, cur)),
            ("W", "slot_map", sm_addr, scratch.read("slot_map", sm_addr) ^ (1 << g.slot_bits)),
            ("W", "maglev", mg_addr, rng.randrange(g.dip_capacity)),
            ("W", "dip", dip, rng.getrandbits(48)),
            ("W", "vip", vid, scratch.read("vip", vid) ^ (1 << 56)),
        ] + [("W", f"transit{j}", tidx[j], 1 - scratch.read(f"transit{j}", tidx[j]))
             for j in range(g.transit_hashes)]
        w1, w2 = rng.sample(candidates, 2)
        pattern = rng.choice(("PWP", "WP", "PWWP", "WWPP", "PWPWP"))
        ws = iter((w1, w2, w1, w2))
        for c in pattern:
            if c == "P":
                ops.append(("P", pkt))
            else:
                w = next(ws)
                scratch.write(w[1], w[2], w[3])
                ops.append(w)
        # put a clobbered VIP entry back so later rounds still see traffic to it
        ops.append(("W", "vip", vid, state.mem.read("vip", vid)))
        scratch.write("vip", vid, state.mem.read("vip", vid))
    return ops


def _solve_gf2(rows: list[int], rhs: list[int], nvars: int, rng: random.Random
               ) -> int | None:
    """One solution ``u`` (bit mask) of ``popcount(rows[k] & u) % 2 == rhs[k]``; free
    variables random. None if the system is inconsistent."""
    pivots: list[tuple[int, int, int]] = []  # (pivot bit, row, rhs), reduced
    for r, b in zip(rows, rhs, strict=True):
        for pb, pr, pv in pivots:
            if r >> pb & 1:
                r ^= pr
                b ^= pv
        if r == 0:
            if b:
                return None
            continue
        pb = r.bit_length() - 1
        pivots = [((q, pr ^ r, pv ^ b) if pr >> pb & 1 else (q, pr, pv))
                  for q, pr, pv in pivots]
        pivots.append((pb, r, b))
    pivot_bits = {pb for pb, _, _ in pivots}
    u = 0
    for k in range(nvars):
        if k not in pivot_bits and rng.random() < 0.5:
            u |= 1 << k
    for pb, r, b in pivots:  # fully reduced: each pivot row holds one pivot variable
        rest = bin(r & u & ~(1 << pb)).count("1") & 1
        if b ^ rest:
            u |= 1 << pb
        else:
            u &= ~(1 << pb)
    return u


def _colliding_key(cfg: Config, target: list[int], vid: int, rng: random.Random
                   ) -> FiveTuple | None:
    """A key of VIP ``vid`` whose TransitTable indices equal ``target``: the Bloom hashes
    are affine over GF(2) (hdl/crc.py derives their matrices from the model), so solve
    for the 48 source-address/port bits instead of searching."""
    from hdl.crc import crc_role_matrix

    g = cfg.geometry
    v = cfg.vips[vid]
    fixed = (v.address << 40) | (v.port << 8) | v.protocol  # dst_ip, dst_port, proto
    src_bits = [72 + k for k in range(32)] + [24 + k for k in range(16)]  # src_ip, src_port
    rows, rhs = [], []
    for j in range(g.transit_hashes):
        m, c = crc_role_matrix(cfg.salts.transit[j], FIELD_ORDERS[f"transit{j}"],
                               g.transit_log2_bits)
        for b, row in enumerate(m):
            rows.append(sum(1 << n for n, kb in enumerate(src_bits) if row >> kb & 1))
            rhs.append((target[j] >> b & 1) ^ (c >> b & 1)
                       ^ (bin(row & fixed).count("1") & 1))
    u = _solve_gf2(rows, rhs, len(src_bits), rng)
    if u is None:
        return None
    key = fixed | sum(1 << kb for n, kb in enumerate(src_bits) if u >> n & 1)
    t = FiveTuple(key >> 72, v.address, (key >> 24) & 0xFFFF, v.port, v.protocol)
    assert Hasher(cfg).transit_indices(t) == list(target)
    return t


def hazard_ops(state: TableState, seed: int, rounds: int) -> list[tuple]:
    """Back-to-back packets of one new connection in each phase, and the TransitTable
    read-after-write: a RECORD-phase miss of VIP A immediately followed by a FLIP-phase
    miss of VIP B whose key has the same Bloom indices (distance 1, 2 and 3 slots)."""
    cfg = state.cfg
    g = cfg.geometry
    rng = random.Random(seed)
    h = Hasher(cfg)
    ops: list[tuple] = []
    nv = len(cfg.vips)
    for _ in range(rounds):
        vid = rng.randrange(nv)
        key = _random_key(rng, cfg, vid)
        for phase in (Phase.IDLE, Phase.RECORD, Phase.FLIP, Phase.IDLE):
            ops.append(("W", "vip_state", vid, pack_vip_state(g, phase, 0, 1)))
            burst = rng.randrange(2, 6)
            for b in range(burst):
                flags = (TCP_SYN if b == 0 else TCP_ACK) if key.proto == 6 else 0
                ops.append(("P", Packet(*(getattr(key, f) for f in FIELDS), flags)))
        if nv < 2:
            continue
        a, b = rng.sample(range(nv), 2)
        x = _random_key(rng, cfg, a)
        tidx = h.transit_indices(x)
        y = _colliding_key(cfg, tidx, b, rng)
        if y is None:
            continue
        gap = rng.choice((0, 0, 1, 2))
        ops += [("W", f"transit{j}", tidx[j], 0) for j in range(g.transit_hashes)]
        ops += [("W", "vip_state", a, pack_vip_state(g, Phase.RECORD, 0, 0)),
                ("W", "vip_state", b, pack_vip_state(g, Phase.FLIP, 0, 1))]
        ops.append(("P", Packet(*(getattr(x, f) for f in FIELDS), 0x02 if x.proto == 6 else 0)))
        # `gap` unrelated writes between the two packets (slots, not bubbles)
        ops += [("W", "transit0", (tidx[0] + 1 + k) % g.transit_bits, 0) for k in range(gap)]
        ops.append(("P", Packet(*(getattr(y, f) for f in FIELDS), 0x02 if y.proto == 6 else 0)))
    # leave every VIP idle
    ops += [("W", "vip_state", v, state.mem.read("vip_state", v)) for v in range(nv)]
    return ops


def number_ops(ops: Iterable[tuple], mem_ids: dict[str, int]) -> list[tuple]:
    """Bench form: ``("W", id, addr, word)`` and ``("P", Packet, seq)``."""
    out = []
    seq = 0
    for op in ops:
        if op[0] == "W":
            out.append(("W", mem_ids[op[1]], int(op[2]), int(op[3])))
        else:
            out.append(("P", op[1], seq))
            seq += 1
    return out


def memory_names(cfg: Config) -> list[str]:
    return [s.name for s in memory_specs(cfg.geometry)]
