"""A network-namespace topology for live tests and demos: clients and servers in their
own namespaces, each behind a veth pair whose other end is a port of the load balancer
in its own namespace (docs/live.md, "Real TCP end to end").

Addresses exist only inside the namespaces created here; :meth:`Topology.close`
deletes them (and so every veth and process address in them), also after a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

VIP = "10.99.0.1"
VIP_PORT = 80
SERVER_PORT = 8080


def need_root() -> str | None:
    """Why the topology cannot be built here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and veth pairs)"
    if shutil.which("ip") is None:
        return "needs iproute2 (ip)"
    return None


def _mac(kind: int, i: int) -> str:
    return f"02:00:00:{kind:02x}:{i:02x}:01"


@dataclass
class Host:
    ns: str
    ip: str
    mac: str
    port: int          # load-balancer port it hangs off
    lb_iface: str
    lb_mac: str


@dataclass
class Topology:
    """``clients`` client and ``servers`` server namespaces around one LB namespace."""

    tag: str
    clients: int = 2
    servers: int = 3
    lb_ns: str = ""
    hosts_c: list[Host] = field(default_factory=list)
    hosts_s: list[Host] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)

    def _ip(self, *args: str) -> None:
        r = subprocess.run(["ip", *args], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")

    def namespaces(self) -> list[str]:
        return [self.lb_ns] + [h.ns for h in self.hosts_c + self.hosts_s]

    def build(self) -> Topology:
        self.lb_ns = f"l4lb-{self.tag}-lb"
        self.close()  # leftovers of an interrupted run
        self._ip("netns", "add", self.lb_ns)
        self._ip("-n", self.lb_ns, "link", "set", "lo", "up")  # the management API
        port = 0
        for kind, count, hosts in ((1, self.clients, self.hosts_c),
                                   (2, self.servers, self.hosts_s)):
            for i in range(count):
                ns = f"l4lb-{self.tag}-{'c' if kind == 1 else 's'}{i}"
                ip = f"10.{kind}0.{i}.2"
                h = Host(ns, ip, _mac(kind, i), port, f"p{port}", _mac(0, port))
                self._ip("netns", "add", ns)
                self._ip("-n", self.lb_ns, "link", "add", h.lb_iface, "address", h.lb_mac,
                         "type", "veth", "peer", "name", "eth0", "address", h.mac,
                         "netns", ns)
                self._ip("-n", self.lb_ns, "link", "set", h.lb_iface, "up")
                self._ip("-n", ns, "link", "set", "lo", "up")
                self._ip("-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
                self._ip("-n", ns, "link", "set", "eth0", "up")
                gw = f"10.{kind}0.{i}.1"
                self._ip("-n", ns, "neigh", "add", gw, "lladdr", h.lb_mac, "dev", "eth0",
                         "nud", "permanent")
                self._ip("-n", ns, "route", "add", "default", "via", gw)
                self.run_in(ns, "from l4lb.live.offload import disable_offloads; "
                                "disable_offloads('eth0')")
                hosts.append(h)
                port += 1
        return self

    def config(self, dips: int) -> str:
        """A TOML config: VIP on the first ``dips`` servers, a route per host."""
        ports = "\n".join(f'[[network.port]]\nid = {h.port}\nmac = "{h.lb_mac}"\n'
                          f'name = "{h.lb_iface}"\n' for h in self.hosts_c + self.hosts_s)
        routes = "\n".join(
            f'[[network.route]]\nprefix = "{h.ip.rsplit(".", 1)[0]}.0/24"\n'
            f'port = {h.port}\nmac = "{h.mac}"\n' for h in self.hosts_c + self.hosts_s)
        pool = ", ".join(f'{{ address = "{h.ip}", port = {SERVER_PORT} }}'
                         for h in self.hosts_s[:dips])
        return textwrap.dedent(f"""\
            name = "live-test"
            [geometry]
            stages = 4
            log2_slots = 10
            digest_bits = 16
            version_bits = 6
            maglev_size = 251
            pool_slots = 8
            vip_capacity = 4
            dip_capacity = 16
            transit_log2_bits = 10
            transit_hashes = 2
            stash_size = 16
            [lifecycle]
            idle_timeout = 30
            close_grace = 2
            [[vip]]
            name = "web"
            address = "{VIP}"
            port = {VIP_PORT}
            protocol = "tcp"
            dips = [{pool}]
            [network]
            """) + ports + routes

    def run_in(self, ns: str, code: str) -> str:
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                           capture_output=True, text=True, timeout=60)
        if r.returncode:
            raise RuntimeError(f"{ns}: {r.stderr.strip()}")
        return r.stdout

    def l4lb(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """``l4lb ARGS`` in the load balancer's namespace (where its management API
        listens on loopback); a failure raises RuntimeError with its stderr."""
        r = subprocess.run(["ip", "netns", "exec", self.lb_ns, sys.executable, "-m",
                            "l4lb.cli", *args], capture_output=True, text=True, timeout=60,
                           cwd=Path(__file__).resolve().parent.parent.parent)
        if check and r.returncode:
            raise RuntimeError(f"l4lb {' '.join(args)}: exit {r.returncode}\n{r.stderr}")
        return r

    def spawn(self, ns: str, args: list[str], log: Path) -> subprocess.Popen:
        f = open(log, "w")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=f, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs.clear()
        r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
        for line in r.stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(f"l4lb-{self.tag}-"):
                subprocess.run(["ip", "netns", "pids", name], capture_output=True)
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
