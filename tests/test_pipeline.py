"""Data plane: scalar == batch, decision rules, two-phase commit, vector round trip."""

import numpy as np
import pytest

from model.config import Dip
from model.controlplane import ControlPlane
from model.hashing import FIELDS, FiveTuple
from model.layout import Action, Memories, MemoryError_, Phase, pack_slot, unpack_vip_state
from model.pipeline import TCP_FIN, TCP_SYN, DataPlane, Decision, Packet
from model.pools import PoolError
from model.trace import TraceParams, replay
from model.vectors import build_scenario, read_vectors, replay_scenario, write_vectors


def _setup(cfg):
    cp = ControlPlane(cfg)
    cp.install()
    return cp, DataPlane(cfg, cp.mem, cp.hasher)


def _pkt(cfg, vip=0, src=0x64400001, sport=12345, flags=TCP_SYN):
    v = cfg.vips[vip]
    return Packet(src, v.address, sport, v.port, v.protocol, flags)


def test_non_vip_is_forwarded_untouched(default_cfg):
    cp, dp = _setup(default_cfg)
    p = Packet(1, 2, 3, 4, 6)
    d = dp.process(p)
    assert d == Decision()
    assert d.out_dst(p) == (2, 4)
    # right address, wrong port or protocol: not a VIP either
    v = default_cfg.vips[0]
    assert dp.process(Packet(1, v.address, 3, v.port + 1, 6)).action == Action.FORWARD
    assert dp.process(Packet(1, v.address, 3, v.port, 17)).action == Action.FORWARD


def test_miss_learn_insert_hit_close(default_cfg):
    cp, dp = _setup(default_cfg)
    p = _pkt(default_cfg)
    d1 = dp.process(p)
    assert (d1.action, d1.hit, d1.learn, d1.version) == (Action.LB, 0, 1, 0)
    assert (d1.dip_ip, d1.dip_port) in {(x.address, x.port) for x in default_cfg.vips[0].dips}
    cp.observe(p.key, d1)
    cp.insert_pending()
    d2 = dp.process(p)
    assert (d2.hit, d2.learn, d2.dip, d2.close) == (1, 0, d1.dip, 0)
    d3 = dp.process(Packet(**{**p.__dict__, "tcp_flags": TCP_FIN}))
    assert d3.close == 1 and d3.hit == 1
    cp.observe(p.key, d3)
    assert dp.process(p).hit == 0


def test_unmapped_version_drops(default_cfg):
    cp, dp = _setup(default_cfg)
    cp.mem.write("slot_map", 0, pack_slot(default_cfg.geometry, False, 0))
    d = dp.process(_pkt(default_cfg))
    assert d.action == Action.DROP and d.learn == 0 and d.dip == 0


def test_memory_write_validation(default_cfg):
    mem = Memories(default_cfg)
    with pytest.raises(MemoryError_, match="unknown memory 'nope'"):
        mem.write("nope", 0, 0)
    with pytest.raises(MemoryError_, match=r"write conn0: address 4096 outside 0\.\.4095"):
        mem.write("conn0", 4096, 0)
    with pytest.raises(MemoryError_, match="wider than 23 bits"):
        mem.write("conn0", 0, 1 << 23)


def _random_arrays(cfg, n, seed):
    rng = np.random.default_rng(seed)
    vi = rng.integers(0, len(cfg.vips), n)
    a = {
        "src_ip": rng.integers(0, 2**32, n), "src_port": rng.integers(0, 2**16, n),
        "dst_ip": np.array([v.address for v in cfg.vips])[vi],
        "dst_port": np.array([v.port for v in cfg.vips])[vi],
        "proto": np.array([v.protocol for v in cfg.vips])[vi],
        "tcp_flags": rng.choice([0, TCP_SYN, TCP_FIN, 0x10], n),
    }
    a["dst_port"][::17] += 1  # some non-VIP packets
    return a


@pytest.mark.parametrize("cfgname", ["default_cfg", "small_cfg"])
def test_batch_equals_scalar(cfgname, request):
    cfg = request.getfixturevalue(cfgname)
    cp, dp = _setup(cfg)
    arrays = _random_arrays(cfg, 3000, 1)
    # make half of them known connections, with cuckoo moves and (small) stash
    for i in range(0, 3000, 2):
        t = FiveTuple(*(int(arrays[f][i]) for f in FIELDS))
        try:
            cp.table.insert(t, 0)
        except RuntimeError:
            break
    # put VIP 0 into FLIP with some transit bits, VIP 1 into RECORD
    cp.pools.create(0, cfg.vips[0].dips, version=3)
    cp._write_state(0, Phase.FLIP, 3, 0)
    cp._write_state(1, Phase.RECORD, 0, 0)
    cp.mem["transit0"][::3] = 1
    cp.mem["transit1"][::2] = 1
    snap = cp.mem.snapshot()
    batch = dp.process_batch(arrays)
    after_batch = cp.mem.snapshot()
    for name, words in snap.items():
        cp.mem.arrays[name][:] = np.array(words, dtype=cp.mem.arrays[name].dtype)
    for i in range(3000):
        p = Packet(*(int(arrays[f][i]) for f in (*FIELDS, "tcp_flags")))
        want = dp.process(p)
        got = Decision(**{k: int(v[i]) for k, v in batch.items()})
        assert got == want, i
    assert cp.mem.snapshot() == after_batch
    assert batch["transit_hit"].sum() > 0 and batch["hit"].sum() > 0


