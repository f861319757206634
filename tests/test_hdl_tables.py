# amaranth: UnusedElaboratable=no
"""hdl/conntable.py, hdl/vip_table.py, hdl/transit.py, hdl/maglev.py in the Amaranth
simulator: lookups against naive Python models, and the write/lookup ordering contract
(a write presented in cycle c is seen by lookups presented after c, not by those in
or before c)."""

import random

import pytest

from hdl.bram import RAM_LATENCY, PipelinedRam
from hdl.conntable import ConnTable
from hdl.maglev import MAGLEV_MEMS, MaglevLookup
from hdl.transit import TransitBits
from hdl.vip_table import VipState, VipTable
from model.config import parse_config
from model.conntable import lookup_words
from model.layout import pack_conn, pack_vip, pack_vip_state, unpack_dip, unpack_slot

from .hdl_simutil import pipeline_outputs


def _geo(**geo):
    data = {"name": "t", "geometry": geo,
            "vip": [{"address": "10.0.0.1", "port": 80, "dips": [{"address": "10.1.0.1"}]}]}
    return parse_config(data).geometry


# ---- PipelinedRam ----------------------------------------------------------------------

@pytest.mark.parametrize("width,depth", [(7, 16), (1, 1), (48, 5)])
def test_pipelined_ram_order_and_latency(width, depth):
    """Read ``latency`` cycles after the address; a write in cycle c is seen from
    c + 1 on; the read of a write cycle returns the old word (read-before-write)."""
    rng = random.Random(width * 100 + depth)
    init = [rng.getrandbits(width) for _ in range(depth - 1)]  # last word defaults to 0
    dut = PipelinedRam(width, depth, init)
    assert dut.latency == RAM_LATENCY
    words = init + [0]
    inputs, expect = [], []
    for _ in range(300):
        a = rng.randrange(depth)
        expect.append(words[a])
        cyc = [(dut.addr, a), (dut.w_en, 0)]
        if rng.random() < 0.4:
            d = rng.getrandbits(width)
            cyc += [(dut.w_en, 1), (dut.w_data, d)]
            words[a] = d
        inputs.append(cyc)
    got = pipeline_outputs(dut, inputs, [dut.r_data], dut.latency, idle=[(dut.w_en, 0)])
    assert [g[0] for g in got] == expect


def test_pipelined_ram_validates():
    with pytest.raises(ValueError, match="width"):
        PipelinedRam(0, 4)
    with pytest.raises(ValueError, match="depth"):
        PipelinedRam(4, 0)
    with pytest.raises(ValueError, match="more than the depth 2"):
        PipelinedRam(4, 2, [1, 2, 3])


# ---- ConnTable -------------------------------------------------------------------------

@pytest.mark.parametrize("geo_kw", [
    {"stages": 4, "log2_slots": 4, "digest_bits": 8, "version_bits": 3},
    {"stages": 3, "log2_slots": 3, "digest_bits": "full", "version_bits": 2},
    {"stages": 1, "log2_slots": 2, "digest_bits": 8, "version_bits": 1},
])
def test_conntable_matches_lookup_words(geo_kw):
    """Random ops (lookups, writes, both in one cycle) vs a list-of-lists model whose
    writes land after the lookup of the same cycle. The read and write share an address,
    so the lookup of a write cycle is undefined and not checked; all the others are."""
    geo = _geo(**geo_kw)
    rng = random.Random(str(geo_kw))
    D, V = geo.digest_bits, geo.version_bits
    digests = [rng.getrandbits(D) for _ in range(3)]  # few digests: many real matches
    init = [[pack_conn(geo, rng.random() < 0.6, rng.getrandbits(V), rng.choice(digests))
             for _ in range(geo.slots)] for _ in range(geo.stages)]
    dut = ConnTable(geo, init)
    model = [list(x) for x in init]
    inputs, expect, checked = [], [], []
    for _ in range(400):
        idx = [rng.randrange(geo.slots) for _ in range(geo.stages)]
        dg = rng.choice(digests)
        expect.append(lookup_words(geo, [model[i][idx[i]] for i in range(geo.stages)], dg))
        cyc = [(dut.digest, dg), (dut.w_en, 0)]
        cyc += [(dut.index[i], idx[i]) for i in range(geo.stages)]
        if rng.random() < 0.5:  # a write in the same cycle: not seen by this lookup
            st, a = rng.randrange(geo.stages), rng.choice(idx + [rng.randrange(geo.slots)])
            w = pack_conn(geo, rng.random() < 0.7, rng.getrandbits(V), rng.choice(digests))
            a %= geo.slots
            cyc += [(dut.w_en, 1), (dut.w_stage, st), (dut.w_addr, a), (dut.w_data, w)]
            model[st][a] = w
        checked.append(not any(s is dut.w_en and v for s, v in cyc))
        inputs.append(cyc)
    got = pipeline_outputs(dut, inputs, [dut.hit, dut.stage, dut.version], dut.latency,
                           idle=[(dut.w_en, 0)])
    assert sum(checked) > 150
    got = [g for g, c in zip(got, checked, strict=True) if c]
    expect = [e for e, c in zip(expect, checked, strict=True) if c]
    assert [(bool(h), s if h else 0, v if h else 0) for h, s, v in got] == \
        [(h, s, v) for h, s, v in expect]
    assert all(v == 0 and s == 0 for h, s, v in got if not h)


