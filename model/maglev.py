"""Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4, Pseudocode 1).

Every backend ``i`` has a permutation of the table positions
``permutation[i][j] = (offset_i + j * skip_i) mod M`` and the backends take turns,
in backend order, each claiming the next position of its permutation that is still
empty, until all ``M`` entries are filled. A backend of weight ``w`` takes ``w``
consecutive turns per round; the fill stops as soon as the table is full, even in
the middle of a round. Hence backend ``i`` gets exactly ``R * w_i + p_i`` entries
where ``R = M // sum(w)`` full rounds are played and ``p_i`` is its part of the last,
partial round (:func:`expected_counts`).

:func:`populate_reference` is a literal pure-Python transcription of Pseudocode 1.
:func:`populate` computes the identical table with numpy (see its docstring for the
exact conflict resolution that makes a vectorised fill equal to the sequential one).

Permutation parameters of a DIP (bit-exact, shared by every target)::

    h_off  = crc32(salt_maglev_offset[4 bytes BE] || address[4 BE] || port[2 BE])
    h_skip = crc32(salt_maglev_skip[4 bytes BE]   || address[4 BE] || port[2 BE])
    offset = h_off % M
    skip   = h_skip % (M - 1) + 1            if M is prime
    skip   = (h_skip % (M // 2)) * 2 + 1     if M is a power of two (odd: coprime)
"""

from __future__ import annotations

import math
import operator
import zlib
from collections.abc import Hashable, Sequence

import numpy as np

from .config import Dip, Salts, is_prime

__all__ = [
    "populate",
    "populate_reference",
    "expected_counts",
    "permutation",
    "dip_hashes",
    "permutation_params",
    "build_table",
    "shares",
    "imbalance",
    "disruption",
    "removal_disruption",
    "addition_disruption",
]

IntSeq = Sequence[int] | np.ndarray


# ------------------------------------------------------------------------------------
# Validation (pure Python: shared by the reference and the vectorised implementation)

def _int_list(values: IntSeq, name: str) -> list[int]:
    """Convert a sequence of integers to a list of Python ints, or raise ValueError."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D sequence, got shape {values.shape}")
        if values.size and values.dtype.kind not in "iu":
            raise ValueError(f"{name}: expected integers, got dtype {values.dtype}")
        return values.tolist()
    out = []
    for k, v in enumerate(values):
        if isinstance(v, bool | np.bool_):
            raise ValueError(f"{name}[{k}]: expected an integer, got {v!r}")
        try:
            out.append(operator.index(v))
        except TypeError:
            raise ValueError(f"{name}[{k}]: expected an integer, got {v!r}") from None
    return out


def _validate(
    offsets: IntSeq, skips: IntSeq, size: int, weights: IntSeq | None
) -> tuple[list[int], list[int], list[int], int]:
    """Check the arguments of :func:`populate`; return them as Python ints."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"size: expected an integer, got {size!r}")
    size = int(size)
    offs = _int_list(offsets, "offsets")
    sks = _int_list(skips, "skips")
    n = len(offs)
    if n == 0:
        raise ValueError("offsets: at least one backend is required, got 0")
    if len(sks) != n:
        raise ValueError(f"skips: length {len(sks)} differs from the length of offsets ({n})")
    if weights is None:
        ws = [1] * n
    else:
        ws = _int_list(weights, "weights")
        if len(ws) != n:
            raise ValueError(
                f"weights: length {len(ws)} differs from the length of offsets ({n})"
            )
    if size < n:
        raise ValueError(f"size: {size} is smaller than the number of backends ({n})")
    for i, o in enumerate(offs):
        if not 0 <= o < size:
            raise ValueError(f"offsets[{i}]: {o} is not in [0, size) = [0, {size})")
    for i, s in enumerate(sks):
        if not 1 <= s < size:
            raise ValueError(f"skips[{i}]: {s} is not in [1, size) = [1, {size})")
        g = math.gcd(s, size)
        if g != 1:
            raise ValueError(
                f"skips[{i}]: {s} is not coprime with size {size} (gcd {g}); its "
                f"permutation would not cover the table"
            )
    for i, w in enumerate(ws):
        if w < 1:
            raise ValueError(f"weights[{i}]: {w} is below the minimum 1")
    return offs, sks, ws, size


