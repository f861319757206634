"""RTL of the l4lb core (Verilator) against the golden model, decision by decision.

Top: the cocotb tests (they run inside the simulator). Bottom: the pytest functions
that generate/build each configuration once and run the cocotb tests on it.

Configurations: ``examples/default.toml`` (d=4, 16-bit digests, Maglev 4096),
``examples/small.toml`` (d=2 x 64 words, 8-bit digests so false positives occur,
prime Maglev 251) and ``cocotb_tests/configs/fullkey.toml`` (full 104-bit keys, d=3,
prime Maglev 127, non-power-of-two capacities, built with ``hash_stages=2``).

Cases per configuration:

1. ``vectors``: a vector directory written by ``model.vectors`` (``build_scenario``):
   images loaded through the write port, then the ops replayed in file order, writes
   interleaved with packets while traffic flows; once without gaps or backpressure
   (fixed latency and one op per cycle asserted), once with random gaps/backpressure.
2. ``random``: random traffic (hits, misses, closes, repeats, near- and non-VIP) with
   random well-formed writes to every memory, random input gaps, output and learn
   backpressure; expected decisions from ``model.pipeline.DataPlane`` on the same
   memories.
3. ``races``: writes to the exact words the next packet reads, back to back.
4. ``hazards``: bursts of one new connection in every phase, and TransitTable
   read-after-write between two VIPs at distance 1..3.
5. ``throughput``: N packets back to back: N + latency cycles, latency fixed.
"""

import json
import os
import random
from pathlib import Path

import cocotb
import pytest

# The bench directory is on sys.path both inside the simulator (rtl_env puts it there)
# and under pytest (rootdir-relative "prepend" import mode).
from l4lb_bench import L4LBBench, RunResult, expected_ops, image_writes, random_gen
from traffic import copy_memories, hazard_ops, make_state, number_ops, racing_writes, random_traffic

from hdl.core import DEFAULT_HASH_STAGES
from model.config import load_config
from model.layout import Memories
from model.vectors import build_scenario, load_memories, read_vectors, write_vectors

# ======================================================================================
# cocotb side
# ======================================================================================

#: What the DUT's memories hold, as far as the bench knows (memories have no reset and
#: keep their contents from one cocotb test to the next within one simulation).
_SHADOW: dict = {}


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


async def _bench(dut) -> L4LBBench:
    cfg = load_config(os.environ["L4LB_CONFIG"])
    info = json.loads(Path(os.environ["L4LB_CORE_JSON"]).read_text())
    bench = L4LBBench(dut, cfg, info)
    if "mem" not in _SHADOW:
        _SHADOW["mem"] = Memories(cfg)  # a fresh simulation: all memories zero
    await bench.reset()
    return bench


def _record(bench: L4LBBench, name: str, res: RunResult, **extra) -> None:
    line = bench.report(name, res)
    run_dir = Path(os.environ.get("L4LB_RUN_DIR", "."))
    stats = {"test": name, "config": bench.cfg.name, "packets": res.packets,
             "writes": res.writes, "cycles": res.cycles, "wall": res.wall,
             "mismatches": len(res.mismatches), "latency": bench.latency,
             "span": res.span, "learn_expected": res.learn_expected,
             "learn_received": res.learn_received, "counters": res.counters} | extra
    with open(run_dir / "stats.jsonl", "a") as f:
        f.write(json.dumps(stats) + "\n")
    assert not res.mismatches, f"{line}\n" + "\n".join(res.mismatches[:20])


async def _run(bench: L4LBBench, images: dict | None, named_ops: list, name: str,
               expected=None, **kw) -> RunResult:
    """Load ``images`` (only words that differ from what the DUT holds), then run the
    ops; expected decisions are the model's on the same memories unless given."""
    cfg = bench.cfg
    shadow: Memories = _SHADOW["mem"]
    load = []
    if images is not None:
        load = image_writes(images, bench.mem_ids, shadow.arrays)
    ops = load + number_ops(named_ops, bench.mem_ids)
    model_mem = copy_memories(cfg, shadow)
    model_exp = expected_ops(cfg, model_mem, ops, bench.id_to_name)
    res = await bench.run(ops, model_exp if expected is None else expected, **kw)
    _SHADOW["mem"] = model_mem  # the DUT now holds what the model holds
    return res


