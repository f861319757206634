"""P4 code generation (codegen/p4.py): the committed programs are up to date, their
structure matches the model (hash roles, memory map, entries), a p4c-free lint, and
p4test / p4c / bf-p4c / BMv2 simple_switch runs when those tools are installed."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import socket
import subprocess
import sys
import tomllib
import zlib
from pathlib import Path

import numpy as np
import pytest

from codegen.p4 import (
    DECISION_HEADER,
    INGRESS,
    PROGRAM_FILES,
    TABLE_MEMORIES,
    P4GenError,
    RegisterWrite,
    TableAdd,
    default_images,
    entries,
    entry_for_word,
    lint_p4,
    render_entries_bfrt,
    render_entries_bmv2,
    render_tna,
    render_v1model,
    tna_entry,
    tna_maglev_banked,
    tna_maglev_mod_tables,
    tna_maglev_reduce,
    tna_register_bits,
    tna_unsupported,
    write_p4,
)
from model.config import Config, parse_config
from model.hashing import FiveTuple, hash_bytes
from model.layout import Phase, memory_specs, pack_conn, pack_slot, pack_vip, pack_vip_state
from model.pipeline import DECISION_FIELDS
from model.vectors import build_scenario, manifest

ROOT = Path(__file__).resolve().parent.parent
P4DIR = ROOT / "p4"
EXAMPLES = ROOT / "examples"


def _variant(example: str, **geometry) -> Config:
    raw = tomllib.loads((EXAMPLES / f"{example}.toml").read_text())
    raw["geometry"].update(geometry)
    return parse_config(raw, source=f"{example}-variant.toml")


def _programs(cfg: Config) -> dict[str, str]:
    out = {"v1model": render_v1model(cfg)}
    with contextlib.suppress(P4GenError):
        out["tna"] = render_tna(cfg)
    return out


# ---- reading generated programs back --------------------------------------------------

def _defines(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^#define\s+(\w+)\s+(\d+)", text, re.M)}


def _typedef_bits(text: str) -> dict[str, int]:
    d = _defines(text)
    out = {}
    for m in re.finditer(r"^typedef\s+bit<(\w+)>\s+(\w+)\s*;", text, re.M):
        out[m[2]] = int(m[1]) if m[1].isdigit() else d[m[1]]
    return out


def _bits(text: str, ptype: str) -> int:
    m = re.fullmatch(r"bit<(\d+)>", ptype)
    return int(m[1]) if m else _typedef_bits(text)[ptype]


def _salts(text: str) -> dict[str, int]:
    return {m[1]: int(m[2], 16)
            for m in re.finditer(r"const bit<32> (SALT_\w+)\s*=\s*32w0x([0-9a-f]{8});", text)}


def _hash_uses(text: str) -> dict[str, tuple[list[str], str]]:
    """salt constant -> (key fields in order, P4 size of the result space)."""
    out: dict[str, tuple[list[str], str]] = {}
    v1 = r"hash\(\w+\.[\w.]+, HashAlgorithm\.crc32, 32w0,\s*\{([^}]*)\},\s*\(bit<64>\)(\w+)\)"
    for m in re.finditer(v1, text):
        items = [x.strip() for x in m[1].split(",")]
        bits = _defines(text)[m[2]]
        out.setdefault(items[0], ([x.split(".")[-1] for x in items[1:]], str(bits)))
    for m in re.finditer(r"hash_(\w+)\.get\(\s*\{([^}]*)\}\s*\)", text):
        items = [x.strip() for x in m[2].split(",")]
        decl = re.search(rf"Hash<(\w+|bit<\d+>)>\(HashAlgorithm_t\.CUSTOM, (\w+)\) "
                         rf"hash_{m[1]};", text)
        out.setdefault(items[0], ([x.split(".")[-1] for x in items[1:]],
                                  str(1 << _bits(text, decl[1]))))
    return out


def _crc(data: bytes, poly: int, reflected: bool, init: int, xorout: int) -> int:
    """A plain bitwise CRC-32 with Tofino's CRCPolynomial parameters."""
    if reflected:
        poly = int(f"{poly:032b}"[::-1], 2)
    crc = init
    for byte in data:
        if reflected:
            crc ^= byte
            for _ in range(8):
                crc = (crc >> 1) ^ (poly if crc & 1 else 0)
        else:
            crc ^= byte << 24
            for _ in range(8):
                crc = ((crc << 1) ^ (poly if crc & 0x80000000 else 0)) & 0xFFFFFFFF
    return crc ^ xorout


