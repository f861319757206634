"""The management API of a running instance: HTTP/JSON on 127.0.0.1 (docs/live.md).

* ``GET /status`` -- occupancy, versions, pools, counters (:meth:`LiveService.status`)
* ``GET /metrics`` -- the same counters in the Prometheus text format (0.0.4)
* ``POST /pool`` -- ``{"op": "add"|"remove"|"drain", "dip": "10.0.2.1:80",
  "vip": "web"}``: a two-phase pool update of the live instance

A bad request gets 400 with ``{"error": "..."}`` naming the field and the value; the
instance's state is unchanged. The server runs in its own thread; every request holds
the instance's lock, which the packet loop holds per batch, so requests see and change
state between two batches of packets, never in the middle of one.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .service import LiveService, ManagementError

__all__ = ["ManagementServer", "request", "prometheus", "DEFAULT_API", "ApiError"]

DEFAULT_API = "127.0.0.1:9180"
_MAX_BODY = 64 * 1024


class ApiError(RuntimeError):
    """A management request failed (refused, or no instance answering)."""


def _metric(lines: list[str], name: str, kind: str, help: str,
            samples: list[tuple[dict[str, str], float]]) -> None:
    lines += [f"# HELP {name} {help}", f"# TYPE {name} {kind}"]
    for labels, v in samples:
        lab = ",".join(f'{k}="{_escape(str(x))}"' for k, x in labels.items())
        lines.append(f"{name}{{{lab}}} {v:g}" if lab else f"{name} {v:g}")


def _escape(value: str) -> str:
    """A label value as the text format wants it (backslash, quote, newline escaped)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(st: dict) -> str:
    """Render :meth:`LiveService.status` (with the data plane's counters) as the
    Prometheus text exposition format."""
    out: list[str] = []
    ct = st["conntable"]
    _metric(out, "l4lb_up", "gauge", "1 while the instance runs.", [({}, 1)])
    _metric(out, "l4lb_uptime_seconds", "gauge", "Seconds since start.",
            [({}, st["uptime_s"])])
    _metric(out, "l4lb_conntable_entries", "gauge", "Connections in the ConnTable.",
            [({}, ct["entries"])])
    _metric(out, "l4lb_conntable_capacity", "gauge", "ConnTable words (stages x slots).",
            [({}, ct["capacity"])])
    for k in ("pending", "stash", "unplaced", "closing"):
        _metric(out, f"l4lb_conntable_{k}", "gauge", f"Connections {k}.", [({}, ct[k])])
    _metric(out, "l4lb_control_plane_total", "counter",
            "Control-plane operations by kind (model.controlplane stats).",
            [({"kind": k}, v) for k, v in sorted(st["control_plane"].items())])
    _metric(out, "l4lb_events_total", "counter", "Learn and close reports received.",
            [({"kind": k}, v) for k, v in sorted(st["events"].items())])
    _metric(out, "l4lb_pool_updates_total", "counter", "Pool operations applied.",
            [({"op": k}, v) for k, v in sorted(st["pool_ops"].items())])
    _metric(out, "l4lb_rejected_requests_total", "counter", "Management requests refused.",
            [({}, st["rejected_requests"])])
    _metric(out, "l4lb_vip_version", "gauge", "Current pool version of each VIP.",
            [({"vip": v["name"]}, v["version"]) for v in st["vips"]])
    _metric(out, "l4lb_vip_phase", "gauge", "Two-phase-commit phase (0 IDLE, 1 RECORD, 2 FLIP).",
            [({"vip": v["name"]}, ["IDLE", "RECORD", "FLIP"].index(v["phase"]))
             for v in st["vips"]])
    _metric(out, "l4lb_dip_connections", "gauge", "ConnTable connections per DIP.",
            [({"vip": v["name"], "dip": d}, n) for v in st["vips"]
             for d, n in v["connections"].items()])
    lat = st["insert_latency_s"]
    _metric(out, "l4lb_insert_latency_seconds", "summary",
            "Learn-to-insert latency of the control plane.",
            [({"quantile": "0.5"}, lat["p50"]), ({"quantile": "0.99"}, lat["p99"])])
    out.append(f"l4lb_insert_latency_seconds_sum {lat['sum']:g}")
    out.append(f"l4lb_insert_latency_seconds_count {lat['count']}")
    dp = st.get("dataplane", {})
    if "actions" in dp:
        _metric(out, "l4lb_frames_total", "counter", "Frames by data-plane outcome.",
                [({"action": k}, v) for k, v in sorted(dp["actions"].items())])
    if "reasons" in dp:
        _metric(out, "l4lb_parser_frames_total", "counter", "Frames by parser class.",
                [({"reason": k}, v) for k, v in sorted(dp["reasons"].items())])
    for key, help in (("rx", "Frames received per port."), ("tx", "Frames sent per port."),
                      ("tx_errors", "Frames the port failed to send.")):
        if key in dp:
            _metric(out, f"l4lb_port_{key}_frames_total", "counter", help,
                    [({"port": p}, v) for p, v in sorted(dp[key].items())])
    return "\n".join(out) + "\n"