def test_conntable_validates():
    geo = _geo(stages=2, log2_slots=2)
    with pytest.raises(ValueError, match="2 stage images"):
        ConnTable(geo, [[0]])
    with pytest.raises(ValueError, match="more than the 4"):
        ConnTable(geo, [[0] * 5, []])
    with pytest.raises(TypeError, match="Geometry"):
        ConnTable(None)


# ---- VIP table and state -----------------------------------------------------------------

def test_vip_table_lowest_valid_match_wins():
    geo = _geo(vip_capacity=6)
    rng = random.Random(1)
    addrs = [(0x0A000001, 80, 6), (0x0A000001, 443, 6), (0x0A000035, 53, 17)]
    words = [pack_vip(rng.random() < 0.7, *rng.choice(addrs)) for _ in range(6)]
    dut = VipTable(geo, words)
    model = list(words)
    inputs, expect = [], []
    for _ in range(300):
        ip, port, proto = rng.choice(addrs + [(0x0A000002, 80, 6), (0x0A000001, 80, 17)])
        want = pack_vip(True, ip, port, proto)
        hits = [k for k, w in enumerate(model) if w == want]
        expect.append((int(bool(hits)), hits[0] if hits else 0))
        cyc = [(dut.dst_ip, ip), (dut.dst_port, port), (dut.proto, proto), (dut.w_en, 0)]
        if rng.random() < 0.3:
            a = rng.randrange(8)  # addresses 6 and 7 do not exist: ignored
            w = pack_vip(rng.random() < 0.7, *rng.choice(addrs))
            cyc += [(dut.w_en, 1), (dut.w_addr, a), (dut.w_data, w)]
            if a < 6:
                model[a] = w
        inputs.append(cyc)
    got = pipeline_outputs(dut, inputs, [dut.hit, dut.vip_id], dut.latency,
                           idle=[(dut.w_en, 0)])
    assert got == expect


def test_vip_state_read_and_write_order():
    geo = _geo(vip_capacity=3, version_bits=4)
    init = [pack_vip_state(geo, k % 3, k, 15 - k) for k in range(3)]
    dut = VipState(geo, init)
    model = list(init)
    rng = random.Random(2)
    inputs, expect = [], []
    for _ in range(200):
        vid = rng.randrange(4)
        w = model[vid] if vid < 3 else 0
        expect.append((w >> 8 & 3, w >> 4 & 15, w & 15))
        cyc = [(dut.vip_id, vid), (dut.w_en, 0)]
        if rng.random() < 0.4:
            a, w = rng.randrange(4), pack_vip_state(geo, rng.randrange(3), rng.getrandbits(4),
                                                    rng.getrandbits(4))
            cyc += [(dut.w_en, 1), (dut.w_addr, a), (dut.w_data, w)]
            if a < 3:
                model[a] = w
        inputs.append(cyc)
    got = pipeline_outputs(dut, inputs, [dut.phase, dut.old_version, dut.cur_version],
                           dut.latency, idle=[(dut.w_en, 0)])
    assert got == expect


def test_vip_validates():
    geo = _geo(vip_capacity=2)
    with pytest.raises(ValueError, match="more than the depth 2"):
        VipTable(geo, [0, 0, 0])
    with pytest.raises(ValueError, match="wider than 57 bits"):
        VipTable(geo, [1 << 57])
    with pytest.raises(TypeError, match="Geometry"):
        VipState(1)


# ---- TransitTable ------------------------------------------------------------------------

def test_transit_bits_shared_address():
    """TransitBits (the core's Bloom memories): a write in cycle c is seen by reads from
    c+1 on; while memory j writes, its read follows the write address (bit not checked)."""
    geo = _geo(transit_log2_bits=3, transit_hashes=2)
    dut = TransitBits(geo, [[1, 0, 0, 0, 0, 0, 0, 1], [0] * 8])
    bits = [[1, 0, 0, 0, 0, 0, 0, 1], [0] * 8]
    rng = random.Random(5)
    inputs, expect, checked = [], [], []
    for _ in range(400):
        idx = [rng.randrange(8), rng.randrange(8)]
        cyc = [(dut.index[0], idx[0]), (dut.index[1], idx[1]), (dut.w_en, 0)]
        expect.append(bits[0][idx[0]] | bits[1][idx[1]] << 1)
        wen = [rng.random() < 0.3 for _ in range(2)]
        if any(wen):
            cyc.append((dut.w_en, wen[0] | wen[1] << 1))
            for j in range(2):
                if wen[j]:
                    a, d = rng.randrange(8), rng.getrandbits(1)
                    cyc += [(dut.w_addr[j], a), (dut.w_data[j], d)]
                    bits[j][a] = d
        checked.append(0b11 & ~(wen[0] | wen[1] << 1))
        inputs.append(cyc)
    got = pipeline_outputs(dut, inputs, [dut.bits], dut.latency, idle=[(dut.w_en, 0)])
    assert sum(c == 0b11 for c in checked) > 150
    assert [g[0] & c for g, c in zip(got, checked, strict=True)] == \
        [e & c for e, c in zip(expect, checked, strict=True)]


