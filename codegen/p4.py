"""P4-16 emitter: one program for BMv2 (v1model), one for Tofino (TNA), and their table
contents, all from one :class:`~model.config.Config`.

Both programs make exactly the decision of :meth:`model.pipeline.DataPlane.process`
for every packet, reading the word-exact memories of :mod:`model.layout`:

==============  =====================================================================
memory          P4 object (same name in both programs, control ``SwitchIngress``)
==============  =====================================================================
``vip``         table ``vip_table`` (exact dst ip/port/proto -> ``set_vip(vip_id)``)
``conn<i>``     register array ``conn<i>``, read at the stage-``i`` hash
``vip_state``   register array ``vip_state`` (phase | old_version | cur_version)
``slot_map``    register array ``slot_map`` at ``vip_id ++ version``
``maglev``      register array ``maglev`` at ``slot * M + index``
``dip``         table ``dip_table`` (exact DIP index -> ``set_dip(dip_ip, dip_port)``)
``transit<j>``  1-bit register array ``transit<j>`` (TransitTable Bloom filter)
==============  =====================================================================

A config with a ``[network]`` table adds ``rev_table``, ``route_table`` (LPM) and
``port_mac``: a register array on v1model, the exact table ``port_mac_table`` on TNA
(48-bit words; :func:`tna_entry`) (codegen/p4_network.py).

The table contents are one list of :class:`TableAdd` / :class:`RegisterWrite` entries
(:func:`entries`), rendered as ``simple_switch_CLI`` commands
(:func:`render_entries_bmv2`) and as a ``bfrt_python`` script
(:func:`render_entries_bfrt`). Programs and entry files come from the Jinja2 templates
in ``codegen/templates/p4/`` (``StrictUndefined``). Design and constraints:
docs/p4.md.
"""

from __future__ import annotations

import ipaddress
import warnings
from dataclasses import dataclass
from pathlib import Path

import jinja2

from model.config import Config, Geometry, clog2
from model.hashing import AUTH_FIELDS, FIELD_ORDERS
from model.layout import memory_specs, unpack_dip
from model.lifecycle import LifecycleUnsupported
from model.network import PORT_BITS, format_mac

from .p4_lifecycle import tna_lifecycle_unsupported
from .p4_lint import lint_p4
from .p4_network import TNA_PORT_MAC_TABLE, match_key, rev_entry, route_entry
from .p4_tna import (
    TNA_MAGLEV_PADDED_MAX_BITS,
    TNA_MAX_REGISTER_BITS,
    TNA_MOD_HALF_BITS,
    P4GenError,
    tna_maglev_banked,
    tna_maglev_mod_tables,
    tna_maglev_reduce,
    tna_mod_lo,
    tna_register_bits,
    tna_unsupported,
)

__all__ = [
    "P4GenError",
    "TableAdd",
    "RegisterWrite",
    "Entry",
    "PROGRAM_FILES",
    "INGRESS",
    "TABLE_MEMORIES",
    "KEYED_MEMORIES",
    "DECISION_HEADER",
    "tna_register_bits",
    "tna_unsupported",
    "tna_maglev_mod_tables",
    "tna_maglev_reduce",
    "tna_maglev_banked",
    "TNA_MAX_REGISTER_BITS",
    "TNA_MAGLEV_PADDED_MAX_BITS",
    "hash_roles",
    "default_images",
    "entries",
    "sourced_entries",
    "entry_for_word",
    "render_v1model",
    "render_tna",
    "render_entries_bmv2",
    "render_entries_bfrt",
    "tna_entry",
    "write_p4",
    "lint_p4",
]

#: Files written by :func:`write_p4`, in order.
PROGRAM_FILES = ("l4lb_v1model.p4", "l4lb_tna.p4", "entries_bmv2.txt", "entries_bfrt.py")

#: The ingress control of both programs; every table and register lives in it.
INGRESS = "SwitchIngress"

#: Memories held in match-action tables (the others are register arrays of the same name);
#: ``rev`` and ``route`` exist only with a ``[network]`` table.
TABLE_MEMORIES = ("vip", "dip", "rev", "route")

#: Table memories whose key is in the word: two valid words with one key are one table
#: entry, the lower address's (the model's lowest-index rule).
KEYED_MEMORIES = ("vip", "rev", "route")

