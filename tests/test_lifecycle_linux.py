"""SYN authentication against Linux's real TCP state machine.

A client network namespace connects to a VIP through a veth pair; on the other end
(no address, an AF_PACKET socket) the model's frame data plane answers. The test
checks the assumption the design rests on (docs/lifecycle.md): Linux answers the
challenge SYN-ACK with ``<SEQ=SEG.ACK><CTL=RST>``, stays in SYN-SENT, and retransmits
its SYN, which then passes. Needs root and iproute2; skips otherwise.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from model.config import parse_config
from model.controlplane import ControlPlane
from model.frame import FrameDataPlane
from model.layout import Action
from model.parse import parse_frame
from model.pipeline import TCP_RST, TCP_SYN, DataPlane

NS = "l4lbauth"
IF_LB, IF_CLIENT = "l4lbau0", "l4lbau1"
CLIENT_IP, VIP = "100.64.0.2", "10.0.0.1"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 (ip) to build a network namespace")


def _ip(*args: str, ns: bool = False) -> None:
    cmd = ["ip", "-n", NS, *args] if ns else ["ip", *args]
    subprocess.run(cmd, check=True, capture_output=True)


@pytest.fixture
def client_ns():
    """Namespace NS with IF_CLIENT (address CLIENT_IP, static neighbour for the VIP);
    IF_LB stays in this namespace without an address. Removed on exit."""
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
    subprocess.run(["ip", "link", "del", IF_LB], capture_output=True, check=False)
    try:
        _ip("netns", "add", NS)
        _ip("link", "add", IF_LB, "type", "veth", "peer", "name", IF_CLIENT)
        _ip("link", "set", IF_CLIENT, "netns", NS)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{IF_LB}.disable_ipv6=1"],
                       capture_output=True, check=False)
        _ip("link", "set", IF_LB, "up")
        lb_mac = open(f"/sys/class/net/{IF_LB}/address").read().strip()
        _ip("addr", "add", f"{CLIENT_IP}/24", "dev", IF_CLIENT, ns=True)
        _ip("link", "set", IF_CLIENT, "up", ns=True)
        _ip("link", "set", "lo", "up", ns=True)
        _ip("route", "add", f"{VIP}/32", "dev", IF_CLIENT, ns=True)
        _ip("neigh", "add", VIP, "lladdr", lb_mac, "dev", IF_CLIENT, ns=True)
        yield
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", IF_LB], capture_output=True, check=False)


def _config():
    return parse_config({
        "name": "linux-auth",
        "geometry": {"stages": 2, "log2_slots": 8, "maglev_size": 251, "pool_slots": 4,
                     "vip_capacity": 2, "dip_capacity": 8, "transit_log2_bits": 6},
        "lifecycle": {"auth_epoch": 60, "auth_log2_sources": 6},
        "vip": [{"name": "web", "address": VIP, "port": 80, "auth": True,
                 "dips": [{"address": "192.168.1.1"}, {"address": "192.168.1.2"}]}],
    })


def test_linux_answers_the_challenge_with_the_cookie_rst_and_retransmits(client_ns):
    cfg = _config()
    cp = ControlPlane(cfg)
    cp.install()
    fdp = FrameDataPlane(cfg, dataplane=DataPlane(cfg, cp.mem, cp.hasher))
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    sock.bind((IF_LB, 0))
    sock.settimeout(0.2)
    client = subprocess.Popen(
        ["ip", "netns", "exec", NS, sys.executable, "-c",
         f"import socket\nsocket.create_connection(('{VIP}', 80), timeout=8)\n"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen: list[tuple[float, int, int, int]] = []   # (t, action, flags, seq)
    cookies: list[int] = []
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 6 and not any(a == Action.LB for _, a, _, _ in seen):
            try:
                frame = sock.recv(65535)
            except TimeoutError:
                continue
            parsed = parse_frame(frame)
            if not parsed.ok or parsed.packet.dst_port != 80:
                continue
            pkt = parsed.packet
            res = fdp.decide(frame)
            seen.append((time.monotonic() - t0, res.decision.action, pkt.tcp_flags, pkt.seq))
            if res.decision.action == Action.CHALLENGE:
                cookies.append(res.decision.cookie)
                sock.send(res.out)
    finally:
        alive = client.poll() is None  # connect() neither failed nor gave up
        client.kill()
        client.wait()
        sock.close()
    actions = [a for _, a, _, _ in seen]
    assert actions[:3] == [Action.CHALLENGE, Action.VERIFY, Action.LB], seen
    (t_syn, _, f_syn, isn), (t_rst, _, f_rst, rst_seq), (t_re, _, f_re, isn2) = seen[:3]
    assert f_syn & TCP_SYN and f_re & TCP_SYN and isn2 == isn
    assert f_rst & TCP_RST and rst_seq == cookies[0]      # <SEQ=SEG.ACK><CTL=RST>
    assert t_rst - t_syn < 0.5                            # at once, not after a timeout
    # Linux re-arms its retransmission timer to TCP_TIMEOUT_MIN (2 jiffies) on the
    # first unacceptable SYN-ACK (tcp_rcv_synsent_state_process), so the SYN comes back
    # right after the RST; a stack without that rule waits its RTO (1 s).
    assert t_rst < t_re < t_syn + 3.5
    print(f"Linux {os.uname().release}: RST {1e3 * (t_rst - t_syn):.1f} ms, "
          f"SYN retransmitted {1e3 * (t_re - t_syn):.1f} ms after the first SYN")
    assert alive        # the RST did not abort the connection: still in SYN-SENT
    assert fdp.actions["challenge"] == 1 and fdp.actions["verify"] == 1