# ---- committed files ------------------------------------------------------------------

def test_regenerating_p4_changes_no_byte(tmp_path):
    out = tmp_path / "p4"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "regen_p4.py"), "-o", str(out)],
                   check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(PROGRAM_FILES)
    for name in PROGRAM_FILES:
        assert (P4DIR / name).read_bytes() == (out / name).read_bytes(), (
            f"p4/{name} is stale: run python scripts/regen_p4.py")


def test_write_p4_returns_the_four_files(tmp_path, default_cfg):
    paths = write_p4(default_cfg, tmp_path)
    assert [p.name for p in paths] == list(PROGRAM_FILES)
    assert all(p.read_text() for p in paths)


def test_write_p4_skips_tna_with_a_note_when_it_cannot_run(tmp_path):
    cfg = _variant("small", digest_bits="full")
    with pytest.warns(UserWarning, match="geometry.digest_bits"):
        paths = write_p4(cfg, tmp_path)
    assert [p.name for p in paths] == ["l4lb_v1model.p4", "entries_bmv2.txt",
                                       "TNA_SKIPPED.txt"]
    assert "geometry.digest_bits: 'full'" in (tmp_path / "TNA_SKIPPED.txt").read_text()


# ---- structure against the model ------------------------------------------------------

@pytest.mark.parametrize("example", ["default", "small"])
def test_every_hash_role_has_its_salt_field_order_and_reduction(example):
    cfg = _variant(example)
    g = cfg.geometry
    space = {"digest": 1 << g.digest_bits, "maglev": g.maglev_size}
    roles = manifest(cfg)["hashes"]
    for arch, text in _programs(cfg).items():
        salts, uses = _salts(text), _hash_uses(text)
        assert set(salts) == {f"SALT_{r.upper()}" for r in roles}, arch
        for role, spec in roles.items():
            const = f"SALT_{role.upper()}"
            assert salts[const] == int(spec["salt"], 16), (arch, role)
            fields, size = uses[const]
            assert fields == spec["fields"], (arch, role)
            expect = space.get(role, g.slots if role.startswith("stage") else g.transit_bits)
            if arch == "tna" and role == "maglev" and not g.maglev_pow2:
                expect = 1 << 32  # the whole CRC, reduced mod M by lookup (test below)
            assert int(size) == expect, (arch, role)


def test_full_key_mode_packs_the_key_instead_of_hashing_a_digest():
    cfg = _variant("small", digest_bits="full")
    text = render_v1model(cfg)
    assert "SALT_DIGEST" not in text
    assert re.search(r"meta\.digest = meta\.flow\.src_ip \+\+ meta\.flow\.dst_ip \+\+ "
                     r"meta\.flow\.src_port\s+\+\+ meta\.flow\.dst_port \+\+ meta\.flow\.proto;",
                     text)
    assert _typedef_bits(text)["conn_word_t"] == 1 + cfg.geometry.version_bits + 104


def test_tna_crc_parameters_are_zlib_crc32():
    text = render_tna(_variant("default"))
    decl = re.search(r"CRCPolynomial<bit<32>>\((.*?)\) crc32_zlib;", text, re.S)[1]
    args = [a.strip() for a in re.sub(r"//[^\n]*", "", decl).split(",")]
    poly, reflected, msb, extended = (int(args[0].removeprefix("32w"), 0), args[1] == "true",
                                      args[2], args[3])
    init, xorout = (int(a.removeprefix("32w"), 0) for a in args[4:])
    assert (msb, extended) == ("false", "false")
    t = FiveTuple(0x64400001, 0x0A000001, 40000, 80, 6)
    for salt in (0, 0x9E3779B9, 0xFFFFFFFF):
        data = hash_bytes(salt, t, ("proto", "src_ip", "dst_port", "dst_ip", "src_port"))
        assert _crc(data, poly, reflected, init, xorout) == zlib.crc32(data)


