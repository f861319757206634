# amaranth: UnusedElaboratable=no
"""hdl/crc.py, hdl/modulo.py, hdl/hash_unit.py in the Amaranth simulator vs the model."""

import random
import zlib

import pytest
from amaranth.lib.crc import catalog

from hdl.crc import AffineXorNetwork, crc_role_matrix, unpack_key
from hdl.hash_unit import HashUnit
from hdl.modulo import ConstMod, mod_reference, reciprocal
from model.config import is_prime, parse_config
from model.hashing import FIELD_ORDERS, Hasher, crc32_tuple, hash_bytes, pack_key

from .hdl_simutil import pipeline_outputs

ROLES = sorted(FIELD_ORDERS)


def _xor_matrix(rows, const, x):
    return sum(((bin(r & x).count("1") & 1) << j) for j, r in enumerate(rows)) ^ const


# ---- GF(2) matrices ----------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_role_matrix_equals_zlib(role):
    rng = random.Random(role)
    salt = rng.getrandbits(32)
    rows, const = crc_role_matrix(salt, FIELD_ORDERS[role])
    for _ in range(300):
        key = rng.getrandbits(104)
        t = unpack_key(key)
        assert pack_key(t) == key
        assert _xor_matrix(rows, const, key) == crc32_tuple(salt, t, FIELD_ORDERS[role])


def test_role_matrix_cross_checked_with_amaranth_crc():
    """amaranth.lib.crc's software model of CRC-32/ISO-HDLC is zlib's CRC-32 over bytes
    (data_width=8): an independent check of the matrix derivation."""
    algo = catalog.CRC32_ISO_HDLC(data_width=8)
    rng = random.Random(5)
    rows, const = crc_role_matrix(0x12345678, FIELD_ORDERS["maglev"])
    for _ in range(50):
        t = unpack_key(rng.getrandbits(104))
        data = hash_bytes(0x12345678, t, FIELD_ORDERS["maglev"])
        assert algo.compute(data) == zlib.crc32(data)
        assert _xor_matrix(rows, const, pack_key(t)) == algo.compute(data)


def test_role_matrix_low_bits_only():
    rows, const = crc_role_matrix(7, FIELD_ORDERS["stage0"], out_bits=5)
    full_rows, full_const = crc_role_matrix(7, FIELD_ORDERS["stage0"])
    assert rows == full_rows[:5] and const == full_const & 31


@pytest.mark.parametrize("stages", [0, 1, 2, 3, 4])
def test_xor_network_pipelined(stages):
    rng = random.Random(stages)
    rows = [rng.getrandbits(40) for _ in range(9)] + [0, (1 << 40) - 1]
    const = rng.getrandbits(len(rows))
    dut = AffineXorNetwork(40, rows, const, stages)
    assert dut.latency == stages
    xs = [rng.getrandbits(40) for _ in range(60)]
    got = pipeline_outputs(dut, [[(dut.i, x)] for x in xs], [dut.o], stages)
    assert [g[0] for g in got] == [_xor_matrix(rows, const, x) for x in xs]


@pytest.mark.parametrize("kwargs,match", [
    ({"in_width": 0, "rows": [1]}, "in_width"),
    ({"in_width": 4, "rows": []}, "rows must not be empty"),
    ({"in_width": 4, "rows": [16]}, "does not fit in 4 input bits"),
    ({"in_width": 4, "rows": [1], "const": 2}, "const"),
    ({"in_width": 4, "rows": [1], "stages": 9}, "stages"),
])
def test_xor_network_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AffineXorNetwork(**kwargs)


def test_crc_role_matrix_validates():
    with pytest.raises(ValueError, match="salt"):
        crc_role_matrix(1 << 32, FIELD_ORDERS["stage0"])
    with pytest.raises(ValueError, match="out_bits"):
        crc_role_matrix(0, FIELD_ORDERS["stage0"], 33)
    with pytest.raises(ValueError, match="104-bit"):
        unpack_key(1 << 104)


# ---- constant modulo ---------------------------------------------------------------------

MODULI = [3, 127, 251, 4093, 65537, (1 << 22) - 3, 4096, 2, 1000003, 2147483647]


