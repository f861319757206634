"""Reading and rewriting the core's Verilog before synthesis.

:func:`parse_ports` and :func:`parse_memories` read the non-ANSI Verilog Amaranth and
yosys write (ports of the top module; ``reg [w] name [depth]`` arrays, classified by
role); :func:`rewrite_verilog` moves memory ``initial`` blocks into ``$readmemh`` files
and marks memories with a ``ram_style``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import SynthError


@dataclass(frozen=True)
class Port:
    name: str
    direction: str   # input | output | inout
    width: int


_MODULE_RE = re.compile(r"^\s*module\s+(\\\S+|[A-Za-z_][\w$]*)\s*[(;#]", re.M)


_PORT_RE = re.compile(
    r"^\s*(input|output|inout)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
    r"(?:\[\s*(-?\d+)\s*:\s*(-?\d+)\s*\]\s*)?(\\\S+|[A-Za-z_][\w$]*)\s*;", re.M)


_MEM_RE = re.compile(
    r"^([ \t]*)reg\s+(?:signed\s+)?(?:\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*)?(\\\S+|[A-Za-z_][\w$]*)"
    r"\s*\[\s*(\d+)\s*:\s*(\d+)\s*\]\s*;", re.M)


def _modules(text: str) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of every module in a Verilog text (name without ``\\``)."""
    starts = [(m.group(1).lstrip("\\"), m.start()) for m in _MODULE_RE.finditer(text)]
    out = []
    for i, (name, s) in enumerate(starts):
        e = starts[i + 1][1] if i + 1 < len(starts) else len(text)
        out.append((name, s, e))
    return out


#: hdl.fifo.KEEP_HIERARCHY_ATTR, as the Verilog writes it (the flow reads Verilog, which
#: may come from a file, so it matches the text rather than importing hdl)
_KEEP_RE = re.compile(r"\(\*\s*l4lb_keep_hierarchy\s*=")


def kept_modules(text: str) -> list[str]:
    """Modules that declare a signal with ``hdl.fifo.KEEP_HIERARCHY_ATTR`` (the queues and
    the frame datapath's rewriter): synthesis keeps each a module of its own."""
    return [name for name, s, e in _modules(text) if _KEEP_RE.search(text, s, e)]


def parse_ports(text: str, top: str) -> list[Port]:
    """Ports of module ``top`` (non-ANSI declarations, as Amaranth and yosys write them)."""
    for name, s, e in _modules(text):
        if name == top:
            body = text[s:e]
            return [Port(m.group(4).lstrip("\\").strip(), m.group(1),
                         abs(int(m.group(2)) - int(m.group(3))) + 1 if m.group(2) else 1)
                    for m in _PORT_RE.finditer(body)]
    raise SynthError(f"module {top!r} not found in the Verilog")


@dataclass
class MemoryInfo:
    """One memory of the core: where it is, what it holds and what yosys made of it."""

    name: str          # hierarchical name below the core, e.g. "core.conn.stage0"
    width: int
    depth: int
    role: str          # conn | maglev | dip | slot_map | transit | fifo | frame_buffer |
    #                    frame_queue | other
    forced_bram: bool = False
    mapped: str = "unknown"   # bram | lutram | ff | removed | unknown
    cell: str = ""            # yosys memory_libmap cell, e.g. $__DP16KD_
    expected_blocks: int = 0  # best single-aspect-ratio block count (estimate)
    min_blocks: int = 0       # bit-count lower bound

    @property
    def bits(self) -> int:
        return self.width * self.depth


def _role(module: str, mem: str, width: int, depth: int, shapes: dict) -> str:
    """What a memory holds, from its hierarchical path (``l4lb_core.conn.stage0.stage0``,
    ``...maglev.slot_map_mem.slot_map_mem``, ``l4lb_datapath.datapath.frame_buffer``),
    else from its shape."""
    parts = [p for p in f"{module}.{mem}".lower().split(".") if p]
    if any("slot_map" in p or "slotmap" in p for p in parts):
        return "slot_map"
    if any(p.startswith("dip") or "dip_mem" in p for p in parts):
        return "dip"
    if any("maglev" in p for p in parts):
        return "maglev"
    if "frame_buffer" in parts:          # the frame datapath's (hdl/datapath.py)
        return "frame_buffer"
    if "record_queue" in parts or "packet_queue" in parts:
        return "frame_queue"
    if any("fifo" in p for p in parts):
        return "fifo"
    if "conn" in parts or any(p.startswith("conn") for p in parts):
        return "conn"
    if "transit" in parts or any(p.startswith("transit") for p in parts):
        return "transit"
    return shapes.get((width, depth), "other")


def _spec_shapes(cfg) -> dict[tuple[int, int], str]:
    if cfg is None:
        return {}
    from model.layout import memory_specs
    out: dict[tuple[int, int], str] = {}
    for s in memory_specs(cfg.geometry):
        role = re.sub(r"\d+$", "", s.name)
        out.setdefault((s.width, s.depth), role)
    return out