# ------------------------------------------------------------------------------------
# Table population

def populate_reference(
    offsets: IntSeq, skips: IntSeq, size: int, weights: IntSeq | None = None
) -> list[int]:
    """Pseudocode 1 of the Maglev paper, transcribed literally in pure Python."""
    offs, sks, ws, size = _validate(offsets, skips, size, weights)
    n_backends = len(offs)
    next_ = [0] * n_backends
    entry = [-1] * size
    n = 0
    while True:
        for i in range(n_backends):
            for _turn in range(ws[i]):
                c = (offs[i] + next_[i] * sks[i]) % size
                while entry[c] >= 0:
                    next_[i] += 1
                    c = (offs[i] + next_[i] * sks[i]) % size
                entry[c] = i
                next_[i] += 1
                n += 1
                if n == size:
                    return entry


def expected_counts(size: int, weights: IntSeq) -> np.ndarray:
    """Exact number of table entries each backend receives (a property of the fill order)."""
    w = np.asarray(_int_list(weights, "weights"), dtype=np.int64)
    total = int(w.sum())
    rounds, rest = divmod(int(size), total)
    start = np.cumsum(w) - w
    return rounds * w + np.clip(rest - start, 0, w)


def _turn_backends(first: int, count: int, cum_w: np.ndarray) -> np.ndarray:
    """Backend of each global turn ``first .. first + count - 1``."""
    within = (first + np.arange(count, dtype=np.int64)) % int(cum_w[-1])
    return np.searchsorted(cum_w, within, side="right")


def _populate_loop(offs: list[int], sks: list[int], ws: list[int], size: int, stop: int
                   ) -> np.ndarray:
    """Pseudocode 1 (slot stepping instead of multiply/mod) until ``stop`` entries are set."""
    entry = [-1] * size
    if stop:
        cur = list(offs)  # slot of permutation[i][next[i]]
        turns = [(i, sks[i]) for i in range(len(offs)) for _ in range(ws[i])]
        filled = 0
        while filled < stop:
            for i, s in turns:
                c = cur[i]
                while entry[c] >= 0:
                    c += s
                    if c >= size:
                        c -= size
                entry[c] = i
                c += s
                cur[i] = c - size if c >= size else c
                filled += 1
                if filled == stop:
                    break
    return np.array(entry, dtype=np.int32)


