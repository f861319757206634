"""Load-aware DIP selection in the control plane: config validation, weight computation,
and trace replays with the policy on (PCC must hold)."""

import copy
import dataclasses

import numpy as np
import pytest

from model.config import ConfigError, Policy, load_config, parse_config
from model.hashing import FiveTuple
from model.loadaware import (
    LoadAwareControlPlane,
    LoadTracker,
    load_imbalance,
    load_weights,
)
from model.maglev import build_table, shares
from model.trace import TraceParams, make_trace, replay

from .conftest import EXAMPLES

BASE = {
    "geometry": {"stages": 2, "log2_slots": 6, "maglev_size": 251},
    "vip": [{"name": "a", "address": "10.0.0.1", "port": 80, "protocol": "tcp",
             "dips": [{"address": "10.1.0.1", "port": 80}, {"address": "10.1.0.2"}]}],
}


def with_policy(value):
    d = copy.deepcopy(BASE)
    d["vip"][0]["policy"] = value
    return d


# ---- config ---------------------------------------------------------------------------

def test_default_policy_is_maglev_and_examples_unchanged():
    assert parse_config(copy.deepcopy(BASE)).vips[0].policy == Policy()
    for name in ("default", "small", "large"):
        cfg = load_config(EXAMPLES / f"{name}.toml")
        assert all(v.policy.kind == "maglev" for v in cfg.vips)


def test_policy_string_and_table():
    assert parse_config(with_policy("maglev")).vips[0].policy == Policy()
    p = parse_config(with_policy("weighted-by-load")).vips[0].policy
    assert p.load_aware and p.period == Policy().period
    p = parse_config(with_policy({"kind": "weighted-by-load", "period": 8, "threshold": 1,
                                  "resolution": 32, "min_weight": 2})).vips[0].policy
    assert (p.period, p.threshold, p.resolution, p.min_weight) == (8, 1.0, 32, 2)


def test_load_aware_example_parses():
    cfg = load_config(EXAMPLES / "load_aware.toml")
    assert all(v.policy.load_aware for v in cfg.vips)


@pytest.mark.parametrize(("value", "match"), [
    ("p2c", r"vip\[0\]\.policy: unknown policy 'p2c' \(expected one of \['maglev', "
            r"'weighted-by-load'\]\)"),
    ({"kind": "jsq"}, r"vip\[0\]\.policy\.kind: unknown policy 'jsq'"),
    (3, r"vip\[0\]\.policy: expected a policy name or a table, got 3"),
    ({"kind": "weighted-by-load", "period": 0}, r"vip\[0\]\.policy\.period: 0 is below"),
    ({"kind": "weighted-by-load", "period": 1.5},
     r"vip\[0\]\.policy\.period: expected an integer, got 1\.5"),
    ({"kind": "weighted-by-load", "threshold": 0.9},
     r"vip\[0\]\.policy\.threshold: 0\.9 is below the minimum 1\.0"),
    ({"kind": "weighted-by-load", "threshold": "x"},
     r"vip\[0\]\.policy\.threshold: expected a number, got 'x'"),
    ({"kind": "weighted-by-load", "threshold": True},
     r"vip\[0\]\.policy\.threshold: expected a number, got True"),
    ({"kind": "weighted-by-load", "resolution": 0}, r"vip\[0\]\.policy\.resolution: 0 is"),
    ({"kind": "weighted-by-load", "min_weight": 20},
     r"vip\[0\]\.policy\.min_weight: 20 is above vip\[0\]\.policy\.resolution \(16\)"),
    ({"kind": "weighted-by-load", "bogus": 1}, r"vip\[0\]\.policy\.bogus: unknown field"),
    ({"period": 8}, r"vip\[0\]\.policy\.period: parameter of the 'weighted-by-load' "
                    r"policy, but the policy is 'maglev'"),
])
def test_policy_errors_name_field_and_value(value, match):
    with pytest.raises(ConfigError, match=match):
        parse_config(with_policy(value))


# ---- weights --------------------------------------------------------------------------

def test_balanced_loads_give_base_proportional_weights():
    w = load_weights([10, 10, 20], [1, 1, 2], resolution=16, min_weight=1, horizon=8)
    assert w.tolist() == [8, 8, 16]
    assert load_imbalance([10, 10, 20], [1, 1, 2]) == pytest.approx(1.0)
    assert load_imbalance([0, 0, 0], [1, 1, 1]) == 1.0


