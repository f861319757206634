"""The long RTL frame-datapath runs: >= 20k frames per W through Verilator vs the model.

Builds ``l4lb_datapath`` for ``examples/default.toml`` at each ``--widths`` (cached under
build/cocotb/), then for each W runs the cocotb tests of cocotb_tests/test_datapath.py:
``frames`` with each ``--patterns`` (input gaps / output backpressure, see PATTERNS
there), a fuzz run (``--fuzz-frames`` frames, 60 % random or mutated), and
``throughput`` (64-byte frames back to back). First, ``--model-fuzz`` random and
mutated frames go through the model alone (no exception; outputs unchanged or validly
rewritten). Prints, per W: frames compared with the model per parser reason and
mismatches, frames per cycle, latency, wall time; and writes the figures as JSON
(``--json``).

Usage: ``python scripts/datapath_bench.py [--frames 20000] [--widths 8 64]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "cocotb_tests")]

from rtl_env import build_datapath  # noqa: E402
from test_datapath import CONFIG, PATTERNS, run_frames  # noqa: E402

from l4lb.framegen import build_frame, fuzz_frame  # noqa: E402
from model.config import load_config  # noqa: E402
from model.controlplane import ControlPlane  # noqa: E402
from model.frame import FrameDataPlane  # noqa: E402
from model.layout import Action  # noqa: E402
from model.parse import Reason, ones_sum, parse_frame  # noqa: E402
from model.pipeline import Packet  # noqa: E402


def model_fuzz(n: int, seed: int) -> dict:
    """``n`` random and mutated frames through ``FrameDataPlane`` alone: no exception, an
    output is the input or (LB) the same length with a valid IPv4 header checksum and
    the same reason; counts per reason."""
    import random

    cfg = load_config(CONFIG)
    cp = ControlPlane(cfg)
    cp.install()
    fdp = FrameDataPlane(cfg, cp.mem)
    rng = random.Random(seed)
    goods = []
    for _ in range(500):
        v = rng.choice(cfg.vips)
        pkt = Packet(rng.getrandbits(32), v.address, rng.getrandbits(16), v.port, v.protocol,
                     rng.getrandbits(8))
        goods.append(build_frame(rng, pkt))
    bad = 0
    t0 = time.perf_counter()
    for _ in range(n):
        f = fuzz_frame(rng, rng.choice(goods))
        out, d, reason = fdp.process_frame(f)
        if d.action == Action.LB:
            p = parse_frame(out)
            ok = (len(out) == len(f) and p.reason == reason == Reason.OK
                  and ones_sum(out[p.l3:p.l4]) == 0xFFFF)
        else:
            ok = out is None or out == f
        bad += not ok
    return {"frames": n, "violations": bad, "seconds": time.perf_counter() - t0,
            "reasons": {r.key: fdp.reasons[r] for r in Reason}, "actions": dict(fdp.actions)}


def _line(s: dict) -> str:
    if s["test"] == "throughput":
        return (f"  throughput (64-byte frames, no pauses): {s['frames_per_cycle_in']:.3f} "
                f"frames/cycle in, {s['frames_per_cycle_out']:.3f} out; latency "
                f"{s['latency_min']}..{s['latency_max']} cycles (expected "
                f"{s['latency_expected']}); {s['mismatches']} mismatches")
    comp = s["compared"]
    per = ", ".join(f"{k} {comp[k]}/{s['reasons'][k]}" + (f" BAD {s['bad'][k]}" if s["bad"][k]
                                                         else "") for k in comp)
    return (f"  {s['label']}: {s['frames']:,} frames in ({s['errored']} with tuser), "
            f"{s['out']:,} out, {sum(comp.values()):,} compared, {s['mismatches']} mismatches; "
            f"{s['cycles']:,} cycles, latency {s['latency_min']}..{s['latency_max']}, "
            f"learn events {s['learn']:,}, {s['wall']:.0f} s sim wall\n"
            f"    compared/in per reason: {per}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--fuzz-frames", type=int, default=20000)
    ap.add_argument("--widths", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--patterns", nargs="+", default=["both"], choices=list(PATTERNS))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--model-fuzz", type=int, default=100000,
                    help="random and mutated frames through the model alone first")
    ap.add_argument("--json", default=None, help="write all figures here")
    a = ap.parse_args(argv)
    out: list[dict] = []
    failed = 0
    if a.model_fuzz:
        mf = model_fuzz(a.model_fuzz, a.seed)
        print(f"model fuzz: {mf['frames']:,} random/mutated frames, {mf['violations']} "
              f"violations, {mf['seconds']:.0f} s; reasons {mf['reasons']}; "
              f"outcomes {mf['actions']}", flush=True)
        failed += mf["violations"] > 0
        out.append({"test": "model_fuzz"} | mf)
    for w in a.widths:
        t0 = time.perf_counter()
        build = build_datapath(CONFIG, w)
        print(f"W={w}: l4lb_datapath built ({time.perf_counter() - t0:.0f} s; latency "
              f"{build.info['latency']}, buffer {build.info['buffer_beats']} beats, "
              f"{build.info['frame_slots']} frame slots)", flush=True)
        runs = [(p, a.frames, {}, ("frames",)) for p in a.patterns]
        runs.append(("both", a.fuzz_frames, {"L4LB_FUZZ": "0.6", "L4LB_MALFORMED": "0.2"},
                     ("frames", "throughput")))
        for k, (pattern, n, extra, tests) in enumerate(runs):
            label = f"{pattern}" + (" fuzz" if extra else "")
            t1 = time.perf_counter()
            try:
                stats = run_frames(build, w, n, pattern, seed=a.seed + k, testcases=tests,
                                   extra=extra)
            except AssertionError as e:
                failed += 1
                print(f"  {label}: FAILED\n{str(e)[-3000:]}", flush=True)
                continue
            for s in stats:
                s["label"] = label
                s["run_seconds"] = time.perf_counter() - t1
                print(_line(s), flush=True)
            out += stats
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