def _search_runs(
    key: np.ndarray, size: int, first: np.ndarray, after: np.ndarray, off: np.ndarray,
    skip: np.ndarray, lower: np.ndarray, member_run: np.ndarray, local: np.ndarray,
    width: int,
) -> np.ndarray:
    """New positions of runs of consecutive blocked turns of one backend each.

    Run ``r`` (permutation ``off[r], skip[r]``, first turn id ``first[r]``) scans the
    positions after ``after[r]`` whose key exceeds ``first[r]``; these are acceptable
    to every member alike, since no other turn has an id inside the run. Member ``k``
    (of run ``member_run[k]``, ``local[k]``-th in it) must land after ``lower[k]`` and
    after the previous member; greedily it takes the ``c_k``-th acceptable position,
    ``c_k = max_{j <= k} (count(lower_j) + 1 - local_j) + local_k`` (count in the run).
    """
    n_runs = first.size
    out = np.empty(member_run.size, dtype=np.int64)
    single = n_runs == member_run.size  # one member per run: first acceptable position
    todo = np.arange(n_runs)
    scanned = 0
    while todo.size:
        scanned += width
        if scanned > 4 * size:  # every permutation covers the table: cannot happen
            raise RuntimeError("maglev: no acceptable entry found (internal error)")
        t_after = after[todo]
        t_skip = skip[todo]
        s0 = (off[todo] + (t_after + 1) * t_skip) % size  # entry of position after + 1
        cand = np.arange(width, dtype=np.int64) * t_skip[:, None]
        cand += s0[:, None]
        cand %= size
        acc = key[cand] > first[todo, None]
        rows = np.arange(todo.size)
        if single:
            col = acc.argmax(axis=1)
            ok = acc[rows, col]
            out[todo[ok]] = t_after[ok] + 1 + col[ok]
        else:
            counts = np.cumsum(acc, axis=1)
            row_of_run = np.full(n_runs, -1)
            row_of_run[todo] = rows
            sel = np.flatnonzero(row_of_run[member_run] >= 0)  # members of these runs
            r = row_of_run[member_run[sel]]
            lcol = lower[sel] - t_after[r] - 1
            c_low = np.where(lcol >= 0, counts[r, np.clip(lcol, 0, width - 1)], 0)
            sep = 2 * (width + member_run.size + 2)  # separates runs in a running max
            v = c_low + 1 - local[sel] + r * sep
            np.maximum.accumulate(v, out=v)
            target = v - r * sep + local[sel]
            ok = np.ones(todo.size, dtype=bool)
            ok[r[(lcol >= width) | (target > counts[r, -1])]] = False
            fine = ok[r]
            flat = (counts + (rows * (width + 1))[:, None]).ravel()
            idx = np.searchsorted(flat, target[fine] + r[fine] * (width + 1))
            out[sel[fine]] = t_after[r[fine]] + 1 + idx % width
        todo = todo[~ok]
        if single:  # nothing acceptable in the window: continue after it
            after = after.copy()
            after[todo] += width
        # (runs rescan from the same start with a longer window)
        width = min(2 * width, size)
    return out


