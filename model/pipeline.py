"""The data plane: what every target does to one packet, given the memories.

:meth:`DataPlane.process` is the specification. It reads only :class:`Memories`
(the word-exact hardware state) and performs, in order:

1. VIP match: the lowest-indexed valid ``vip`` entry equal to (dst ip, dst port, proto).
   No match: :attr:`Action.FORWARD`, all other decision fields zero.
2. Hashes (model.hashing): stage indices, digest, Maglev index, TransitTable indices.
3. ConnTable: first stage whose word is valid with a matching digest (model.conntable).
4. Version: hit -> the stored version. Miss -> by the VIP's phase (``vip_state``):
   IDLE: cur_version; RECORD: cur_version, and every TransitTable bit of the key is set;
   FLIP: old_version if all TransitTable bits of the key are set (``transit_hit``),
   else cur_version.
5. ``slot_map[vip_id << V | version]``: not valid -> :attr:`Action.DROP` (no learn).
6. ``dip = maglev[slot * M + maglev_index]``; ``dip_ip, dip_port = dip table[dip]``.
7. :attr:`Action.LB`; ``learn`` = miss; ``close`` = hit and TCP with FIN or RST.

Packets are processed strictly in order; a TransitTable bit set by one packet is seen by
the next. A control-plane write lands between two packets (vector files say where).

With a ``[lifecycle]`` (docs/lifecycle.md) two steps join:

* 3a. Activity (``idle_timeout > 0``): a hit at stage ``s`` sets ``act<s>[index]``.
* 3b. SYN authentication (the VIP's ``vip_auth`` bit set), on a TCP miss, before the
  TransitTable: the source is *verified* when ``auth0[i0]`` or ``auth1[i1]`` is valid
  with its tag (:meth:`Hasher.auth_slots`). Verified: a SYN (SYN set, ACK clear)
  rewrites the matching word (way 0 if both match) with stamp ``auth_epoch``, and the
  miss goes on as in step 4. Unverified: a SYN without ACK, RST or FIN ->
  :attr:`Action.CHALLENGE` with ``cookie`` = :func:`model.cookie.challenge_ack`; an
  RST without SYN whose sequence number passes :func:`model.cookie.cookie_ok` ->
  :attr:`Action.VERIFY`, and (valid, ``auth_epoch``, tag) is written to ``auth1[i1]``
  if ``auth0[i0]`` is valid with stamp ``auth_epoch`` and ``auth1[i1]`` is not, else
  to ``auth0[i0]``; anything else -> :attr:`Action.UNVERIFIED`. None of the three
  learns, sets TransitTable bits or reads the slot map.

With a ``[network]`` (model.network, docs/network.md):

* 1a. Return path: a packet that matches no VIP but whose (src ip, src port, proto)
  is a valid ``rev`` word (the lowest such index) -> :attr:`Action.REVERSE`, with
  ``vip_id``, ``dip`` = the ``rev`` index and ``dip_ip``/``dip_port`` = the VIP's
  address and port, the frame's new *source*.
* 8. Forwarding: a frame that is emitted (FORWARD, LB, REVERSE, CHALLENGE) is routed
  by its destination -- ``dip_ip`` for LB, the client (``src_ip``) for CHALLENGE,
  ``dst_ip`` otherwise -- in ``route`` (longest prefix, lowest index): ``route_hit``,
  ``route``, ``port``. No route: ``route_hit`` = 0 and the frame is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from .config import Config
from .conntable import lookup_batch, lookup_words
from .cookie import challenge_ack, cookie_ok
from .hashing import FIELDS, FiveTuple, Hasher
from .layout import (
    Action,
    Memories,
    Phase,
    unpack_dip,
    unpack_slot,
    unpack_vip_state,
)
from .lifecycle import pack_auth, unpack_auth
from .network import unpack_rev, unpack_route

__all__ = ["Packet", "Decision", "DataPlane", "TCP_FIN", "TCP_RST", "TCP_SYN", "TCP_ACK",
           "DECISION_FIELDS", "LIFECYCLE_DECISION_FIELDS", "NETWORK_DECISION_FIELDS",
           "decision_fields"]

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10


@dataclass(frozen=True)
class Packet:
    """The parsed header vector the data plane sees (5-tuple, TCP flags and, for SYN
    authentication, the TCP sequence and acknowledgement numbers)."""

    src_ip: int
    dst_ip: int
    src_port: int
    dst_port: int
    proto: int
    tcp_flags: int = 0
    seq: int = 0
    ack: int = 0

    @property
    def key(self) -> FiveTuple:
        return FiveTuple(self.src_ip, self.dst_ip, self.src_port, self.dst_port, self.proto)


@dataclass(frozen=True)
class Decision:
    """The data plane's verdict on one packet; field order is the vector file's."""

    action: int = Action.FORWARD
    vip_id: int = 0
    hit: int = 0
    stage: int = 0
    version: int = 0
    transit_hit: int = 0
    slot: int = 0
    dip: int = 0
    dip_ip: int = 0
    dip_port: int = 0
    learn: int = 0
    close: int = 0
    cookie: int = 0  # CHALLENGE: the SYN-ACK's acknowledgement number (lifecycle only)
    # forwarding (``[network]`` only, model.network): the route of the emitted frame
    route_hit: int = 0  # a route matched the emitted frame's destination (else dropped)
    route: int = 0      # its index in ``route``
    port: int = 0       # the port the frame leaves through

    def as_tuple(self, names: tuple[str, ...] | None = None) -> tuple[int, ...]:
        """The fields ``names`` (default :data:`DECISION_FIELDS`) in that order."""
        return tuple(int(getattr(self, f)) for f in (names or DECISION_FIELDS))

    def as_dict(self, names: tuple[str, ...] | None = None) -> dict[str, int]:
        return {f: int(getattr(self, f)) for f in (names or DECISION_FIELDS)}

    def out_dst(self, pkt: Packet) -> tuple[int, int]:
        """Destination (ip, port) of the emitted packet (rewritten when LB)."""
        if self.action == Action.LB:
            return self.dip_ip, self.dip_port
        return pkt.dst_ip, pkt.dst_port


#: The decision fields of vector format 1 (every target); a lifecycle config's vectors
#: (format 2) add ``cookie`` (:data:`LIFECYCLE_DECISION_FIELDS`), a ``[network]``
#: config's the route (:data:`NETWORK_DECISION_FIELDS`, model.network).
DECISION_FIELDS = tuple(f.name for f in fields(Decision))[:12]
LIFECYCLE_DECISION_FIELDS = DECISION_FIELDS + ("cookie",)
NETWORK_DECISION_FIELDS = ("route_hit", "route", "port")


def decision_fields(cfg: Config) -> tuple[str, ...]:
    """The decision fields a config's targets report, in vector-file order."""
    return (LIFECYCLE_DECISION_FIELDS if cfg.lifecycle.enabled else DECISION_FIELDS) \
        + (NETWORK_DECISION_FIELDS if cfg.network.enabled else ())


