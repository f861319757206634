#!/usr/bin/env python3
"""Benchmark the cuckoo ConnTable model (model.conntable).

For d = 2..8 stages, full-key and 16-bit digests: insert random keys until the first
one goes to the stash (load factor at first failure, insert rate, moves per insert),
then on until the stash is full (load factor at TableFullError). Then the vectorised
data-plane lookup rate (1M random keys, d=4, k=16, 90 % load) and the measured digest
false-positive rate for 8- and 16-bit digests at 90 % load.

    python scripts/bench_conntable.py [--json PATH] [--log2-slots K]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from model.config import Config, parse_config
from model.conntable import ConnTable, TableFullError, lookup_batch
from model.hashing import FiveTuple, Hasher
from model.layout import Memories

VIPS = [0x0A000001, 0x0A000002, 0x0A000003, 0x0A000004]


def make_cfg(d: int, k: int, digest: int | str, **geo: int) -> Config:
    """A one-VIP config with the given table geometry."""
    return parse_config({
        "geometry": {"stages": d, "log2_slots": k, "digest_bits": digest, **geo},
        "vip": [{"name": "bench", "address": "10.0.0.1", "port": 80, "protocol": "tcp",
                 "dips": [{"address": "10.1.0.1", "port": 80}]}],
    })


def make_table(cfg: Config) -> ConnTable:
    return ConnTable(cfg, Hasher(cfg), Memories(cfg))


def rand_key(rng: random.Random) -> FiveTuple:
    return FiveTuple(rng.getrandbits(32), rng.choice(VIPS), rng.getrandbits(16), 80, 6)


def rand_arrays(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """``n`` random keys as field arrays (same distribution as :func:`rand_key`)."""
    return {
        "src_ip": rng.integers(0, 1 << 32, n, dtype=np.int64),
        "dst_ip": rng.choice(np.array(VIPS, dtype=np.int64), n),
        "src_port": rng.integers(0, 1 << 16, n, dtype=np.int64),
        "dst_port": np.full(n, 80, dtype=np.int64),
        "proto": np.full(n, 6, dtype=np.int64),
    }


def fill(t: ConnTable, rng: random.Random, load: float) -> None:
    """Insert random keys until the table holds ``load`` of its slots."""
    while t.load_factor < load:
        t.insert(rand_key(rng), rng.randrange(1 << t.geo.version_bits))


def first_failure(d: int, k: int, digest: int | str, seed: int) -> dict:
    """Insert until the first stash, then until the stash overflows."""
    t = make_table(make_cfg(d, k, digest))
    rng = random.Random(seed)
    n = moves = max_moves = 0
    t0 = time.perf_counter()
    while t.first_failure_load is None:
        r = t.insert(rand_key(rng), 1)
        n += 1
        moves += r.moves
        max_moves = max(max_moves, r.moves)
    dt = time.perf_counter() - t0
    try:
        while True:
            t.insert(rand_key(rng), 1)
    except TableFullError:
        pass
    return {
        "stages": d, "digest_bits": digest, "log2_slots": k,
        "first_failure_load": t.first_failure_load, "full_load": t.load_factor,
        "inserts": n, "inserts_per_s": n / dt, "mean_moves": moves / n,
        "max_moves": max_moves,
    }


def fp_rate(k: int, digest_bits: int, load: float, probes: int, seed: int) -> dict:
    """Measured false-positive rate of absent keys vs. theory sum_i occ_i / 2**D."""
    t = make_table(make_cfg(4, k, digest_bits, stash_size=1 << 16))
    fill(t, random.Random(seed), load)
    arrays = rand_arrays(np.random.default_rng(seed), probes)
    live = {(x.src_ip, x.dst_ip, x.src_port) for x in t}
    absent = np.array([(a, b, c) not in live for a, b, c in
                       zip(arrays["src_ip"].tolist(), arrays["dst_ip"].tolist(),
                           arrays["src_port"].tolist(), strict=True)])
    arrays = {f: v[absent] for f, v in arrays.items()}
    hs = t.hasher.batch(arrays)
    hit, _, _ = lookup_batch(t.geo, t.mem, hs["stage"], hs["digest"])
    return {
        "digest_bits": digest_bits, "stages": 4, "log2_slots": k, "load": t.load_factor,
        "stash": len(t.stash), "probes": int(absent.sum()), "fp_hits": int(hit.sum()),
        "fp_rate": float(hit.mean()), "theory": t.d * t.load_factor / 2**digest_bits,
    }


def lookup_rate(k: int, n: int, seed: int) -> dict:
    """lookup_batch throughput on ``n`` random keys (hashing timed separately)."""
    t = make_table(make_cfg(4, k, 16, stash_size=1 << 16))
    t0 = time.perf_counter()
    fill(t, random.Random(seed), 0.9)
    t_fill = time.perf_counter() - t0
    arrays = rand_arrays(np.random.default_rng(seed + 1), n)
    t0 = time.perf_counter()
    hs = t.hasher.batch(arrays)
    t_hash = time.perf_counter() - t0
    t0 = time.perf_counter()
    hit, _, _ = lookup_batch(t.geo, t.mem, hs["stage"], hs["digest"])
    t_look = time.perf_counter() - t0
    return {
        "stages": 4, "log2_slots": k, "digest_bits": 16, "load": t.load_factor, "keys": n,
        "lookups_per_s": n / t_look, "hash_per_s": n / t_hash,
        "fill_inserts_per_s": t.stored / t_fill, "hits": int(hit.sum()),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, help="write the results to this file")
    ap.add_argument("--log2-slots", type=int, default=12, help="slots per stage (log2)")
    ap.add_argument("--lookup-log2-slots", type=int, default=16)
    ap.add_argument("--lookup-keys", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    k = args.log2_slots
    out: dict = {"log2_slots": k, "max_kicks": make_cfg(2, k, 16).geometry.max_kicks,
                 "stash_size": make_cfg(2, k, 16).geometry.stash_size}

    print(f"Insert until first stash (k={k}, max_kicks={out['max_kicks']}, "
          f"stash_size={out['stash_size']})")
    print(f"{'digest':>6} {'d':>2} {'load@1st stash':>15} {'load@stash full':>16} "
          f"{'inserts/s':>10} {'moves/ins':>9} {'max moves':>9}")
    rows = []
    for digest in ("full", 16):
        for d in range(2, 9):
            r = first_failure(d, k, digest, args.seed * 100 + d)
            rows.append(r)
            print(f"{digest!s:>6} {d:>2} {r['first_failure_load']:>15.4f} "
                  f"{r['full_load']:>16.4f} {r['inserts_per_s']:>10.0f} "
                  f"{r['mean_moves']:>9.3f} {r['max_moves']:>9}")
    out["first_failure"] = rows

    print(f"\nFalse positives of absent keys (d=4, k={k}, 90 % load, stash unbounded)")
    print(f"{'digest':>6} {'load':>6} {'stash':>6} {'probes':>8} {'hits':>6} "
          f"{'measured':>10} {'theory':>10}")
    fps = []
    for bits in (8, 16):
        r = fp_rate(k, bits, 0.9, 1_000_000, args.seed)
        fps.append(r)
        print(f"{bits:>6} {r['load']:>6.3f} {r['stash']:>6} {r['probes']:>8} "
              f"{r['fp_hits']:>6} {r['fp_rate']:>10.3e} {r['theory']:>10.3e}")
    out["false_positives"] = fps

    r = lookup_rate(args.lookup_log2_slots, args.lookup_keys, args.seed)
    out["lookup"] = r
    print(f"\nlookup_batch (d=4, k={r['log2_slots']}, 16-bit digests, load {r['load']:.3f}, "
          f"{r['keys']} keys): {r['lookups_per_s']:.3e} lookups/s "
          f"(hashing {r['hash_per_s']:.3e} keys/s; fill {r['fill_inserts_per_s']:.0f} "
          f"inserts/s)")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return out


if __name__ == "__main__":
    main()
