"""What the P4 programs need for the connection lifecycle (docs/lifecycle.md): the extra
constants, hash roles and decision field of a config with a ``[lifecycle]``.

The v1model program implements the lifecycle (activity bits, SYN authentication with
HalfSipHash-2-4 cookies and challenge SYN-ACK frames); the TNA program implements the
activity bits and, on Tofino 2, SYN authentication by recirculation
(codegen/p4_tna_auth.py).
"""

from __future__ import annotations

from model.config import Config
from model.frame import CHALLENGE_TTL, CHALLENGE_WINDOW
from model.layout import Action
from model.lifecycle import AUTH_TAG_BITS, AUTH_WORD_BITS

__all__ = ["LIFECYCLE_DECISION_HEADER", "decision_header", "lifecycle_defines",
           "lifecycle_context", "action_bits", "tna_lifecycle_unsupported"]

#: The exported decision of a lifecycle config: format 1's, then the cookie.
LIFECYCLE_DECISION_HEADER = (("cookie", 32),)


def decision_header(cfg: Config, base: tuple[tuple[str, int], ...]
                    ) -> tuple[tuple[str, int], ...]:
    """The exported decision header of ``cfg``: ``base`` (codegen.p4.DECISION_HEADER),
    plus ``cookie`` when a VIP authenticates sources, plus the route of the frame
    (``route_hit``, ``route``, ``port``) with a ``[network]`` table -- the order of
    :func:`model.pipeline.decision_fields`."""
    from .p4_network import NETWORK_DECISION_HEADER

    hdr = base + LIFECYCLE_DECISION_HEADER if cfg.lifecycle.auth else base
    return hdr + NETWORK_DECISION_HEADER if cfg.network.enabled else hdr


def action_bits(cfg: Config) -> int:
    """Width of ``action_code``: 2 bits hold FORWARD..DROP, 3 the SYN-auth actions and
    REVERSE (6, the return path of a ``[network]`` config)."""
    return 3 if cfg.lifecycle.auth or cfg.network.enabled else 2


def lifecycle_defines(cfg: Config) -> list[tuple[str, int, str]]:
    """#define rows of the lifecycle memories."""
    lc = cfg.lifecycle
    if not lc.auth:
        return []
    a = lc.auth_log2_sources
    return [
        ("AUTH_LOG2_SOURCES", a, "lifecycle.auth_log2_sources"),
        ("AUTH_SOURCES", 1 << a, "words per verified-source way"),
        ("AUTH_TAG_BITS", AUTH_TAG_BITS, "model.lifecycle.AUTH_TAG_BITS"),
        ("AUTH_TAG_VALUES", 1 << AUTH_TAG_BITS, "2^AUTH_TAG_BITS: tag = h % AUTH_TAG_VALUES"),
        ("AUTH_VALID_BIT", AUTH_WORD_BITS - 1, "auth word: valid"),
        ("AUTH_STAMP_BIT", AUTH_TAG_BITS, "auth word: stamp (epoch parity)"),
        ("AUTH_TAG_HI", AUTH_TAG_BITS - 1, "auth word: tag[29]"),
    ]


def lifecycle_context(cfg: Config) -> dict:
    """Template variables: ``lc`` (model.lifecycle.Lifecycle), ``aging``, ``auth``,
    ``action_bits`` and the constants of the challenge frame."""
    from .p4_tna_auth import tna_auth_context

    lc = cfg.lifecycle
    return tna_auth_context(cfg) | {
        "lc": lc,
        "aging": lc.aging,
        "auth": lc.auth,
        "action_bits": action_bits(cfg),
        "action_codes": {a.name: int(a) for a in Action},
        "challenge_ttl": CHALLENGE_TTL,
        "challenge_window": CHALLENGE_WINDOW,
    }


def tna_lifecycle_unsupported(cfg: Config) -> str | None:
    """Why the TNA program cannot take ``cfg``'s lifecycle, or None. Idle aging (the
    activity bits) and SYN authentication (recirculation, Tofino 2 only:
    :func:`codegen.p4_tna_auth.tna_auth_unsupported`) it implements; SYN
    authentication together with a ``[network]`` table it refuses (the challenge would
    be routed to the client, which the TNA program does not do yet)."""
    if not cfg.lifecycle.auth or not cfg.network.enabled:
        return None
    from .p4_tna_auth import auth_names

    return (f"{cfg.source}: the P4 TNA generator does not implement SYN authentication "
            f"(auth = true on VIP {auth_names(cfg)}) together with a [network] table: "
            f"the model routes a challenge to the client (route_table), the TNA program "
            f"answers through the SYN's ingress port only; docs/lifecycle.md, 'P4 TNA'. "
            f"Without [network] the TNA program authenticates on Tofino 2.")