@pytest.mark.parametrize("example", ["default", "small", "large"])
def test_register_arrays_match_the_memory_map(example):
    cfg = _variant(example)
    g = cfg.geometry
    for arch, text in _programs(cfg).items():
        defs = _defines(text)
        if arch == "v1model":
            regs = {m[3]: (_bits(text, m[1]), defs[m[2]]) for m in re.finditer(
                r"register<(\w+|bit<\d+>)>\((\w+)\) (\w+);", text)}
        else:
            regs = {m[4]: (_bits(text, m[1]), defs[m[3]]) for m in re.finditer(
                r"Register<(\w+|bit<\d+>), (\w+)>\((\w+), 0\) (\w+);", text)}
        specs = [s for s in memory_specs(g) if s.name not in TABLE_MEMORIES]
        if arch == "tna" and not g.maglev_pow2:
            spec = next(s for s in specs if s.name == "maglev")
            if tna_maglev_banked(g):  # one bank of M words per pool slot
                banks = [dataclasses.replace(spec, name=f"maglev{k}", depth=g.maglev_size)
                         for k in range(g.pool_slots)]
            else:  # one register, 2^MAGLEV_INDEX_BITS words per pool slot
                banks = [dataclasses.replace(spec, depth=g.pool_slots << g.maglev_index_bits)]
            specs = [s for s in specs if s is not spec] + banks
            for name in tna_maglev_mod_tables(g):
                assert regs.pop(name) == (32, 1 << 16), name
        assert set(regs) == {s.name for s in specs}, arch
        for s in specs:
            width, depth = regs[s.name]
            want = s.width if arch == "v1model" else tna_register_bits(s.width)
            assert (width, depth) == (want, s.depth), (arch, s.name)
        for table, capacity in (("vip_table", g.vip_capacity), ("dip_table", g.dip_capacity)):
            body = text[text.index(f"table {table} {{"):]
            size = re.search(r"size = (\w+);", body)[1]
            assert defs[size] == capacity, (arch, table)


def test_tna_register_indices_cover_every_word():
    text = render_tna(_variant("default"))
    for m in re.finditer(r"Register<[\w<>]+, (\w+)>\((\w+), 0\) (\w+);", text):
        assert 1 << _bits(text, m[1]) >= _defines(text)[m[2]], m[3]


def test_decision_metadata_and_header_carry_the_model_decision():
    text = render_v1model(_variant("default"))
    body = text[text.index("struct decision_t {"):]
    fields = re.findall(r"^\s+\w+(?:<\d+>)?\s+(\w+);", body[:body.index("}")], re.M)
    assert fields == ["action_code" if f == "action" else f for f in DECISION_FIELDS]
    assert [n for n, _ in DECISION_HEADER] == list(DECISION_FIELDS)
    assert sum(w for _, w in DECISION_HEADER) % 8 == 0
    body = text[text.index("header decision_h {"):]
    assert re.findall(r"bit<(\d+)>", body[:body.index("}")]) == \
        [str(w) for _, w in DECISION_HEADER]


@pytest.mark.parametrize("arch", ["v1model", "tna"])
def test_program_reads_like_the_model(arch):
    text = _programs(_variant("default"))[arch]
    for needle in ("Ingress: model.pipeline.DataPlane.process",
                   "model.conntable.lookup_words", "model.hashing.Hasher",
                   *(f"step {i}" for i in range(1, 8))):
        assert needle in text, needle


