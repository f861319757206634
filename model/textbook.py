"""Textbook load-balancing results the simulator is checked against (docs/sim.md).

* Balls into bins: ``n`` balls into ``n`` bins, each ball into the least loaded of
  ``d`` bins chosen uniformly at random (``d = 1``: purely random). The maximum load
  is about ``ln n / ln ln n`` for ``d = 1`` and ``ln ln n / ln d + O(1)`` for
  ``d >= 2`` (Azar, Broder, Karlin, Upfal 1994). Finer: the fraction of bins with at
  least ``i`` balls follows the fluid limit (Mitzenmacher 1996)
  ``ds_i/dt = s_{i-1}^d - s_i^d``, ``s_0 = 1``, at ``t = 1`` (for ``d = 1`` that is
  the Poisson(1) tail), and the maximum load is the largest ``i`` with
  ``n * s_i(1) >= 1/2`` or so: :func:`fluid_max_load`.
* Random split of Poisson arrivals of total rate ``lam`` over ``n`` identical M/M/1
  servers of rate ``mu``: each is M/M/1 with rate ``lam / n``, mean sojourn
  ``1 / (mu - lam / n)`` (:func:`mm1_split_mean`).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["balls_into_bins", "fluid_tail", "fluid_max_load", "random_max_formula",
           "two_choice_max_formula", "mm1_split_mean", "batch_means"]


def balls_into_bins(n: int, d: int, rng: np.random.Generator, balls: int | None = None
                    ) -> np.ndarray:
    """Bin loads after ``balls`` (default ``n``) balls, each to the least loaded of
    ``d`` uniform choices (ties: the first choice drawn)."""
    if n < 1 or d < 1:
        raise ValueError(f"n and d must be >= 1, got n={n!r}, d={d!r}")
    m = n if balls is None else balls
    if d == 1:
        return np.bincount(rng.integers(0, n, m), minlength=n)
    ch = rng.integers(0, n, (m, d)).tolist()
    load = [0] * n
    if d == 2:
        for a, b in ch:
            if load[b] < load[a]:
                a = b
            load[a] += 1
    else:
        for row in ch:
            best = row[0]
            for x in row[1:]:
                if load[x] < load[best]:
                    best = x
            load[best] += 1
    return np.array(load)


def fluid_tail(d: int, levels: int = 12, steps: int = 20000) -> np.ndarray:
    """``s_i(1)`` for ``i = 0 .. levels``: the fraction of bins holding at least ``i``
    balls after ``n`` balls, as ``n -> infinity`` (RK4 on the fluid-limit ODE)."""
    if d == 1:
        i = np.arange(levels + 1)
        cdf = np.cumsum([math.exp(-1) / math.factorial(k) for k in range(levels + 1)])
        return np.concatenate(([1.0], 1.0 - cdf[:-1]))[: i.size]

    def f(s: np.ndarray) -> np.ndarray:
        p = s ** d
        out = np.zeros_like(s)
        out[1:] = p[:-1] - p[1:]
        return out

    s = np.zeros(levels + 1)
    s[0] = 1.0
    h = 1.0 / steps
    for _ in range(steps):
        k1 = f(s)
        k2 = f(s + h / 2 * k1)
        k3 = f(s + h / 2 * k2)
        k4 = f(s + h * k3)
        s = s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return s


def fluid_max_load(n: int, d: int) -> int:
    """The largest ``i`` whose expected number of bins ``n * s_i(1)`` is at least 1/2."""
    s = fluid_tail(d, levels=40 if d == 1 else 12)
    return int(np.flatnonzero(n * s >= 0.5).max())


def random_max_formula(n: int) -> float:
    """``ln n / ln ln n`` (leading order of the random maximum load)."""
    return math.log(n) / math.log(math.log(n))


def two_choice_max_formula(n: int, d: int = 2) -> float:
    """``ln ln n / ln d`` (the d-choice maximum load up to an additive O(1))."""
    return math.log(math.log(n)) / math.log(d)


def mm1_split_mean(lam: float, n: int, mu: float = 1.0) -> float:
    """Mean sojourn of a random split over ``n`` M/M/1 queues: ``1 / (mu - lam / n)``."""
    if not 0 < lam / n < mu:
        raise ValueError(f"unstable: lam / n = {lam / n!r} is not in (0, mu={mu!r})")
    return 1.0 / (mu - lam / n)


def batch_means(x: np.ndarray, batches: int = 20) -> tuple[float, float]:
    """Mean of a correlated series and its standard error by the batch-means method."""
    x = np.asarray(x, dtype=np.float64)
    b = x[: x.size // batches * batches].reshape(batches, -1).mean(axis=1)
    return float(x.mean()), float(b.std(ddof=1) / math.sqrt(batches))
