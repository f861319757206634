"""BMv2 ``simple_switch`` driven from Python: compile the v1model program with p4c, start
the switch on a veth pair, load and change its tables over the switch's Thrift runtime,
and replay a model scenario (vectors) through it, comparing every decision and frame.

p4c and BMv2 are not on PyPI; users bring their own (docs/p4.md, "Compile and run").
:func:`unavailable` says what is missing, so callers can skip with the reason.

Why Thrift and not ``simple_switch_CLI``: the CLI is a Python process that parses the
program's JSON on every start (about 50 ms), so one CLI call per batch of writes limits a
replay to tens of packets per second. The Thrift ``standard`` service that the CLI uses
underneath takes one RPC per write (tens of microseconds), with the table entry handle
returned directly. The generated Thrift modules (``bm_runtime``) are installed by BMv2
next to ``runtime_CLI.py``; :func:`import_bm_runtime` finds them through the interpreter
that runs ``simple_switch_CLI`` when they are not importable as they are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from codegen.p4 import (
    INGRESS,
    KEYED_MEMORIES,
    TABLE_MEMORIES,
    Entry,
    TableAdd,
    entry_for_word,
    sourced_entries,
)
from codegen.p4_network import match_key
from model.config import Config
from model.layout import memory_specs

__all__ = [
    "Bmv2Error",
    "unavailable",
    "import_bm_runtime",
    "compile_v1model",
    "veth_pair",
    "veth_ports",
    "Switch",
    "Runtime",
    "TableLoader",
]

#: Linux's SO_RCVBUFFORCE (not exported by Python's socket module).
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

#: getsockopt(SOL_PACKET, PACKET_STATISTICS): struct tpacket_stats {packets, drops}.
SOL_PACKET, PACKET_STATISTICS = 263, 6

#: Tools a BMv2 run needs on PATH.
TOOLS = ("p4c", "simple_switch", "simple_switch_CLI")


class Bmv2Error(RuntimeError):
    """A BMv2 step failed; the message says which and points at the log."""


def _bm_runtime_dir() -> str | None:
    """The directory holding BMv2's ``bm_runtime`` package, asked of the Python that runs
    ``simple_switch_CLI`` (its shebang)."""
    cli = shutil.which("simple_switch_CLI")
    if cli is None:
        return None
    try:
        first = Path(cli).read_bytes()[:200].split(b"\n", 1)[0].decode()
    except OSError:
        return None
    interp = first[2:].strip().split() if first.startswith("#!") else []
    if not interp:
        return None
    code = "import bm_runtime, os; print(os.path.dirname(os.path.dirname(bm_runtime.__file__)))"
    try:
        r = subprocess.run([*interp, "-c", code], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def import_bm_runtime():
    """BMv2's generated Thrift client module ``bm_runtime.standard.Standard``."""
    try:
        from bm_runtime.standard import Standard  # type: ignore[import-not-found]
        return Standard
    except ImportError:
        pass
    where = _bm_runtime_dir()
    if where is None:
        raise Bmv2Error("BMv2's Python runtime (bm_runtime) is not importable and no "
                        "simple_switch_CLI on PATH says where it is")
    if where not in sys.path:
        sys.path.append(where)
    from bm_runtime.standard import Standard  # type: ignore[import-not-found]
    return Standard