@pytest.mark.parametrize("example", ["default", "small"])
def test_word_layout_constants_match_model_layout(example):
    cfg = _variant(example)
    g = cfg.geometry
    V, S = g.version_bits, g.slot_bits

    def field(word: int, hi: int, lo: int) -> int:
        return word >> lo & ((1 << (hi - lo + 1)) - 1)

    for arch, text in _programs(cfg).items():
        d = _defines(text)
        for valid, version, digest in ((1, (1 << V) - 1, 1), (0, 1, (1 << g.digest_bits) - 1)):
            w = pack_conn(g, bool(valid), version, digest)
            assert field(w, d["CONN_VALID_BIT"], d["CONN_VALID_BIT"]) == valid, arch
            assert field(w, d["CONN_VERSION_HI"], d["CONN_VERSION_LO"]) == version, arch
            assert field(w, d["CONN_DIGEST_HI"], 0) == digest, arch
        for phase, old, cur in ((Phase.FLIP, 1, (1 << V) - 1), (Phase.RECORD, (1 << V) - 1, 0)):
            w = pack_vip_state(g, phase, old, cur)
            assert field(w, d["VIP_STATE_PHASE_HI"], d["VIP_STATE_PHASE_LO"]) == phase, arch
            assert field(w, d["VIP_STATE_OLD_HI"], d["VIP_STATE_OLD_LO"]) == old, arch
            assert field(w, d["VIP_STATE_CUR_HI"], 0) == cur, arch
        w = pack_slot(g, True, g.pool_slots - 1)
        assert field(w, d["SLOT_MAP_VALID_BIT"], d["SLOT_MAP_VALID_BIT"]) == 1, arch
        assert field(w, d["SLOT_MAP_SLOT_HI"], 0) == g.pool_slots - 1, arch
        if arch == "tna":  # concatenations stand for the model's address arithmetic
            assert d["SLOT_MAP_INDEX_BITS"] == g.vip_bits + V
            if g.maglev_pow2:
                assert 1 << d["MAGLEV_INDEX_BITS"] == g.maglev_size
                assert d["MAGLEV_ADDR_BITS"] == S + d["MAGLEV_INDEX_BITS"]
            else:
                assert d["MAGLEV_SIZE"] == g.maglev_size


def _csum16_replace(csum: int, old_ip: int, old_port: int, new_ip: int, new_port: int) -> int:
    """csum16_replace of l4lb_v1model.p4, step for step (32-bit sum, two folds)."""
    inv = 0xFFFF
    total = ((csum ^ inv) + (old_ip >> 16 ^ inv) + (old_ip & inv ^ inv) + (old_port ^ inv)
             + (new_ip >> 16) + (new_ip & inv) + new_port) & 0xFFFFFFFF
    total = (total & inv) + (total >> 16)
    total = (total & inv) + (total >> 16)
    return total & inv ^ inv


def test_incremental_l4_checksum_equals_a_full_recompute():
    from scapy.all import IP, TCP, UDP, Raw

    text = render_v1model(_variant("default"))
    assert text.count("sum = (bit<32>)sum[15:0] + (bit<32>)sum[31:16];") == 2
    rng = np.random.default_rng(4)
    for i in range(300):
        src, dst, new = (int(x) for x in rng.integers(0, 1 << 32, 3))
        sport, dport, nport = (int(x) for x in rng.integers(0, 1 << 16, 3))
        l4 = TCP(sport=sport, dport=dport) if i % 2 else UDP(sport=sport, dport=dport)
        payload = Raw(bytes(rng.integers(0, 256, i % 40, dtype=np.uint8)))
        pkt = IP(bytes(IP(src=_ip(src), dst=_ip(dst)) / l4 / payload))
        old = pkt[l4.__class__].chksum
        pkt[IP].dst = _ip(new)
        pkt[l4.__class__].dport = nport
        del pkt[l4.__class__].chksum
        want = IP(bytes(pkt))[l4.__class__].chksum
        got = _csum16_replace(old, dst, dport, new, nport)
        if isinstance(l4, UDP) and got == 0:
            got = 0xFFFF
        assert got == want, i


def _ip(v: int) -> str:
    return socket.inet_ntoa(v.to_bytes(4, "big"))


# ---- TNA limits -----------------------------------------------------------------------