@cocotb.test()
async def vectors(dut):
    """Replay a model vector directory (images + ordered W/P lines)."""
    bench = await _bench(dut)
    cfg = bench.cfg
    scen = read_vectors(cfg, os.environ["L4LB_VECTORS"])
    named = [("W", o.mem, o.addr, o.word) if hasattr(o, "mem") else ("P", o.packet)
             for o in scen.ops]
    file_exp = [s.decision for s in scen.packets]
    # 1) back to back: every op accepted in consecutive cycles, fixed latency
    res = await _run(bench, scen.initial, named, "vectors", expected=file_exp)
    n_load = res.writes - len(scen.writes)
    assert res.last_op - res.first_op + 1 == n_load + len(scen.ops), "ops not 1 per cycle"
    assert set(res.latencies) == {bench.latency}, f"latencies {sorted(set(res.latencies))}"
    _record(bench, "vectors", res, ops_per_cycle=(n_load + len(scen.ops))
            / (res.last_op - res.first_op + 1))
    # again with random input gaps and output backpressure
    rng = random.Random(_env_int("L4LB_SEED", 1))
    res2 = await _run(bench, scen.initial, named, "vectors_bp", expected=file_exp,
                      idle=random_gen(rng, 0.8), backpressure=random_gen(rng, 0.7))
    _record(bench, "vectors_gaps_backpressure", res2)
    # the model's recomputation equals the file (guards the bench's own plumbing)
    mem = load_memories(cfg, scen.initial)
    again = expected_ops(cfg, mem, number_ops(named, bench.mem_ids), bench.id_to_name)
    assert again == file_exp, "model replay differs from vectors.txt"


@cocotb.test()
async def random_traffic_bp(dut):
    """Random traffic + random writes, random input gaps, output and learn backpressure."""
    bench = await _bench(dut)
    seed = _env_int("L4LB_SEED", 1)
    n = _env_int("L4LB_RANDOM_PACKETS", 20000)
    state = make_state(bench.cfg, seed, conns=_env_int("L4LB_CONNS", 400))
    ops = random_traffic(state, seed + 1, n, write_rate=0.02)
    rng = random.Random(seed + 2)
    res = await _run(bench, state.images, ops, "random", idle=random_gen(rng, 0.85),
                     backpressure=random_gen(rng, 0.75),
                     learn_backpressure=random_gen(rng, 0.1))
    _record(bench, "random", res)
    assert res.counters["learn_drops"] > 0, "learn FIFO overflow path not exercised"