def unavailable(need_root: bool = True) -> str | None:
    """Why a BMv2 run cannot happen here, or None when it can."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not on PATH (p4c and BMv2 are not on PyPI)"
    if need_root and (os.geteuid() != 0 or shutil.which("ip") is None):
        return "a BMv2 packet run needs root and iproute2 to create a veth pair"
    try:
        import thrift  # noqa: F401
    except ImportError:
        return "the Python package thrift is not installed (pip install -e '.[dev]')"
    try:
        import_bm_runtime()
    except (Bmv2Error, ImportError) as e:
        return str(e)
    return None


def compile_v1model(src: str | Path, outdir: str | Path) -> Path:
    """``p4c --target bmv2 --arch v1model``; returns the JSON path. Compiler output is
    kept in ``outdir/p4c.log``."""
    src, out = Path(src), Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["p4c", "--target", "bmv2", "--arch", "v1model", "-o", str(out),
                        str(src)], capture_output=True, text=True, timeout=900)
    (out / "p4c.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        raise Bmv2Error(f"p4c failed on {src} (exit {r.returncode}):\n{r.stdout}{r.stderr}")
    return out / f"{src.stem}.json"


@contextlib.contextmanager
def veth_pair(tag: str) -> Iterator[tuple[str, str]]:
    """A fresh veth pair ``(switch side, host side)``, up, IPv6 off (no kernel chatter);
    deleted on exit, also on failure."""
    sw_if, host_if = f"{tag}s", f"{tag}h"
    if len(sw_if) > 15:
        raise ValueError(f"veth tag {tag!r}: interface names are limited to 15 characters")
    subprocess.run(["ip", "link", "del", sw_if], capture_output=True, check=False)
    subprocess.run(["ip", "link", "add", sw_if, "type", "veth", "peer", "name", host_if],
                   check=True, capture_output=True)
    try:
        for dev in (sw_if, host_if):
            subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"],
                           check=False, capture_output=True)
            subprocess.run(["ip", "link", "set", dev, "up"], check=True, capture_output=True)
        yield sw_if, host_if
    finally:
        subprocess.run(["ip", "link", "del", sw_if], check=False, capture_output=True)


@contextlib.contextmanager
def veth_ports(tag: str, ports: list[int]) -> Iterator[tuple[dict[int, str], dict[int, str]]]:
    """One veth pair per switch port (a ``[network]`` config's ports): yields
    ``({port: switch side}, {port: host side})``; all deleted on exit."""
    with contextlib.ExitStack() as stack:
        sw, host = {}, {}
        for p in ports:
            sw[p], host[p] = stack.enter_context(veth_pair(f"{tag}{p}"))
        yield sw, host


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Switch:
    """A running ``simple_switch``: ``ports`` maps port numbers to interfaces. The
    switch's output goes to ``log_path`` (with ``log_level`` also its packet log, which
    slows it down several times). Use as a context manager: the process is always
    stopped on exit."""

    def __init__(self, json_path: str | Path, ports: dict[int, str], log_path: str | Path,
                 log_level: str | None = None, extra_args: list[str] | None = None):
        self.json_path, self.ports = Path(json_path), ports
        self.log_path = Path(log_path)
        self.log_level = log_level
        self.extra_args = list(extra_args or [])  # e.g. --device-id, --notifications-addr
        self.thrift_port = _free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Switch:
        cmd = ["simple_switch", "--thrift-port", str(self.thrift_port)]
        for port, iface in sorted(self.ports.items()):
            cmd += ["-i", f"{port}@{iface}"]
        if self.log_level:
            cmd += ["--log-console", "--log-level", self.log_level]
        cmd += self.extra_args
        cmd.append(str(self.json_path))
        log = open(self.log_path, "w")  # noqa: SIM115 (closed in __exit__)
        self._log = log
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                self.check_alive()
                with contextlib.suppress(OSError), socket.create_connection(
                        ("127.0.0.1", self.thrift_port), timeout=1):
                    break
                if time.monotonic() > deadline:
                    raise Bmv2Error(f"simple_switch: Thrift port {self.thrift_port} not up "
                                    f"after 30 s (log: {self.log_path})")
                time.sleep(0.1)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise Bmv2Error(f"simple_switch exited with {self.proc.returncode} "
                            f"(log: {self.log_path})")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


def _encode(value: int, width: int) -> bytes:
    """A key or action parameter as BMv2 wants it: big-endian in ceil(width/8) bytes."""
    if value < 0 or value >> width:
        raise ValueError(f"value {value} does not fit {width} bits")
    return value.to_bytes((width + 7) // 8, "big")


class Runtime:
    """The switch's Thrift ``standard`` service, with the program's qualified names.
    A failed operation raises :class:`Bmv2Error` naming it and the switch's error code
    (Thrift's own exceptions are immutable and break ``contextlib`` re-raising)."""

    def __init__(self, thrift_port: int, host: str = "127.0.0.1"):
        from thrift.protocol import TBinaryProtocol, TMultiplexedProtocol
        from thrift.transport import TSocket, TTransport

        Standard = import_bm_runtime()
        from bm_runtime.standard import ttypes  # type: ignore[import-not-found]

        self.t = ttypes
        self.transport = TTransport.TBufferedTransport(TSocket.TSocket(host, thrift_port))
        proto = TMultiplexedProtocol.TMultiplexedProtocol(
            TBinaryProtocol.TBinaryProtocol(self.transport), "standard")
        self.client = Standard.Client(proto)
        self.transport.open()

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # Thrift's InvalidTableOperation & co., transport errors
            code = getattr(e, "code", None)
            names = {}
            for enum in ("TableOperationErrorCode", "RegisterOperationErrorCode",
                         "CounterOperationErrorCode"):
                names |= getattr(getattr(self.t, enum, None), "_VALUES_TO_NAMES", {})
            why = names.get(code, repr(e)) if code is not None else repr(e)
            raise Bmv2Error(f"{what}: {why}") from None

    def close(self) -> None:
        self.transport.close()

    def table_add(self, e: TableAdd) -> int:
        t = self.t
        if e.prefix_len is not None:  # one LPM key (route_table)
            (_, v, w), = e.keys
            key = [t.BmMatchParam(type=t.BmMatchParamType.LPM,
                                  lpm=t.BmMatchParamLPM(_encode(v, w), e.prefix_len))]
        else:
            key = [t.BmMatchParam(type=t.BmMatchParamType.EXACT,
                                  exact=t.BmMatchParamExact(_encode(v, w)))
                   for _, v, w in e.keys]
        data = [_encode(v, w) for _, v, w in e.params]
        return self._call(f"table_add {e.table} {e.keys}", self.client.bm_mt_add_entry, 0,
                          f"{INGRESS}.{e.table}", key, f"{INGRESS}.{e.action}", data,
                          t.BmAddEntryOptions())

    def table_delete(self, table: str, handle: int) -> None:
        self._call(f"table_delete {table} {handle}", self.client.bm_mt_delete_entry, 0,
                   f"{INGRESS}.{table}", handle)

    def set_default(self, table: str, action: str,
                    params: tuple[tuple[int, int], ...] = ()) -> None:
        self._call(f"table_set_default {table} {action}",
                   self.client.bm_mt_set_default_action, 0, f"{INGRESS}.{table}",
                   f"{INGRESS}.{action}", [_encode(v, w) for v, w in params])

    def register_write(self, register: str, index: int, value: int) -> None:
        """Thrift carries a register value as a signed 64-bit integer: a 64-bit word
        (the SYN-authentication keys) goes as its two's-complement bit pattern."""
        if value >> 64:
            raise Bmv2Error(f"{register}[{index}] = {value:#x} does not fit the 64-bit "
                            f"Thrift register value (full-key ConnTable words need "
                            f"P4Runtime: simple_switch_grpc)")
        signed = value - (1 << 64) if value >> 63 else value
        self._call(f"register_write {register}[{index}]", self.client.bm_register_write, 0,
                   f"{INGRESS}.{register}", index, signed)

    def register_read(self, register: str, index: int) -> int:
        value = self._call(f"register_read {register}[{index}]",
                           self.client.bm_register_read, 0, f"{INGRESS}.{register}", index)
        return value & ((1 << 64) - 1)

    def register_read_all(self, register: str) -> list[int]:
        """Every word of ``register`` in one call."""
        values = self._call(f"register_read_all {register}", self.client.bm_register_read_all,
                            0, f"{INGRESS}.{register}")
        return [v & ((1 << 64) - 1) for v in values]

    def counter(self, name: str, index: int = 0) -> int:
        """Packets counted by ``counter`` ``name`` at ``index``."""
        return self._call(f"counter_read {name}[{index}]", self.client.bm_counter_read, 0,
                          f"{INGRESS}.{name}", index).packets


@dataclass
class TableLoader:
    """Puts model memory words into the running program: a register write per word, and
    for the table memories one entry per address (``dip``), replaced by delete + add
    (entry handles kept here).

    The keyed memories (``vip``, ``rev``, ``route``: the key is in the word) hold one
    entry per key, that of the lowest address with a valid word of that key -- the
    model's lowest-index rule. Every valid word is remembered, so when the winning word
    of a key is overwritten the next one takes its place."""

    cfg: Config
    rt: Runtime
    handles: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    writes: int = 0
    #: keyed memory -> {address: the entry of its valid word}
    words: dict[str, dict[int, TableAdd]] = field(default_factory=dict)
    #: (keyed memory, match key) -> (address, entry, table handle) installed
    installed: dict[tuple[str, tuple], tuple[int, TableAdd, int]] = field(
        default_factory=dict)

    def apply(self, e: Entry, mem: str, addr: int) -> None:
        if isinstance(e, TableAdd):
            self.handles[(mem, addr)] = (e.table, self.rt.table_add(e))
        else:
            self.rt.register_write(e.register, e.index, e.value)

    def load(self, images: dict[str, list[int]]) -> None:
        """A freshly started program gets ``images`` (as ``entries_bmv2.txt`` would)."""
        for mem, addr, e in sourced_entries(self.cfg, images):
            if mem in KEYED_MEMORIES:
                self._install(mem, match_key(e), addr, e)
            else:
                self.apply(e, mem, addr)
        for spec in memory_specs(self.cfg.geometry, self.cfg.lifecycle, self.cfg.network):
            if spec.name in KEYED_MEMORIES:  # every valid word, duplicates included
                self.words[spec.name] = {
                    a: e for a, w in enumerate(images[spec.name]) if w
                    and (e := entry_for_word(self.cfg, spec.name, a, int(w))) is not None}

    def write(self, mem: str, addr: int, word: int) -> None:
        """The model's ``Memories.write(mem, addr, word)``."""
        self.writes += 1
        e = entry_for_word(self.cfg, mem, addr, word)
        if mem in KEYED_MEMORIES:
            words = self.words.setdefault(mem, {})
            old = words.pop(addr, None)
            if e is not None:
                words[addr] = e
            for key in dict.fromkeys(k for k in (match_key(old), match_key(e)) if k):
                self._settle(mem, key)
            return
        if mem in TABLE_MEMORIES:
            old = self.handles.pop((mem, addr), None)
            if old is not None:
                self.rt.table_delete(*old)
            if e is None:
                return
        self.apply(e, mem, addr)

    def _install(self, mem: str, key: tuple, addr: int, e: TableAdd) -> None:
        self.installed[(mem, key)] = (addr, e, self.rt.table_add(e))

    def _settle(self, mem: str, key: tuple) -> None:
        """Make the table entry of ``key`` the lowest address's valid word of that key
        (or none)."""
        words = self.words[mem]
        want = min((a for a, e in words.items() if match_key(e) == key), default=None)
        cur = self.installed.get((mem, key))
        if cur is not None and want is not None and cur[:2] == (want, words[want]):
            return
        if cur is not None:
            self.rt.table_delete(cur[1].table, cur[2])
            del self.installed[(mem, key)]
        if want is not None:
            self._install(mem, key, want, words[want])


class Receiver:
    """Collects every frame arriving on ``iface`` (AF_PACKET) in a background thread."""

    PACKET_OUTGOING = 4

    def __init__(self, iface: str, on_frame: Callable[[bytes], None]):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        # SO_RCVBUFFORCE (root) passes net.core.rmem_max; the switch answers in bursts
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 1 << 25)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 25)
        self.sock.bind((iface, 0))
        self.sock.settimeout(0.1)
        self.on_frame = on_frame
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"rx-{iface}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if addr[2] != self.PACKET_OUTGOING:
                self.on_frame(data)

    def send(self, frame: bytes) -> None:
        self.sock.send(frame)

    def drops(self) -> int:
        """Frames the kernel dropped for this socket since the last call (its receive
        buffer was full): a loss on the harness's side, not the switch's."""
        stats = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        return int.from_bytes(stats[4:8], sys.byteorder)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=2)
        self.sock.close()
