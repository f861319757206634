"""Real Linux TCP through a running load balancer (`l4lb run`), while the pool changes.

Two client and three server namespaces around the load balancer's namespace
(l4lb/live/netns.py). Clients download several MB each over concurrent
connections to the VIP; mid-transfer a DIP is added and another drained through the
management API (`l4lb pool`). Every transfer must complete byte-exact with no reset,
connections opened after the update must land on the new pool, and the instance's
counters must agree with what happened. Needs root and iproute2 (skips otherwise).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from l4lb.live.netns import SERVER_PORT, VIP, VIP_PORT, Topology, need_root

ROOT = Path(__file__).resolve().parent.parent
TCP = str(ROOT / "l4lb" / "live" / "tcp.py")

pytestmark = pytest.mark.skipif(need_root() is not None, reason=str(need_root()))


def _status(topo: Topology) -> dict:
    return json.loads(topo.l4lb("status").stdout)


def _wait(pred, timeout: float, what: str, log: Path):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; switch log:\n{log.read_text()[-3000:]}")


def _api(topo: Topology, method: str, body: bytes | None, ctype: str = "application/json"
         ) -> tuple[int, dict]:
    code = f"""
import json, urllib.request, urllib.error
req = urllib.request.Request("http://127.0.0.1:9180/pool", data={body!r}, method={method!r},
                             headers={{"Content-Type": {ctype!r}}})
try:
    r = urllib.request.urlopen(req, timeout=10); print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.read().decode())