class DataPlane:
    """Packet-by-packet (and batch) execution of the data-plane specification."""

    def __init__(self, cfg: Config, mem: Memories, hasher: Hasher | None = None):
        self.cfg = cfg
        self.geo = cfg.geometry
        self.mem = mem
        self.hasher = hasher or Hasher(cfg)
        self.aging = cfg.lifecycle.aging
        self.auth = cfg.lifecycle.auth
        self.network = cfg.network.enabled
        self._net_cache: tuple | None = None

    # ---- scalar --------------------------------------------------------------------
    def vip_match(self, dst_ip: int, dst_port: int, proto: int) -> int | None:
        """Index of the first valid VIP entry matching, or None."""
        want = (1 << 56) | (dst_ip << 24) | (dst_port << 8) | proto
        hits = np.flatnonzero(self.mem["vip"] == want)
        return int(hits[0]) if len(hits) else None

    def process(self, pkt: Packet) -> Decision:
        """Decide one packet; may set TransitTable bits (RECORD phase)."""
        if not self.network:
            return self._decide(pkt)
        d = self._decide(pkt)
        if d.action in (Action.DROP, Action.VERIFY, Action.UNVERIFIED):
            return d
        dst = {Action.LB: d.dip_ip, Action.CHALLENGE: pkt.src_ip}.get(d.action, pkt.dst_ip)
        route = self.route_lookup(dst)
        if route is None:
            return d
        index, port = route
        return replace(d, route_hit=1, route=index, port=port)

    def _tables(self) -> tuple[dict, list]:
        """The return-path index {(ip, port, proto): lowest valid rev index} and the
        valid routes [(length, index, prefix, port)], longest first; rebuilt after a
        control-plane write to ``rev`` or ``route`` (the data plane never writes them)."""
        gen = (self.mem.generation("rev"), self.mem.generation("route"))
        if self._net_cache is None or self._net_cache[0] != gen:
            vb = self.geo.vip_bits
            rev: dict[tuple[int, int, int], int] = {}
            for i, w in enumerate(self.mem["rev"]):
                valid, proto, ip, port, *_ = unpack_rev(vb, int(w))
                if valid:
                    rev.setdefault((ip, port, proto), i)
            routes = []
            for i, w in enumerate(self.mem["route"]):
                valid, prefix, length, port, _ = unpack_route(int(w))
                if valid:
                    routes.append((length, i, prefix, port))
            routes.sort(key=lambda r: (-r[0], r[1]))
            self._net_cache = (gen, rev, routes)
        return self._net_cache[1], self._net_cache[2]

    def route_lookup(self, dst_ip: int) -> tuple[int, int] | None:
        """(index, port) of the longest valid route prefix holding ``dst_ip`` (the
        lowest index among equally long ones), or None."""
        for length, i, prefix, port in self._tables()[1]:
            mask = (0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF
            if dst_ip & mask == prefix & mask:
                return i, port
        return None

    def reverse_match(self, pkt: Packet) -> Decision | None:
        """The return path: a REVERSE decision when the packet's source is a DIP
        (a valid ``rev`` word with its address, port and protocol), else None."""
        i = self._tables()[0].get((pkt.src_ip, pkt.src_port, pkt.proto))
        if i is None:
            return None
        _, _, _, _, vip_id, vip_ip, vip_port = unpack_rev(self.geo.vip_bits,
                                                          self.mem.read("rev", i))
        return Decision(action=Action.REVERSE, vip_id=vip_id, dip=i, dip_ip=vip_ip,
                        dip_port=vip_port)

    def _decide(self, pkt: Packet) -> Decision:
        geo, mem, h = self.geo, self.mem, self.hasher
        vip_id = self.vip_match(pkt.dst_ip, pkt.dst_port, pkt.proto)
        if vip_id is None:
            if self.network:
                return self.reverse_match(pkt) or Decision()
            return Decision()
        key = pkt.key
        idx = h.stage_indices(key)
        words = [mem.read(f"conn{i}", idx[i]) for i in range(geo.stages)]
        hit, stage, version = lookup_words(geo, words, h.digest(key))
        transit_hit = 0
        if hit and self.aging:
            mem.arrays[f"act{stage}"][idx[stage]] = 1
        if not hit and self.auth and pkt.proto == 6 and mem.read("vip_auth", vip_id):
            verdict = self.authenticate(pkt, vip_id)
            if verdict is not None:
                return verdict
        if not hit:
            phase, old_v, cur_v = unpack_vip_state(geo, mem.read("vip_state", vip_id))
            version = cur_v
            tidx = h.transit_indices(key)
            if phase == Phase.RECORD:
                for j, t in enumerate(tidx):
                    mem.arrays[f"transit{j}"][t] = 1
            elif phase == Phase.FLIP:
                transit_hit = int(all(mem.read(f"transit{j}", t) for j, t in enumerate(tidx)))
                if transit_hit:
                    version = old_v
        return self._finish(pkt, vip_id, int(hit), stage, version, transit_hit,
                            h.maglev_index(key))

    def authenticate(self, pkt: Packet, vip_id: int) -> Decision | None:
        """Step 3b for a TCP miss of an ``auth`` VIP: None when the source is verified
        (the miss goes on), else the CHALLENGE / VERIFY / UNVERIFIED decision."""
        mem = self.mem
        i0, i1, tag = self.hasher.auth_slots(pkt.key)
        w0, w1 = unpack_auth(mem.read("auth0", i0)), unpack_auth(mem.read("auth1", i1))
        epoch = mem.read("auth_epoch", 0)
        flags = pkt.tcp_flags
        syn = bool(flags & TCP_SYN) and not flags & TCP_ACK
        fresh = pack_auth(True, epoch, tag)
        match0, match1 = w0[0] and w0[2] == tag, w1[0] and w1[2] == tag
        if match0 or match1:
            if syn:  # refresh the way that matched (way 0 when both do)
                way, i = ("auth0", i0) if match0 else ("auth1", i1)
                mem.arrays[way][i] = fresh
            return None
        keys = (mem.read("auth_key", 0), mem.read("auth_key", 1))
        if syn and not flags & (TCP_RST | TCP_FIN):
            ack = challenge_ack(keys, epoch, pkt.src_ip, pkt.dst_ip, pkt.src_port,
                                pkt.dst_port, pkt.seq)
            return Decision(action=Action.CHALLENGE, vip_id=vip_id, cookie=ack)
        if flags & TCP_RST and not flags & TCP_SYN and cookie_ok(
                keys, pkt.src_ip, pkt.dst_ip, pkt.src_port, pkt.dst_port, pkt.seq):
            # way 0 unless it holds a source stamped in this epoch and way 1 does not
            if w0[0] and w0[1] == epoch and not (w1[0] and w1[1] == epoch):
                mem.arrays["auth1"][i1] = fresh
            else:
                mem.arrays["auth0"][i0] = fresh
            return Decision(action=Action.VERIFY, vip_id=vip_id)
        return Decision(action=Action.UNVERIFIED, vip_id=vip_id)

    def _finish(self, pkt: Packet, vip_id: int, hit: int, stage: int, version: int,
                transit_hit: int, mag_idx: int) -> Decision:
        geo, mem = self.geo, self.mem
        valid, slot = unpack_slot(geo, mem.read("slot_map", (vip_id << geo.version_bits)
                                                | version))
        if not valid:
            return Decision(action=Action.DROP, vip_id=vip_id, hit=hit, stage=stage,
                            version=version, transit_hit=transit_hit)
        dip = mem.read("maglev", slot * geo.maglev_size + mag_idx)
        dip_ip, dip_port = unpack_dip(mem.read("dip", dip))
        close = int(bool(hit) and pkt.proto == 6 and bool(pkt.tcp_flags & (TCP_FIN | TCP_RST)))
        return Decision(action=Action.LB, vip_id=vip_id, hit=hit, stage=stage,
                        version=version, transit_hit=transit_hit, slot=slot, dip=dip,
                        dip_ip=dip_ip, dip_port=dip_port, learn=int(not hit), close=close)

    # ---- batch ---------------------------------------------------------------------
    def process_batch(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Vectorised :meth:`process` for arrays ``src_ip .. proto, tcp_flags``.

        Returns one array per :class:`Decision` field. Equal to calling
        :meth:`process` on each row in order, including TransitTable updates. With SYN
        authentication (verified-source writes between rows) it runs row by row and
        also returns ``cookie``; rows may then carry ``seq`` and ``ack``.
        """
        if self.auth or self.network:
            return self._process_rows(arrays)
        geo, mem = self.geo, self.mem
        n = len(arrays["src_ip"])
        a = {f: np.asarray(arrays[f], dtype=np.int64) for f in FIELDS}
        flags = np.asarray(arrays.get("tcp_flags", np.zeros(n)), dtype=np.int64)
        out = {f: np.zeros(n, dtype=np.int64) for f in DECISION_FIELDS}

        vip_words = mem["vip"]
        want = (1 << 56) | (a["dst_ip"] << 24) | (a["dst_port"] << 8) | a["proto"]
        # first matching VIP entry (lowest index) via a sorted lookup of valid entries
        valid_ids = np.flatnonzero(vip_words >> 56 & 1)
        vip_id = np.full(n, -1, dtype=np.int64)
        if len(valid_ids):
            order = np.lexsort((valid_ids, vip_words[valid_ids]))
            sorted_words = vip_words[valid_ids][order]
            sorted_ids = valid_ids[order]
            # keep the first (lowest id) of equal words
            first = np.ones(len(sorted_words), dtype=bool)
            first[1:] = sorted_words[1:] != sorted_words[:-1]
            sorted_words, sorted_ids = sorted_words[first], sorted_ids[first]
            pos = np.searchsorted(sorted_words, want)
            pos_c = np.minimum(pos, len(sorted_words) - 1)
            found = sorted_words[pos_c] == want
            vip_id[found] = sorted_ids[pos_c[found]]
        is_vip = vip_id >= 0
        rows = np.flatnonzero(is_vip)
        if len(rows) == 0:
            return out
        sub = {f: a[f][rows] for f in FIELDS}
        hs = self.hasher.batch(sub)
        hit, stage, version = lookup_batch(geo, mem, hs["stage"], hs["digest"])
        if self.aging:
            for s in range(geo.stages):
                mem.arrays[f"act{s}"][hs["stage"][s, (hit == 1) & (stage == s)]] = 1
        vid = vip_id[rows]
        phase_word = mem["vip_state"][vid]
        V = geo.version_bits
        vmask = (1 << V) - 1
        phase = (phase_word >> (2 * V)) & 3
        miss = ~hit.astype(bool)
        version = np.where(miss, phase_word & vmask, version)
        transit_hit = np.zeros(len(rows), dtype=np.int64)
        tidx = hs["transit"]
        rec = miss & (phase == Phase.RECORD)
        flip = miss & (phase == Phase.FLIP)
        if rec.any() and flip.any():
            # order matters between recording and testing packets: walk them in order
            bits = [mem.arrays[f"transit{j}"] for j in range(tidx.shape[0])]
            for r in np.flatnonzero(rec | flip):
                if rec[r]:
                    for j, b in enumerate(bits):
                        b[tidx[j, r]] = 1
                else:
                    transit_hit[r] = int(all(b[tidx[j, r]] for j, b in enumerate(bits)))
        else:
            if flip.any():
                t = np.ones(len(rows), dtype=bool)
                for j in range(tidx.shape[0]):
                    t &= mem.arrays[f"transit{j}"][tidx[j]] == 1
                transit_hit = (t & flip).astype(np.int64)
            if rec.any():
                for j in range(tidx.shape[0]):
                    mem.arrays[f"transit{j}"][tidx[j, rec]] = 1
        old_v = (phase_word >> V) & vmask
        version = np.where(transit_hit == 1, old_v, version)
        slot_word = mem["slot_map"][(vid << V) | version]
        slot_valid = (slot_word >> geo.slot_bits) & 1
        slot = slot_word & ((1 << geo.slot_bits) - 1)
        lb = slot_valid == 1
        dip = np.where(lb, mem["maglev"][np.where(lb, slot, 0) * geo.maglev_size
                                        + hs["maglev"]], 0)
        dip_word = mem["dip"][dip]
        flg = flags[rows]
        close = lb & hit.astype(bool) & (sub["proto"] == 6) & ((flg & (TCP_FIN | TCP_RST)) != 0)
        out["action"][rows] = np.where(lb, Action.LB, Action.DROP)
        out["vip_id"][rows] = vid
        out["hit"][rows] = hit
        out["stage"][rows] = stage
        out["version"][rows] = version
        out["transit_hit"][rows] = transit_hit
        out["slot"][rows] = np.where(lb, slot, 0)
        out["dip"][rows] = dip
        out["dip_ip"][rows] = np.where(lb, dip_word >> 16, 0)
        out["dip_port"][rows] = np.where(lb, dip_word & 0xFFFF, 0)
        out["learn"][rows] = (lb & miss).astype(np.int64)
        out["close"][rows] = close.astype(np.int64)
        return out

    def _process_rows(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(arrays["src_ip"])
        names = ("src_ip", "dst_ip", "src_port", "dst_port", "proto", "tcp_flags", "seq", "ack")
        cols = {f: np.asarray(arrays[f], dtype=np.int64) if f in arrays
                else np.zeros(n, dtype=np.int64) for f in names}
        names_out = decision_fields(self.cfg) if self.network else LIFECYCLE_DECISION_FIELDS
        out = {f: np.zeros(n, dtype=np.int64) for f in names_out}
        for r in range(n):
            d = self.process(Packet(*(int(cols[f][r]) for f in names)))
            for f in names_out:
                out[f][r] = getattr(d, f)
        return out
