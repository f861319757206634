"""Load and validate the TOML description of VIPs, DIP pools and table geometry.

Every target (model, RTL, P4, HLS) is sized from the same :class:`Config`; loading
fails with a :class:`ConfigError` that names the offending field and value.
"""

from __future__ import annotations

import ipaddress
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lifecycle import Lifecycle, parse_lifecycle
from .network import Network, parse_network

__all__ = [
    "ConfigError",
    "Dip",
    "Policy",
    "POLICIES",
    "Vip",
    "Geometry",
    "Salts",
    "FramePolicy",
    "FRAME_ACTIONS",
    "Config",
    "load_config",
    "parse_config",
    "PROTOCOLS",
    "is_prime",
]

#: IP protocol numbers of the protocols a VIP may use.
PROTOCOLS = {"tcp": 6, "udp": 17}

#: DIP-selection policies a VIP may use (``policy`` in a ``[[vip]]`` table).
POLICIES = ("maglev", "weighted-by-load")

#: Width of the full 5-tuple key in bits (src ip, dst ip, src port, dst port, proto).
KEY_BITS = 104


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names field and value."""


def is_prime(n: int) -> bool:
    """Deterministic primality test (trial division; Maglev sizes are < 2**24)."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    r = math.isqrt(n)
    f = 3
    while f <= r:
        if n % f == 0:
            return False
        f += 2
    return True


def clog2(n: int) -> int:
    """Bits needed to hold values ``0 .. n-1`` (at least 1)."""
    return max(1, (n - 1).bit_length())


@dataclass(frozen=True)
class Dip:
    """One backend (direct IP) of a pool."""

    address: int  # IPv4 as an integer, host order
    port: int
    weight: int = 1

    @property
    def address_str(self) -> str:
        return str(ipaddress.IPv4Address(self.address))

    def __str__(self) -> str:
        return f"{self.address_str}:{self.port}"


@dataclass(frozen=True)
class Policy:
    """How new connections of a VIP are spread over its DIPs (docs/load_aware.md).

    ``kind = "maglev"`` (the default) is plain Maglev with the configured weights.
    ``"weighted-by-load"`` lets the control plane (model.loadaware) turn per-DIP load
    into Maglev weights and install them as a new pool version through the two-phase
    commit; the data plane is unchanged. Its parameters:

    * ``period``: new connections of the VIP between two evaluations;
    * ``threshold``: install only when the load imbalance (max over DIPs of load per
      configured weight, divided by the mean) is at least this (>= 1.0);
    * ``resolution``: the largest Maglev weight the rebalancer writes;
    * ``min_weight``: the smallest (a loaded DIP still gets a trickle of new
      connections, so its load keeps being measured).
    """

    kind: str = "maglev"
    period: int = 64
    threshold: float = 1.25
    resolution: int = 16
    min_weight: int = 1

    @property
    def load_aware(self) -> bool:
        return self.kind == "weighted-by-load"


@dataclass(frozen=True)
class Vip:
    """One virtual service: (address, port, protocol) and its initial DIP pool."""

    name: str
    address: int
    port: int
    protocol: int  # IP protocol number (6 or 17)
    dips: tuple[Dip, ...]
    policy: Policy = Policy()
    auth: bool = False  # SYN authentication of new sources (TCP only; model.lifecycle)

    @property
    def address_str(self) -> str:
        return str(ipaddress.IPv4Address(self.address))

    @property
    def protocol_name(self) -> str:
        return {v: k for k, v in PROTOCOLS.items()}[self.protocol]


