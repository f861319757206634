"""Move the register after an ECP5 block RAM's read data into the block RAM.

The ECP5 ``DP16KD`` has an optional output register (``REGMODE_A/B = "OUTREG"``). Without
it the data leave the block RAM about 5.6 ns after the clock (nextpnr's timing model,
speed grade 6), more than the 5 ns of a 200 MHz clock before any routing; with it, the
register's clock-to-output. Vendor synthesis moves a register that directly follows a
block RAM into it; yosys's ``memory_libmap`` does not (its ECP5 description has no
output-register option), so :func:`absorb_bram_output_registers` does it on the yosys
JSON netlist, before nextpnr.

The move preserves behaviour exactly and is made only when it is safe, port by port:
every used data bit of the port drives exactly one cell, a ``TRELLIS_FF`` data input,
and nothing else (no module port); that flip-flop has the block RAM port's clock, no
clock enable (``CEMUX = "1"``), no set/reset (``LSR`` tied to 0 and not inverted), no
global set/reset and a zero power-on value; and the port's ``OCE`` is 1 and ``RST`` is 0.
:class:`hdl.bram.PipelinedRam` writes exactly this register (``reset_less``, no enable).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

__all__ = ["absorb_bram_output_registers"]


def _param(cell: dict, name: str, default: str = "") -> str:
    return str(cell.get("parameters", {}).get(name, default)).strip()


def _is_const(bits: list, value: str) -> bool:
    return len(bits) == 1 and bits[0] == value


def _plain_ff(ff: dict, clk: list) -> bool:
    """A flip-flop that is equivalent to the DP16KD output register of clock ``clk``."""
    conn = ff["connections"]
    return (ff["type"] == "TRELLIS_FF"
            and conn.get("CLK") == clk and _param(ff, "CLKMUX", "CLK") == "CLK"
            and (_param(ff, "CEMUX", "CE") == "1"
                 or (_param(ff, "CEMUX", "CE") == "CE" and _is_const(conn.get("CE", []), "1")))
            and _is_const(conn.get("LSR", ["0"]), "0") and _param(ff, "LSRMUX", "LSR") == "LSR"
            and _param(ff, "GSR", "DISABLED") == "DISABLED"
            and _param(ff, "REGSET", "RESET") == "RESET"
            and int(str(ff.get("attributes", {}).get("init", "0")).strip() or "0", 2) == 0)


def absorb_bram_output_registers(netlist: dict[str, Any]) -> dict[str, int]:
    """Set ``REGMODE = "OUTREG"`` on every DP16KD port whose read data go straight into
    plain flip-flops, and remove those flip-flops (the netlist is changed in place).

    Returns ``{"ports": n, "brams": n, "flip_flops": n}``: block-RAM ports converted,
    block RAMs with at least one converted port, flip-flops removed.
    """
    ports = brams = ffs = 0
    for mod in netlist.get("modules", {}).values():
        cells = mod.get("cells", {})
        if not any(c.get("type") == "DP16KD" for c in cells.values()):
            continue
        port_bits = {b for p in mod.get("ports", {}).values() for b in p["bits"]
                     if isinstance(b, int)}
        loads: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for name, c in cells.items():
            dirs = c.get("port_directions", {})
            for p, bits in c["connections"].items():
                if dirs.get(p) != "output":
                    for b in bits:
                        if isinstance(b, int):
                            loads[b].append((name, p))
        for c in [c for c in cells.values() if c.get("type") == "DP16KD"]:
            converted = False
            for side in "AB":
                conn = c["connections"]
                if _param(c, f"REGMODE_{side}", "NOREG") != "NOREG":
                    continue
                clk = conn.get(f"CLK{side}", [])
                if (len(clk) != 1 or not isinstance(clk[0], int)
                        or _param(c, f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}"
                        or not _is_const(conn.get(f"OCE{side}", ["1"]), "1")
                        or not _is_const(conn.get(f"RST{side}", ["0"]), "0")):
                    continue
                used = [(p, bits[0]) for p, bits in conn.items()
                        if p.startswith(f"DO{side}") and isinstance(bits[0], int)
                        and (loads.get(bits[0]) or bits[0] in port_bits)]
                if not used:
                    continue
                moves = []
                for p, b in used:
                    sinks = loads.get(b, [])
                    if b in port_bits or len(sinks) != 1 or sinks[0][1] != "DI":
                        break
                    ff_name = sinks[0][0]
                    if not _plain_ff(cells[ff_name], clk):
                        break
                    moves.append((p, ff_name))
                else:
                    for p, ff_name in moves:
                        conn[p] = cells.pop(ff_name)["connections"]["Q"]
                    c["parameters"][f"REGMODE_{side}"] = "OUTREG"
                    ports += 1
                    ffs += len(moves)
                    converted = True
            brams += converted
    return {"ports": ports, "brams": brams, "flip_flops": ffs}