def _state(cp, vid):
    return unpack_vip_state(cp.geo, cp.mem.read("vip_state", vid))


def test_two_phase_commit_sequence(default_cfg):
    cp, dp = _setup(default_cfg)
    old_pkt = _pkt(default_cfg, sport=1000)
    d = dp.process(old_pkt)
    cp.observe(old_pkt.key, d)                       # pending, version 0
    new_dips = default_cfg.vips[0].dips[1:]
    cp.update_pool(0, new_dips)
    assert _state(cp, 0) == (Phase.RECORD, 0, 0)     # waits for the pending connection
    rec_pkt = _pkt(default_cfg, sport=2000)
    d_rec = dp.process(rec_pkt)                      # arrives during RECORD: old version
    assert d_rec.version == 0
    cp.observe(rec_pkt.key, d_rec)
    cp.insert_pending(older_than=cp.pending[old_pkt.key][2])
    assert _state(cp, 0) == (Phase.FLIP, 0, 1)
    d_again = dp.process(rec_pkt)                    # still pending: TransitTable keeps v0
    assert (d_again.hit, d_again.transit_hit, d_again.version, d_again.dip) == \
        (0, 1, 0, d_rec.dip)
    fresh = dp.process(_pkt(default_cfg, sport=3000))
    assert (fresh.version, fresh.transit_hit) == (1, 0)
    cp.insert_pending()
    assert _state(cp, 0) == (Phase.IDLE, 0, 1)
    assert not any(cp.mem["transit0"]) and not any(cp.mem["transit1"])


def test_pool_slots_exhausted_is_a_clear_error(small_cfg):
    cp, dp = _setup(small_cfg)                        # 4 slots, 2 VIPs -> 2 free
    keep = []
    for k in range(2):
        p = _pkt(small_cfg, sport=5000 + k)
        cp.observe(p.key, dp.process(p))
        cp.insert_pending()
        keep.append(p)
        cp.update_pool(0, small_cfg.vips[0].dips[: 2 - k] + (Dip(0x0A0A00F0 + k, 80),))
    snap = cp.mem.snapshot()
    with pytest.raises(PoolError, match=r"geometry\.pool_slots: all 4 Maglev table slots"):
        cp.update_pool(0, small_cfg.vips[0].dips[:1])
    assert cp.mem.snapshot() == snap                  # nothing half-done


def test_trace_pcc_two_phase_vs_none(default_cfg):
    p = TraceParams(connections=100_000, updates=100, mean_lifetime=1000.0)
    on = replay(default_cfg, p)
    off = replay(default_cfg, TraceParams(**{**p.__dict__, "two_phase": False}))
    assert on.updates_applied >= 50 and off.updates_applied >= 50
    assert on.violations == 0
    assert off.violations > 0


@pytest.mark.parametrize("cfgname", ["default_cfg", "small_cfg"])
def test_vectors_round_trip(cfgname, request, tmp_path):
    cfg = request.getfixturevalue(cfgname)
    scen = build_scenario(cfg, connections=150)
    assert replay_scenario(scen) == []
    write_vectors(scen, tmp_path)
    back = read_vectors(cfg, tmp_path)
    assert back.initial == scen.initial and back.ops == scen.ops
    # the vectors exercise what the targets must get right
    ds = [s.decision for s in scen.packets]
    assert {d.action for d in ds} >= {Action.FORWARD, Action.LB}
    assert any(d.hit for d in ds) and any(d.learn for d in ds) and any(d.close for d in ds)
    assert any(w.mem.startswith("conn") for w in scen.writes)
    assert any(w.mem == "vip_state" for w in scen.writes)


def test_replay_detects_a_wrong_expectation(small_cfg, tmp_path):
    scen = build_scenario(small_cfg, connections=50)
    write_vectors(scen, tmp_path)
    lines = (tmp_path / "vectors.txt").read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("P ") and
             line.split()[7] == "1")
    t = lines[i].split()
    t[14] = f"{int(t[14], 16) ^ 1:x}"   # dip index
    lines[i] = " ".join(t)
    (tmp_path / "vectors.txt").write_text("\n".join(lines) + "\n")
    bad = replay_scenario(read_vectors(small_cfg, tmp_path))
    assert len(bad) == 1


def test_malformed_vector_line(small_cfg, tmp_path):
    write_vectors(build_scenario(small_cfg, connections=10), tmp_path)
    with open(tmp_path / "vectors.txt", "a") as f:
        f.write("P 1 2 3\n")
    with pytest.raises(ValueError, match=r"vectors.txt:\d+: malformed line 'P 1 2 3'"):
        read_vectors(small_cfg, tmp_path)


def test_reserved_phase_behaves_as_idle(default_cfg):
    cp, dp = _setup(default_cfg)
    p = _pkt(default_cfg)
    idle = dp.process(p)
    cp.mem.write("vip_state", 0, 3 << (2 * default_cfg.geometry.version_bits))
    assert dp.process(p) == idle
    assert not cp.mem["transit0"].any()


def test_a_close_deletes_before_the_next_packet_in_the_vectors(small_cfg):
    """Regression (found by BMv2 on 98,745 packets): a close deletes its connection
    during ``observe``, and the vectors held that write back to the end of the
    control-plane round. A later packet of another key with the same bucket and 8-bit
    digest then hit the deleted word on replay (a DROP) where the model had missed."""
    scen = build_scenario(small_cfg, connections=31_250, updates=20)
    assert replay_scenario(scen) == []