"""
    out = topo.run_in(topo.lb_ns, code).split("\n", 1)
    return int(out[0]), json.loads(out[1])


@pytest.fixture
def topo(tmp_path):
    t = Topology(tag=f"t{abs(hash(tmp_path)) % 10000}")
    try:
        yield t.build()
    finally:
        t.close()


@pytest.mark.parametrize("target", ["model", "bmv2"])
def test_real_tcp_through_the_load_balancer_while_the_pool_changes(target, topo, tmp_path):
    if target == "bmv2":
        from l4lb.bmv2 import unavailable

        if unavailable(need_root=True):
            pytest.skip(f"--target bmv2: {unavailable(need_root=True)}")
    cfg = tmp_path / "live.toml"
    cfg.write_text(topo.config(dips=2))
    s = topo.hosts_s
    for i, h in enumerate(s):
        topo.spawn(h.ns, [sys.executable, TCP, "server", str(i), str(SERVER_PORT)],
                   tmp_path / f"server{i}.log")
    log = tmp_path / "switch.log"
    ports = [a for h in topo.hosts_c + s for a in ("--port", f"{h.lb_iface}={h.lb_iface}")]
    lb = topo.spawn(topo.lb_ns, [sys.executable, "-m", "l4lb.cli", "run", str(cfg), *ports,
                                 "--target", target, "--workdir", str(tmp_path / "run"),
                                 "--progress", "1"], log)
    _wait(lambda: topo.l4lb("status", check=False).returncode == 0 or lb.poll() is not None,
          120, "the management API", log)
    assert lb.poll() is None, f"l4lb run exited:\n{log.read_text()}"

    # wave 1: 2 clients x 4 connections x 3 MB, read at 512 KB/s: in flight during the update
    size, per_client = 3 << 20, 4
    wave1 = [subprocess.Popen(["ip", "netns", "exec", h.ns, sys.executable, TCP, "client",
                               VIP, str(VIP_PORT), str(per_client), str(size), str(1000 * k),
                               str(512 << 10)],
                              stdout=subprocess.PIPE, text=True)
             for k, h in enumerate(topo.hosts_c)]
    _wait(lambda: _status(topo)["conntable"]["entries"] >= 2 * per_client, 30,
          "wave 1's connections in the ConnTable", log)
    new_dip, old_dip = f"{s[2].ip}:{SERVER_PORT}", f"{s[0].ip}:{SERVER_PORT}"
    t0 = time.monotonic()
    mid = _status(topo)
    assert (mid["dataplane"]["actions"]["lb"] if target == "model"
            else mid["dataplane"]["vip_packets"]["web"]) > 0
    t_update = time.monotonic()
    topo.l4lb("pool", str(cfg), "add", new_dip, "--wait")
    r = json.loads(topo.l4lb("pool", str(cfg), "drain", old_dip, "--wait").stdout)
    t_update = time.monotonic() - t_update
    assert r["pool"] == [f"{s[1].ip}:{SERVER_PORT}", new_dip]
    # the update happened mid-transfer: no connection had closed, all are still running
    assert mid["control_plane"]["closed"] == 0 and all(p.poll() is None for p in wave1), \
        "wave 1 finished before the pool update: make the transfers longer"
    results = []
    for p in wave1:
        out, _ = p.communicate(timeout=300)
        results += [json.loads(line) for line in out.splitlines()]
    after_update = _status(topo)
    busy_at_update = sum(1 for _ in results)

    # wave 2: new connections after the update land on the new pool only
    wave2 = [subprocess.Popen(["ip", "netns", "exec", h.ns, sys.executable, TCP, "client",
                               VIP, str(VIP_PORT), "6", str(256 << 10), str(5000 + 100 * k)],
                              stdout=subprocess.PIPE, text=True)
             for k, h in enumerate(topo.hosts_c)]
    results2 = []
    for p in wave2:
        out, _ = p.communicate(timeout=300)
        results2 += [json.loads(line) for line in out.splitlines()]

    bad = [r for r in results + results2 if not r["ok"] or r["error"]]
    assert not bad, f"transfers failed: {bad}\nswitch log:\n{log.read_text()[-3000:]}"
    assert busy_at_update == 2 * per_client
    assert all(r["bytes"] == size for r in results)
    assert {r["server"] for r in results} <= {"S0", "S1"}  # the pool before the update
    assert {r["server"] for r in results2} <= {"S1", "S2"}, results2  # S0 drained
    assert {r["server"] for r in results2} == {"S1", "S2"}  # both new DIPs serve

    # counters agree with what happened: 20 connections learned and inserted once each,
    # the update finished, no frame dropped or without a route
    n = len(results) + len(results2)
    end = _wait(lambda: (st := _status(topo))["updates_in_progress"] == 0
                and st["control_plane"]["inserted"] >= n and st, 10,
                "the pool update to finish and every connection to be inserted", log)
    cp, dp = end["control_plane"], end["dataplane"]
    assert cp["learned"] == cp["inserted"] == n, cp
    assert cp["updates"] == 2 and cp["table_full"] == 0
    if target == "model":
        acts = dp["actions"]
        assert acts["drop"] == acts["no_route"] == 0, acts
        assert acts["reverse"] > 0 and acts["lb"] > 0
    else:  # the program's counters: no drop, no frame without a route, a digest per learn
        assert dp["vip_drops"]["web"] == dp["no_route_drops"] == 0, dp
        assert dp["vip_misses"]["web"] >= end["events"]["learn"] >= n, (dp, end["events"])
    assert end["vips"][0]["pool"] == [f"{s[1].ip}:{SERVER_PORT}", new_dip]
    assert after_update["insert_latency_s"]["count"] >= 2 * per_client
    metrics = topo.l4lb("status", "--metrics").stdout
    assert f'l4lb_control_plane_total{{kind="inserted"}} {n}' in metrics
    if target == "model":
        assert 'l4lb_frames_total{action="reverse"}' in metrics

    # bad management requests: clear errors, state unchanged, the instance keeps serving
    for body, field in ((b"not json", "body"), (b'{"op": "grow", "dip": "10.20.1.2:8080"}', "op"),
                        (b'{"op": "add", "dip": "10.20.1.2"}', "dip"),
                        (b'{"op": "drain", "dip": "10.20.9.2:8080"}', "dip"),
                        (b'{"op": "add", "dip": "10.20.1.2:8080", "vip": "nope"}', "vip"),
                        (b'{"op": "add", "dip": "10.20.1.2:8080", "x": 1}', "body")):
        code, res = _api(topo, "POST", body)
        assert code == 400 and res["error"].startswith(field), (body, res)
    after_bad = _status(topo)
    assert after_bad["vips"][0]["pool"] == end["vips"][0]["pool"]
    assert after_bad["rejected_requests"] == end["rejected_requests"] + 4  # 2 fail in HTTP
    assert lb.poll() is None

    rx = sum(after_bad["dataplane"]["rx"].values()) if target == "model" \
        else after_bad["dataplane"]["packets"]
    print(f"\nlive {target}: {n} connections, "
          f"{sum(r['bytes'] for r in results + results2):,} bytes, {rx:,} frames in "
          f"{after_bad['uptime_s']:.1f} s; wave 1 {time.monotonic() - t0:.1f} s, its two "
          f"pool updates {t_update:.2f} s; "
          f"insert latency p50 {end['insert_latency_s']['p50'] * 1e3:.2f} ms, "
          f"p99 {end['insert_latency_s']['p99'] * 1e3:.2f} ms")

    if target == "model":  # clean stop on SIGTERM; a restart serves from the config again
        lb.terminate()
        assert lb.wait(10) == 0, log.read_text()[-2000:]
        assert "stopped" in log.read_text()
        log2 = tmp_path / "switch-restart.log"
        lb = topo.spawn(topo.lb_ns, [sys.executable, "-m", "l4lb.cli", "run", str(cfg),
                                     *ports, "--progress", "0"], log2)
        _wait(lambda: topo.l4lb("status", check=False).returncode == 0
              or lb.poll() is not None, 60, "the restarted instance", log2)
        again = subprocess.run(["ip", "netns", "exec", topo.hosts_c[0].ns, sys.executable, TCP,
                                "client", VIP, str(VIP_PORT), "2", str(64 << 10), "9000"],
                               capture_output=True, text=True, timeout=60).stdout
        assert all(json.loads(ln)["ok"] for ln in again.splitlines()) and again, again
        st = _status(topo)  # the config's pool, not the updated one: state is the config's
        assert st["vips"][0]["pool"] == [f"{h.ip}:{SERVER_PORT}" for h in s[:2]]
        lb.terminate()
        assert lb.wait(10) == 0
    else:  # a killed switch: the instance says so and stops
        pids = subprocess.run(["ip", "netns", "pids", topo.lb_ns], capture_output=True,
                              text=True).stdout.split()
        switch = [p for p in pids if Path(f"/proc/{p}/comm").read_text().strip()
                  == "simple_switch"]
        assert len(switch) == 1, pids
        subprocess.run(["kill", "-9", switch[0]], check=True)
        assert lb.wait(20) == 1, log.read_text()[-2000:]
        text = log.read_text()
        assert "data plane failed: simple_switch exited" in text and "stopped" in text, text
