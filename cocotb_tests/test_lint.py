"""``verilator --lint-only -Wall`` on the generated Verilog must report nothing beyond
the waivers in ``verilator_waivers.vlt`` (each one justified there)."""

from pathlib import Path

import pytest
from rtl_env import WAIVERS, verilator_lint

from hdl.core import DEFAULT_HASH_STAGES
from hdl.export import write_verilog
from model.config import load_config

_HERE = Path(__file__).resolve().parent
CASES = {
    "default": (_HERE.parent / "examples" / "default.toml", DEFAULT_HASH_STAGES),
    "small": (_HERE.parent / "examples" / "small.toml", 1),
    "fullkey-hash3": (_HERE / "configs" / "fullkey.toml", 3),
}


@pytest.mark.parametrize("name", list(CASES))
def test_verilator_lint_wall(name, tmp_path):
    path, hash_stages = CASES[name]
    v = write_verilog(load_config(path), tmp_path, hash_stages=hash_stages)
    res = verilator_lint(v)
    report = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and "%Warning" not in report and "%Error" not in report, report


@pytest.mark.parametrize("width,config", [(8, "default"), (64, "default"), (8, "lifecycle")])
def test_verilator_lint_wall_datapath(width, config, tmp_path):
    """The AXI4-Stream frame datapath (l4lb_datapath) is as clean as the core, also with
    the connection lifecycle (challenge replies, the read port)."""
    from hdl.datapath_top import DATAPATH_MODULE, write_datapath_verilog

    v = write_datapath_verilog(load_config(_HERE.parent / "examples" / f"{config}.toml"),
                               tmp_path, width)
    res = verilator_lint(v, top=DATAPATH_MODULE)
    report = (res.stdout + res.stderr).strip()
    assert res.returncode == 0 and "%Warning" not in report and "%Error" not in report, report


def test_waivers_are_needed(tmp_path):
    """Without the waiver file the same run does warn (so the waivers are not stale and
    the lint run really checks something)."""
    v = write_verilog(load_config(CASES["small"][0]), tmp_path)
    res = verilator_lint(v, waivers=None)
    assert res.returncode != 0 and "%Warning-" in res.stderr
    rules = {line.split(":")[0].removeprefix("%Warning-")
             for line in res.stderr.splitlines() if line.startswith("%Warning-")}
    waived = {line.split()[2] for line in WAIVERS.read_text().splitlines()
              if line.startswith("lint_off")}
    assert rules <= waived, f"unwaived rules {rules - waived}"
