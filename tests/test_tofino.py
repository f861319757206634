"""l4lb.tofino without bf-p4c: the resource logs are read as the Tofino back end of
p4c 1.2.5 (compiler 9.13.4) writes them (metrics.json totals, resources.json per stage);
the compiler itself runs in tests/test_p4_compilers.py when it is installed."""

from __future__ import annotations

import json

from l4lb.tofino import TofinoResult, format_report, read_resources


def _stage(n: int, tables: int, bits: int, units: int, gateways: int) -> dict:
    return {"stage_number": n, "logical_tables": {"ids": list(range(tables)), "size": 16},
            "hash_bits": {"bits": [{"hash_bit": b, "usages": [{}]} for b in range(bits)],
                          "nBits": 52},
            "hash_distribution_units": {"units": [{}] * units},
            "gateways": {"gateways": [{}] * gateways, "nRows": 8}}


def test_resources_from_the_compiler_logs(tmp_path):
    logs = tmp_path / "pipe" / "logs"
    logs.mkdir(parents=True)
    (logs / "metrics.json").write_text(json.dumps({
        "target": "tofino",
        "phv": {"normal": [{"bit_width": 8, "containers_occupied": 19, "bits_occupied": 109},
                           {"bit_width": 32, "containers_occupied": 10, "bits_occupied": 236}]},
        "mau": {"srams": 35, "tcams": 0, "map_rams": 27, "logical_tables": 42,
                "action_bus_bytes": 67, "exact_crossbar_bytes": 112,
                "latency": [{"gress": "ingress", "cycles": 242},
                            {"gress": "egress", "cycles": 168}]}}))
    (logs / "resources.json").write_text(json.dumps({"resources": {"mau": {
        "nStages": 12,
        "mau_stages": [_stage(0, 6, 62, 5, 5), _stage(1, 3, 64, 2, 3), _stage(2, 0, 0, 0, 0),
                       _stage(3, 2, 20, 0, 0), _stage(4, 0, 0, 0, 0)]}}}))
    r = read_resources(tmp_path)
    assert r["stages"] == 4 and r["stages_available"] == 12      # the last stage used
    assert (r["srams"], r["map_rams"], r["tcams"], r["logical_tables"]) == (35, 27, 0, 42)
    assert (r["hash_bits"], r["hash_distribution_units"], r["gateways"]) == (146, 7, 8)
    assert (r["phv_normal_containers"], r["phv_normal_bits"]) == (29, 345)
    assert r["ingress_latency_cycles"] == 242
    table = format_report([TofinoResult("tofino", True, tmp_path, "", 4.0, r)])
    assert "| MAU stages | 4 |" in table and "| SRAM blocks | 35 |" in table


def test_the_error_is_the_compilers_not_its_summary(tmp_path):
    """A failed compile reports the assembler's error line, not bf-p4c's
    'N errors, M warnings generated' summary that precedes it."""
    log = ("warning: Parser state min_parse_depth_accept_loop will be unrolled\n\n"
           "0 errors, 2 warnings generated.\n\n"
           "build/pipe/l4lb_tna.bfa:2516: error: tofino supports up to 12 stages, using 14\n"
           "build/pipe/l4lb_tna.bfa:0: error: Due to errors, no binary will be generated\n")
    res = TofinoResult("tofino", False, tmp_path, log, 9.0, {})
    assert res.error == "build/pipe/l4lb_tna.bfa:2516: error: tofino supports up to 12 " \
        "stages, using 14"