#: The exported decision header (``decision_h``): model Decision field -> width in bits.
#: Byte-aligned and independent of the geometry, so a harness can parse it blindly.
DECISION_HEADER = (
    ("action", 8), ("vip_id", 16), ("hit", 8), ("stage", 8), ("version", 16),
    ("transit_hit", 8), ("slot", 16), ("dip", 16), ("dip_ip", 32), ("dip_port", 16),
    ("learn", 8), ("close", 8),
)


_TEMPLATES = Path(__file__).resolve().parent / "templates" / "p4"

_FIELD_BITS = {"src_ip": 32, "dst_ip": 32, "src_port": 16, "dst_port": 16, "proto": 8}


# ---- helpers shared by the templates and the entries ---------------------------------

@dataclass(frozen=True)
class HashRole:
    """One model hash role as the programs compute it: ``zlib.crc32(salt || fields)``
    reduced to ``space`` values (``h % space``; a power of two except for a prime
    Maglev size) and stored in metadata field ``dest`` of P4 type ``ptype``."""

    name: str                  # "stage0", "digest", "maglev", "transit1", ...
    salt: int
    fields: tuple[str, ...]    # model.hashing.FIELD_ORDERS[name]
    use: str                   # the model function the result feeds
    dest: str                  # metadata field, relative to the metadata struct
    ptype: str                 # P4 type of the result
    space: str                 # #define holding the number of result values

    @property
    def const(self) -> str:
        return f"SALT_{self.name.upper()}"


def hash_roles(cfg: Config, arch: str = "v1model") -> list[HashRole]:
    """The hash roles the data plane computes, in manifest order (no ``digest`` role in
    full-key mode: the digest is then the packed key itself). On TNA with a prime Maglev
    size the Maglev role keeps the whole CRC (``hash.maglev_crc``), which the program
    reduces modulo M by lookup (:func:`tna_maglev_mod_tables`)."""
    g, s = cfg.geometry, cfg.salts
    roles = [HashRole(f"stage{i}", s.stages[i], FIELD_ORDERS[f"stage{i}"],
                      f"model.hashing.Hasher.stage_index({i}): bucket of stage {i}",
                      f"hash.stage{i}", "conn_index_t", "CONN_SLOTS")
             for i in range(g.stages)]
    if not g.full_key:
        roles.append(HashRole("digest", s.digest, FIELD_ORDERS["digest"],
                              "model.hashing.Hasher.digest: ConnTable digest",
                              "digest", "conn_digest_t", "DIGEST_VALUES"))
    if arch == "tna" and not g.maglev_pow2:
        roles.append(HashRole("maglev", s.maglev, FIELD_ORDERS["maglev"],
                              "model.hashing.Hasher.maglev_index: the CRC, reduced mod M "
                              "below", "hash.maglev_crc", "bit<32>", "2^32"))
    else:
        roles.append(HashRole("maglev", s.maglev, FIELD_ORDERS["maglev"],
                              "model.hashing.Hasher.maglev_index: Maglev table index",
                              "hash.maglev", "maglev_index_t", "MAGLEV_SIZE"))
    roles += [HashRole(f"transit{j}", s.transit[j], FIELD_ORDERS[f"transit{j}"],
                       f"model.hashing.Hasher.transit_indices()[{j}]: Bloom bit {j}",
                       f"hash.transit{j}", "transit_index_t", "TRANSIT_BITS")
              for j in range(g.transit_hashes)]
    if cfg.lifecycle.auth:
        roles += [HashRole(f"auth{w}", s.auth[w], AUTH_FIELDS,
                           f"model.hashing.Hasher.auth_slots()[{w}]: verified-source way {w}",
                           f"hash.auth{w}", "auth_index_t", "AUTH_SOURCES")
                  for w in (0, 1)]
        roles.append(HashRole("auth_tag", s.auth[2], AUTH_FIELDS,
                              "model.hashing.Hasher.auth_slots()[2]: verified-source tag",
                              "hash.auth_tag", "auth_tag_t", "AUTH_TAG_VALUES"))
    return roles


