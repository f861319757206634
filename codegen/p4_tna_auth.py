"""SYN authentication on the TNA program (Tofino 2): the cookie by recirculation
(docs/lifecycle.md, "P4 TNA: SYN authentication by recirculation").

HalfSipHash-2-4 takes about 53 MAU stages on Tofino (``scripts/tofino_siphash_probe.py``);
a pipe has 20 ingress and 20 egress stages on Tofino 2. The program therefore computes
the cookie over several passes of the packet through the pipe:

* the **first pass** is the normal program; a TCP miss of an ``auth`` VIP from an
  unverified source that needs a cookie (a SYN to challenge, an RST to check) changes
  no state and is recirculated with the ``auth_h`` header (ingress port, epoch, key
  index, key, message words, HalfSipHash state, the verified-source predictions);
* **cookie chunks** run the HalfSipHash steps of :func:`cookie_steps` in egress, one
  chunk per round through the recirculation port (:func:`cookie_schedule`); the
  ingress passes in between only send the packet on; no load-balancer state is
  touched there;
* the **final pass** is the normal program again, with the hash in ``auth_h``; when
  the key or the epoch is no longer what the first pass read (``rotate_auth`` ran), it
  is a first pass again.

This module gives the step sequence (one MAU stage each: every step is a set of
independent single operations, as in the probe), evaluates it in Python (the tests
check it against :func:`model.cookie.cookie`), renders it as P4 statements, and says
which chips take an ``auth`` config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.config import Config
from model.cookie import MASK32

if TYPE_CHECKING:
    from .p4 import Entry

__all__ = ["TNA_AUTH_RECIRC_PORT", "TNA_AUTH_EGRESS_STEPS",
           "Op", "cookie_steps", "cookie_schedule", "eval_steps", "render_step",
           "CookiePass", "recirculations", "tna_auth_unsupported", "tna_auth_context",
           "auth_names", "tna_auth_entries", "tna_auth_bfrt_context"]

#: Pipe 0's recirculation port on Tofino 2 (pipes 1-3: 134, 262, 390). The ingress
#: parser takes the ``auth_h`` header only from this port, so a frame from a front
#: panel port can never pose as a recirculated cookie pass.
TNA_AUTH_RECIRC_PORT = 6

#: Cookie steps per egress pass (one MAU stage each; the gateway that selects the
#: chunk shares the first); Tofino 2 has 20 egress stages, bf-p4c places 19 steps in
#: 19. Chunks run in egress only: with chunks in the recirculated ingress passes as
#: well (18 steps), bf-p4c 9.13.4 could not allocate the ingress PHV next to the load
#: balancer ("Cannot find a slicing to satisfy @pa_container_size" of the decision
#: header), so a SYN or RST takes one more round instead.
TNA_AUTH_EGRESS_STEPS = 19

_C0, _C1 = 0x6C796765, 0x74656462       # HalfSipHash's initial-state constants
_LENGTH_WORD = 12 << 24                  # the final block of a 12-byte message


@dataclass(frozen=True)
class Op:
    """One single operation of a step: ``dst = a <op> b``. ``op`` is ``add``, ``xor``,
    ``or`` (``b`` a variable), ``xorc``, ``andc`` (``b`` a constant), ``rotl`` (``b`` the
    distance) or ``mov``. Variables: ``v0``..``v3`` (state), ``t1``, ``t3`` (rotated
    copies), ``k0``, ``k1`` (key halves), ``k`` (the key index, 0 or 1), ``m0``..``m2``
    (message words), ``h`` (the hash, then the cookie)."""

    op: str
    dst: str
    a: str
    b: str | int = 0


def sipround_steps() -> list[tuple[Op, ...]]:
    """model.cookie._sipround as four steps of independent operations (no operation
    reads a variable written earlier in its step, so sequential P4 semantics and one
    Tofino VLIW instruction per step agree)."""
    return [
        (Op("add", "v0", "v0", "v1"), Op("add", "v2", "v2", "v3"),
         Op("rotl", "t1", "v1", 5), Op("rotl", "t3", "v3", 8)),
        (Op("xor", "v1", "t1", "v0"), Op("xor", "v3", "t3", "v2"), Op("rotl", "v0", "v0", 16)),
        (Op("add", "v0", "v0", "v3"), Op("add", "v2", "v2", "v1"),
         Op("rotl", "t3", "v3", 7), Op("rotl", "t1", "v1", 13)),
        (Op("xor", "v3", "t3", "v0"), Op("xor", "v1", "t1", "v2"), Op("rotl", "v2", "v2", 16)),
    ]


def cookie_steps() -> list[tuple[Op, ...]]:
    """HalfSipHash-2-4 of the three message words under (k0, k1), step by step: the
    initial state, ``v3 ^= m`` / two SipRounds / ``v0 ^= m`` for m0, m1, m2 and the
    length block (a block's ``v0 ^= m`` shares a step with the next ``v3 ^= m``), then
    ``v2 ^= 0xff``, four SipRounds, ``h = v1 ^ v3`` and the cookie ``h = (h & ~1) | k``
    (model.cookie.cookie; 57 steps)."""
    steps: list[tuple[Op, ...]] = [
        (Op("mov", "v0", "k0"), Op("mov", "v1", "k1"), Op("xorc", "v2", "k0", _C0),
         Op("xorc", "v3", "k1", _C1)),
        (Op("xor", "v3", "v3", "m0"),),
    ]
    blocks: list[str | int] = ["m0", "m1", "m2", _LENGTH_WORD]
    for i, m in enumerate(blocks):
        steps += sipround_steps() + sipround_steps()
        first = Op("xorc" if isinstance(m, int) else "xor", "v0", "v0", m)
        if i + 1 < len(blocks):
            nxt = blocks[i + 1]
            steps.append((first, Op("xorc" if isinstance(nxt, int) else "xor", "v3", "v3",
                                    nxt)))
        else:
            steps.append((first, Op("xorc", "v2", "v2", 0xFF)))
    for _ in range(4):
        steps += sipround_steps()
    steps += [(Op("xor", "h", "v1", "v3"),), (Op("andc", "h", "h", 0xFFFFFFFE),),
              (Op("or", "h", "h", "k"),)]
    return steps


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (32 - b))) & MASK32


def eval_steps(steps: list[tuple[Op, ...]], env: dict[str, int]) -> dict[str, int]:
    """Run ``steps`` on ``env`` (variable -> 32-bit value) as the program does: each
    step's operations in order. Raises ValueError when a step reads a variable an
    earlier operation of the same step wrote, or writes one twice (the step would not
    be one MAU stage)."""
    env = dict(env)
    for n, step in enumerate(steps):
        written: set[str] = set()
        for o in step:
            srcs = [o.a] + ([o.b] if o.op in ("add", "xor", "or") else [])
            if written & set(srcs) or o.dst in written:
                raise ValueError(f"step {n}: {o} depends on an operation of its own step")
            a = env[o.a]
            if o.op == "add":
                v = (a + env[str(o.b)]) & MASK32
            elif o.op == "xor":
                v = a ^ env[str(o.b)]
            elif o.op == "or":
                v = a | env[str(o.b)]
            elif o.op == "xorc":
                v = a ^ int(o.b)
            elif o.op == "andc":
                v = a & int(o.b)
            elif o.op == "rotl":
                v = _rotl(a, int(o.b))
            elif o.op == "mov":
                v = a
            else:
                raise ValueError(f"step {n}: unknown operation {o.op!r}")
            env[o.dst] = v
            written.add(o.dst)
    return env


def render_step(step: tuple[Op, ...], state: str, temp: str) -> list[str]:
    """P4 statements of one step: ``t1``/``t3`` live in the metadata prefix ``temp``,
    everything else in the header prefix ``state`` (``hdr.auth``)."""
    def ref(v: str) -> str:
        if v == "k":
            return f"{state}.kw"
        return f"{temp}.sip_{v}" if v in ("t1", "t3") else f"{state}.{v}"

    out = []
    for o in step:
        d, a = ref(o.dst), ref(o.a)
        if o.op == "add":
            out.append(f"{d} = {a} + {ref(str(o.b))};")
        elif o.op == "xor":
            out.append(f"{d} = {a} ^ {ref(str(o.b))};")
        elif o.op == "or":
            out.append(f"{d} = {a} | {ref(str(o.b))};")
        elif o.op == "xorc":
            out.append(f"{d} = {a} ^ 32w0x{int(o.b):08x};")
        elif o.op == "andc":
            out.append(f"{d} = {a} & 32w0x{int(o.b):08x};")
        elif o.op == "rotl":   # a <<< b: the funnel shift of a ++ a right by 32 - b
            out.append(f"funnel_shift_right({d}, {a}, {a}, {32 - int(o.b)});")
        else:
            out.append(f"{d} = {a};")
    return out


@dataclass(frozen=True)
class CookiePass:
    """One chunk of cookie steps, run in egress: ``index`` is the value of
    ``auth_h.chunk`` that selects it, ``first`` the number of its first step in
    :func:`cookie_steps`."""

    index: int
    first: int
    steps: tuple[tuple[Op, ...], ...]

    @property
    def last(self) -> bool:
        return self.first + len(self.steps) == len(cookie_steps())


def cookie_schedule(egress_steps: int = TNA_AUTH_EGRESS_STEPS) -> list[CookiePass]:
    """The chunks in the order the packet runs them, one per round (the egress of
    the first pass's round, then of each later round)."""
    if egress_steps < 1:
        raise ValueError(f"egress_steps: {egress_steps!r}, expected at least 1")
    steps = cookie_steps()
    return [CookiePass(i, pos, tuple(steps[pos:pos + egress_steps]))
            for i, pos in enumerate(range(0, len(steps), egress_steps))]


def recirculations(schedule: list[CookiePass] | None = None) -> int:
    """Recirculations of a packet that needs a cookie, without restarts or retries:
    one per chunk (the last chunk's round brings it to its final pass)."""
    return len(cookie_schedule() if schedule is None else schedule)


def auth_names(cfg: Config) -> str:
    """The ``auth`` VIPs of a config, quoted, for error messages."""
    return ", ".join(repr(v.name) for v in cfg.vips if v.auth)


def tna_auth_unsupported(cfg: Config, target: str) -> str | None:
    """Why bf-p4c ``target`` (``tofino``, ``tofino2``) cannot take ``cfg``'s SYN
    authentication, or None. Tofino 1 is refused: its deparser cannot cut a SYN's
    options and payload (no ``mtu_trunc_len``; only a mirror session's max packet
    length truncates, and only a copy), and the load balancer alone already uses 11 of
    its 12 ingress stages; the authenticating program, with the truncation left out,
    needs 22 ingress and 19 egress stages there (bf-p4c 9.13.4; docs/lifecycle.md,
    "P4 TNA")."""
    if not cfg.lifecycle.auth or target == "tofino2":
        return None
    return (f"{cfg.source}: SYN authentication (auth = true on VIP {auth_names(cfg)}) "
            f"runs on Tofino 2 only (bf-p4c --target tofino2 --arch t2na): Tofino 1 "
            f"cannot truncate the challenge SYN-ACK after its TCP header (no "
            f"mtu_trunc_len; a mirror session's max packet length truncates only a "
            f"mirrored copy), and the program does not fit its stages: the load balancer "
            f"alone takes 11 of Tofino 1's 12, with authentication (truncation left out) "
            f"bf-p4c 9.13.4 says 'tofino supports up to 12 stages, using 22' (ingress 22, "
            f"egress 19); docs/lifecycle.md, 'P4 TNA'.")


def tna_auth_context(cfg: Config) -> dict:
    """Template variables of the TNA authentication partials."""
    sched = cookie_schedule()
    return {
        "auth_recirc_port": TNA_AUTH_RECIRC_PORT,
        "auth_egress_chunks": [{"index": p.index, "first": p.first, "last": p.last,
                                "steps": [render_step(st, "hdr.auth", "{md}")
                                          for st in p.steps]} for p in sched],
    }


def tna_auth_entries(e: Entry) -> list[Entry]:
    """The TNA program's entries for one model entry: a word of memory ``auth_key``
    (64 bits, wider than a register word) is the entry of its parity in the tables
    ``auth_key`` (read by the final pass) and ``auth_key_first`` (the first pass's
    copy), action data ``k0`` = the low and ``k1`` = the high 32 bits; anything else
    is itself."""
    from .p4 import RegisterWrite, TableAdd

    if not (isinstance(e, RegisterWrite) and e.register == "auth_key"):
        return [e]
    keys = (("parity", e.index, 1),)
    params = (("k0", e.value & MASK32, 32), ("k1", e.value >> 32, 32))
    return [TableAdd(table, action, keys, params, f"auth_key[{e.index}]")
            for table, action in (("auth_key", "set_auth_key"),
                                  ("auth_key_first", "set_auth_key_first"))]


def tna_auth_bfrt_context(cfg: Config) -> dict:
    """Template variables of entries_bfrt.py for SYN authentication."""
    return {"auth": cfg.lifecycle.auth, "auth_recirc_port": TNA_AUTH_RECIRC_PORT}
