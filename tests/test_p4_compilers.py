"""The generated P4 through real compilers: p4test and p4c (BMv2 back end) on the v1model
program of every shipped config and of random valid geometries, p4test on the TNA
program, and the Tofino back end (bf-p4c) on the TNA program of the shipped configs.

The compilers are not on PyPI (p4lang/p4c); each test skips, naming the missing tool,
when it is not on PATH. A compiler warning fails the test unless docs/p4.md explains it
(:data:`EXPLAINED_WARNINGS`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.p4 import render_tna, render_v1model, tna_unsupported
from codegen.p4_lifecycle import tna_lifecycle_unsupported
from codegen.p4_tna_auth import tna_auth_unsupported
from model.config import Config, is_prime, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent
#: Every shipped config; the TNA program implements aging, and SYN authentication
#: (examples/lifecycle.toml) on Tofino 2 only (tests/test_tna_auth.py checks).
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.toml"))


def _tna_refusal(example: str, chip: int) -> str | None:
    """Why the TNA generator refuses a shipped config on a chip, or None."""
    cfg = load_config(ROOT / "examples" / f"{example}.toml")
    return tna_unsupported(cfg) or tna_auth_unsupported(cfg, "tofino" if chip == 1
                                                        else "tofino2")


#: (config, chip) pairs the TNA generator takes; the refused pairs are tested for their
#: error in tests/test_tna_auth.py (SYN authentication on Tofino 1).
TNA_EXAMPLES = [(e, chip) for e in EXAMPLES for chip in (1, 2) if _tna_refusal(e, chip) is None]


def _example(name: str) -> Config:
    """A shipped config; ``NAME+aging`` adds idle aging (lifecycle.idle_timeout = 30)."""
    base, _, extra = name.partition("+")
    if not extra:
        return load_config(ROOT / "examples" / f"{base}.toml")
    import tomllib

    raw = tomllib.loads((ROOT / "examples" / f"{base}.toml").read_text())
    raw["lifecycle"] = {"idle_timeout": 30, "close_grace": 2}
    return parse_config(raw, source=f"{name}.toml")

#: Compiler warnings docs/p4.md ("Compiler warnings") explains: Tofino 1's egress
#: parser must parse at least 65 bytes, so bf-p4c pads the (bypassed) egress parser
#: with a loop state of its own and says so.
EXPLAINED_WARNINGS: tuple[str, ...] = (
    "Parser state min_parse_depth_accept_loop will be unrolled up to 4 times",
)


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not on PATH (p4c/BMv2/bf-p4c are not on PyPI)")


def tna_include_dir() -> Path | None:
    """The p4include directory holding tna.p4 (installed with p4c's Tofino back end)."""
    for tool in ("p4test", "p4c", "bf-p4c"):
        exe = shutil.which(tool)
        if exe:
            d = Path(exe).resolve().parent.parent / "share" / "p4c" / "p4include"
            if (d / "tna.p4").exists():
                return d
    return None


def compile_ok(cmd: list[str], cwd: Path, timeout: float = 900) -> str:
    """Run a compiler; fail with its output on an error or an unexplained warning."""
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{' '.join(cmd)} failed (exit {r.returncode}):\n{out}"
    warnings = [ln for ln in out.splitlines() if "warning" in ln.lower()
                and not any(w in ln for w in EXPLAINED_WARNINGS)]
    assert not warnings, f"{' '.join(cmd)}: unexplained warnings:\n{out}"
    return out


def _write(tmp: Path, name: str, text: str) -> Path:
    path = tmp / name
    path.write_text(text)
    return path


def _p4test_v1model(cfg: Config, tmp: Path) -> None:
    compile_ok(["p4test", str(_write(tmp, "l4lb_v1model.p4", render_v1model(cfg)))], tmp)


def _p4c_bmv2(cfg: Config, tmp: Path) -> None:
    src = _write(tmp, "l4lb_v1model.p4", render_v1model(cfg))
    compile_ok(["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(tmp / "out"),
                str(src)], tmp)
    assert (tmp / "out" / "l4lb_v1model.json").stat().st_size > 0


def _p4test_tna(cfg: Config, tmp: Path, chip: int = 1) -> None:
    """p4test on the TNA program for Tofino ``chip`` (1: tna.p4, 2: t2na.p4)."""
    inc = tna_include_dir()
    if inc is None:
        pytest.skip("tna.p4 not found beside p4test (p4c built without the Tofino back end)")
    src = _write(tmp, "l4lb_tna.p4", render_tna(cfg))
    compile_ok(["p4test", "-I", str(inc), f"-D__TARGET_TOFINO__={chip}", str(src)], tmp)


# ---- shipped configs ------------------------------------------------------------------

@pytest.mark.parametrize("example", EXAMPLES)
def test_p4test_accepts_v1model(example, tmp_path):
    _need("p4test")
    _p4test_v1model(load_config(ROOT / "examples" / f"{example}.toml"), tmp_path)


@pytest.mark.parametrize("example", EXAMPLES)
def test_p4c_compiles_v1model_for_bmv2(example, tmp_path):
    _need("p4c")
    _p4c_bmv2(load_config(ROOT / "examples" / f"{example}.toml"), tmp_path)


@pytest.mark.parametrize(("example", "chip"), TNA_EXAMPLES)
def test_p4test_accepts_tna(example, chip, tmp_path):
    _need("p4test")
    _p4test_tna(load_config(ROOT / "examples" / f"{example}.toml"), tmp_path, chip)


def test_only_syn_authentication_on_tofino1_is_refused():
    """Every shipped config compiles for TNA but lifecycle.toml's SYN authentication on
    Tofino 1 (it does not fit 12 stages; docs/lifecycle.md, "P4 TNA")."""
    assert sorted((e, c) for e in EXAMPLES for c in (1, 2) if (e, c) not in TNA_EXAMPLES) \
        == [("lifecycle", 1)]


def test_committed_programs_compile(tmp_path):
    _need("p4test")
    compile_ok(["p4test", str(ROOT / "p4" / "l4lb_v1model.p4")], tmp_path)
    inc = tna_include_dir()
    if inc is None:
        pytest.skip("tna.p4 not found beside p4test (p4c built without the Tofino back end)")
    compile_ok(["p4test", "-I", str(inc), "-D__TARGET_TOFINO__=1",
                str(ROOT / "p4" / "l4lb_tna.p4")], tmp_path)


# ---- random valid geometries ------------------------------------------------------------

_PRIMES = [m for m in range(13, 2048) if is_prime(m)]


@st.composite
def geometries(draw) -> Config:
    """A valid config over the geometry space: stages 1-8, digest 8-32 or the full key,
    prime or power-of-two Maglev sizes, version bits, pool slots, VIP/DIP capacities;
    the connection lifecycle: none, aging, SYN authentication (table sizes); and a
    [network] table or none (ports up to 511, route capacity 1-4096)."""
    stages = draw(st.integers(1, 8))
    digest = draw(st.one_of(st.integers(8, 32), st.just("full")))
    maglev = draw(st.one_of(st.sampled_from(_PRIMES),
                            st.sampled_from([1 << k for k in range(4, 13)])))
    vip_capacity = draw(st.integers(1, 16))
    vips = draw(st.integers(1, min(vip_capacity, 4)))
    pool_slots = draw(st.integers(vips, max(vips, 8)))
    dips_per_vip = draw(st.integers(1, 4))
    dip_capacity = draw(st.integers(vips * dips_per_vip, 256))
    geometry = {
        "stages": stages, "log2_slots": draw(st.integers(1, 14)), "digest_bits": digest,
        "version_bits": draw(st.integers(1, 8)), "maglev_size": maglev,
        "pool_slots": pool_slots, "vip_capacity": vip_capacity,
        "dip_capacity": dip_capacity, "transit_log2_bits": draw(st.integers(1, 14)),
        "transit_hashes": draw(st.integers(1, 4)),
    }
    aging, auth = draw(st.booleans()), draw(st.booleans())
    raw = {"name": "random", "geometry": geometry, "vip": [
        {"name": f"v{i}", "address": f"10.0.{i}.1", "port": 80 + i,
         "protocol": "tcp" if i % 2 == 0 else "udp", "auth": auth and i % 2 == 0,
         "dips": [{"address": f"192.168.{i}.{k + 1}", "port": 8000 + k}
                  for k in range(dips_per_vip)]}
        for i in range(vips)]}
    if aging or auth:
        raw["lifecycle"] = {"idle_timeout": 30 if aging else 0,
                            "auth_log2_sources": draw(st.integers(1, 16))}
    if draw(st.booleans()):
        ports = sorted(draw(st.sets(st.integers(0, 511), min_size=1, max_size=4)))
        routes = draw(st.integers(0, 4))
        raw["network"] = {
            "route_capacity": draw(st.integers(max(1, routes), 4096)),
            "port": [{"id": p, "mac": f"02:00:00:00:{p >> 8:02x}:{p & 0xFF:02x}"}
                     for p in ports],
            "route": [{"prefix": f"10.{k}.0.0/16", "port": ports[k % len(ports)],
                       "mac": f"02:00:00:01:00:{k:02x}"} for k in range(routes)]}
    return parse_config(raw, source="random.toml")


_RANDOM = settings(max_examples=12, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.function_scoped_fixture,
                                          HealthCheck.too_slow])