def _populate_blocks(off: np.ndarray, skip: np.ndarray, w: np.ndarray, size: int, stop: int
                     ) -> np.ndarray:
    """Vectorised Pseudocode 1 (see :func:`populate`) until ``stop`` entries are set."""
    cum_w = np.cumsum(w)
    start = cum_w - w  # index of backend i's first turn within a round
    round_turns = int(cum_w[-1])
    table = np.full(size, -1, dtype=np.int32)
    key = np.full(size, size + 1, dtype=np.int64)  # sentinel > every turn id
    next_ = np.zeros(off.size, dtype=np.int64)
    done = 0  # turns played so far == entries filled
    while done < stop:
        empty = size - done
        j0 = done % round_turns
        n_turns = min(round_turns - j0, max(1, empty // 3), stop - done)
        ids = np.arange(n_turns, dtype=np.int64)
        b = np.searchsorted(cum_w, j0 + ids, side="right")
        rank = j0 + ids - np.maximum(start[b], j0)  # earlier turns of b in this block
        pos = next_[b] + rank
        ob = off[b]
        kb = skip[b]
        slot = ob + pos * kb
        slot %= size
        chained = n_turns > int(b[-1] - b[0]) + 1  # some backend has several turns
        if chained:
            sep = b * (2 * size + 2) - rank
        # expected distance to an acceptable entry is at most size / (empty - n_turns)
        width = int(min(size, 2 + (3 * size) // (2 * max(1, empty - n_turns))))
        changed = ids
        while True:
            cs = slot[changed]
            live = key[cs] >= 0
            np.minimum.at(key, cs[live], changed[live])
            bad = np.flatnonzero(key[slot] != ids)
            if not bad.size:
                break
            if chained:
                bb = b[bad]
                brk = np.ones(bad.size, dtype=bool)
                brk[1:] = (np.diff(bad) != 1) | (bb[1:] != bb[:-1])
                heads = np.flatnonzero(brk)
                member_run = np.cumsum(brk) - 1
                local = np.arange(bad.size) - heads[member_run]
                h = bad[heads]
            else:
                member_run = local = np.arange(bad.size)
                h = bad
            pos[bad] = _search_runs(key, size, h, pos[h], ob[h], kb[h], pos[bad],
                                    member_run, local, width)
            if chained:
                # later turns of a backend stay after their predecessor
                v = pos + sep
                np.maximum.accumulate(v, out=v)
                v -= sep
                moved = v != pos
                moved[bad] = True
                pos = v
                changed = np.flatnonzero(moved)
            else:
                changed = bad
            slot[changed] = (ob[changed] + pos[changed] * kb[changed]) % size
        table[slot] = b
        key[slot] = -1
        np.maximum.at(next_, b, pos + 1)
        done += n_turns
    return table


def _fill_tail(table: np.ndarray, off: np.ndarray, skip: np.ndarray, cum_w: np.ndarray
               ) -> None:
    """Play the remaining turns on the empty entries only (in place).

    Every entry before ``next[i]`` in backend ``i``'s permutation is filled, so the
    empty entries sorted by their position in the permutation (found by inverting
    it: ``j = (c - offset) * skip^-1 mod M``) are exactly what Pseudocode 1 would
    still probe, in the same order, minus the filled entries it would skip.
    """
    size = table.size
    empty = np.flatnonzero(table < 0)
    n = empty.size
    if not n:
        return
    b = _turn_backends(size - n, n, cum_w)
    rows, row_of_turn = np.unique(b, return_inverse=True)
    inv = np.array([pow(int(s), -1, size) for s in skip[rows]], dtype=np.int64)
    perm_pos = empty[None, :] - off[rows][:, None]
    perm_pos *= inv[:, None]
    perm_pos %= size
    lists = np.argsort(perm_pos, axis=1).tolist()  # empty entries in probe order
    ptr = [0] * rows.size
    taken = bytearray(n)
    owner = [0] * n
    for r, backend in zip(row_of_turn.tolist(), b.tolist(), strict=True):
        lst = lists[r]
        p = ptr[r]
        c = lst[p]
        while taken[c]:
            p += 1
            c = lst[p]
        taken[c] = 1
        owner[c] = backend
        ptr[r] = p + 1
    table[empty] = owner


#: With fewer turns per round than this, phase one uses the tightened scalar loop
#: (a numpy block costs a fixed ~0.1 ms and holds at most one round of turns).
_MIN_VECTOR_TURNS = 500


def _tail_size(size: int, round_turns: int) -> int:
    """Entries left to :func:`_fill_tail` (its sort costs ~ backends x tail elements)."""
    return min(size, max(math.isqrt(size), size // round_turns))


def _populate(offs: list[int], sks: list[int], ws: list[int], size: int,
              vector: bool, tail: int) -> np.ndarray:
    """Phase one (numpy blocks if ``vector``, else the scalar loop), then the last
    ``tail`` entries by :func:`_fill_tail`. Every choice gives the same table."""
    off = np.asarray(offs, dtype=np.int64)
    skip = np.asarray(sks, dtype=np.int64)
    w = np.asarray(ws, dtype=np.int64)
    if vector:
        table = _populate_blocks(off, skip, w, size, size - tail)
    else:
        table = _populate_loop(offs, sks, ws, size, size - tail)
    _fill_tail(table, off, skip, np.cumsum(w))
    return table


def populate(
    offsets: IntSeq, skips: IntSeq, size: int, weights: IntSeq | None = None
) -> np.ndarray:
    """Maglev lookup table (np.int32 backend indices), identical to populate_reference.

    Pseudocode 1 is a global sequence of *turns* (round after round, backend ``i``
    taking ``weights[i]`` consecutive turns per round); a turn claims the first entry
    of its backend's permutation, after the backend's previous turn, that is empty
    and not claimed by an earlier turn. Phase one fills all but the last few
    entries. With many turns per round it resolves blocks of consecutive turns
    (within one round, at most a third of the empty entries) at once, by a monotone
    fixed-point iteration on permutation positions:

    * every turn starts at a lower bound (``next[i]`` plus its rank in the block);
    * ``key[c]`` is -1 for a filled entry, otherwise the smallest id of the turns
      claiming ``c`` (its *owner*), or a sentinel larger than every id;
    * turns that do not own their entry move forward (owners never move): a run of
      consecutive such turns of one backend takes, greedily and in order, the next
      positions whose key exceeds the run's first id; later turns of the backend are
      pushed to at least one position after their predecessor.

    An entry's owner is only ever replaced by a smaller turn (a pushed owner's entry
    is taken over by an earlier turn of its backend), so a position skipped because
    an earlier turn owns it stays owned by an earlier turn. At the fixed point (every
    turn owns its entry) each turn therefore holds the first position after its
    predecessor that is neither filled nor taken by an earlier turn: exactly the
    sequential result. With few turns per round a tightened scalar loop is faster.
    Phase two (:func:`_fill_tail`) plays the last turns on the empty entries only,
    in probe order obtained by inverting the permutations, instead of re-probing the
    nearly full table (where Pseudocode 1 spends most of its probes).
    """
    offs, sks, ws, size = _validate(offsets, skips, size, weights)
    round_turns = sum(ws)
    return _populate(offs, sks, ws, size, round_turns >= _MIN_VECTOR_TURNS,
                     _tail_size(size, round_turns))


def permutation(offset: int, skip: int, size: int) -> list[int]:
    """The permutation ``(offset + j * skip) mod size`` for ``j`` in ``0 .. size-1``."""
    return [(offset + j * skip) % size for j in range(size)]


# ------------------------------------------------------------------------------------
# DIPs -> permutation parameters -> table

def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise ValueError(f"size: expected an integer, got {size!r}")
    if size < 2 or not (is_prime(int(size)) or size & (size - 1) == 0):
        raise ValueError(f"size: {size} is neither a prime nor a power of two >= 2")


def dip_hashes(dip: Dip, salts: Salts) -> tuple[int, int]:
    """The 32-bit hashes ``(h_off, h_skip)`` of one DIP (see the module docstring)."""
    body = dip.address.to_bytes(4, "big") + dip.port.to_bytes(2, "big")
    return (
        zlib.crc32(salts.maglev_offset.to_bytes(4, "big") + body),
        zlib.crc32(salts.maglev_skip.to_bytes(4, "big") + body),
    )


def permutation_params(
    dips: Sequence[Dip], size: int, salts: Salts
) -> tuple[np.ndarray, np.ndarray]:
    """Per-DIP ``(offsets, skips)`` (int64 arrays) for a table of ``size`` entries."""
    _check_size(size)
    size = int(size)
    prime = is_prime(size)
    offsets = np.empty(len(dips), dtype=np.int64)
    skips = np.empty(len(dips), dtype=np.int64)
    for i, dip in enumerate(dips):
        h_off, h_skip = dip_hashes(dip, salts)
        offsets[i] = h_off % size
        skips[i] = h_skip % (size - 1) + 1 if prime else (h_skip % (size // 2)) * 2 + 1
    return offsets, skips


def build_table(dips: Sequence[Dip], size: int, salts: Salts) -> np.ndarray:
    """Maglev lookup table of a DIP pool (weights from ``dip.weight``)."""
    offsets, skips = permutation_params(dips, size, salts)
    return populate(offsets, skips, size, [d.weight for d in dips])


# ------------------------------------------------------------------------------------
# Measurements

def _table_array(table: IntSeq, name: str) -> np.ndarray:
    t = np.asarray(table)
    if t.ndim != 1 or t.size == 0 or t.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected a non-empty 1-D integer table")
    return t.astype(np.int64, copy=False)


def shares(table: IntSeq, n_backends: int) -> np.ndarray:
    """Fraction of the table's entries held by each of ``n_backends`` backends."""
    t = _table_array(table, "table")
    if n_backends < 1:
        raise ValueError(f"n_backends: {n_backends} is below the minimum 1")
    if t.min() < 0 or t.max() >= n_backends:
        raise ValueError(
            f"table: entries must be in [0, n_backends) = [0, {n_backends}), "
            f"got [{t.min()}, {t.max()}]"
        )
    return np.bincount(t, minlength=n_backends) / t.size


def imbalance(table: IntSeq, n_backends: int, weights: IntSeq | None = None) -> float:
    """``max_i share_i / ideal_i`` with ``ideal_i = w_i / sum(w)`` (1.0 is perfect)."""
    s = shares(table, n_backends)
    if weights is None:
        ideal = np.full(n_backends, 1.0 / n_backends)
    else:
        w = np.asarray(_int_list(weights, "weights"), dtype=np.float64)
        if w.size != n_backends:
            raise ValueError(f"weights: length {w.size} differs from n_backends ({n_backends})")
        if (w <= 0).any():
            raise ValueError("weights: every weight must be positive")
        ideal = w / w.sum()
    return float((s / ideal).max())


def _id_codes(table: np.ndarray, ids: Sequence[Hashable], name: str,
              codes: dict[Hashable, int]) -> np.ndarray:
    """The table with each backend index replaced by a code of its identity."""
    lut = np.array([codes.setdefault(x, len(codes)) for x in ids], dtype=np.int64)
    if table.min() < 0 or table.max() >= lut.size:
        raise ValueError(
            f"{name}: {lut.size} ids do not cover the table's backend indices "
            f"[{table.min()}, {table.max()}]"
        )
    return lut[table]


def disruption(
    old_table: IntSeq,
    new_table: IntSeq,
    old_ids: Sequence[Hashable] | None = None,
    new_ids: Sequence[Hashable] | None = None,
) -> float:
    """Fraction of positions whose backend identity differs between two tables.

    ``old_ids[i]`` / ``new_ids[i]`` is the stable identity of backend index ``i`` of
    each table (e.g. the Dip); ``None`` means the index itself is the identity.
    """
    old = _table_array(old_table, "old_table")
    new = _table_array(new_table, "new_table")
    if old.size != new.size:
        raise ValueError(f"new_table: length {new.size} differs from old_table ({old.size})")
    if old_ids is None and new_ids is None:
        return float(np.count_nonzero(old != new) / old.size)
    codes: dict[Hashable, int] = {}
    if old_ids is None:
        old_ids = list(range(int(old.max()) + 1))
    if new_ids is None:
        new_ids = list(range(int(new.max()) + 1))
    a = _id_codes(old, old_ids, "old_ids", codes)
    b = _id_codes(new, new_ids, "new_ids", codes)
    return float(np.count_nonzero(a != b) / old.size)


def removal_disruption(
    dips: Sequence[Dip], size: int, salts: Salts, remove_index: int
) -> float:
    """Fraction of entries that change backend when ``dips[remove_index]`` is removed."""
    n = len(dips)
    if not 0 <= remove_index < n:
        raise ValueError(f"remove_index: {remove_index} is not in [0, {n})")
    if n < 2:
        raise ValueError("dips: removing a backend needs at least 2 DIPs")
    keep = [i for i in range(n) if i != remove_index]
    old = build_table(dips, size, salts)
    new = build_table([dips[i] for i in keep], size, salts)
    return disruption(old, new, list(range(n)), keep)


def addition_disruption(
    dips: Sequence[Dip], size: int, salts: Salts, new_dip: Dip, index: int | None = None
) -> float:
    """Fraction of entries that change backend when ``new_dip`` is inserted at ``index``.

    ``index=None`` appends the new DIP at the end of the pool.
    """
    n = len(dips)
    if index is None:
        index = n
    if not 0 <= index <= n:
        raise ValueError(f"index: {index} is not in [0, {n}]")
    new_dips = [*dips[:index], new_dip, *dips[index:]]
    new_ids: list[int] = [*range(index), -1, *range(index, n)]
    old = build_table(dips, size, salts)
    new = build_table(new_dips, size, salts)
    return disruption(old, new, list(range(n)), new_ids)