@pytest.mark.parametrize("m", [13, 251, 4093, 65521, 65537, 1048573])
def test_tna_reduces_the_maglev_crc_mod_a_prime_by_lookup(m):
    """tna_maglev_reduce (the program's lookups, add and conditional subtraction) equals
    crc % M: exhaustively over the high half, at random and extreme low halves."""
    g = _variant("small", maglev_size=m).geometry
    tables = tna_maglev_mod_tables(g)
    assert len(tables["maglev_mod_hi"]) == 1 << 16
    assert ("maglev_mod_lo" in tables) == (m <= 1 << 16)
    rng = np.random.default_rng(m)
    his = np.arange(1 << 16, dtype=np.uint64)
    for lo in (0, 1, m - 1 if m < 1 << 16 else 0xFFFF, 0xFFFF, *rng.integers(0, 1 << 16, 4)):
        crc = his << np.uint64(16) | np.uint64(lo)
        hi_part = np.array(tables["maglev_mod_hi"], dtype=np.uint64)
        lo_part = np.uint64(tables["maglev_mod_lo"][lo] if m <= 1 << 16 else lo)
        diff = (hi_part + lo_part) & np.uint64(0xFFFFFFFF)   # the stateful ALU's add
        assert int(((diff + np.uint64(m)) & np.uint64(0xFFFFFFFF)).max()) < 2 * m
        mask = np.uint64((1 << g.maglev_index_bits) - 1)
        got = np.where(diff >> np.uint64(31) == 0, diff, diff + np.uint64(m)) & mask
        assert np.array_equal(got, crc % np.uint64(m)), lo
    for crc in (0, 0xFFFFFFFF, *(int(x) for x in rng.integers(0, 1 << 32, 2000))):
        assert tna_maglev_reduce(g, crc) == crc % m


def test_tna_pads_a_small_prime_maglev_memory(small_cfg):
    """A prime M whose padded register fits (small: 4 slots x 256 words): one register,
    word slot * M + index at slot ++ index, read after slot_map."""
    g = small_cfg.geometry
    assert not tna_maglev_banked(g)
    text = render_tna(small_cfg)
    assert "Register<maglev_word_t, maglev_addr_t>(MAGLEV_DEPTH, 0) maglev;" in text
    assert _defines(text)["MAGLEV_DEPTH"] == g.pool_slots << g.maglev_index_bits
    assert "maglev_read.execute(ig_md.dec.slot" in text
    assert "ig_md.maglev_bank" not in text
    assert "maglev_mod_hi_read.execute(ig_md.hash.maglev_crc[31:16])" in text
    assert "maglev_mod_lo_read.execute(ig_md.hash.maglev_crc[15:0])" in text
    images = default_images(small_cfg)
    bfrt = render_entries_bfrt(small_cfg, images)
    for addr in np.flatnonzero(images["maglev"])[:50]:
        slot, index = divmod(int(addr), g.maglev_size)
        assert (f"{INGRESS}.maglev.mod(REGISTER_INDEX={slot << g.maglev_index_bits | index}, "
                f"f1={images['maglev'][addr]})") in bfrt
    assert ("maglev_mod_hi.mod(REGISTER_INDEX=i, f1=((i << 16) % 251 - 251) & 0xFFFFFFFF)"
            in bfrt)


def test_tna_banks_a_large_prime_maglev_memory():
    """A prime M whose padded register would not fit one stage (large: 6 slots x 2^17
    words): one bank of M words per slot, every bank read at the index beside the
    ConnTable, the slot's word kept after slot_map."""
    large = _variant("large")
    g = large.geometry
    assert tna_maglev_banked(g)
    text = render_tna(large)
    banks = re.findall(r"Register<maglev_word_t, maglev_index_t>\(MAGLEV_SIZE, 0\) (maglev\d+);",
                       text)
    assert banks == [f"maglev{k}" for k in range(g.pool_slots)]
    for k in range(g.pool_slots):
        assert f"ig_md.maglev_bank{k} = maglev{k}_read.execute(ig_md.hash.maglev);" in text
        assert f"ig_md.dec.dip = (dip_index_t)ig_md.maglev_bank{k};" in text
    assert "maglev_mod_lo" not in text
    assert "(bit<32>)ig_md.hash.maglev_crc[15:0];   // < 2^16 < M" in text
    e = tna_entry(large, RegisterWrite("maglev", 3 * g.maglev_size + 17, 5))
    assert (e.register, e.index, e.value) == ("maglev3", 17, 5)