# ---- MaglevLookup ------------------------------------------------------------------------

@pytest.mark.parametrize("geo_kw", [
    {"vip_capacity": 3, "version_bits": 2, "pool_slots": 3, "maglev_size": 7,
     "dip_capacity": 5},
    {"vip_capacity": 4, "version_bits": 1, "pool_slots": 4, "maglev_size": 8,
     "dip_capacity": 8},
    # 3 x 8191 words: the Maglev memory in two banks
    {"vip_capacity": 2, "version_bits": 1, "pool_slots": 3, "maglev_size": 8191,
     "dip_capacity": 4},
])
@pytest.mark.parametrize("range_check", [True, False])
def test_maglev_lookup_order(geo_kw, range_check):
    """Writes to the three memories interleaved with lookups: each lookup sees exactly
    the writes presented before it, though the memories sit at different depths. The
    lookup of a write cycle is undefined (shared read/write address) and not checked.
    With ``checked=False`` (the core's write enables are decoded within depth already)
    only addresses within depth are written."""
    geo = _geo(**geo_kw)
    rng = random.Random(str(geo_kw))
    V, M = geo.version_bits, geo.maglev_size
    depth = {"slot_map": geo.vip_capacity << V, "maglev": geo.maglev_depth,
             "dip": geo.dip_capacity}
    mem = {
        "slot_map": [(rng.getrandbits(1) << geo.slot_bits) | rng.randrange(geo.pool_slots)
                     for _ in range(depth["slot_map"])],
        "maglev": [rng.randrange(geo.dip_capacity) for _ in range(depth["maglev"])],
        "dip": [rng.getrandbits(48) for _ in range(depth["dip"])],
    }
    dut = MaglevLookup(geo, mem, checked=range_check)
    mem = {k: list(v) for k, v in mem.items()}
    inputs, expect, checked = [], [], []
    for _ in range(500):
        cyc = [(dut.w_en, 0)]
        if rng.random() < 0.45:
            name = rng.choice(list(MAGLEV_MEMS))
            # a few out-of-range (but representable) addresses: ignored
            a = rng.randrange(min(depth[name] + 2, 1 << len(dut.w_addr))
                              if range_check else depth[name])
            w = {"slot_map": (rng.getrandbits(1) << geo.slot_bits)
                 | rng.randrange(geo.pool_slots),
                 "maglev": rng.randrange(geo.dip_capacity), "dip": rng.getrandbits(48)}[name]
            cyc += [(dut.w_en, 1 << MAGLEV_MEMS[name]), (dut.w_addr, a),
                    (dut.w_data, w)]
            pending = (name, a, w)
        else:
            pending = None
        vid, ver, idx = rng.randrange(geo.vip_capacity), rng.getrandbits(V), rng.randrange(M)
        cyc += [(dut.vip_id, vid), (dut.version, ver), (dut.index, idx)]
        # the lookup of this cycle does not see this cycle's write
        valid, slot = unpack_slot(geo, mem["slot_map"][(vid << V) | ver])
        if valid:
            dip = mem["maglev"][slot * M + idx]
            ip, port = unpack_dip(mem["dip"][dip])
            expect.append((1, slot, dip, ip, port))
        else:
            expect.append((0, slot))
        if pending and pending[1] < depth[pending[0]]:
            mem[pending[0]][pending[1]] = pending[2]
        checked.append(not pending)
        inputs.append(cyc)
    got = pipeline_outputs(dut, inputs, [dut.slot_valid, dut.slot, dut.dip, dut.dip_ip,
                                         dut.dip_port, dut.slot_valid_next], dut.latency,
                           idle=[(dut.w_en, 0)])
    # slot_valid_next is the next op's slot_valid, a cycle early
    assert [g[5] for g in got[:-1]] == [g[0] for g in got[1:]]
    got = [g[:5] if g[0] else g[:2] for g in got]
    assert sum(checked) > 200
    got = [g for g, c in zip(got, checked, strict=True) if c]
    expect = [e for e, c in zip(expect, checked, strict=True) if c]
    assert got == expect


def test_maglev_validates():
    geo = _geo()
    with pytest.raises(ValueError, match="unknown memory 'dips'"):
        MaglevLookup(geo, {"dips": []})
    with pytest.raises(ValueError, match="more than the depth"):
        MaglevLookup(geo, {"dip": [0] * (geo.dip_capacity + 1)})
