"""Helpers (no tests) for the Amaranth-simulator tests of hdl/ (tests/test_hdl_*.py)."""

from collections.abc import Callable, Sequence

from amaranth.sim import Simulator


def run_sim(dut, testbench: Callable, vcd: str | None = None) -> None:
    """Run one ``async def testbench(ctx)`` against ``dut`` with a 100 MHz clock."""
    sim = Simulator(dut)
    sim.add_clock(1e-8, if_exists=True)
    sim.add_testbench(testbench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()


def pipeline_outputs(dut, inputs: Sequence[Sequence[tuple]], outputs: Sequence, latency: int,
                     idle: Sequence[tuple] = ()) -> list[tuple]:
    """Present ``inputs[c]`` ((signal, value) pairs) in cycle ``c`` (then ``idle``) and return,
    for every op ``c``, the outputs ``latency`` cycles later (the op's result)."""
    got: list[tuple] = []
    n = len(inputs)

    async def tb(ctx):
        for c in range(n + latency):
            for sig, val in (inputs[c] if c < n else idle):
                ctx.set(sig, val)
            if latency == 0:  # combinational: no clock needed
                got.append(tuple(ctx.get(o) for o in outputs))
                await ctx.delay(1e-8)
                continue
            await ctx.tick()
            if latency > 0:
                got.append(tuple(ctx.get(o) for o in outputs))

    run_sim(dut, tb)
    skip = max(0, latency - 1)
    return got[skip:skip + n]