@dataclass(frozen=True)
class Geometry:
    """Table geometry shared by every target.

    ``digest_bits`` is 8..32, or ``KEY_BITS`` (104) when the word holds the full key
    (``digest_bits = "full"`` in TOML).
    """

    stages: int = 4
    log2_slots: int = 12
    digest_bits: int = 16
    version_bits: int = 6
    maglev_size: int = 4093
    pool_slots: int = 8
    vip_capacity: int = 16
    dip_capacity: int = 256
    transit_log2_bits: int = 12
    transit_hashes: int = 2
    stash_size: int = 16
    max_kicks: int = 4000

    # ---- derived widths, used by every target -------------------------------------
    @property
    def slots(self) -> int:
        return 1 << self.log2_slots

    @property
    def full_key(self) -> bool:
        return self.digest_bits == KEY_BITS

    @property
    def maglev_pow2(self) -> bool:
        return self.maglev_size & (self.maglev_size - 1) == 0

    @property
    def conn_word_bits(self) -> int:
        return 1 + self.version_bits + self.digest_bits

    @property
    def vip_bits(self) -> int:
        return clog2(self.vip_capacity)

    @property
    def slot_bits(self) -> int:
        return clog2(self.pool_slots)

    @property
    def dip_bits(self) -> int:
        return clog2(self.dip_capacity)

    @property
    def maglev_index_bits(self) -> int:
        return clog2(self.maglev_size)

    @property
    def maglev_depth(self) -> int:
        return self.pool_slots * self.maglev_size

    @property
    def maglev_addr_bits(self) -> int:
        return clog2(self.maglev_depth)

    @property
    def transit_bits(self) -> int:
        return 1 << self.transit_log2_bits


@dataclass(frozen=True)
class Salts:
    """32-bit salts prepended to the key of every hash (see model.hashing)."""

    stages: tuple[int, ...]
    digest: int
    maglev: int
    transit: tuple[int, ...]
    maglev_offset: int
    maglev_skip: int
    auth: tuple[int, int, int]  # verified-source way 0, way 1 index; tag (model.lifecycle)

    @classmethod
    def default(cls) -> Salts:
        """The salts used when a config does not set them (``DEFAULT_SALTS``)."""
        d = DEFAULT_SALTS
        return cls(stages=tuple(d["stages"]), digest=d["digest"], maglev=d["maglev"],
                   transit=tuple(d["transit"]), maglev_offset=d["maglev_offset"],
                   maglev_skip=d["maglev_skip"], auth=tuple(d["auth"]))


#: What a frame datapath does with a frame the parser does not hand to the data plane.
FRAME_ACTIONS = ("forward", "drop")


@dataclass(frozen=True)
class FramePolicy:
    """The ``[frames]`` table: forward or drop each class of frame that is not a
    well-formed IPv4 TCP/UDP frame (:class:`model.parse.Reason`, docs/frames.md).

    ``malformed`` applies to every reason other than ``ok``; ``overrides`` holds
    ``(reason key, action)`` pairs that replace it for one reason. Never rewritten.
    """

    malformed: str = "forward"
    overrides: tuple[tuple[str, str], ...] = ()

    def action(self, reason: str) -> str:
        """``"forward"`` or ``"drop"`` for a reason key (``"bad_ip_checksum"``)."""
        return dict(self.overrides).get(reason, self.malformed)


@dataclass(frozen=True)
class Config:
    """A validated l4lb description."""

    name: str
    geometry: Geometry
    salts: Salts
    vips: tuple[Vip, ...]
    source: str = "<string>"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    frames: FramePolicy = field(default_factory=FramePolicy)
    lifecycle: Lifecycle = field(default_factory=Lifecycle)
    network: Network = field(default_factory=Network)

    @property
    def all_dips(self) -> list[Dip]:
        """Distinct DIPs in first-appearance order (the initial DIP table)."""
        seen: dict[Dip, None] = {}
        for v in self.vips:
            for d in v.dips:
                seen.setdefault(Dip(d.address, d.port, 1), None)
        return list(seen)


# ------------------------------------------------------------------------------------
# Parsing helpers: each takes the dotted field path for error messages.