def test_overloaded_dip_gets_min_weight_and_deficits_order_weights():
    loads = np.array([30.0, 0.0, 5.0, 10.0])
    w = load_weights(loads, [1, 1, 1, 1], resolution=16, min_weight=2, horizon=16)
    # target per DIP = (45 + 16) / 4 = 15.25; deficits 0, 15.25, 10.25, 5.25
    assert w[0] == 2 and w[1] == 16
    assert w[1] > w[2] > w[3] > w[0]
    assert w.tolist() == [2, 16, round(16 * 10.25 / 15.25), round(16 * 5.25 / 15.25)]
    assert load_imbalance(loads, [1] * 4) == pytest.approx(30 / (45 / 4))


@pytest.mark.parametrize(("kw", "match"), [
    ({"resolution": 0}, "resolution"), ({"min_weight": 0}, "min_weight"),
    ({"min_weight": 17}, "min_weight"), ({"horizon": 0}, "horizon"),
])
def test_load_weights_argument_errors(kw, match):
    args = {"resolution": 16, "min_weight": 1, "horizon": 4} | kw
    with pytest.raises(ValueError, match=match):
        load_weights([1, 2], [1, 1], **args)
    with pytest.raises(ValueError, match="base"):
        load_imbalance([1, 2], [1, 0])


def test_weights_move_maglev_shares_toward_the_idle_dip():
    cfg = parse_config(copy.deepcopy(BASE))
    dips = cfg.vips[0].dips
    w = load_weights([40, 0], [1, 1], resolution=16, min_weight=1, horizon=8)
    pool = [dataclasses.replace(d, weight=int(x)) for d, x in zip(dips, w, strict=True)]
    table = build_table(pool, cfg.geometry.maglev_size, cfg.salts)
    s = shares(table, 2)
    assert s[1] > 0.9 and s[0] > 0  # the loaded DIP keeps a trickle


def test_tracker_counts_learn_close_and_reports():
    t = LoadTracker()
    k1, k2 = FiveTuple(1, 2, 3, 4, 6), FiveTuple(5, 2, 3, 4, 6)
    t.opened(k1, 0, (9, 80))
    t.opened(k1, 0, (9, 80))  # duplicate learn: counted once
    t.opened(k2, 0, (8, 80))
    assert t.loads(0, [(9, 80), (8, 80), (7, 80)]).tolist() == [1, 1, 0]
    t.closed(k1)
    t.closed(k1)
    t.report(0, (7, 80), 5)
    assert t.loads(0, [(9, 80), (8, 80), (7, 80)]).tolist() == [0, 1, 5]
    t.clear_report(0, (7, 80))
    assert t.loads(0, [(7, 80)]).tolist() == [0]


# ---- control plane and trace replay ---------------------------------------------------

def load_aware_default(period=16, threshold=1.0):
    cfg = load_config(EXAMPLES / "default.toml")
    pol = Policy("weighted-by-load", period=period, threshold=threshold)
    # more pool slots than the shipped 8: old versions retire only when their
    # (long-lived) connections end, and a rebalance needs a free slot
    geo = dataclasses.replace(cfg.geometry, pool_slots=32)
    return dataclasses.replace(cfg, geometry=geo, vips=tuple(
        dataclasses.replace(v, policy=pol) for v in cfg.vips))


def test_tracker_matches_the_control_planes_connections():
    cfg = load_aware_default(period=1 << 20)  # count only, never rebalance
    p = TraceParams(connections=1500, updates=0)
    trace = make_trace(cfg, p)
    cp_holder = {}

    class Spy(LoadAwareControlPlane):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            cp_holder["cp"] = self

    replay(cfg, p, trace, control_plane=Spy)
    cp = cp_holder["cp"]
    live = set(cp.pending) | set(cp.conn_version)
    assert set(cp.tracker.conn) == live
    assert sum(cp.tracker.active.values()) == len(live)
    assert cp.stats["rebalances"] == 0


@pytest.mark.parametrize("seed", [1, 2])
def test_trace_replay_with_policy_on_has_no_pcc_violation(seed):
    cfg = load_aware_default()
    p = TraceParams(connections=3000, updates=4, seed=seed)
    r = replay(cfg, p, control_plane=LoadAwareControlPlane)
    assert r.stats["rebalances"] > 5  # the policy really installed new versions
    assert r.violations == 0


def test_trace_replay_without_commit_shows_the_check_bites():
    cfg = load_aware_default()
    p = TraceParams(connections=3000, updates=0, two_phase=False, seed=1)
    r = replay(cfg, p, control_plane=LoadAwareControlPlane)
    assert r.stats["rebalances"] > 5
    assert r.violations > 0