def _define_rows(g: Geometry, arch: str) -> list[tuple[str, int, str]]:
    """The geometry constants of one program: (name, value, comment)."""
    V, D, S = g.version_bits, g.digest_bits, g.slot_bits
    digest_note = "the full 104-bit key" if g.full_key else "geometry.digest_bits"
    tna = arch == "tna"
    rows = [
        ("CONN_LOG2_SLOTS", g.log2_slots, "geometry.log2_slots"),
        ("CONN_SLOTS", g.slots, "words per ConnTable stage"),
        ("STAGE_BITS", clog2(g.stages), f"holds a stage number 0..{g.stages - 1}"),
        ("DIGEST_BITS", D, digest_note),
        *([] if g.full_key or tna else
          [("DIGEST_VALUES", 1 << D, "2^DIGEST_BITS: the digest is h % DIGEST_VALUES")]),
        ("VERSION_BITS", V, "geometry.version_bits"),
        ("VIP_CAPACITY", g.vip_capacity, "geometry.vip_capacity"),
        ("VIP_BITS", g.vip_bits, "holds a VIP id"),
        ("SLOT_BITS", S, f"holds a pool slot 0..{g.pool_slots - 1}"),
        ("SLOT_MAP_DEPTH", g.vip_capacity << V, "vip_capacity << V"),
        *([] if tna and g.maglev_pow2 else
          [("MAGLEV_SIZE", g.maglev_size, "geometry.maglev_size (M)")]),
        ("MAGLEV_INDEX_BITS", g.maglev_index_bits,
         f"M = 2^{g.maglev_index_bits} = geometry.maglev_size" if tna and g.maglev_pow2
         else "holds a Maglev index 0..M-1"),
        *([] if tna and tna_maglev_banked(g) else
          [("MAGLEV_DEPTH", g.pool_slots << g.maglev_index_bits,
            "pool_slots * M" if g.maglev_pow2
            else "pool_slots * 2^MAGLEV_INDEX_BITS (slot ++ index, padded)")
           if tna else ("MAGLEV_DEPTH", g.maglev_depth, "pool_slots * M")]),
        ("DIP_CAPACITY", g.dip_capacity, "geometry.dip_capacity"),
        ("DIP_BITS", g.dip_bits, "holds a DIP-table index"),
        ("TRANSIT_LOG2_BITS", g.transit_log2_bits, "geometry.transit_log2_bits"),
        ("TRANSIT_BITS", g.transit_bits, "bits per TransitTable Bloom array"),
    ]
    if tna:
        rows += [
            ("CONN_REG_BITS", tna_register_bits(g.conn_word_bits),
             f"register element of a {g.conn_word_bits}-bit conn word"),
            ("VIP_STATE_REG_BITS", tna_register_bits(2 * V + 2),
             f"register element of a {2 * V + 2}-bit vip_state word"),
            ("SLOT_MAP_REG_BITS", tna_register_bits(1 + S),
             f"register element of a {1 + S}-bit slot_map word"),
            ("MAGLEV_REG_BITS", tna_register_bits(g.dip_bits),
             f"register element of a {g.dip_bits}-bit maglev word"),
            ("SLOT_MAP_INDEX_BITS", g.vip_bits + V, "slot_map index: vip_id ++ version"),
        ]
        if not tna_maglev_banked(g):
            rows.append(("MAGLEV_ADDR_BITS", S + g.maglev_index_bits,
                         "maglev address: slot ++ index = slot * M + index"
                         if g.maglev_pow2 else "maglev address: slot ++ index"))
        if not g.maglev_pow2:
            rows.append(("MOD_HALF_VALUES", 1 << TNA_MOD_HALF_BITS,
                         "entries of each CRC-half lookup register"))
    else:
        rows += [
            ("CONN_WORD_BITS", g.conn_word_bits, "valid(1) | version(V) | digest(D)"),
            ("VIP_STATE_BITS", 2 * V + 2, "phase(2) | old_version(V) | cur_version(V)"),
            ("SLOT_MAP_BITS", 1 + S, "valid(1) | slot(S)"),
        ]
    rows += [
        ("CONN_VALID_BIT", V + D, "conn word: valid"),
        ("CONN_VERSION_HI", V + D - 1, "conn word: version[V-1]"),
        ("CONN_VERSION_LO", D, "conn word: version[0]"),
        ("CONN_DIGEST_HI", D - 1, "conn word: digest[D-1]"),
        ("VIP_STATE_PHASE_HI", 2 * V + 1, "vip_state word: phase[1]"),
        ("VIP_STATE_PHASE_LO", 2 * V, "vip_state word: phase[0]"),
        ("VIP_STATE_OLD_HI", 2 * V - 1, "vip_state word: old_version[V-1]"),
        ("VIP_STATE_OLD_LO", V, "vip_state word: old_version[0]"),
        ("VIP_STATE_CUR_HI", V - 1, "vip_state word: cur_version[V-1]"),
        ("SLOT_MAP_VALID_BIT", S, "slot_map word: valid"),
        ("SLOT_MAP_SLOT_HI", S - 1, "slot_map word: slot[S-1]"),
    ]
    return rows