class ManagementServer:
    """HTTP server thread over a :class:`LiveService` guarded by ``lock``;
    ``dataplane()`` returns the data plane's counters for status and metrics."""

    def __init__(self, service: LiveService, lock: threading.Lock, address: str = DEFAULT_API,
                 dataplane: Callable[[], dict] = dict) -> None:
        host, _, port = address.rpartition(":")
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ManagementError(f"api: {address!r} is not a loopback address; the "
                                  f"management API has no authentication")
        svc, dp = service, dataplane

        class Handler(BaseHTTPRequestHandler):
            server_version = "l4lb"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, code: int, obj: dict) -> None:
                self._send(code, (json.dumps(obj, indent=1) + "\n").encode())

            def do_GET(self) -> None:
                if self.path not in ("/status", "/metrics"):
                    self._json(404, {"error": f"path: no {self.path!r}; try /status, "
                                              f"/metrics or POST /pool"})
                    return
                with lock:
                    st = svc.status(dp())
                if self.path == "/status":
                    self._json(200, st)
                else:
                    self._send(200, prometheus(st).encode(),
                               "text/plain; version=0.0.4; charset=utf-8")

            def do_POST(self) -> None:
                if self.path != "/pool":
                    self._json(404, {"error": f"path: no {self.path!r}; POST /pool"})
                    return
                try:
                    n = int(self.headers.get("Content-Length", "0"))
                except ValueError:
                    n = -1
                if not 0 < n <= _MAX_BODY:
                    length = self.headers.get("Content-Length")
                    self._json(400, {"error": f"Content-Length: {length!r} (a JSON body "
                                              f"of 1..{_MAX_BODY} bytes)"})
                    return
                raw = self.rfile.read(n)
                try:
                    req = json.loads(raw)
                except (ValueError, UnicodeDecodeError) as e:
                    self._json(400, {"error": f"body: not JSON ({e})"})
                    return
                if not isinstance(req, dict):
                    self._json(400, {"error": f"body: expected a JSON object, got {req!r}"})
                    return
                extra = set(req) - {"op", "dip", "vip"}
                if extra:
                    self._json(400, {"error": f"body: unknown keys {sorted(extra)} "
                                              f"(allowed: op, dip, vip)"})
                    return
                try:
                    with lock:
                        res = svc.pool(req.get("op"), req.get("dip"), req.get("vip"))
                except ManagementError as e:
                    self._json(400, {"error": str(e)})
                    return
                except RuntimeError as e:  # the data plane failed under the update
                    self._json(503, {"error": f"data plane: {e}"})
                    return
                self._json(200, res)

        try:
            self.httpd = ThreadingHTTPServer((host, int(port)), Handler)
        except (OSError, ValueError) as e:
            raise ManagementError(f"api: cannot listen on {address!r} ({e})") from None
        self.httpd.daemon_threads = True
        self.address = f"{host}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="l4lb-api",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def request(address: str, method: str, path: str, body: dict | None = None,
            timeout: float = 10.0) -> tuple[int, Any]:
    """One management request; (HTTP status, parsed JSON or text). Raises
    :class:`ApiError` when no instance answers at ``address``."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://{address}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            code, text, ctype = r.status, r.read().decode(), r.headers.get_content_type()
    except urllib.error.HTTPError as e:
        code, text, ctype = e.code, e.read().decode(), e.headers.get_content_type()
    except (urllib.error.URLError, OSError) as e:
        raise ApiError(f"no l4lb instance answers at {address} ({getattr(e, 'reason', e)}); "
                       f"start one with `l4lb run`, or pass --api") from None
    return code, json.loads(text) if ctype == "application/json" else text
