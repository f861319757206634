"""The simulator against textbook results, and the l4lb policy's PCC in simulation."""

import math

import numpy as np
import pytest

from model.config import load_config
from model.sim import POLICIES, Scenario, make_workload, simulate
from model.textbook import (
    balls_into_bins,
    batch_means,
    fluid_max_load,
    fluid_tail,
    mm1_split_mean,
    two_choice_max_formula,
)

from .conftest import EXAMPLES


@pytest.fixture(scope="module")
def cfg():
    return load_config(EXAMPLES / "load_aware.toml")


@pytest.mark.parametrize("d", [1, 2, 3])
def test_balls_into_bins_tail_fractions_match_the_fluid_limit(d):
    n, trials = 2000, 20
    rng = np.random.default_rng(d)
    loads = np.concatenate([balls_into_bins(n, d, rng) for _ in range(trials)])
    s = fluid_tail(d, levels=6)
    for i in range(1, 4):
        p = s[i]
        frac = float((loads >= i).mean())
        se = math.sqrt(max(p * (1 - p), 1e-6) / loads.size)
        assert abs(frac - p) < 5 * se + 1e-3, (d, i, frac, p)


def test_two_choices_max_load_against_the_formulas():
    rng = np.random.default_rng(7)
    n = 20_000
    one = max(int(balls_into_bins(n, 1, rng).max()) for _ in range(3))
    two = max(int(balls_into_bins(n, 2, rng).max()) for _ in range(3))
    assert two <= two_choice_max_formula(n) + 2  # ln ln n / ln 2 + O(1)
    assert two < one
    assert abs(one - fluid_max_load(n, 1)) <= 1 and abs(two - fluid_max_load(n, 2)) <= 1


def test_fluid_tail_closed_forms():
    s = fluid_tail(2, levels=3)
    assert s[1] == pytest.approx(math.tanh(1.0), rel=1e-6)  # s1' = 1 - s1^2
    assert fluid_tail(1, levels=2)[1] == pytest.approx(1 - math.exp(-1))


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_random_split_matches_mm1_and_jsq_is_lower(cfg, rho):
    n = len(cfg.vips[0].dips)
    s = Scenario(connections=60_000, rho=rho, seed=3)
    w = make_workload(cfg, s)
    r = simulate(cfg, s, "random", workload=w, keep_responses=True)
    mean, se = batch_means(r.responses)
    want = mm1_split_mean(rho * n, n)
    assert abs(mean - want) < 4 * se + 0.01 * want, (mean, se, want)
    # Little's law: active connections = arrival rate x response time
    lam = rho * n
    assert r.active_mean * n == pytest.approx(lam * r.mean, rel=0.03)
    jsq = simulate(cfg, s, "jsq", workload=w)
    assert jsq.mean < 0.75 * r.mean
    assert jsq.active_max / jsq.active_mean < r.active_max / r.active_mean


def test_every_policy_runs_and_jsq_is_best(cfg):
    s = Scenario(connections=4000, rho=0.7, seed=5)
    w = make_workload(cfg, s)
    res = {p: simulate(cfg, s, p, workload=w) for p in POLICIES}
    assert all(r.connections == 4000 and r.mean > 0 for r in res.values())
    assert res["jsq"].mean == min(r.mean for r in res.values())
    assert all(r.pcc_violations == 0 for r in res.values())


def test_l4lb_policy_keeps_pcc_and_beats_maglev_with_a_slow_server(cfg):
    s = Scenario(connections=3000, rho=0.8, speeds=(1.0,) * 7 + (0.5,), seed=2)
    w = make_workload(cfg, s)
    l4 = simulate(cfg, s, "l4lb", workload=w)
    assert l4.rebalances > 20 and l4.pcc_violations == 0
    assert l4.stats["learned"] == 3000 and l4.stats["deleted"] == 3000
    mg = simulate(cfg, s, "maglev", workload=w)
    assert l4.mean < 0.7 * mg.mean


def test_pcc_counter_bites_without_the_two_phase_commit(cfg):
    s = Scenario(connections=3000, rho=0.8, seed=2)
    r = simulate(cfg, s, "l4lb", two_phase=False)
    assert r.rebalances > 20 and r.pcc_violations > 0


@pytest.mark.parametrize(("kw", "match"), [
    ({"rho": 1.0}, "rho"), ({"arrivals": "x"}, "arrivals"), ({"sizes": "x"}, "sizes"),
    ({"connections": 0}, "connections"),
])
def test_scenario_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        Scenario(**kw)


def test_unknown_policy(cfg):
    with pytest.raises(ValueError, match="policy"):
        simulate(cfg, Scenario(connections=10), "p3c")