def _context(cfg: Config, arch: str) -> dict:
    from .p4_lifecycle import decision_header, lifecycle_context, lifecycle_defines
    from .p4_network import network_context, network_defines

    g = cfg.geometry
    return lifecycle_context(cfg) | network_context(cfg) | {
        "arch": arch,
        "cfg_name": cfg.name,
        "cfg_file": Path(cfg.source).name,
        "g": g,
        "defines": _define_rows(g, arch) + lifecycle_defines(cfg) + network_defines(cfg),
        "roles": hash_roles(cfg, arch),
        "slots": list(range(g.pool_slots)),
        "mod_lo": tna_mod_lo(g),
        "maglev_banked": tna_maglev_banked(g),
        "field_bits": _FIELD_BITS,
        "stages": list(range(g.stages)),
        "transits": list(range(g.transit_hashes)),
        "ingress": INGRESS,
        "decision_header": decision_header(cfg, DECISION_HEADER),
    }


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render_v1model(cfg: Config) -> str:
    """The P4-16 program for BMv2 ``simple_switch`` (v1model architecture)."""
    return _env().get_template("l4lb_v1model.p4.j2").render(**_context(cfg, "v1model"))


def render_tna(cfg: Config) -> str:
    """The P4-16 program for Tofino 1 (TNA). Raises :class:`P4GenError` naming the
    geometry field when the config cannot run there (see :func:`tna_unsupported`)."""
    why = tna_unsupported(cfg)
    if why is not None:
        raise P4GenError(why)
    why = tna_lifecycle_unsupported(cfg)
    if why is not None:
        raise LifecycleUnsupported(why)
    return _env().get_template("l4lb_tna.p4.j2").render(**_context(cfg, "tna"))


# ---- table contents -----------------------------------------------------------------

@dataclass(frozen=True)
class TableAdd:
    """One match-action table entry: keys and action parameters as
    ``(name, value, width)`` triples; names are the P4 control-plane names. The keys
    are exact, or with ``prefix_len`` the one key is an LPM prefix of that length."""

    table: str
    action: str
    keys: tuple[tuple[str, int, int], ...]
    params: tuple[tuple[str, int, int], ...]
    note: str = ""
    prefix_len: int | None = None

    def bmv2(self) -> str:
        keys = " ".join(_cli_value(n, v) for n, v, _ in self.keys)
        if self.prefix_len is not None:
            keys += f"/{self.prefix_len}"
        params = " ".join(_cli_value(n, v) for n, v, _ in self.params)
        return f"table_add {INGRESS}.{self.table} {INGRESS}.{self.action} {keys} => {params}"

    def bfrt(self, program: str) -> str:
        args = ", ".join(f"{n}={_py_value(n, v)}" for n, v, _ in self.keys + self.params)
        if self.prefix_len is not None:
            args += f", {self.keys[0][0]}_p_length={self.prefix_len}"
        line = f"bfrt.{program}.pipe.{INGRESS}.{self.table}.add_with_{self.action}({args})"
        return f"{line}  # {self.note}" if self.note else line


@dataclass(frozen=True)
class RegisterWrite:
    """One register-array word."""

    register: str
    index: int
    value: int

    def bmv2(self) -> str:
        # simple_switch_CLI passes the value as a signed 64-bit Thrift integer: a 64-bit
        # word (a SYN-authentication key) is written as its two's-complement value
        v = self.value - (1 << 64) if self.value >> 63 else self.value
        return f"register_write {INGRESS}.{self.register} {self.index} {v}"

    def bfrt(self, program: str) -> str:
        return (f"bfrt.{program}.pipe.{INGRESS}.{self.register}.mod("
                f"REGISTER_INDEX={self.index}, f1={self.value})")


Entry = TableAdd | RegisterWrite

#: simple_switch_CLI passes a register value as a Thrift i64 (64-bit patterns pass).
_BMV2_REGISTER_MAX = (1 << 64) - 1


def _cli_value(name: str, v: int) -> str:
    """simple_switch_CLI value: dotted quad for an IPv4 address, colon-separated hex
    for a MAC address, decimal otherwise."""
    if name == "mac":
        return format_mac(v)
    return str(ipaddress.IPv4Address(v)) if name.endswith("_ip") else str(v)


def _py_value(name: str, v: int) -> str:
    """bfrt_python value: hex for an IPv4 or MAC address, decimal otherwise."""
    if name == "mac":
        return f"0x{v:012x}"
    return f"0x{v:08x}" if name.endswith("_ip") else str(v)


