"""The l4lb command line on the shipped configs."""

import subprocess
import sys

from l4lb.cli import main

from .conftest import EXAMPLES


def test_demo_prints_summary(capsys):
    assert main(["demo", "--connections", "3000"]) == 0
    out = capsys.readouterr().out
    assert "config 'default'" in out
    assert "replay mismatches 0" in out
    assert "two-phase commit: " in out and "0 PCC violations" in out


def test_vectors_and_maglev(tmp_path, capsys):
    assert main(["vectors", str(EXAMPLES / "small.toml"), "-o", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "manifest.json").exists()
    assert main(["maglev", str(EXAMPLES / "default.toml")]) == 0
    out = capsys.readouterr().out
    assert "VIP api 10.0.0.2:8443/tcp: M=4096, 16 DIPs, imbalance" in out


def test_config_error_is_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[vip]]\naddress = "1.2.3.4"\nport = 80\nprotocol = "icmp"\ndips = []\n')
    r = subprocess.run([sys.executable, "-m", "l4lb.cli", "maglev", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip() == ("l4lb: config error: vip[0].protocol: unknown protocol "
                                "'icmp' (expected one of ['tcp', 'udp'])")
    assert "Traceback" not in r.stderr


def test_generate_writes_every_target(tmp_path, capsys):
    assert main(["generate", str(EXAMPLES / "default.toml"), "-o", str(tmp_path)]) == 0
    for rel in ["rtl/l4lb_core.v", "p4/l4lb_v1model.p4", "p4/l4lb_tna.p4",
                "p4/entries_bmv2.txt", "p4/entries_bfrt.py", "hls/l4lb_kernel.cpp",
                "hls/l4lb_config.h", "hls/l4lb_tb.cpp"]:
        assert (tmp_path / rel).stat().st_size > 0, rel
    assert "module l4lb_core" in (tmp_path / "rtl/l4lb_core.v").read_text()


def test_demo_and_generate_on_the_lifecycle_config(tmp_path, capsys):
    """examples/lifecycle.toml: the demo runs the SYN-flood simulation; generate writes
    v1model, TNA (Tofino 2: SYN authentication by recirculation) and HLS."""
    import warnings

    assert main(["demo", str(EXAMPLES / "lifecycle.toml")]) == 0
    out = capsys.readouterr().out
    assert "replay mismatches 0" in out and "100x spoofed SYN flood" in out
    assert "0 PCC violations, 0 spoofed learns" in out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["generate", str(EXAMPLES / "lifecycle.toml"), "-o", str(tmp_path)]) == 0
    for rel in ("p4/l4lb_v1model.p4", "p4/entries_bmv2.txt", "hls/l4lb_kernel.cpp",
                "rtl/l4lb_core.v"):  # the RTL core implements the lifecycle
        assert (tmp_path / rel).exists(), rel
    assert "AUTH_RECIRC_PORT" in (tmp_path / "p4/l4lb_tna.p4").read_text()
    assert not (tmp_path / "p4/TNA_SKIPPED.txt").exists()


def test_generate_on_a_network_config_writes_every_target(tmp_path):
    """examples/network.toml: every target is written -- v1model, TNA and HLS with their
    route tables, and the RTL core with its forwarding ports (no note any more)."""
    import json
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["generate", str(EXAMPLES / "network.toml"), "-o", str(tmp_path)]) == 0
    for rel in ("p4/l4lb_v1model.p4", "p4/l4lb_tna.p4"):
        assert "route_table" in (tmp_path / rel).read_text(), rel
    assert (tmp_path / "hls/l4lb_kernel.cpp").exists()
    assert not (tmp_path / "rtl/RTL_SKIPPED.txt").exists()
    info = json.loads((tmp_path / "rtl/l4lb_core.json").read_text())
    assert info["ports"]["dec_route_hit"] == {"dir": "out", "width": 1}
    assert info["ports"]["dec_action"]["width"] == 3
    assert [m["name"] for m in info["memories"]][-3:] == ["rev", "route", "port_mac"]
