"""The ``l4lb`` command line: demo, vectors, maglev, trace, rtl, generate, synth, bench."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from model.config import ConfigError, load_config

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "examples" / "default.toml"

Handler = Callable[[argparse.Namespace], int]
Setup = Callable[[argparse.ArgumentParser], Handler]
#: subcommand name -> (function that adds its arguments and returns its handler, help)
_COMMANDS: dict[str, tuple[Setup, str]] = {}


def command(name: str, help: str) -> Callable[[Setup], Setup]:
    """Register a subcommand; the decorated function adds arguments, returns a handler."""
    def wrap(setup: Setup) -> Setup:
        _COMMANDS[name] = (setup, help)
        return setup
    return wrap


def _config_arg(p: argparse.ArgumentParser, optional: bool = False) -> None:
    if optional:
        p.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                       help="TOML config (default: examples/default.toml)")
    else:
        p.add_argument("config", help="TOML config file")


# ---- demo -------------------------------------------------------------------------

@command("demo", "run the shipped default config end to end and print a summary")
def _demo(p: argparse.ArgumentParser) -> Handler:
    _config_arg(p, optional=True)
    p.add_argument("--connections", type=int, default=20_000)

    def run(a: argparse.Namespace) -> int:
        from model.maglev import build_table, imbalance
        from model.trace import TraceParams, replay
        from model.vectors import build_scenario, replay_scenario

        cfg = load_config(a.config)
        g = cfg.geometry
        print(f"l4lb demo: config {cfg.name!r} ({cfg.source})")
        print(f"  ConnTable: {g.stages} stages x {g.slots} words x {g.conn_word_bits} bits"
              f" (digest {g.digest_bits}, version {g.version_bits})")
        print(f"  Maglev: M={g.maglev_size}, {g.pool_slots} pool slots; "
              f"{len(cfg.vips)} VIPs, {len(cfg.all_dips)} DIPs")
        for v in cfg.vips:
            t = build_table(list(v.dips), g.maglev_size, cfg.salts)
            w = [d.weight for d in v.dips]
            print(f"  VIP {v.name:8s} {v.address_str}:{v.port}/{v.protocol_name}: "
                  f"{len(v.dips)} DIPs, Maglev imbalance {imbalance(t, len(v.dips), w):.3f}")
        t0 = time.perf_counter()
        scen = build_scenario(cfg)
        bad = replay_scenario(scen)
        print(f"  vectors: {len(scen.packets)} packets, {len(scen.writes)} table writes, "
              f"replay mismatches {len(bad)} ({time.perf_counter() - t0:.2f} s)")
        if cfg.lifecycle.enabled:
            # clients that answer SYN authentication: the event-driven lifecycle run
            from model.lifecycle_sim import LifecycleParams
            from model.lifecycle_sim import run as lifecycle_run

            r = lifecycle_run(cfg, LifecycleParams(duration=30, conn_rate=20, flood=100))
            print(f"  lifecycle, 100x spoofed SYN flood: {r.summary()}")
            return 0
        for two_phase in (True, False):
            r = replay(cfg, TraceParams(connections=a.connections, updates=20,
                                        two_phase=two_phase))
            label = "two-phase commit" if two_phase else "commit disabled "
            print(f"  trace, {label}: {r.summary()}")
        return 0
    return run


# ---- vectors ----------------------------------------------------------------------

@command("vectors", "write memory images and packet vectors (docs/vectors.md)")
def _vectors(p: argparse.ArgumentParser) -> Handler:
    _config_arg(p)
    p.add_argument("-o", "--output", required=True, help="output directory")
    p.add_argument("--connections", type=int, default=300)
    p.add_argument("--updates", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)

    def run(a: argparse.Namespace) -> int:
        from model.vectors import build_scenario, write_vectors

        cfg = load_config(a.config)
        scen = build_scenario(cfg, connections=a.connections, updates=a.updates, seed=a.seed)
        man = write_vectors(scen, a.output)
        print(f"wrote {man.parent}: {len(scen.packets)} packets, {len(scen.writes)} writes, "
              f"{len(scen.initial)} memory images")
        return 0
    return run


# ---- maglev -----------------------------------------------------------------------

@command("maglev", "print the Maglev table share per DIP and the imbalance of each VIP")
def _maglev(p: argparse.ArgumentParser) -> Handler:
    _config_arg(p)
    p.add_argument("--top", type=int, default=20, help="DIPs listed per VIP")

    def run(a: argparse.Namespace) -> int:
        from model.maglev import build_table, imbalance, shares

        cfg = load_config(a.config)
        M = cfg.geometry.maglev_size
        for v in cfg.vips:
            t0 = time.perf_counter()
            table = build_table(list(v.dips), M, cfg.salts)
            dt = time.perf_counter() - t0
            w = [d.weight for d in v.dips]
            sh = shares(table, len(v.dips))
            print(f"VIP {v.name} {v.address_str}:{v.port}/{v.protocol_name}: "
                  f"M={M}, {len(v.dips)} DIPs, imbalance {imbalance(table, len(v.dips), w):.4f}"
                  f" (max share / ideal share), built in {dt * 1e3:.1f} ms")
            total_w = sum(w)
            for i, d in enumerate(v.dips[:a.top]):
                ideal = d.weight / total_w
                print(f"  {str(d):22s} weight {d.weight:3d}  share {sh[i]:8.4%}  "
                      f"ideal {ideal:8.4%}  ratio {sh[i] / ideal:.4f}")
            if len(v.dips) > a.top:
                print(f"  ... {len(v.dips) - a.top} more")
        return 0
    return run


# ---- trace ------------------------------------------------------------------------

@command("trace", "replay a churn trace and report PCC violations and occupancy")
def _trace(p: argparse.ArgumentParser) -> Handler:
    _config_arg(p, optional=True)
    p.add_argument("--connections", type=int, default=100_000)
    p.add_argument("--updates", type=int, default=50)
    p.add_argument("--no-commit", action="store_true", help="disable the two-phase commit")
    p.add_argument("--seed", type=int, default=1)
    g = p.add_argument_group(
        "lifecycle", "run the event-driven lifecycle simulation instead (docs/lifecycle.md):"
        " chosen by --syn-flood or by a config with a [lifecycle] table")
    g.add_argument("--syn-flood", type=float, default=None, metavar="X",
                   help="spoofed SYNs per legitimate connection (e.g. 100)")
    g.add_argument("--duration", type=float, default=60.0, help="seconds of arrivals")
    g.add_argument("--rate", type=float, default=20.0,
                   help="legitimate connections per second")
    g.add_argument("--sources", type=int, default=200, help="legitimate client addresses")
    g.add_argument("--vanish", type=float, default=0.2,
                   help="fraction of TCP clients that disappear without FIN")
    g.add_argument("--idle-timeout", type=float, default=None, metavar="S",
                   help="override lifecycle.idle_timeout (0: no aging)")

    def run(a: argparse.Namespace) -> int:
        cfg = load_config(a.config)
        if a.syn_flood is None and not cfg.lifecycle.enabled:
            from model.trace import TraceParams, replay

            r = replay(cfg, TraceParams(connections=a.connections, updates=a.updates,
                                        two_phase=not a.no_commit, seed=a.seed))
            print(r.summary())
            return 0
        import dataclasses

        from model.lifecycle_sim import LifecycleParams
        from model.lifecycle_sim import run as simulate

        if a.idle_timeout is not None:
            lc = cfg.lifecycle
            lc = dataclasses.replace(lc, idle_timeout=a.idle_timeout,
                                     close_grace=min(lc.close_grace, a.idle_timeout)
                                     if a.idle_timeout > 0 else lc.close_grace)
            cfg = dataclasses.replace(cfg, lifecycle=lc)
        if a.syn_flood is not None and not any(v.auth for v in cfg.vips):
            print(f"note: no VIP of {cfg.source} has auth = true: the flood is not "
                  f"authenticated", file=sys.stderr)
        params = LifecycleParams(duration=a.duration, conn_rate=a.rate,
                                 flood=a.syn_flood or 0.0, sources=a.sources,
                                 vanish=a.vanish, updates=a.updates, seed=a.seed)
        last = [-1]

        def progress(f: float) -> None:
            if int(f * 10) != last[0]:
                last[0] = int(f * 10)
                print(f"  ... {f:.0%} of events", file=sys.stderr, flush=True)
        r = simulate(cfg, params, progress=progress)
        print(r.summary())
        print("decisions: " + ", ".join(f"{k} {v}" for k, v in r.actions.items() if v))
        st = r.stats
        print(f"control plane: {st['inserted']} insertions, {st['deleted']} deletions "
              f"({st['aged']} aged, {st['closed']} after FIN/RST grace), "
              f"{st['table_full']} table-full fallbacks, {st['auth_rotations']} key "
              f"rotations; {r.packets_per_second:,.0f} packets/s (model)")
        return 0
    return run


# ---- sim --------------------------------------------------------------------------

@command("sim", "simulate DIP-selection policies against offered load (docs/sim.md)")
def _sim(p: argparse.ArgumentParser) -> Handler:
    p.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG.parent / "load_aware.toml"),
                   help="TOML config; servers are the DIPs of its first VIP "
                        "(default: examples/load_aware.toml)")
    p.add_argument("--connections", type=int, default=100_000)
    p.add_argument("--rho", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    p.add_argument("--policies", nargs="+", default=None, help="default: all")
    p.add_argument("--arrivals", choices=["poisson", "bursty"], default="poisson")
    p.add_argument("--sizes", choices=["exp", "pareto"], default="exp")
    p.add_argument("--slow", action="store_true", help="the last DIP runs at half speed")
    p.add_argument("--outage", action="store_true",
                   help="the second-to-last DIP stalls for 0.5%% of the run")
    p.add_argument("--no-commit", action="store_true", help="l4lb without the two-phase commit")
    p.add_argument("--textbook", action="store_true",
                   help="also print the balls-into-bins and M/M/1 checks")
    p.add_argument("--seed", type=int, default=1)

    def run(a: argparse.Namespace) -> int:
        from model.sim import POLICIES, Scenario, make_workload, simulate

        cfg = load_config(a.config)
        n = len(cfg.vips[0].dips)
        if a.textbook:
            import numpy as np

            from model.textbook import (
                balls_into_bins,
                fluid_max_load,
                mm1_split_mean,
                random_max_formula,
                two_choice_max_formula,
            )
            rng = np.random.default_rng(a.seed)
            for nb in (10**4, 10**5):
                m1, m2 = (int(balls_into_bins(nb, d, rng).max()) for d in (1, 2))
                print(f"balls into bins n={nb:,}: random max {m1} (fluid {fluid_max_load(nb, 1)}"
                      f", ln n/ln ln n {random_max_formula(nb):.2f}); two choices max {m2} "
                      f"(fluid {fluid_max_load(nb, 2)}, ln ln n/ln 2 "
                      f"{two_choice_max_formula(nb):.2f} + O(1))")
            s = Scenario(connections=a.connections, rho=0.8, seed=a.seed)
            w = make_workload(cfg, s)
            r, j = (simulate(cfg, s, pol, workload=w) for pol in ("random", "jsq"))
            print(f"M/M/1 x {n} at rho 0.8: random split {r.mean:.3f} vs 1/(mu - lam/n) "
                  f"{mm1_split_mean(0.8 * n, n):.3f}; JSQ {j.mean:.3f}")
        speeds = (1.0,) * (n - 1) + (0.5,) if a.slow else None
        outage = (max(0, n - 2), 0.40, 0.405) if a.outage else None
        pols = a.policies or list(POLICIES)
        print(f"{'rho':>5} {'policy':12s} {'mean':>9} {'p99':>9} {'p99.9':>9} "
              f"{'active':>7} {'busiest':>7} {'peak':>5} {'PCC':>4}")
        for rho in a.rho:
            s = Scenario(connections=a.connections, rho=rho, arrivals=a.arrivals,
                         sizes=a.sizes, speeds=speeds, outage=outage, seed=a.seed)
            w = make_workload(cfg, s)
            for pol in pols:
                r = simulate(cfg, s, pol, workload=w, two_phase=not a.no_commit)
                pcc = str(r.pcc_violations) if pol == "l4lb" else "-"
                print(f"{rho:5.2f} {pol:12s} {r.mean:9.3f} {r.p99:9.2f} {r.p999:9.2f} "
                      f"{r.active_mean:7.2f} {r.active_max:7.2f} {r.active_peak:5d} {pcc:>4}")
        return 0
    return run


def _optional(name: str, module: str, attr: str, help: str, extra=None) -> None:
    """Subcommands implemented by other layers (hdl, codegen, scripts)."""

    @command(name, help)
    def _setup(p: argparse.ArgumentParser) -> Handler:
        if extra:
            extra(p)

        def run(a: argparse.Namespace) -> int:
            import importlib
            fn = getattr(importlib.import_module(module), attr)
            return int(fn(a) or 0)
        return run


def _out_args(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("-o", "--output", required=True, help="output directory")


def _rtl_args(p: argparse.ArgumentParser) -> None:
    _out_args(p)
    p.add_argument("--frames", type=int, choices=(8, 16, 32, 64), default=None, metavar="W",
                   help="also write l4lb_datapath.v: the AXI4-Stream frame datapath with "
                        "W-byte beats (8, 16, 32 or 64)")
    p.add_argument("--max-frame", type=int, default=1536,
                   help="with --frames: longest frame in bytes (default 1536)")


_optional("rtl", "hdl.export", "cli_rtl", "write the Verilog of the RTL core", _rtl_args)
_optional("generate", "codegen.generate", "cli_generate",
          "write rtl/, p4/ (v1model, tna, entries) and hls/ in one go", _out_args)


def _synth_args(p: argparse.ArgumentParser) -> None:
    from l4lb.synth import add_arguments
    add_arguments(p)


def _bench_args(p: argparse.ArgumentParser) -> None:
    from l4lb.bench import add_arguments
    add_arguments(p)


_optional("synth", "l4lb.synth", "cli_synth",
          "synthesise, place and route the RTL core and report resources and Fmax", _synth_args)
_optional("bench", "l4lb.bench", "cli_bench",
          "run the model/Maglev/ConnTable benchmarks and write docs/bench.json", _bench_args)


def _replay_args(p: argparse.ArgumentParser) -> None:
    from l4lb.replay import add_arguments
    add_arguments(p)


_optional("replay", "l4lb.replay", "cli_replay",
          "run a pcap capture through the frame model and write the output frames "
          "(docs/frames.md)", _replay_args)


def _p4_report_args(p: argparse.ArgumentParser) -> None:
    from l4lb.tofino import add_arguments
    add_arguments(p)


_optional("p4-report", "l4lb.tofino", "cli_p4_report",
          "compile the TNA program with bf-p4c and print the Tofino resources it uses "
          "(docs/p4.md)", _p4_report_args)


def _live_args(name: str):
    def setup(p: argparse.ArgumentParser) -> None:
        from l4lb.live import run
        getattr(run, f"add_{name}_arguments")(p)
    return setup


_optional("run", "l4lb.live.run", "cli_run",
          "run the load balancer: a data plane on network interfaces with the live "
          "control plane and its management API (docs/live.md)", _live_args("run"))
_optional("pool", "l4lb.live.run", "cli_pool",
          "add, drain or remove a DIP of a running instance (two-phase pool update)",
          _live_args("pool"))
_optional("status", "l4lb.live.run", "cli_status",
          "show a running instance's occupancy, versions and counters", _live_args("status"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="l4lb", description="Stateful L4 load balancer: model, RTL, P4 and HLS C++ "
                                 "generated from one description.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (setup, help) in _COMMANDS.items():
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(_handler=setup(p))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)
    try:
        return a._handler(a)
    except ConfigError as e:
        print(f"l4lb: config error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