def _proto_name(p: int) -> str:
    return {6: "tcp", 17: "udp"}.get(p, str(p))


def entry_for_word(cfg: Config, mem: str, addr: int, word: int) -> Entry | None:
    """The entry that puts ``word`` at ``mem[addr]``: a register write, or a table entry
    for the ``vip`` / ``dip`` (and ``[network]``: ``rev`` / ``route``) memories (None
    for an invalid VIP, rev or route word: no entry)."""
    g = cfg.geometry
    if mem == "vip":
        if not word >> 56 & 1:
            return None
        ip, port, proto = word >> 24 & 0xFFFFFFFF, word >> 8 & 0xFFFF, word & 0xFF
        return TableAdd("vip_table", "set_vip",
                        (("dst_ip", ip, 32), ("dst_port", port, 16), ("proto", proto, 8)),
                        (("vip_id", addr, g.vip_bits),),
                        f"{ipaddress.IPv4Address(ip)}:{port}/{_proto_name(proto)} "
                        f"-> vip {addr}")
    if mem == "dip":
        ip, port = unpack_dip(word)
        return TableAdd("dip_table", "set_dip", (("dip", addr, g.dip_bits),),
                        (("dip_ip", ip, 32), ("dip_port", port, 16)),
                        f"dip {addr} -> {ipaddress.IPv4Address(ip)}:{port}")
    if mem == "rev":
        return rev_entry(cfg, addr, word)
    if mem == "route":
        return route_entry(cfg, addr, word)
    specs = {s.name for s in memory_specs(g, cfg.lifecycle, cfg.network)}
    if mem not in specs:
        raise KeyError(f"unknown memory {mem!r}")
    return RegisterWrite(mem, addr, word)


def entries(cfg: Config, images: dict[str, list[int]]) -> list[Entry]:
    """All entries that load ``images`` into a freshly started program (registers start
    at zero, tables empty): one per valid VIP word (the lowest index wins a duplicated
    key, as in ``DataPlane.vip_match``; likewise for ``rev`` and ``route`` words), one
    per non-zero DIP word, one per non-zero register word; in memory-map order."""
    return [e for _, _, e in sourced_entries(cfg, images)]


def sourced_entries(cfg: Config, images: dict[str, list[int]]
                    ) -> list[tuple[str, int, Entry]]:
    """:func:`entries`, each with the memory and address whose word it holds."""
    out: list[tuple[str, int, Entry]] = []
    seen: set[tuple] = set()
    for spec in memory_specs(cfg.geometry, cfg.lifecycle, cfg.network):
        words = images[spec.name]
        if len(words) != spec.depth:
            raise ValueError(f"image {spec.name}: {len(words)} words, memory has "
                             f"{spec.depth}")
        for addr, word in enumerate(words):
            if word == 0:
                continue
            e = entry_for_word(cfg, spec.name, addr, int(word))
            if e is None:
                continue
            if spec.name in KEYED_MEMORIES:
                key = match_key(e)
                if key in seen:
                    continue
                seen.add(key)
            out.append((spec.name, addr, e))
    return out


def default_images(cfg: Config) -> dict[str, list[int]]:
    """The memories right after :meth:`model.controlplane.ControlPlane.install`."""
    from model.controlplane import ControlPlane

    cp = ControlPlane(cfg)
    cp.install()
    return cp.mem.snapshot()


def _entries_context(cfg: Config, images: dict[str, list[int]]) -> dict:
    es = entries(cfg, images)
    counts: dict[str, int] = {}
    for e in es:
        name = e.table if isinstance(e, TableAdd) else e.register
        counts[name] = counts.get(name, 0) + 1
    return {"cfg_name": cfg.name, "cfg_file": Path(cfg.source).name, "entries": es,
            "counts": counts, "ingress": INGRESS, "program": "l4lb_tna"}


def render_entries_bmv2(cfg: Config, images: dict[str, list[int]]) -> str:
    """``simple_switch_CLI`` commands that load ``images`` into ``l4lb_v1model.p4``
    (commands only: the CLI has no comment syntax)."""
    ctx = _entries_context(cfg, images)
    for e in ctx["entries"]:
        if isinstance(e, RegisterWrite) and e.value > _BMV2_REGISTER_MAX:
            raise P4GenError(
                f"geometry.digest_bits: {e.register}[{e.index}] = {e.value:#x} does not fit "
                f"the 64-bit register value of simple_switch_CLI; write full-key ConnTable "
                f"words through P4Runtime (simple_switch_grpc)")
    return _env().get_template("entries_bmv2.txt.j2").render(**ctx)