DEFAULT_SALTS = {
    "stages": [0x9E3779B9, 0x7F4A7C15, 0x94D049BB, 0xBF58476D,
               0x1CE4E5B9, 0x133111EB, 0xD6E8FEB8, 0x6A09E667],
    "digest": 0xC2B2AE35,
    "maglev": 0x27D4EB2F,
    "transit": [0x165667B1, 0x85EBCA77, 0xCC9E2D51, 0x1B873593],
    "maglev_offset": 0x3C6EF372,
    "maglev_skip": 0xA54FF53A,
    "auth": [0x5BD1E995, 0x2545F491, 0x4F1BBCDD],
}


def _int(value: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if lo is not None and value < lo:
        raise ConfigError(f"{path}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{path}: {value!r} is above the maximum {hi}")
    return value


def _ip(value: Any, path: str) -> int:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected an IPv4 address string, got {value!r}")
    try:
        return int(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError):
        raise ConfigError(f"{path}: {value!r} is not a valid IPv4 address") from None


def _number(value: Any, path: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if value < lo:
        raise ConfigError(f"{path}: {value!r} is below the minimum {lo}")
    if value > hi:
        raise ConfigError(f"{path}: {value!r} is above the maximum {hi}")
    return float(value)


def _table(value: Any, path: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: expected a table, got {value!r}")
    return value


def _check_keys(table: dict, allowed: set[str], path: str) -> None:
    for k in table:
        if k not in allowed:
            where = f"{path}.{k}" if path else k
            raise ConfigError(f"{where}: unknown field {k!r} (allowed: {sorted(allowed)})")


def _geometry(raw: dict) -> Geometry:
    g = _table(raw, "geometry")
    defaults = Geometry()
    allowed = set(Geometry.__dataclass_fields__)
    _check_keys(g, allowed, "geometry")
    kw: dict[str, int] = {}
    bounds = {
        "stages": (1, 8), "log2_slots": (1, 24), "version_bits": (1, 16),
        "maglev_size": (2, 1 << 22), "pool_slots": (1, 1024), "vip_capacity": (1, 4096),
        "dip_capacity": (1, 1 << 16), "transit_log2_bits": (1, 24),
        "transit_hashes": (1, 4), "stash_size": (0, 1 << 16), "max_kicks": (1, 1 << 20),
    }
    for name, (lo, hi) in bounds.items():
        kw[name] = _int(g.get(name, getattr(defaults, name)), f"geometry.{name}", lo, hi)
    digest = g.get("digest_bits", defaults.digest_bits)
    if digest == "full":
        kw["digest_bits"] = KEY_BITS
    else:
        if isinstance(digest, str):
            raise ConfigError(f"geometry.digest_bits: {digest!r} is neither 8..32 nor 'full'")
        kw["digest_bits"] = _int(digest, "geometry.digest_bits", 8, 32)
    m = kw["maglev_size"]
    if not (is_prime(m) or m & (m - 1) == 0):
        raise ConfigError(f"geometry.maglev_size: {m!r} is neither a prime nor a power of two")
    return Geometry(**kw)


def _policy(raw: Any, path: str) -> Policy:
    """``policy = "maglev"``, ``"weighted-by-load"`` or a table with ``kind`` and the
    parameters of :class:`Policy`."""
    where = path
    if isinstance(raw, str):
        raw = {"kind": raw}
    else:
        where = f"{path}.kind"
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a policy name or a table, got {raw!r} (policies: "
            f"{list(POLICIES)})")
    _check_keys(raw, set(Policy.__dataclass_fields__), path)
    kind = raw.get("kind", "maglev")
    if not isinstance(kind, str) or kind not in POLICIES:
        raise ConfigError(
            f"{where}: unknown policy {kind!r} (expected one of {list(POLICIES)})")
    params = sorted(k for k in raw if k != "kind")
    if kind == "maglev" and params:
        raise ConfigError(
            f"{path}.{params[0]}: parameter of the 'weighted-by-load' policy, but the "
            f"policy is 'maglev'")
    d = Policy()
    resolution = _int(raw.get("resolution", d.resolution), f"{path}.resolution", 1, 1 << 16)
    min_weight = _int(raw.get("min_weight", d.min_weight), f"{path}.min_weight", 1, 1 << 16)
    if min_weight > resolution:
        raise ConfigError(
            f"{path}.min_weight: {min_weight!r} is above {path}.resolution ({resolution})")
    return Policy(
        kind=kind,
        period=_int(raw.get("period", d.period), f"{path}.period", 1, 1 << 30),
        threshold=_number(raw.get("threshold", d.threshold), f"{path}.threshold", 1.0, 1e9),
        resolution=resolution,
        min_weight=min_weight,
    )


def _salts(raw: dict, geo: Geometry) -> Salts:
    s = _table(raw, "salts")
    _check_keys(s, set(DEFAULT_SALTS), "salts")
    merged = {**DEFAULT_SALTS, **s}

    def word(v: Any, path: str) -> int:
        return _int(v, path, 0, 0xFFFFFFFF)

    def words(v: Any, path: str, n: int) -> tuple[int, ...]:
        if not isinstance(v, list):
            raise ConfigError(f"{path}: expected a list of 32-bit integers, got {v!r}")
        if len(v) < n:
            raise ConfigError(f"{path}: needs at least {n} salts, got {len(v)}")
        return tuple(word(x, f"{path}[{i}]") for i, x in enumerate(v[:n]))

    return Salts(
        stages=words(merged["stages"], "salts.stages", geo.stages),
        digest=word(merged["digest"], "salts.digest"),
        maglev=word(merged["maglev"], "salts.maglev"),
        transit=words(merged["transit"], "salts.transit", geo.transit_hashes),
        maglev_offset=word(merged["maglev_offset"], "salts.maglev_offset"),
        maglev_skip=word(merged["maglev_skip"], "salts.maglev_skip"),
        auth=words(merged["auth"], "salts.auth", 3),
    )


def _vip(raw: Any, i: int, geo: Geometry) -> Vip:
    path = f"vip[{i}]"
    v = _table(raw, path)
    _check_keys(v, {"name", "address", "port", "protocol", "dips", "policy", "auth"}, path)
    name = v.get("name", f"vip{i}")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.name: expected a non-empty string, got {name!r}")
    if "address" not in v:
        raise ConfigError(f"{path}.address: missing")
    address = _ip(v["address"], f"{path}.address")
    port = _int(v.get("port"), f"{path}.port", 0, 0xFFFF)
    proto = v.get("protocol", "tcp")
    if not isinstance(proto, str) or proto not in PROTOCOLS:
        raise ConfigError(
            f"{path}.protocol: unknown protocol {proto!r} (expected one of {sorted(PROTOCOLS)})"
        )
    dips_raw = v.get("dips")
    if not isinstance(dips_raw, list):
        raise ConfigError(f"{path}.dips: expected a list of DIP tables, got {dips_raw!r}")
    if not dips_raw:
        raise ConfigError(f"{path}.dips: pool of VIP {name!r} is empty")
    dips = []
    seen = set()
    for j, d in enumerate(dips_raw):
        dp = f"{path}.dips[{j}]"
        d = _table(d, dp)
        _check_keys(d, {"address", "port", "weight"}, dp)
        if "address" not in d:
            raise ConfigError(f"{dp}.address: missing")
        dip = Dip(
            address=_ip(d["address"], f"{dp}.address"),
            port=_int(d.get("port", port), f"{dp}.port", 0, 0xFFFF),
            weight=_int(d.get("weight", 1), f"{dp}.weight", 1, 1 << 16),
        )
        if (dip.address, dip.port) in seen:
            raise ConfigError(f"{dp}: duplicate DIP {dip} in pool of VIP {name!r}")
        seen.add((dip.address, dip.port))
        dips.append(dip)
    if len(dips) > geo.maglev_size:
        raise ConfigError(
            f"geometry.maglev_size: {geo.maglev_size} is smaller than the pool of VIP "
            f"{name!r} ({len(dips)} DIPs)"
        )
    policy = _policy(v["policy"], f"{path}.policy") if "policy" in v else Policy()
    auth = v.get("auth", False)
    if not isinstance(auth, bool):
        raise ConfigError(f"{path}.auth: expected true or false, got {auth!r}")
    if auth and proto != "tcp":
        raise ConfigError(f"{path}.auth: SYN authentication needs a TCP VIP, but VIP "
                          f"{name!r} is {proto}")
    return Vip(name=name, address=address, port=port, protocol=PROTOCOLS[proto],
               dips=tuple(dips), policy=policy, auth=auth)


def _frames(raw: Any) -> FramePolicy:
    from .parse import Reason

    f = _table(raw, "frames")
    reasons = [r.key for r in Reason if r != Reason.OK]
    _check_keys(f, {"malformed", *reasons}, "frames")

    def act(key: str) -> str:
        v = f[key]
        if not isinstance(v, str) or v not in FRAME_ACTIONS:
            raise ConfigError(f"frames.{key}: expected one of {list(FRAME_ACTIONS)}, got {v!r}")
        return v

    malformed = act("malformed") if "malformed" in f else FramePolicy.malformed
    return FramePolicy(malformed, tuple((k, act(k)) for k in reasons if k in f))


def parse_config(data: dict, source: str = "<string>") -> Config:
    """Validate a parsed TOML document and return a :class:`Config`."""
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a table, got {data!r}")
    _check_keys(data, {"name", "geometry", "salts", "vip", "frames", "lifecycle", "network"},
                "")
    geo = _geometry(data.get("geometry", {}))
    salts = _salts(data.get("salts", {}), geo)
    vips_raw = data.get("vip")
    if not isinstance(vips_raw, list) or not vips_raw:
        raise ConfigError(f"vip: expected at least one [[vip]] table, got {vips_raw!r}")
    if len(vips_raw) > geo.vip_capacity:
        raise ConfigError(
            f"geometry.vip_capacity: {geo.vip_capacity} is smaller than the number of VIPs "
            f"({len(vips_raw)})"
        )
    vips = []
    keys: dict[tuple[int, int, int], str] = {}
    names: set[str] = set()
    for i, raw in enumerate(vips_raw):
        vip = _vip(raw, i, geo)
        key = (vip.address, vip.port, vip.protocol)
        if key in keys:
            raise ConfigError(
                f"vip[{i}]: duplicate VIP {vip.address_str}:{vip.port}/{vip.protocol_name} "
                f"(already defined by {keys[key]!r})"
            )
        if vip.name in names:
            raise ConfigError(f"vip[{i}].name: duplicate VIP name {vip.name!r}")
        keys[key] = vip.name
        names.add(vip.name)
        vips.append(vip)
    cfg = Config(
        name=str(data.get("name", "l4lb")), geometry=geo, salts=salts, vips=tuple(vips),
        source=source, frames=_frames(data.get("frames", {})),
        lifecycle=parse_lifecycle(data.get("lifecycle", {}), any(v.auth for v in vips)),
        network=parse_network(data.get("network"), tuple(vips)),
    )
    n_dips = len(cfg.all_dips)
    if n_dips > geo.dip_capacity:
        raise ConfigError(
            f"geometry.dip_capacity: {geo.dip_capacity} is smaller than the number of "
            f"distinct DIPs ({n_dips})"
        )
    if geo.pool_slots < len(vips):
        raise ConfigError(
            f"geometry.pool_slots: {geo.pool_slots} cannot hold one Maglev table per VIP "
            f"({len(vips)} VIPs)"
        )
    return cfg


def load_config(path: str | Path) -> Config:
    """Read a TOML file and validate it (see :func:`parse_config`)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read config ({e.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    return parse_config(data, source=str(p))
