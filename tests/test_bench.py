"""l4lb.bench on tiny sizes: every section runs, the JSON/markdown/figures are written,
and absent inputs (scripts, cocotb results, synth.json) are reported, not faked."""

import json
import subprocess
import sys

from l4lb import bench

from .conftest import EXAMPLES, ROOT


def test_model_lookup_rate(small_cfg):
    r = bench.model_lookup_rate(small_cfg, packets=5000, connections=40, batch=1024)
    assert r["packets"] == 5000 and r["connections"] == 40
    assert r["packets_per_s"] > 0
    # 90 % of the packets are to inserted connections (stashed ones miss)
    assert 0.8 < r["hit_fraction_measured"] <= 0.95
    assert r["lb_fraction"] > 0.9


def test_pcc_sweep_two_phase_has_no_violations(small_cfg):
    r = bench.pcc_sweep(small_cfg, connections=60, updates=(0, 3), pool_slots=16)
    assert r["pool_slots"] == 16
    rows = {(x["updates_requested"], x["two_phase"]): x for x in r["rows"]}
    assert set(rows) == {(0, True), (0, False), (3, True), (3, False)}
    assert rows[(0, False)]["violations"] == 0
    assert rows[(3, True)]["violations"] == 0
    assert rows[(3, True)]["updates_applied"] == 3
    assert rows[(3, True)]["packets"] == rows[(3, False)]["packets"]  # same trace


def test_maglev_shares_and_fallback_load():
    s = bench.maglev_shares(((251, 10),))["cases"][0]
    assert len(s["ratio"]) == 10 and abs(sum(s["ratio"]) - 10) < 1e-9
    assert s["max_ratio"] == s["imbalance"] >= 1.0
    ld = bench.conntable_load_vs_stages(log2_slots=5, stages=(2, 4))
    loads = [r["first_failure_load"] for r in ld["first_failure"]]
    assert 0 < loads[0] <= loads[1] <= 1.0


def test_absent_inputs_are_reported(tmp_path):
    r = bench.run_script_json("no_such_bench.py")
    assert "not found" in r["error"]
    rtl = bench.rtl_results(tmp_path / "nothing")
    assert rtl["available"] is False and rtl["todo"].startswith("TODO")
    assert bench.synth_rows(tmp_path / "synth.json")["available"] is False


def test_rtl_results_read_cocotb_summary(tmp_path):
    lines = [{"test": "throughput", "config": "small", "packets": 1000, "cycles": 1010,
              "wall": 5.0, "latency": 8, "cycles_per_packet": 1.0},
             {"test": "random", "config": "small", "packets": 500, "cycles": 990,
              "wall": 1.0, "latency": 9},
             # a later run of the same test replaces the earlier line
             {"test": "throughput", "config": "small", "packets": 1000, "cycles": 1010,
              "wall": 2.0, "latency": 9, "cycles_per_packet": 1.0}]
    (tmp_path / "summary.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    r = bench.rtl_results(tmp_path)
    c = r["configs"]["small"]
    assert r["available"] and c["latency_cycles"] == 9 and c["cycles_per_packet"] == 1.0
    assert c["sim_cycles_per_s"] == 2000 / 3.0 and c["tests"] == ["random", "throughput"]


def test_run_all_quick_writes_json_markdown_figures(tmp_path):
    res = bench.run_all(EXAMPLES / "small.toml", tmp_path, quick=True, scripts=False,
                        rtl_root=tmp_path / "no-cocotb", log=lambda *a: None)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["config"] == "small" and data["model_lookup"]["packets_per_s"] > 0
    assert data["conntable"]["error"].startswith("skipped")
    assert data["conntable"]["fallback"]["first_failure"]
    for png in ("bench_maglev_shares.png", "bench_load_vs_stages.png", "bench_pcc.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "bench.md").read_text()
    assert "| model `process_batch` (small" in md and "TODO" in md
    assert bench.markdown_tables(res).startswith("Measured ")


def test_update_readme_table_between_markers(tmp_path):
    res = bench.run_all(EXAMPLES / "small.toml", tmp_path, quick=True, scripts=False,
                        figures=False, log=lambda *a: None)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- bench-table -->\nold\n<!-- /bench-table -->\nafter\n")
    script = ROOT / "scripts" / "update_readme_table.py"
    r = subprocess.run([sys.executable, str(script), "--json", str(tmp_path / "bench.json"),
                        "--readme", str(readme)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x\n\nbefore\n<!-- bench-table -->\n")
    assert text.endswith("<!-- /bench-table -->\nafter\n")
    assert bench.markdown_tables(res).splitlines()[2] in text
    # without markers: the table is printed and the file is left alone
    readme.write_text("no markers\n")
    r = subprocess.run([sys.executable, str(script), "--json", str(tmp_path / "bench.json"),
                        "--readme", str(readme)], capture_output=True, text=True)
    assert r.returncode == 0 and readme.read_text() == "no markers\n"
    assert "| benchmark | result |" in r.stdout