def tna_entry(cfg: Config, e: Entry) -> Entry:
    """``e`` as the TNA program holds it. With a prime Maglev size M, model word
    ``slot * M + index`` of ``maglev`` is word ``slot ++ index`` of the padded register
    ``maglev``, or word ``index`` of the bank ``maglev<slot>`` (:func:`tna_maglev_banked`).
    A ``port_mac`` word (48 bits, wider than a Tofino register word) is the entry of
    port ``index`` in the exact table ``port_mac_table`` (its default, for an unwritten
    port, is the model's zero word)."""
    g = cfg.geometry
    if isinstance(e, RegisterWrite) and e.register == "port_mac":
        table, action = TNA_PORT_MAC_TABLE
        return TableAdd(table, action, (("port", e.index, PORT_BITS),),
                        (("mac", e.value, 48),),
                        f"port {e.index}: source MAC {format_mac(e.value)}")
    if isinstance(e, RegisterWrite) and e.register == "maglev" and not g.maglev_pow2:
        slot, index = divmod(e.index, g.maglev_size)
        if tna_maglev_banked(g):
            return RegisterWrite(f"maglev{slot}", index, e.value)
        return RegisterWrite("maglev", slot << g.maglev_index_bits | index, e.value)
    return e


def render_entries_bfrt(cfg: Config, images: dict[str, list[int]]) -> str:
    """A ``bfrt_python`` script that loads ``images`` into ``l4lb_tna.p4`` (and, for a
    prime Maglev size, the constant CRC-half lookup registers)."""
    why = tna_unsupported(cfg)
    if why is not None:
        raise P4GenError(why)
    ctx = _entries_context(cfg, images)
    from .p4_tna_auth import tna_auth_bfrt_context, tna_auth_entries

    ctx["entries"] = [x for e in ctx["entries"] for x in tna_auth_entries(tna_entry(cfg, e))]
    ctx |= tna_auth_bfrt_context(cfg)
    if "auth_key" in ctx["counts"]:    # the first pass's copy of memory auth_key
        ctx["counts"]["auth_key_first"] = ctx["counts"]["auth_key"]
    g = cfg.geometry
    ctx["mod_tables"] = [] if g.maglev_pow2 else [
        ("maglev_mod_hi",
         f"((i << {TNA_MOD_HALF_BITS}) % {g.maglev_size} - {g.maglev_size}) & 0xFFFFFFFF")] + (
        [("maglev_mod_lo", f"i % {g.maglev_size}")]
        if tna_mod_lo(g) else [])
    ctx["mod_values"] = 1 << TNA_MOD_HALF_BITS
    ctx["network"] = cfg.network.enabled
    if "port_mac" in ctx["counts"]:
        ctx["counts"] = {(TNA_PORT_MAC_TABLE[0] if k == "port_mac" else k): n
                         for k, n in ctx["counts"].items()}
    return _env().get_template("entries_bfrt.py.j2").render(**ctx)


def write_p4(cfg: Config, outdir: str | Path,
             images: dict[str, list[int]] | None = None) -> list[Path]:
    """Write :data:`PROGRAM_FILES` into ``outdir``; returns the paths written.

    ``images`` default to :func:`default_images`. When the config cannot run on Tofino
    (:func:`tna_unsupported`, or SYN authentication, which the TNA program does not
    have: :func:`codegen.p4_lifecycle.tna_lifecycle_unsupported`), the two TNA files
    are replaced by ``TNA_SKIPPED.txt``
    holding the reason, and a warning is issued."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    imgs = default_images(cfg) if images is None else images
    files = {"l4lb_v1model.p4": render_v1model(cfg),
             "entries_bmv2.txt": render_entries_bmv2(cfg, imgs)}
    why = tna_unsupported(cfg) or tna_lifecycle_unsupported(cfg)
    if why is None:
        files["l4lb_tna.p4"] = render_tna(cfg)
        files["entries_bfrt.py"] = render_entries_bfrt(cfg, imgs)
    else:
        warnings.warn(f"TNA program not generated: {why}", stacklevel=2)
        files["TNA_SKIPPED.txt"] = f"l4lb_tna.p4 not generated for config {cfg.name!r}:\n" \
                                   f"{why}\n"
    written = []
    for name in (*PROGRAM_FILES, "TNA_SKIPPED.txt"):
        if name in files:
            path = out / name
            path.write_text(files[name])
            written.append(path)
    return written
