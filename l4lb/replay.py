"""``l4lb replay CONFIG capture.pcap -o out.pcap``: a capture through the frame model.

Every frame goes through :class:`model.frame.FrameDataPlane` in capture order, with a
live :class:`model.controlplane.ControlPlane` behind it that learns the misses and
inserts them, the way :mod:`model.trace` does: the learn stream reaches the control
plane at once, and every ``chunk`` frames the control plane inserts the connections
learned more than ``insert_delay`` frames ago (its insertion latency) and deletes
connections idle for more than ``idle_timeout`` seconds of capture time (FIN and RST
of a connection in the table delete it through the data plane's close report).
Output frames keep their input timestamps; dropped frames are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model.config import Config, load_config
from model.controlplane import ControlPlane
from model.frame import FrameDataPlane
from model.hashing import FiveTuple
from model.layout import Action
from model.parse import Reason

from .pcap import PcapError, PcapWriter, read_pcap

__all__ = ["ReplayParams", "ReplayReport", "ReplayTrace", "replay_pcap", "add_arguments",
           "cli_replay"]


@dataclass(frozen=True)
class ReplayParams:
    """Control-plane timing and progress reporting of a replay."""

    insert_delay: int = 16          # frames between a learn and its insertion
    chunk: int = 8                  # frames per control-plane round
    idle_timeout: float = 60.0      # capture seconds; 0 disables idle deletes
    progress_every: int = 100_000   # frames between progress lines; 0: none by count
    progress_seconds: float = 5.0   # wall seconds between progress lines; 0: none by time


@dataclass
class ReplayReport:
    """Counters of one replay (JSON via :func:`dataclasses.asdict`)."""

    config: str
    capture: str
    output: str
    frames_in: int = 0
    frames_out: int = 0
    rewritten: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    control_plane: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames_in / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), frames_per_second=self.frames_per_second)

    def format(self) -> str:
        o = self.outcomes
        lines = [
            f"l4lb replay: {self.capture} -> {self.output} (config {self.config!r})",
            f"  frames: {self.frames_in:,} in, {self.frames_out:,} out, "
            f"{self.rewritten:,} rewritten, {self.frames_in - self.frames_out:,} dropped; "
            f"{self.seconds:.2f} s, {self.frames_per_second:,.0f} frames/s",
            "  per reason (parser):",
            *(f"    {k:18s} {v:10,}" for k, v in self.reasons.items()),
            "  per decision (data plane, or the [frames] policy for the others):",
            *(f"    {k:18s} {v:10,}" for k, v in self.decisions.items()
              if k not in ("learn", "close")),
            f"    {'learn reports':18s} {self.decisions['learn']:10,}",
            f"    {'close reports':18s} {self.decisions['close']:10,}",
            "  per outcome:",
            f"    {'lb (rewritten)':28s} {o['lb']:10,}",
            f"    {'forward (not a VIP)':28s} {o['forward']:10,}",
            f"    {'drop (no valid pool slot)':28s} {o['drop']:10,}",
            f"    {'other reason, forwarded':28s} {o['malformed_forward']:10,}",
            f"    {'other reason, dropped':28s} {o['malformed_drop']:10,}",
            "  control plane: " + ", ".join(f"{k} {v:,}" for k, v in
                                            self.control_plane.items()),
        ]
        return "\n".join(lines)


@dataclass
class ReplayTrace:
    """What another target needs to replay a capture exactly as the model did: the
    memory images after the control plane's installation, every frame with the model's
    output (None: dropped), and the control-plane writes made after each frame
    (``writes[i]``: ``(memory, address, word)`` in order, applied between frame ``i`` and
    frame ``i + 1``). The data plane's own TransitTable sets are not writes: every
    target makes them itself."""

    initial: dict[str, list[int]] = field(default_factory=dict)
    frames: list[bytes] = field(default_factory=list)
    outputs: list[bytes | None] = field(default_factory=list)
    writes: dict[int, list[tuple[str, int, int]]] = field(default_factory=dict)
    stamps: list[tuple[int, int, int]] = field(default_factory=list)  # sec, nsec, orig_len


def replay_pcap(cfg: Config, capture: str | Path, output: str | Path,
                params: ReplayParams = ReplayParams(),
                progress: Callable[[str], None] | None = None,
                trace: ReplayTrace | None = None) -> ReplayReport:
    """Run every frame of ``capture`` through the model; write the output frames. With
    ``trace``, fill it in (for ``--rtl``)."""
    cp = ControlPlane(cfg)
    cp.install()
    fdp = FrameDataPlane(cfg, cp.mem)
    if trace is not None:
        trace.initial = cp.mem.snapshot()
        cp.mem.log = []
    rep = ReplayReport(cfg.name, str(capture), str(output))
    decisions = dict.fromkeys((a.name.lower() for a in Action), 0)
    decisions |= {"learn": 0, "close": 0}
    last_seen: OrderedDict[FiveTuple, float] = OrderedDict()
    idle_deleted = 0
    # a [lifecycle] config runs its own clock (aging scans, FIN grace, key rotations)
    # on the capture's time; its idle aging replaces --idle-timeout
    lifecycle = cfg.lifecycle.enabled
    t_first: float | None = None
    t0 = last_print = time.perf_counter()
    i = -1
    with PcapWriter(output) as w:
        for i, rec in enumerate(read_pcap(capture)):
            if t_first is None:
                t_first = rec.time
            r = fdp.decide(rec.data)
            d = r.decision
            decisions[Action(d.action).name.lower()] += 1
            if r.out is not None:
                w.write(r.out, rec.sec, rec.nsec, rec.orig_len)
            if d.action == Action.LB:
                key = r.packet.key
                decisions["learn"] += d.learn
                decisions["close"] += d.close
                if d.learn or d.close:
                    cp.observe(key, d, seq=i)
                last_seen[key] = rec.time
                last_seen.move_to_end(key)
            if i % params.chunk == params.chunk - 1:
                if lifecycle:
                    cp.tick(rec.time - t_first)
                elif params.idle_timeout > 0:
                    while last_seen:
                        key, seen = next(iter(last_seen.items()))
                        if seen >= rec.time - params.idle_timeout:
                            break
                        del last_seen[key]
                        idle_deleted += int(cp.delete(key))
                cp.seq = i
                cp.insert_pending(older_than=i - params.insert_delay)
            if trace is not None:
                trace.frames.append(rec.data)
                trace.outputs.append(r.out)
                trace.stamps.append((rec.sec, rec.nsec, rec.orig_len))
                if cp.mem.log:
                    trace.writes[i] = list(cp.mem.log)
                    cp.mem.log.clear()
            if progress is not None:
                now = time.perf_counter()
                if ((params.progress_every and (i + 1) % params.progress_every == 0)
                        or (params.progress_seconds and now - last_print
                            >= params.progress_seconds)):
                    last_print = now
                    progress(f"l4lb replay: {i + 1:,} frames, {(i + 1) / (now - t0):,.0f} "
                             f"frames/s, {fdp.actions['lb']:,} rewritten")
        rep.frames_out = w.count
    rep.seconds = time.perf_counter() - t0
    cp.mem.log = None
    cp.insert_pending()   # the CPU catches up (changes no output frame)
    rep.frames_in = i + 1
    rep.rewritten = fdp.actions["lb"]
    rep.reasons = {r.key: fdp.reasons[r] for r in Reason}
    rep.decisions = decisions
    rep.outcomes = dict(fdp.actions)
    rep.control_plane = {"learned": cp.stats["learned"], "inserted": cp.stats["inserted"],
                         "stashed": cp.stats["stashed"], "deleted": cp.stats["deleted"],
                         "idle_deleted": idle_deleted + cp.stats["aged"],
                         "connections_at_end": len(cp.conn_version)}
    return rep


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``l4lb replay`` (registered in ``l4lb/cli.py``)."""
    d = ReplayParams()
    p.add_argument("config", help="TOML config file")
    p.add_argument("capture", help="input pcap (Ethernet link type)")
    p.add_argument("-o", "--output", required=True, help="output pcap")
    p.add_argument("--insert-delay", type=int, default=d.insert_delay,
                   help=f"frames between a learn and its insertion (default {d.insert_delay})")
    p.add_argument("--chunk", type=int, default=d.chunk,
                   help=f"frames per control-plane round (default {d.chunk})")
    p.add_argument("--idle-timeout", type=float, default=d.idle_timeout,
                   help="delete connections idle this many capture seconds "
                        f"(default {d.idle_timeout:g}; 0: never)")
    p.add_argument("--progress", type=int, default=d.progress_every,
                   help=f"a progress line on stderr every N frames (default "
                        f"{d.progress_every:,}) and every {d.progress_seconds:g} s; 0: none")
    p.add_argument("--json", default=None, help="also write the counters as JSON here")
    p.add_argument("--rtl", action="store_true",
                   help="also run the capture through the Verilated frame datapath "
                        "(l4lb_datapath) and compare every output frame with the model's")
    p.add_argument("--rtl-width", type=int, default=8, choices=(8, 16, 32, 64),
                   help="beat width in bytes of the datapath built for --rtl (default 8)")
    p.add_argument("--rtl-output", default=None,
                   help="with --rtl, write the RTL's output frames to this pcap")


