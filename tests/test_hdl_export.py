# amaranth: UnusedElaboratable=no
"""hdl/export.py: the Verilog file, its interface description and ``l4lb rtl``."""

import json
import re

import pytest

from hdl.export import MODULE_NAME, compact_memory_inits, write_verilog
from hdl.layouts import memory_map
from hdl.rewriter import REWRITE_LATENCY
from hdl.top import port_widths
from l4lb.cli import main
from model.layout import memory_specs


def _ports(verilog: str) -> dict[str, tuple[str, int]]:
    body = verilog[verilog.index(f"module {MODULE_NAME}("):]
    body = body[:body.index("endmodule")]
    out = {}
    for d, w, n in re.findall(r"^  (input|output) (?:\[(\d+):0\] )?(\w+);$", body, re.M):
        out[n] = ("in" if d == "input" else "out", int(w or 0) + 1)
    return out


@pytest.mark.parametrize("cfg_name", ["default_cfg", "small_cfg"])
def test_verilog_ports_and_description(cfg_name, request, tmp_path):
    cfg = request.getfixturevalue(cfg_name)
    path = write_verilog(cfg, tmp_path)
    text = path.read_text()
    assert path.name == "l4lb_core.v"
    ports = _ports(text)
    want = port_widths(cfg) | {"clk": ("in", 1), "rst": ("in", 1)}
    assert ports == want
    info = json.loads((tmp_path / "l4lb_core.json").read_text())
    assert info["latency"] == 41 and info["hash_stages"] == 3
    assert [m["name"] for m in info["memories"]] == [s.name for s in memory_specs(cfg.geometry)]
    assert [m["id"] for m in info["memories"]] == list(range(len(info["memories"])))
    assert info["ports"] == {n: {"dir": d, "width": w} for n, (d, w) in port_widths(cfg).items()}
    # the write interface fits every memory
    mm = memory_map(cfg.geometry)
    assert 2 ** ports["wr_mem"][1] >= len(mm)
    assert ports["wr_data"][1] == max(m.width for m in mm.values())
    assert 2 ** ports["wr_addr"][1] >= max(m.depth for m in mm.values())


def test_init_images_are_in_the_verilog(small_cfg, tmp_path):
    images = {"dip": [0, 0xC0A80101_1F90, 0, 7], "vip": [(1 << 56) | 5]}
    text = write_verilog(small_cfg, tmp_path, images).read_text()
    dip_mem = text[text.index("module \\l4lb_core.core.maglev.dip_mem"):]
    dip_mem = dip_mem[:dip_mem.index("endmodule")]
    # a shallow 48-bit memory is three 18/18/12-bit columns (hdl.bram.PipelinedRam)
    word = 0xC0A80101_1F90
    for c, (lo, w) in enumerate([(0, 18), (18, 18), (36, 12)]):
        assert f"mem_c{c}[1] = {w}'h{word >> lo & ((1 << w) - 1):0{-(-w // 4)}x};" in dip_mem
    assert "mem_c0[3] = 18'h00007;" in dip_mem
    assert "mem_c0[2] =" not in dip_mem  # zero words come from the fill loop
    assert "57'h100000000000005" in text  # the VIP register's power-on value


def test_compact_memory_inits_only_rewrites_complete_blocks():
    text = "\n".join(["  reg [3:0] m [2:0];", "  initial begin", "    m[0] = 4'h0;",
                      "    m[1] = 4'h5;", "    m[2] = 4'h0;", "  end", "  reg [1:0] k [1:0];",
                      "  initial begin", "    k[1] = 2'h0;", "  end"])
    out = compact_memory_inits(text)
    assert "for (i = 0; i < 3; i = i + 1)" in out and "m[1] = 4'h5;" in out
    assert "m[0] = 4'h0;" not in out
    assert "    k[1] = 2'h0;" in out  # incomplete block left alone


def test_cli_rtl(tmp_path, capsys):
    from .conftest import EXAMPLES
    rc = main(["rtl", str(EXAMPLES / "small.toml"), "-o", str(tmp_path / "rtl")])
    assert rc == 0
    assert (tmp_path / "rtl" / "l4lb_core.v").exists()
    assert "latency 41 cycles" in capsys.readouterr().out


def test_cli_rtl_frames(tmp_path, capsys):
    from .conftest import EXAMPLES
    rc = main(["rtl", str(EXAMPLES / "small.toml"), "-o", str(tmp_path / "rtl"),
               "--frames", "64"])
    assert rc == 0
    v = (tmp_path / "rtl" / "l4lb_datapath.v").read_text()
    assert "module l4lb_datapath" in v and "s_axis_tdata" in v and "m_axis_tuser" in v
    info = json.loads((tmp_path / "rtl" / "l4lb_datapath.json").read_text())
    assert info["ports"]["s_axis_tdata"] == {"dir": "in", "width": 512}
    assert info["width"] == 64 and info["latency"] == info["decision_delay"] + REWRITE_LATENCY
    assert "module l4lb_datapath, 64-byte beats" in capsys.readouterr().out


def test_write_verilog_validates(tmp_path):
    with pytest.raises(TypeError, match="Config"):
        write_verilog(None, tmp_path)