@_RANDOM
@given(cfg=geometries())
def test_random_geometries_compile_with_p4test_and_p4c(cfg, tmp_path_factory):
    _need("p4test", "p4c")
    tmp = tmp_path_factory.mktemp("geometry")
    _p4test_v1model(cfg, tmp)
    _p4c_bmv2(cfg, tmp)
    if tna_unsupported(cfg) is None and tna_lifecycle_unsupported(cfg) is None \
            and tna_include_dir() is not None:
        _p4test_tna(cfg, tmp, 2 if cfg.lifecycle.auth else 1)   # auth: Tofino 2 only


def test_geometry_strategy_covers_the_space():
    """The strategy reaches the corners the issue names (checked without compilers)."""
    seen: dict[str, set] = {"stages": set(), "full": set(), "prime": set(), "aging": set(),
                            "auth": set(), "network": set()}

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(cfg=geometries())
    def collect(cfg):
        g = cfg.geometry
        seen["stages"].add(g.stages)
        seen["full"].add(g.full_key)
        seen["prime"].add(not g.maglev_pow2)
        seen["aging"].add(cfg.lifecycle.aging)
        seen["auth"].add(cfg.lifecycle.auth)
        seen["network"].add(cfg.network.enabled)

    collect()
    assert {1, 8} <= seen["stages"] and seen["full"] == {True, False} \
        and seen["prime"] == {True, False}
    assert seen["aging"] == seen["auth"] == seen["network"] == {True, False}


