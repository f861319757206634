"""The connection table: a multi-stage cuckoo table of (valid, version, digest) words.

Data plane (what every target implements, :func:`lookup_words`): stage ``i`` is read
at ``h_i(key)``; the FIRST stage whose word is valid with the key's digest wins and
gives the connection's DIP-pool version. A miss returns ``(False, 0, 0)``.

Control plane (:class:`ConnTable`, after SilkRoad, SIGCOMM'17): keeps the full keys,
inserts with a breadth-first search for the shortest chain of moves to an empty slot
(bounded by ``geometry.max_kicks`` visited nodes) and executes the chain from its END
backwards, so that each write copies an entry to its new slot before its old slot is
overwritten: every stored key stays findable by a concurrent lookup after every write
(a moved entry briefly exists twice, with identical digest and version).

Digests are short, so two keys may share one (a false positive). Insertion never
creates an *ambiguous* match: key ``X`` may be placed at ``(stage i, index b)`` only if

1. no valid entry in ``X``'s own candidate buckets at stages ``< i`` has ``X``'s digest
   (``X``'s lookup would stop there), and
2. no other key ``Y`` stored at a stage ``j > i`` has ``h_i(Y) == b`` and
   ``digest(Y) == digest(X)`` (``Y``'s lookup would now stop at ``X``).

Rule 2 is checked with an index ``(i, b, digest) -> keys stored at a later stage``.
Both rules are also checked against every intermediate state of a move chain (the old
and the new content of each slot on the chain). With ``digest_bits = "full"`` digests
are unique and the checks are skipped.

Keys that find no safe slot within the bound go to a small stash (``geometry.
stash_size`` entries). The data plane does not see the stash: stashed connections keep
missing (the software-path overflow) and are re-inserted opportunistically after a
delete. When the stash is full :class:`TableFullError` is raised and nothing changes.

All memory changes go through ``Memories.write`` so that they can be logged and
replayed against a running target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .config import Config, Geometry
from .hashing import FiveTuple, Hasher
from .layout import Memories, pack_conn

__all__ = [
    "InsertResult",
    "TableFullError",
    "ConnTable",
    "lookup_words",
    "lookup_batch",
]


class TableFullError(RuntimeError):
    """No safe slot within ``max_kicks`` and the stash is full; the table is unchanged."""


@dataclass(frozen=True)
class InsertResult:
    """Outcome of :meth:`ConnTable.insert`.

    ``stage``/``index`` give the slot of the key (``-1`` when stashed); ``moves`` is the
    number of entries relocated to make room.
    """

    placed: bool
    stage: int
    index: int
    moves: int
    stashed: bool


# ---- data plane -------------------------------------------------------------------

def lookup_words(geo: Geometry, words: Sequence[int], digest: int) -> tuple[bool, int, int]:
    """Data-plane lookup: ``words[i]`` is the word read from stage ``i`` at the key's
    index. Returns ``(hit, stage, version)``; ``(False, 0, 0)`` on a miss."""
    D, V = geo.digest_bits, geo.version_bits
    dmask = (1 << D) - 1
    vmask = (1 << V) - 1
    for i in range(geo.stages):
        w = int(words[i])
        if (w >> (V + D)) & 1 and (w & dmask) == digest:
            return True, i, (w >> D) & vmask
    return False, 0, 0


def lookup_batch(
    geo: Geometry, mem: Memories, stage_idx: np.ndarray, digests: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised :func:`lookup_words` for ``n`` keys.

    ``stage_idx`` is ``d x n`` (the key's index in each stage), ``digests`` has ``n``
    entries. Returns ``(hit, stage, version)``: a bool array and two int64 arrays.
    Full-key words (object arrays of Python ints) take a slower path.
    """
    d, D, V = geo.stages, geo.digest_bits, geo.version_bits
    stage_idx = np.asarray(stage_idx)
    n = stage_idx.shape[1] if stage_idx.ndim == 2 else 0
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        return np.zeros(0, dtype=bool), z, z.copy()
    arrays = [mem.arrays[f"conn{i}"] for i in range(d)]
    wide = any(a.dtype == object for a in arrays)
    if not wide:
        words = np.stack([arrays[i][stage_idx[i]] for i in range(d)])  # d x n int64
        dig = np.asarray(digests, dtype=np.int64)
        match = (((words >> (V + D)) & 1) == 1) & ((words & ((1 << D) - 1)) == dig)
        vers = (words >> D) & ((1 << V) - 1)
    else:
        words = np.stack([arrays[i][stage_idx[i]] for i in range(d)]).astype(object)
        dig = np.asarray(digests, dtype=object)
        valid = ((words >> (V + D)) & 1).astype(np.int64) == 1
        match = valid & ((words & ((1 << D) - 1)) == dig).astype(bool)
        vers = ((words >> D) & ((1 << V) - 1)).astype(np.int64)
    hit = match.any(axis=0)
    stage = np.argmax(match, axis=0).astype(np.int64)
    stage[~hit] = 0
    version = vers[stage, np.arange(n)]
    version[~hit] = 0
    return hit, stage, version.astype(np.int64)


