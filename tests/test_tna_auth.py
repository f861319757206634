"""SYN authentication on the TNA program (Tofino 2, recirculation; docs/lifecycle.md,
"P4 TNA"): the cookie steps the template emits compute model.cookie, the configs the
generator refuses get an error naming the field, the entries hold the key tables.

No Tofino model runs here: packets never go through the TNA program. bf-p4c compiles it
in tests/test_p4_compilers.py (skipped without the compiler)."""

from __future__ import annotations

import random
import re
import tomllib
from pathlib import Path

import pytest

from codegen.p4 import render_entries_bfrt, render_tna
from codegen.p4_tna_auth import (
    cookie_schedule,
    cookie_steps,
    eval_steps,
    recirculations,
    tna_auth_unsupported,
)
from model.config import load_config, parse_config
from model.cookie import MASK32, cookie
from model.lifecycle import LifecycleUnsupported

ROOT = Path(__file__).resolve().parent.parent
LIFECYCLE = ROOT / "examples" / "lifecycle.toml"


@pytest.fixture(scope="module")
def auth_cfg():
    return load_config(LIFECYCLE)


@pytest.fixture(scope="module")
def program(auth_cfg) -> str:
    return render_tna(auth_cfg)


def test_the_step_sequence_is_model_cookie():
    """codegen.p4_tna_auth.cookie_steps, run in Python step by step, is
    model.cookie.cookie on random keys, key indices and connections."""
    rng = random.Random(11)
    steps = cookie_steps()
    for _ in range(500):
        key, k = rng.getrandbits(64), rng.getrandbits(1)
        src, dst = rng.getrandbits(32), rng.getrandbits(32)
        sport, dport = rng.getrandbits(16), rng.getrandbits(16)
        env = eval_steps(steps, {"k0": key & MASK32, "k1": key >> 32, "k": k, "m0": src,
                                 "m1": dst, "m2": sport << 16 | dport})
        assert env["h"] == cookie(key, k, src, dst, sport, dport)


# ---- the program text: evaluate the emitted egress actions ------------------------------

_ASSIGN = re.compile(r"^(\S+) = (\S+)(?: ([+^&|]) (\S+))?;$")
_FUNNEL = re.compile(r"^funnel_shift_right\((\S+), (\S+), (\S+), (\d+)\);$")


def _value(env: dict[str, int], tok: str) -> int:
    m = re.fullmatch(r"32w0x([0-9a-f]+)", tok)
    return int(m[1], 16) if m else env[tok]


def _run_action(env: dict[str, int], body: list[str]) -> None:
    """One action of the emitted program: its statements in order; a statement may not
    read a field an earlier statement of the action wrote (one MAU stage per action)."""
    written: set[str] = set()
    for st in body:
        f = _FUNNEL.match(st)
        if f:
            dst, a, b, n = f[1], f[2], f[3], int(f[4])
            assert a == b and not {a} & written, st
            x = env[a]
            env[dst] = ((x << (32 - n)) | (x >> n)) & MASK32   # (a ++ a) >> n, low half
            written.add(dst)
            continue
        m = _ASSIGN.match(st)
        assert m, f"unexpected statement {st!r}"
        dst, a, op, b = m[1], m[2], m[3], m[4]
        if dst in ("hdr.auth.chunk", "hdr.auth.phase"):
            continue
        srcs = {a} | ({b} if b else set())
        assert not srcs & written and dst not in written, st
        x = _value(env, a)
        if op:
            y = _value(env, b)
            x = {"+": (x + y) & MASK32, "^": x ^ y, "&": x & y, "|": x | y}[op]
        env[dst] = x
        written.add(dst)


def _egress_actions(text: str) -> dict[str, list[str]]:
    egress = text[text.index("control SwitchEgress("):]
    return {m[1]: [ln.strip() for ln in m[2].strip().splitlines()]
            for m in re.finditer(r"action (auth_c\d+_\d+)\(\) \{[^\n]*\n(.*?)\n    \}",
                                 egress, re.S)}


def _egress_calls(text: str) -> dict[int, list[str]]:
    egress = text[text.index("control SwitchEgress("):]
    apply = egress[egress.index("    apply {"):]
    calls: dict[int, list[str]] = {}
    for m in re.finditer(r"if \(hdr\.auth\.chunk == (\d+)\) \{\n(.*?)\n\s*\}", apply, re.S):
        calls[int(m[1])] = re.findall(r"(auth_c\d+_\d+)\(\);", m[2])
    return calls