# ---- the Tofino back end ------------------------------------------------------------------

@pytest.mark.parametrize("example,target", [
    ("default", "tofino"), ("default", "tofino2"),    # power-of-two M: slot ++ index
    ("large", "tofino"), ("large", "tofino2"),        # prime M > 2^16, one bank per slot
    ("small", "tofino"), ("load_aware", "tofino"),    # prime M <= 2^16, padded register
    ("network", "tofino"), ("network", "tofino2"),    # [network]: return path, LPM route
    ("default+aging", "tofino"),                      # the lifecycle's activity bits
    ("lifecycle", "tofino2"),                         # SYN authentication: recirculation
])
def test_bf_p4c_places_the_tna_program(example, target, tmp_path):
    """The Tofino back end compiles the program to a binary (table placement, PHV, hash
    units and the assembler all pass) and reports the resources it used."""
    _need("bf-p4c")
    from l4lb.tofino import compile_tna

    cfg = _example(example)
    res = compile_tna(cfg, tmp_path, target)
    assert res.ok, f"bf-p4c --target {target} failed:\n{res.log[-4000:]}"
    warnings = [ln for ln in res.log.splitlines() if "warning" in ln.lower()
                and not re.search(r"\d+ errors?, \d+ warnings? generated", ln)
                and not any(w in ln for w in EXPLAINED_WARNINGS)]
    assert not warnings, "unexplained bf-p4c warnings:\n" + "\n".join(warnings)
    assert res.resources.get("stages", 0) >= 1 and res.resources.get("srams", 0) > 0