def parse_memories(text: str, top: str, cfg=None) -> list[MemoryInfo]:
    """Every ``reg [w] name [depth]`` array of the design below ``top``, classified."""
    shapes = _spec_shapes(cfg)
    mems = []
    for module, s, e in _modules(text):
        path = module[len(top) + 1:] if module.startswith(top + ".") else (
            "" if module == top else module)
        for m in _MEM_RE.finditer(text, s, e):
            width = abs(int(m.group(2)) - int(m.group(3))) + 1 if m.group(2) else 1
            depth = abs(int(m.group(5)) - int(m.group(6))) + 1
            name = m.group(4).lstrip("\\").strip()
            full = f"{path}.{name}" if path else name
            mems.append(MemoryInfo(full, width, depth, _role(module, name, width, depth,
                                                             shapes)))
    return mems


_INIT_BEGIN_RE = re.compile(r"^([ \t]*)initial begin(?:\s*:\s*\S+)?\s*$")


_INIT_FOR_RE = re.compile(r"^\s*for \((\w+) = 0; \1 < (\d+); \1 = \1 \+ 1\)\s*$")


_INIT_FILL_RE = re.compile(r"^\s*(\\\S+ |[A-Za-z_][\w$]*)\[(\w+)\] = \d+'h([0-9a-fA-Fxz]+);\s*$")


def _inits_to_readmemh(body: str, workdir: Path, first: int) -> tuple[str, int]:
    """Replace memory ``initial`` blocks of one module by ``$readmemh`` files.

    Two forms are recognised: yosys's word-by-word ``mem[k] = W'hV;`` lines (every word
    ``0 .. n-1``), and ``hdl.export``'s compact form (``integer i; for (i = 0; i < N;
    i = i + 1) mem[i] = W'hV;`` then single words). Anything else is left alone."""
    lines = body.split("\n")
    out: list[str] = []
    n = 0
    i = 0
    while i < len(lines):
        m0 = _INIT_BEGIN_RE.match(lines[i])
        if not m0:
            out.append(lines[i])
            i += 1
            continue
        j = i + 1
        name = None
        fill: tuple[int, str] | None = None
        words: dict[int, str] = {}
        ok = True
        while j < len(lines) and lines[j].strip() != "end":
            ln = lines[j]
            mf = _INIT_FOR_RE.match(ln)
            if ln.strip() == "integer i;" or ln.strip().startswith("integer "):
                j += 1
                continue
            if mf and fill is None and not words and j + 1 < len(lines):
                mw = _INIT_FILL_RE.match(lines[j + 1])
                if mw and mw.group(2) == mf.group(1):
                    name, fill = mw.group(1), (int(mf.group(2)), mw.group(3))
                    j += 2
                    continue
                ok = False
                break
            mw = _INIT_FILL_RE.match(ln)
            if not mw or not mw.group(2).isdigit() or (name is not None and mw.group(1) != name):
                ok = False
                break
            name = mw.group(1)
            words[int(mw.group(2))] = mw.group(3)
            j += 1
        if not ok or j >= len(lines) or name is None:
            out.append(lines[i])
            i += 1
            continue
        if fill is not None:
            depth = max(fill[0], max(words, default=-1) + 1)
            data = [fill[1]] * depth
        else:
            depth = len(words)
            if sorted(words) != list(range(depth)):
                out.append(lines[i])
                i += 1
                continue
            data = [""] * depth
        for k, v in words.items():
            data[k] = v
        fn = f"meminit_{first + n:03d}.hex"
        n += 1
        (workdir / fn).write_text("\n".join(data) + "\n")
        ident = name.strip() + (" " if name.startswith("\\") else "")
        out.append(f'{m0.group(1)}initial $readmemh("{fn}", {ident});')
        i = j + 1
    return "\n".join(out), n


def rewrite_verilog(text: str, workdir: Path,
                    force: set[str] | dict[str, str] | None = None,
                    top: str = "l4lb_core") -> tuple[str, int]:
    """Move memory ``initial`` blocks into ``$readmemh`` files in ``workdir`` and mark the
    memories named in ``force`` (hierarchical names) ``(* ram_style = "block" *)``, or
    with the style ``force`` maps them to (e.g. ``"distributed"`` for LUT RAM).

    Returns the new text and the number of init blocks moved. Contents are unchanged:
    ``x``/``z`` digits are kept as they are (``$readmemh`` accepts them)."""
    styles = dict(force) if isinstance(force, dict) else dict.fromkeys(force or (), "block")
    pieces = []
    n = 0
    for module, s, e in _modules(text):
        body = text[s:e]
        path = module[len(top) + 1:] if module.startswith(top + ".") else (
            "" if module == top else module)

        def mark(m: re.Match, path=path) -> str:
            name = m.group(4).lstrip("\\").strip()
            full = f"{path}.{name}" if path else name
            if full in styles:
                return f'{m.group(1)}(* ram_style = "{styles[full]}" *)\n{m.group(0)}'
            return m.group(0)

        body = _MEM_RE.sub(mark, body)
        body, k = _inits_to_readmemh(body, workdir, n)
        n += k
        pieces.append((s, e, body))
    if not pieces:
        return text, 0
    out = text[:pieces[0][0]] + "".join(p[2] for p in pieces)
    return out, n