def _edges(m: int, width: int = 32) -> list[int]:
    top = (1 << width) - 1
    xs = {0, 1, m - 1, m, m + 1, top, top - 1, top - (top % m), top - (top % m) - 1}
    for q in (1, 2, 3, (top // m) // 2, top // m - 1, top // m):
        for d in (-1, 0, 1):
            xs.add(q * m + d)
    return sorted(x for x in xs if 0 <= x <= top)


@pytest.mark.parametrize("m", MODULI)
def test_mod_reference_exact(m):
    """The reciprocal arithmetic equals % on 100k random values and every edge."""
    rng = random.Random(m)
    xs = _edges(m) + [rng.getrandbits(32) for _ in range(100_000)]
    assert all(mod_reference(x, 32, m) == x % m for x in xs)


def test_reciprocal_bound_all_small_moduli():
    """The exactness bound holds for every modulus up to 5000 and the config maximum."""
    for m in list(range(2, 5001)) + [(1 << 22) - 1, 1 << 22]:
        r, s = reciprocal(32, m)
        assert (r * m - (1 << s)) * ((1 << 32) - 1) < (1 << s)
        x = (1 << 32) - 1
        assert (x * r) >> s == x // m


@pytest.mark.parametrize("m", [3, 127, 251, 4093, 65537, 4096])
def test_const_mod_hardware(m):
    rng = random.Random(m + 1)
    xs = _edges(m) + [rng.getrandbits(32) for _ in range(1500)]
    dut = ConstMod(32, m)
    assert dut.latency == (0 if m & (m - 1) == 0 else 5 if m == 65537 else 6)
    got = pipeline_outputs(dut, [[(dut.i, x)] for x in xs], [dut.o], dut.latency)
    assert [g[0] for g in got] == [x % m for x in xs]


def test_const_mod_validates():
    with pytest.raises(ValueError, match="modulus"):
        ConstMod(32, 1)
    with pytest.raises(ValueError, match="width"):
        ConstMod(0, 5)
    with pytest.raises(ValueError, match="width"):
        reciprocal(65, 5)


# ---- hash unit -----------------------------------------------------------------------------

def _cfg(**geo):
    data = {"name": "t", "geometry": geo,
            "vip": [{"address": "10.0.0.1", "port": 80, "dips": [{"address": "10.1.0.1"}]}]}
    return parse_config(data)


HASH_CFGS = {
    "default": {},
    "prime-small": {"stages": 2, "log2_slots": 6, "digest_bits": 8, "maglev_size": 251,
                    "transit_log2_bits": 6, "transit_hashes": 3},
    "full-key": {"stages": 3, "log2_slots": 7, "digest_bits": "full", "maglev_size": 127,
                 "transit_hashes": 4, "transit_log2_bits": 5},
    "wide": {"stages": 8, "log2_slots": 16, "digest_bits": 32, "maglev_size": 65537,
             "transit_hashes": 1, "transit_log2_bits": 14},
}


@pytest.mark.parametrize("stages", [1, 2, 3])
@pytest.mark.parametrize("name", list(HASH_CFGS))
def test_hash_unit_matches_model(name, stages):
    cfg = _cfg(**HASH_CFGS[name])
    g = cfg.geometry
    assert is_prime(g.maglev_size) or g.maglev_pow2
    h = Hasher(cfg)
    dut = HashUnit(cfg, stages)
    rng = random.Random(hash((name, stages)))
    keys = [rng.getrandbits(104) for _ in range(120)] + [0, (1 << 104) - 1]
    got = pipeline_outputs(dut, [[(dut.key.as_value(), k)] for k in keys],
                           [dut.stage_index, dut.digest, dut.transit_index], dut.latency)
    got_m = pipeline_outputs(dut, [[(dut.key.as_value(), k)] for k in keys],
                             [dut.maglev_index], dut.maglev_latency)
    for k, (si, dg, ti), (mi,) in zip(keys, got, got_m, strict=True):
        t = unpack_key(k)
        assert [int(x) for x in si] == h.stage_indices(t)
        assert dg == h.digest(t)
        assert [int(x) for x in ti] == h.transit_indices(t)
        assert mi == h.maglev_index(t)


def test_hash_unit_validates():
    cfg = _cfg()
    with pytest.raises(ValueError, match="stages"):
        HashUnit(cfg, 0)
    with pytest.raises(TypeError, match="Config"):
        HashUnit(cfg.geometry)