# ---- control plane ----------------------------------------------------------------

@dataclass
class _Node:
    """BFS node: ``key`` would be placed at ``(stage, index)``."""

    stage: int
    index: int
    key: FiveTuple
    idx: tuple[int, ...]
    dig: int
    parent: _Node | None


@dataclass
class _Blocked:
    """A failed search: the slots it visited and the stored keys that blocked it."""

    slots: set[tuple[int, int]]
    keys: set[FiveTuple]


class ConnTable:
    """Control-plane owner of the cuckoo ConnTable (full keys, moves, stash).

    ``where`` maps each key stored in the table to its ``(stage, index)``,
    ``versions`` its version and ``slot_key[stage][index]`` the key in each slot;
    ``stash`` maps overflow keys to their version. ``len()``, ``in`` and iteration
    cover both. ``first_failure_load`` is the load factor at the first insert that
    found no slot (stashed, or refused with :class:`TableFullError`), None before.
    """

    def __init__(self, cfg: Config, hasher: Hasher, mem: Memories):
        self.cfg = cfg
        self.geo = cfg.geometry
        self.hasher = hasher
        self.mem = mem
        self.d = self.geo.stages
        self.slots = self.geo.slots
        self.where: dict[FiveTuple, tuple[int, int]] = {}
        self.versions: dict[FiveTuple, int] = {}
        self.slot_key: list[list[FiveTuple | None]] = [
            [None] * self.slots for _ in range(self.d)
        ]
        self.stash: dict[FiveTuple, int] = {}
        self.first_failure_load: float | None = None
        # Hash cache of every key held (table or stash).
        self._idx: dict[FiveTuple, tuple[int, ...]] = {}
        self._dig: dict[FiveTuple, int] = {}
        # Rule-2 index: (stage i, bucket b, digest) -> keys stored at a stage > i whose
        # stage-i candidate is b. Unused with full-key digests (no false positives).
        self._checked = not self.geo.full_key
        self._later: dict[tuple[int, int, int], set[FiveTuple]] = {}
        self._occ = [0] * self.d
        # Per stash key: what its last failed search depended on (see _drain_stash).
        self._watch: dict[FiveTuple, _Blocked] = {}
        # Idle aging (model.controlplane): scans done, and the scan count when each
        # stored key was written to its current slot.
        self.generation = 0
        self.placed_gen: dict[FiveTuple, int] = {}

    # ---- queries -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.where) + len(self.stash)

    def __contains__(self, key: object) -> bool:
        return key in self.where or key in self.stash

    def __iter__(self) -> Iterator[FiveTuple]:
        yield from self.where
        yield from self.stash

    def get(self, key: FiveTuple) -> int | None:
        """The stored version of ``key`` (table or stash), or None."""
        v = self.versions.get(key)
        return self.stash.get(key) if v is None else v

    @property
    def stored(self) -> int:
        """Keys held in the table memories (not the stash)."""
        return len(self.where)

    @property
    def load_factor(self) -> float:
        """Keys stored in the table / total slots (the stash is not counted)."""
        return len(self.where) / (self.d * self.slots)

    def occupancy(self) -> list[int]:
        """Number of stored keys per stage."""
        return list(self._occ)

    def lookup(self, key: FiveTuple) -> tuple[bool, int, int]:
        """What the data plane returns for ``key``: ``(hit, stage, version)``."""
        idx = self._idx.get(key) or tuple(self.hasher.stage_indices(key))
        dig = self._dig.get(key)
        if dig is None:
            dig = self.hasher.digest(key)
        words = [self.mem.read(f"conn{i}", idx[i]) for i in range(self.d)]
        return lookup_words(self.geo, words, dig)

    # ---- hashing helpers -----------------------------------------------------------
    def _hash(self, key: FiveTuple) -> tuple[tuple[int, ...], int]:
        idx = self._idx.get(key)
        if idx is not None:
            return idx, self._dig[key]
        return tuple(self.hasher.stage_indices(key)), self.hasher.digest(key)

    # ---- safety rules --------------------------------------------------------------
    def _safe(self, key: FiveTuple, idx: tuple[int, ...], dig: int, stage: int,
              index: int, path: list[_Node], blockers: set[FiveTuple]) -> bool:
        """May ``key`` be placed at ``(stage, index)`` given the chain ``path`` (the
        placements already decided, root first)? Checks rules 1 and 2 against the old
        and the new content of every slot on the chain; stored keys that forbid the
        placement are added to ``blockers``."""
        if not self._checked:
            return True
        # Rule 1: earlier candidates of `key` must not hold its digest.
        for s in range(stage):
            other = self.slot_key[s][idx[s]]
            if other is not None and other is not key and self._dig[other] == dig:
                blockers.add(other)
                return False
        # Rule 2: no later-stage key whose stage-`stage` candidate is `index` shares it.
        ys = self._later.get((stage, index, dig))
        if ys and (len(ys) > 1 or key not in ys):
            blockers.update(ys - {key})
            return False
        for n in path:
            if n.dig != dig or n.key is key:
                continue
            if n.stage < stage and idx[n.stage] == n.index:
                return False  # rule 1 against a new content on the chain
            if n.stage > stage and n.idx[stage] == index:
                return False  # rule 2 against a new position on the chain
        return True

    # ---- index maintenance ---------------------------------------------------------
    def _later_add(self, key: FiveTuple, stage: int) -> None:
        if self._checked:
            idx, dig = self._idx[key], self._dig[key]
            for s in range(stage):
                self._later.setdefault((s, idx[s], dig), set()).add(key)

    def _later_remove(self, key: FiveTuple, stage: int) -> None:
        if self._checked:
            idx, dig = self._idx[key], self._dig[key]
            for s in range(stage):
                t = (s, idx[s], dig)
                ys = self._later[t]
                ys.discard(key)
                if not ys:
                    del self._later[t]

    def _place(self, key: FiveTuple, stage: int, index: int, version: int) -> None:
        """Write ``key`` into ``(stage, index)`` and update the software state. A key
        already stored elsewhere keeps its old slot's word (overwritten next)."""
        self.mem.write(f"conn{stage}", index, pack_conn(self.geo, True, version,
                                                        self._dig[key]))
        old = self.where.get(key)
        if old is not None:
            self._later_remove(key, old[0])
            self._occ[old[0]] -= 1
            if self.slot_key[old[0]][old[1]] is key:
                self.slot_key[old[0]][old[1]] = None
        self.slot_key[stage][index] = key
        self.where[key] = (stage, index)
        self.versions[key] = version
        self.placed_gen[key] = self.generation
        self._occ[stage] += 1
        self._later_add(key, stage)

    # ---- insertion -----------------------------------------------------------------
    def _find_path(self, key: FiveTuple, idx: tuple[int, ...], dig: int
                   ) -> list[_Node] | _Blocked:
        """BFS for the shortest safe chain ending in an empty slot (root first), or
        what the failed search depended on (its slots and the keys that blocked it)."""
        visited: set[tuple[int, int]] = set()
        blockers: set[FiveTuple] = set()
        queue: list[_Node] = []
        budget = self.geo.max_kicks
        roots = {(s, idx[s]) for s in range(self.d)}
        for s in range(self.d):
            b = idx[s]
            if not self._safe(key, idx, dig, s, b, [], blockers):
                continue
            node = _Node(s, b, key, idx, dig, None)
            if self.slot_key[s][b] is None:
                return [node]
            visited.add((s, b))
            queue.append(node)
        head = 0
        while head < len(queue) and len(visited) < budget:
            node = queue[head]
            head += 1
            occupant = self.slot_key[node.stage][node.index]
            assert occupant is not None
            path = _chain(node) if self._checked else []
            oidx, odig = self._idx[occupant], self._dig[occupant]
            for s in range(self.d):
                if s == node.stage:
                    continue
                b = oidx[s]
                if (s, b) in visited:
                    continue
                if not self._safe(occupant, oidx, odig, s, b, path, blockers):
                    continue
                child = _Node(s, b, occupant, oidx, odig, node)
                if self.slot_key[s][b] is None:
                    return _chain(child)
                visited.add((s, b))
                queue.append(child)
                if len(visited) >= budget:
                    break
        return _Blocked(visited | roots, blockers)

    def _execute(self, path: list[_Node], version: int) -> None:
        """Apply a chain from its end: each entry is copied before being overwritten."""
        for n in reversed(path):
            v = version if n.parent is None else self.versions[n.key]
            self._place(n.key, n.stage, n.index, v)

    def insert(self, key: FiveTuple, version: int) -> InsertResult:
        """Insert or update ``key`` with ``version``.

        A stored key is updated in place (one write); a stashed key's stash version is
        updated. Otherwise the key is placed with the fewest moves, or stashed; raises
        :class:`TableFullError` (state unchanged) when the stash is full.
        """
        if not 0 <= version < (1 << self.geo.version_bits):
            raise ValueError(f"version {version} does not fit in "
                             f"geometry.version_bits = {self.geo.version_bits}")
        pos = self.where.get(key)
        if pos is not None:
            self.mem.write(f"conn{pos[0]}", pos[1],
                           pack_conn(self.geo, True, version, self._dig[key]))
            self.versions[key] = version
            return InsertResult(True, pos[0], pos[1], 0, False)
        if key in self.stash:
            self.stash[key] = version
            return InsertResult(False, -1, -1, 0, True)
        idx, dig = self._hash(key)
        path = self._find_path(key, idx, dig)
        if isinstance(path, _Blocked):
            if self.first_failure_load is None:
                self.first_failure_load = self.load_factor
            if len(self.stash) >= self.geo.stash_size:
                raise TableFullError(
                    f"ConnTable full: cannot insert {key} (load factor "
                    f"{self.load_factor:.4f}, stash holds {len(self.stash)} of "
                    f"geometry.stash_size = {self.geo.stash_size}); increase "
                    f"geometry.stages, geometry.log2_slots or geometry.stash_size"
                )
            self._idx[key], self._dig[key] = idx, dig
            self.stash[key] = version
            self._watch[key] = path
            return InsertResult(False, -1, -1, 0, True)
        self._idx[key], self._dig[key] = idx, dig
        self._execute(path, version)
        return InsertResult(True, path[0].stage, path[0].index, len(path) - 1, False)

    def delete(self, key: FiveTuple) -> bool:
        """Remove ``key`` (table or stash); then try to move one stash entry into the
        table. Returns False if the key was not held."""
        if key in self.stash:
            del self.stash[key], self._watch[key]
            del self._idx[key], self._dig[key]
            return True
        pos = self.where.pop(key, None)
        if pos is None:
            return False
        s, b = pos
        self.mem.write(f"conn{s}", b, 0)
        self._later_remove(key, s)
        self.slot_key[s][b] = None
        self._occ[s] -= 1
        del self.versions[key], self._idx[key], self._dig[key], self.placed_gen[key]
        self._drain_stash(key, pos)
        return True

    def _drain_stash(self, gone: FiveTuple, slot: tuple[int, int]) -> None:
        """After ``gone`` left ``slot``: move the first stash entry that now fits into
        the table. Only entries whose failed search visited ``slot`` or was blocked by
        ``gone`` are retried (nothing else can have changed for the better)."""
        for k, v in list(self.stash.items()):
            w = self._watch[k]
            if slot not in w.slots and gone not in w.keys:
                continue
            path = self._find_path(k, self._idx[k], self._dig[k])
            if isinstance(path, _Blocked):
                self._watch[k] = path
                continue
            del self.stash[k], self._watch[k]
            self._execute(path, v)
            return

    # ---- checking ------------------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise AssertionError unless the software state and the memories agree and
        every stored key is found by the data plane at its own slot."""

        def fail(msg: str) -> None:
            raise AssertionError(f"ConnTable invariant: {msg}")

        if len(self.stash) > self.geo.stash_size:
            fail(f"stash holds {len(self.stash)} > stash_size {self.geo.stash_size}")
        occ = [0] * self.d
        for s in range(self.d):
            arr = self.mem.arrays[f"conn{s}"]
            for b in range(self.slots):
                k = self.slot_key[s][b]
                w = int(arr[b])
                if k is None:
                    if w != 0:
                        fail(f"conn{s}[{b}] = {w:#x} but no key is stored there")
                    continue
                occ[s] += 1
                if self.where.get(k) != (s, b):
                    fail(f"{k} in slot ({s}, {b}) but where says {self.where.get(k)}")
                want = pack_conn(self.geo, True, self.versions[k], self._dig[k])
                if w != want:
                    fail(f"conn{s}[{b}] = {w:#x}, expected {want:#x} for {k}")
        if occ != self._occ or sum(occ) != len(self.where):
            fail(f"occupancy {self._occ} != counted {occ} (where has {len(self.where)})")
        for k, (s, b) in self.where.items():
            if k in self.stash:
                fail(f"{k} both stored and stashed")
            if self._idx[k] != tuple(self.hasher.stage_indices(k)) or b != self._idx[k][s]:
                fail(f"{k} at ({s}, {b}) is not one of its candidates")
            got = self.lookup(k)
            if got != (True, s, self.versions[k]):
                fail(f"lookup({k}) = {got}, expected {(True, s, self.versions[k])}")
        if self._checked:
            later: dict[tuple[int, int, int], set[FiveTuple]] = {}
            for k, (s, _) in self.where.items():
                for t in range(s):
                    later.setdefault((t, self._idx[k][t], self._dig[k]), set()).add(k)
            if later != self._later:
                fail("rule-2 index out of date")


def _chain(node: _Node) -> list[_Node]:
    """The placements from the root to ``node``, root first."""
    out = []
    n: _Node | None = node
    while n is not None:
        out.append(n)
        n = n.parent
    out.reverse()
    return out