@cocotb.test()
async def races_and_hazards(dut):
    """Writes racing lookups of the same word; same-connection bursts; Bloom RAW."""
    bench = await _bench(dut)
    seed = _env_int("L4LB_SEED", 1)
    state = make_state(bench.cfg, seed + 10, conns=_env_int("L4LB_CONNS", 400))
    ops = racing_writes(state, seed + 11, _env_int("L4LB_RACE_ROUNDS", 600))
    res = await _run(bench, state.images, ops, "races")
    assert set(res.latencies) == {bench.latency}
    _record(bench, "races", res)
    rng = random.Random(seed + 12)
    ops = racing_writes(state, seed + 13, _env_int("L4LB_RACE_ROUNDS", 600) // 2)
    res = await _run(bench, state.images, ops, "races_bp", backpressure=random_gen(rng, 0.6))
    _record(bench, "races_backpressure", res)
    ops = hazard_ops(state, seed + 14, _env_int("L4LB_HAZARD_ROUNDS", 60))
    res = await _run(bench, state.images, ops, "hazards")
    exp = expected_ops(bench.cfg, copy_memories(bench.cfg, state.mem),
                       number_ops(ops, bench.mem_ids), bench.id_to_name)
    transit_hits = sum(d.transit_hit for d in exp)
    assert transit_hits > 0, "no back-to-back RECORD -> FLIP Bloom hit was generated"
    _record(bench, "hazards", res, transit_hits=transit_hits)


@cocotb.test()
async def throughput(dut):
    """N packets back to back without backpressure: N + latency cycles, fixed latency."""
    bench = await _bench(dut)
    seed = _env_int("L4LB_SEED", 1)
    n = _env_int("L4LB_THROUGHPUT_PACKETS", 10000)
    state = make_state(bench.cfg, seed + 20, conns=_env_int("L4LB_CONNS", 400),
                       transit_fill=0.0)
    # load the state first (writes), then time a packets-only stream
    await _run(bench, state.images, [], "load")
    ops = [op for op in random_traffic(state, seed + 21, n) if op[0] == "P"]
    res = await _run(bench, None, ops, "throughput")
    assert res.span == n + bench.latency, f"{n} packets took {res.span} cycles"
    assert set(res.latencies) == {bench.latency}, f"latencies {sorted(set(res.latencies))}"
    _record(bench, "throughput", res, cycles_per_packet=(res.span - bench.latency) / n)


# ======================================================================================
# pytest side
# ======================================================================================

_HERE = Path(__file__).resolve().parent
_EXAMPLES = _HERE.parent / "examples"

#: name -> (config file, hash_stages, env overrides): the shipped default as generated
#: (hdl.core.DEFAULT_HASH_STAGES), and the other settings on the other configs
CONFIGS = {
    "default": (_EXAMPLES / "default.toml", DEFAULT_HASH_STAGES, {}),
    "small": (_EXAMPLES / "small.toml", 1, {}),
    "fullkey": (_HERE / "configs" / "fullkey.toml", 2, {}),
}

#: Work per configuration (packets) -- sized for >= 100k packets over the suite.
WORK = {
    "default": {"L4LB_RANDOM_PACKETS": "30000", "L4LB_THROUGHPUT_PACKETS": "10000",
                "L4LB_CONNS": "1500", "L4LB_VECTOR_CONNECTIONS": "2000"},
    "small": {"L4LB_RANDOM_PACKETS": "25000", "L4LB_THROUGHPUT_PACKETS": "5000",
              "L4LB_CONNS": "100", "L4LB_VECTOR_CONNECTIONS": "1500"},
    "fullkey": {"L4LB_RANDOM_PACKETS": "15000", "L4LB_THROUGHPUT_PACKETS": "5000",
                "L4LB_CONNS": "250", "L4LB_VECTOR_CONNECTIONS": "800"},
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def rtl(request):
    """(name, build) of one configuration, built once per module run."""
    from rtl_env import build_core

    name = request.param
    path, hash_stages, _ = CONFIGS[name]
    return name, build_core(path, hash_stages=hash_stages)


def _run_case(rtl, testcase: str | list[str], extra: dict | None = None) -> list[dict]:
    from rtl_env import run_cocotb

    name, build = rtl
    env = dict(WORK[name]) | dict(CONFIGS[name][2]) | dict(extra or {})
    results = run_cocotb(build, "test_core", testcase, env=env)
    stats = [json.loads(x) for x in (results.parent / "stats.jsonl").read_text().splitlines()]
    (results.parent / "stats.jsonl").unlink()
    for s in stats:
        print(f"[{name}] {s['test']}: {s['packets']} packets, {s['writes']} writes, "
              f"{s['cycles']} cycles, {s['mismatches']} mismatches, "
              f"{s['packets'] / s['wall']:.0f} packets/s")
    _append_summary(stats)
    return stats


def _append_summary(stats: list[dict]) -> None:
    out = _HERE.parent / "build" / "cocotb" / "summary.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:
        for s in stats:
            f.write(json.dumps(s) + "\n")


def test_rtl_vectors(rtl, tmp_path):
    """Case 1: model vector files (images + W/P lines), replayed with traffic flowing."""
    name, build = rtl
    cfg = load_config(build.config_path)
    n_conn = int(WORK[name]["L4LB_VECTOR_CONNECTIONS"])
    scen = build_scenario(cfg, connections=n_conn, updates=4, seed=3)
    write_vectors(scen, tmp_path / "vectors")
    stats = _run_case(rtl, "vectors", {"L4LB_VECTORS": str(tmp_path / "vectors")})
    assert all(s["mismatches"] == 0 for s in stats)
    assert stats[0]["packets"] == len(scen.packets)


def test_rtl_random_traffic(rtl):
    """Case 2: random traffic and writes with random gaps and backpressure."""
    stats = _run_case(rtl, "random_traffic_bp")
    assert stats[0]["mismatches"] == 0


def test_rtl_races_hazards_throughput(rtl):
    """Cases 3 and 4 (writes racing lookups; same-connection bursts; Bloom RAW) and the
    throughput case, as two cocotb tests in ONE simulation: the reset between them must
    keep the table contents (the second test only loads the words that differ)."""
    name, build = rtl
    stats = _run_case(rtl, ["races_and_hazards", "throughput"])
    assert all(s["mismatches"] == 0 for s in stats)
    s = [x for x in stats if x["test"] == "throughput"][0]
    assert s["span"] == s["packets"] + build.latency
    assert s["cycles_per_packet"] == 1.0