def test_the_emitted_cookie_chunks_compute_model_cookie(program):
    """The egress actions of the generated program, applied chunk by chunk in the order
    hdr.auth.chunk selects them (one loop round each), leave model.cookie.cookie in
    hdr.auth.h: the template emits the step sequence whole, in order, once."""
    actions, calls = _egress_actions(program), _egress_calls(program)
    sched = cookie_schedule()
    assert sorted(calls) == [p.index for p in sched]
    assert sum(len(c) for c in calls.values()) == len(cookie_steps()) == len(actions)
    rng = random.Random(7)
    for _ in range(300):
        key, k = rng.getrandbits(64), rng.getrandbits(1)
        src, dst = rng.getrandbits(32), rng.getrandbits(32)
        sport, dport = rng.getrandbits(16), rng.getrandbits(16)
        env = {"hdr.auth.k0": key & MASK32, "hdr.auth.k1": key >> 32, "hdr.auth.kw": k,
               "hdr.auth.m0": src, "hdr.auth.m1": dst, "hdr.auth.m2": sport << 16 | dport}
        for chunk in sorted(calls):
            for name in calls[chunk]:
                _run_action(env, actions[name])
        assert env["hdr.auth.h"] == cookie(key, k, src, dst, sport, dport)


def test_recirculations_per_packet():
    """57 steps in chunks of at most 19 (Tofino 2 has 20 egress stages): three rounds
    carry a SYN or RST to its final pass."""
    sched = cookie_schedule()
    assert [len(p.steps) for p in sched] == [19, 19, 19] and recirculations(sched) == 3
    assert [p.last for p in sched] == [False, False, True]
    with pytest.raises(ValueError, match="egress_steps"):
        cookie_schedule(0)


def test_the_program_parses_auth_h_only_from_the_recirculation_port(program):
    start = program[program.index("    state start {"):program.index("    state parse_auth")]
    assert "transition select(ig_intr_md.ingress_port)" in start
    assert "AUTH_RECIRC_PORT: parse_auth;" in start
    assert "const PortId_t AUTH_RECIRC_PORT   = 6;" in program
    assert '#if __TARGET_TOFINO__ != 2\n#error' in program
    # the challenge is cut after the TCP header in egress, checksums in full
    assert "eg_dprsr_md.mtu_trunc_len = (bit<14>)hdr.auth.trunc;" in program
    assert "hdr.tcp.checksum = challenge_csum.update({" in program


# ---- what is refused, and why --------------------------------------------------------

def test_tofino1_is_refused_naming_the_vips(auth_cfg, tmp_path):
    why = tna_auth_unsupported(auth_cfg, "tofino")
    assert why is not None
    assert "auth = true on VIP 'web', 'tls'" in why and "Tofino 2 only" in why
    assert "mtu_trunc_len" in why and "using 22" in why
    assert tna_auth_unsupported(auth_cfg, "tofino2") is None
    from l4lb.tofino import compile_tna

    with pytest.raises(LifecycleUnsupported, match=r"auth = true on VIP 'web', 'tls'"):
        compile_tna(auth_cfg, tmp_path, "tofino")     # refused before bf-p4c runs


def test_auth_with_a_network_table_is_refused_naming_the_fields():
    raw = tomllib.loads((ROOT / "examples" / "network.toml").read_text())
    raw["vip"][0]["auth"] = True
    raw["vip"][0]["protocol"] = "tcp"
    cfg = parse_config(raw, source="network-auth.toml")
    with pytest.raises(LifecycleUnsupported,
                       match=r"auth = true on VIP '[^']+'\) together with a \[network\] table"):
        render_tna(cfg)


def test_configs_without_auth_keep_the_egress_bypass():
    """No auth: no auth_h, no recirculation, egress bypassed (the programs of such
    configs are byte for byte as before; tests/test_p4.py pins the default one)."""
    text = render_tna(load_config(ROOT / "examples" / "default.toml"))
    assert "auth_h" not in text and "AUTH_RECIRC_PORT" not in text
    assert "Egress: bypassed" in text


def test_bfrt_entries_hold_both_key_tables(auth_cfg):
    from codegen.p4 import default_images

    text = render_entries_bfrt(auth_cfg, default_images(auth_cfg))
    for parity in (0, 1):
        assert re.search(rf"auth_key\.add_with_set_auth_key\(parity={parity}, k0=\d+, k1=\d+\)",
                         text)
        assert re.search(rf"auth_key_first\.add_with_set_auth_key_first\(parity={parity}, "
                         rf"k0=\d+, k1=\d+\)", text)
    assert "bfrt.port.port.add(DEV_PORT=6" in text
    assert "vip_auth.mod(REGISTER_INDEX=0, f1=1)" in text


def test_the_program_reads_hand_written(program):
    """codegen.p4.lint_p4: no Jinja leftovers, lines of at most 100 characters, no
    double blank lines, nothing declared and unused."""
    from codegen.p4 import lint_p4

    assert lint_p4(program) == []
