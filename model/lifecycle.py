"""The connection lifecycle settings (``[lifecycle]`` and ``auth`` of a ``[[vip]]``):
SYN authentication, idle aging and FIN/RST grace (docs/lifecycle.md).

A config without a ``[lifecycle]`` table and without ``auth`` VIPs has none of the
lifecycle memories: its memory map, vectors and generated programs are those of
format 1 (docs/vectors.md), and connections are deleted at once on FIN/RST.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Lifecycle", "parse_lifecycle", "AUTH_TAG_BITS", "AUTH_WORD_BITS",
           "pack_auth", "unpack_auth", "LifecycleUnsupported", "lifecycle_unsupported",
           "require_no_lifecycle"]

#: Bits of a verified-source entry's tag: a spoofed source matches a valid entry with
#: probability 2**-30 per probed word (docs/lifecycle.md, "Security").
AUTH_TAG_BITS = 30
#: valid(1) | stamp(1) | tag(30): one 32-bit register word
AUTH_WORD_BITS = AUTH_TAG_BITS + 2


@dataclass(frozen=True)
class Lifecycle:
    """Lifecycle settings; times are in seconds of the control plane's clock.

    * ``idle_timeout``: a connection that sends nothing for this long leaves the
      ConnTable (between 1x and 2x this after its last packet); 0 = never, and the
      data plane keeps no activity bits.
    * ``close_grace``: a connection stays this long after its first FIN or RST, so
      retransmitted FINs and the last ACK still reach its DIP; 0 = deleted at once.
    * ``auth_epoch``: the SYN-authentication key rotates every epoch; a cookie is
      valid for one to two epochs, a verified source stays verified for one to two
      epochs after its last SYN.
    * ``auth_log2_sources``: the verified-source table holds ``2**auth_log2_sources``
      entries (direct-mapped by a CRC of the source address).
    * ``auth``: some VIP has ``auth = true`` (the authentication memories exist).
    """

    idle_timeout: float = 0.0
    close_grace: float = 0.0
    auth_epoch: float = 64.0
    auth_log2_sources: int = 12
    auth: bool = False

    @property
    def aging(self) -> bool:
        return self.idle_timeout > 0

    @property
    def enabled(self) -> bool:
        """Whether the data plane has lifecycle memories (vector format 2)."""
        return self.aging or self.auth

    @property
    def auth_sources(self) -> int:
        return 1 << self.auth_log2_sources


def parse_lifecycle(raw: Any, auth: bool) -> Lifecycle:
    """Validate the ``[lifecycle]`` table; ``auth`` says whether a VIP asks for SYN
    authentication."""
    from .config import ConfigError, _check_keys, _int, _number, _table

    t = _table(raw, "lifecycle")
    _check_keys(t, {"idle_timeout", "close_grace", "auth_epoch", "auth_log2_sources"},
                "lifecycle")
    d = Lifecycle()
    lc = Lifecycle(
        idle_timeout=_number(t.get("idle_timeout", d.idle_timeout),
                             "lifecycle.idle_timeout", 0.0, 86400.0 * 365),
        close_grace=_number(t.get("close_grace", d.close_grace), "lifecycle.close_grace",
                            0.0, 3600.0),
        auth_epoch=_number(t.get("auth_epoch", d.auth_epoch), "lifecycle.auth_epoch",
                           1.0, 86400.0),
        auth_log2_sources=_int(t.get("auth_log2_sources", d.auth_log2_sources),
                               "lifecycle.auth_log2_sources", 1, 24),
        auth=auth,
    )
    if lc.aging and lc.close_grace > lc.idle_timeout:
        raise ConfigError(f"lifecycle.close_grace: {lc.close_grace} s is longer than "
                          f"lifecycle.idle_timeout ({lc.idle_timeout} s)")
    return lc


def pack_auth(valid: bool, stamp: int, tag: int) -> int:
    """A verified-source word: ``valid(1) | stamp(1) | tag(30)``."""
    return (int(valid) << (AUTH_TAG_BITS + 1)) | ((stamp & 1) << AUTH_TAG_BITS) | tag


def unpack_auth(word: int) -> tuple[bool, int, int]:
    """(valid, stamp, tag) of a verified-source word."""
    return (bool(word >> (AUTH_TAG_BITS + 1) & 1), word >> AUTH_TAG_BITS & 1,
            word & ((1 << AUTH_TAG_BITS) - 1))


class LifecycleUnsupported(ValueError):
    """A target generator was given a config whose lifecycle it does not implement."""


def lifecycle_unsupported(cfg: object, target: str) -> str | None:
    """Why ``target`` cannot be built for ``cfg`` (a config with a ``[lifecycle]`` or an
    ``auth`` VIP, which the target does not implement yet), naming the settings; None
    when the config has no lifecycle."""
    lc = cfg.lifecycle
    if not lc.enabled:
        return None
    what = []
    if lc.aging:
        what.append(f"lifecycle.idle_timeout = {lc.idle_timeout:g} (activity bits)")
    if lc.auth:
        names = [v.name for v in cfg.vips if v.auth]
        what.append(f"auth = true on VIP {', '.join(map(repr, names))} (SYN authentication)")
    return (f"{cfg.source}: the {target} does not implement the connection lifecycle yet: "
            f"{'; '.join(what)}. The model, P4 v1model, HLS and the RTL core run it "
            f"(docs/lifecycle.md, 'Targets'); remove these settings to build this target.")


def require_no_lifecycle(cfg: object, target: str) -> None:
    """Refuse (:class:`LifecycleUnsupported`, see :func:`lifecycle_unsupported`) to
    build ``target`` for a config with a lifecycle: the lifecycle is specified in the
    model (docs/lifecycle.md) and each target gains it with its own equivalence tests;
    until then a target must not silently decide differently from the model."""
    why = lifecycle_unsupported(cfg, target)
    if why is not None:
        raise LifecycleUnsupported(why)