def cli_replay(a: argparse.Namespace) -> int:
    """``l4lb replay CONFIG capture.pcap -o out.pcap``."""
    cfg = load_config(a.config)
    if a.chunk < 1 or a.insert_delay < 0:
        print(f"l4lb replay: error: --chunk must be >= 1 and --insert-delay >= 0, got "
              f"{a.chunk} and {a.insert_delay}", file=sys.stderr)
        return 2
    params = ReplayParams(insert_delay=a.insert_delay, chunk=a.chunk,
                          idle_timeout=a.idle_timeout, progress_every=max(a.progress, 0),
                          progress_seconds=ReplayParams.progress_seconds if a.progress
                          else 0.0)
    trace = ReplayTrace() if a.rtl else None
    try:
        rep = replay_pcap(cfg, a.capture, a.output, params,
                          progress=lambda s: print(s, file=sys.stderr, flush=True),
                          trace=trace)
    except (OSError, PcapError) as e:
        print(f"l4lb replay: error: {e}", file=sys.stderr)
        return 1
    print(rep.format())
    out = rep.to_dict()
    status = 0
    if trace is not None:
        from .replay_rtl import replay_rtl

        print(f"l4lb replay: running {len(trace.frames):,} frames through the RTL "
              f"(W = {a.rtl_width}; the first run builds it with Verilator)",
              file=sys.stderr, flush=True)
        rtl = replay_rtl(a.config, trace, a.rtl_width)
        print(rtl.format())
        out["rtl"] = {k: v for k, v in rtl.__dict__.items()
                      if k not in ("rtl_frames", "indices")}
        if a.rtl_output:
            with PcapWriter(a.rtl_output) as w:
                for k, f in enumerate(rtl.rtl_frames):
                    sec, nsec, orig = (trace.stamps[rtl.indices[k]] if k < len(rtl.indices)
                                       else (0, 0, len(f)))
                    w.write(f, sec, nsec, max(orig, len(f)))
        status = 1 if rtl.mismatches else 0
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
    return status
