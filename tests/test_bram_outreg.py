"""l4lb/bram_outreg.py on small hand-made yosys JSON netlists: the register after a
block RAM's read data moves into the block RAM only when that is exactly equivalent."""

import copy

from l4lb.bram_outreg import absorb_bram_output_registers

CLK, RST = 2, 3


def _bram(do_bits: list, **params) -> dict:
    conn = {"CLKA": [CLK], "OCEA": ["1"], "RSTA": ["0"], "CLKB": ["0"], "OCEB": ["1"],
            "RSTB": ["0"]}
    dirs = {k: "input" for k in conn}
    for i, b in enumerate(do_bits):
        conn[f"DOA{i}"] = [b]
        dirs[f"DOA{i}"] = "output"
    for i in range(len(do_bits), 18):
        conn[f"DOA{i}"] = [100 + i]  # unused outputs
        dirs[f"DOA{i}"] = "output"
    p = {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKAMUX": "CLKA"}
    p.update(params)
    return {"type": "DP16KD", "parameters": p, "connections": conn, "port_directions": dirs}


def _ff(d: int, q: int, **over) -> dict:
    conn = {"CLK": [CLK], "DI": [d], "Q": [q], "LSR": ["0"], "CE": ["1"]}
    conn.update(over.pop("conn", {}))
    p = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR",
         "REGSET": "RESET", "SRMODE": "LSR_OVER_CE"}
    p.update(over)
    return {"type": "TRELLIS_FF", "parameters": p, "connections": conn,
            "port_directions": {"CLK": "input", "DI": "input", "Q": "output",
                                "LSR": "input", "CE": "input"}}


def _netlist(cells: dict) -> dict:
    return {"modules": {"core": {"ports": {"clk": {"direction": "input", "bits": [CLK]}},
                                 "cells": cells}}}


def test_plain_registers_are_absorbed():
    n = _netlist({"ram": _bram([10, 11]), "f0": _ff(10, 20), "f1": _ff(11, 21)})
    assert absorb_bram_output_registers(n) == {"ports": 1, "brams": 1, "flip_flops": 2}
    cells = n["modules"]["core"]["cells"]
    assert set(cells) == {"ram"}
    assert cells["ram"]["parameters"]["REGMODE_A"] == "OUTREG"
    assert cells["ram"]["connections"]["DOA0"] == [20]
    assert cells["ram"]["connections"]["DOA1"] == [21]


def test_unsafe_cases_are_left_alone():
    cases = {
        "clock enable": {"f1": _ff(11, 21, CEMUX="CE", conn={"CE": [7]})},
        "reset": {"f1": _ff(11, 21, conn={"LSR": [RST]})},
        "other clock": {"f1": _ff(11, 21, conn={"CLK": [8]})},
        "set, not reset": {"f1": _ff(11, 21, REGSET="SET")},
        "second load": {"f1": _ff(11, 21), "g": _ff(11, 22)},
        "logic in between": {"f1": {"type": "LUT4", "parameters": {},
                                    "connections": {"A": [11], "Z": [30]},
                                    "port_directions": {"A": "input", "Z": "output"}}},
    }
    for what, extra in cases.items():
        cells = {"ram": _bram([10, 11]), "f0": _ff(10, 20)}
        cells.update(copy.deepcopy(extra))
        n = _netlist(cells)
        before = copy.deepcopy(n)
        assert absorb_bram_output_registers(n)["ports"] == 0, what
        assert n == before, what
    # an output register already in use, or an output enable that is not constant 1
    for ram in (_bram([10], REGMODE_A="OUTREG"), _bram([10])):
        if ram["parameters"]["REGMODE_A"] == "NOREG":
            ram["connections"]["OCEA"] = [9]
        n = _netlist({"ram": ram, "f0": _ff(10, 20)})
        assert absorb_bram_output_registers(n)["ports"] == 0