def test_tna_refuses_full_key_mode():
    cfg = _variant("default", digest_bits="full")
    with pytest.raises(P4GenError, match=r"geometry\.digest_bits: 'full'"):
        render_tna(cfg)
    assert "register<conn_word_t>(CONN_SLOTS) conn0;" in render_v1model(cfg)


def test_tna_refuses_a_conn_word_wider_than_32_bits():
    cfg = _variant("default", digest_bits=32, version_bits=6)
    with pytest.raises(P4GenError, match=r"geometry\.digest_bits: .* = 39 bits"):
        render_tna(cfg)
    assert render_tna(_variant("default", digest_bits=25, version_bits=6))


# ---- entries --------------------------------------------------------------------------

def _expected_counts(cfg: Config, images: dict[str, list[int]]) -> dict[str, int]:
    counts = {"vip_table": len({w for w in images["vip"] if w >> 56 & 1}),
              "dip_table": sum(1 for w in images["dip"] if w)}
    for s in memory_specs(cfg.geometry):
        if s.name not in TABLE_MEMORIES:
            counts[s.name] = sum(1 for w in images[s.name] if w)
    return {k: v for k, v in counts.items() if v}


def _file_counts(bmv2: str, bfrt: str) -> tuple[dict[str, int], dict[str, int]]:
    def count(pattern: str, text: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in re.finditer(pattern, text, re.M):
            out[m[1]] = out.get(m[1], 0) + 1
        return out
    return (count(rf"^(?:table_add|register_write) {INGRESS}\.(\w+) ", bmv2),
            count(rf"^bfrt\.l4lb_tna\.pipe\.{INGRESS}\.(\w+)\.(?:add_with_\w+|mod)\(", bfrt))


def test_committed_entries_count_valid_vips_and_non_zero_words(default_cfg):
    images = default_images(default_cfg)
    want = _expected_counts(default_cfg, images)
    assert want["vip_table"] == len(default_cfg.vips) and want["maglev"] > 0
    bmv2, bfrt = _file_counts((P4DIR / "entries_bmv2.txt").read_text(),
                              (P4DIR / "entries_bfrt.py").read_text())
    assert bmv2 == want
    assert bfrt == want
    assert (P4DIR / "entries_bmv2.txt").read_text().count("\n") == sum(want.values())


def test_entries_are_the_scenario_initial_images(small_cfg):
    scen = build_scenario(small_cfg, connections=20, updates=0)
    images = scen.initial
    assert entries(small_cfg, images) == entries(small_cfg, default_images(small_cfg))
    bmv2, _ = _file_counts(render_entries_bmv2(small_cfg, images), "")
    assert bmv2 == _expected_counts(small_cfg, images)


def test_entry_names_exist_in_both_programs(default_cfg):
    texts = _programs(default_cfg)
    for e in entries(default_cfg, default_images(default_cfg)):
        for arch, text in texts.items():
            if isinstance(e, TableAdd):
                assert f"table {e.table} {{" in text, (arch, e.table)
                sig = re.search(rf"action {e.action}\(([^)]*)\)", text)[1]
                assert [p.split()[-1] for p in sig.split(",")] == [n for n, _, _ in e.params]
                for name, _, _ in e.keys:
                    assert f'@name("{name}")' in text, (arch, name)
            else:
                assert re.search(rf"[Rr]egister<[^;]*\) {e.register};", text), (arch, e)


def test_entries_render_one_list_two_ways(default_cfg):
    es = entries(default_cfg, default_images(default_cfg))
    vip = next(e for e in es if isinstance(e, TableAdd) and e.table == "vip_table")
    assert vip.bmv2() == (f"table_add {INGRESS}.vip_table {INGRESS}.set_vip "
                          f"10.0.0.1 80 6 => 0")
    assert vip.bfrt("l4lb_tna") == (
        f"bfrt.l4lb_tna.pipe.{INGRESS}.vip_table.add_with_set_vip(dst_ip=0x0a000001, "
        f"dst_port=80, proto=6, vip_id=0)  # 10.0.0.1:80/tcp -> vip 0")
    reg = RegisterWrite("maglev", 7, 3)
    assert reg.bmv2() == f"register_write {INGRESS}.maglev 7 3"
    assert reg.bfrt("l4lb_tna") == f"bfrt.l4lb_tna.pipe.{INGRESS}.maglev.mod(" \
                                   f"REGISTER_INDEX=7, f1=3)"


def test_duplicate_vip_words_keep_the_lowest_index(default_cfg):
    images = default_images(default_cfg)
    images["vip"][5] = images["vip"][1]
    assert images["vip"][1] == pack_vip(True, 0x0A000001, 443, 6)
    vips = [e for e in entries(default_cfg, images)
            if isinstance(e, TableAdd) and e.table == "vip_table"]
    assert [e.params[0][1] for e in vips] == [0, 1, 2, 3]
    assert entry_for_word(default_cfg, "vip", 6, 0) is None


def test_bmv2_entries_refuse_register_values_the_cli_cannot_carry():
    cfg = _variant("default", digest_bits="full")
    images = default_images(cfg)
    assert render_entries_bmv2(cfg, images)
    images["conn0"][3] = 1 << 100
    with pytest.raises(P4GenError, match=r"conn0\[3\].*P4Runtime"):
        render_entries_bmv2(cfg, images)


# ---- p4c-free lint --------------------------------------------------------------------

LINT_CONFIGS = {
    "default": {},
    "small": {},
    "small-full-key": {"digest_bits": "full"},
    "default-one-stage": {"stages": 1, "transit_hashes": 1, "vip_capacity": 4,
                          "pool_slots": 4, "version_bits": 1},
    "default-eight-stages": {"stages": 8, "transit_hashes": 4, "digest_bits": 8},
}


@pytest.mark.parametrize("name", LINT_CONFIGS)
def test_generated_programs_pass_the_lint(name):
    cfg = _variant(name.split("-")[0], **LINT_CONFIGS[name])
    programs = _programs(cfg)
    assert ("tna" in programs) == (tna_unsupported(cfg) is None)
    for arch, text in programs.items():
        assert lint_p4(text) == [], arch


def test_lint_catches_template_mistakes():
    text = render_v1model(_variant("default"))
    assert lint_p4(text) == []
    assert any("Jinja leftover" in p for p in lint_p4(text.replace("conn0;", "{{ conn0 }};")))
    assert any("unclosed '{'" in p for p in lint_p4(text.rstrip()[:-len("main;")] + "{\n"))
    assert any("unmatched ')'" in p for p in lint_p4(text.replace("conn0;", "conn0);", 1)))
    orphan = text.replace("    counter(1,", "    register<bit<1>>(4) orphan;\n    counter(1,")
    assert any("'orphan' is declared but never used" in p for p in lint_p4(orphan))
    unused_action = text.replace("    table dip_table {",
                                 "    action forgotten() { }\n\n    table dip_table {")
    assert any("'forgotten'" in p for p in lint_p4(unused_action))
    assert any("characters" in p for p in lint_p4(text.replace("// every frame", "/" * 120)))
    assert any("two blank lines" in p for p in lint_p4(text.replace("\n\n", "\n\n\n", 1)))
    keyword = text.replace("\nbool conn_match(", "\nfunction bool conn_match(")
    assert any("no 'function' keyword" in p for p in lint_p4(keyword))
    unused_function = text.replace("\nbool conn_match(", "\nbool conn_match_unused(")
    assert any("'conn_match_unused' is declared" in p for p in lint_p4(unused_function))
