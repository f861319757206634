"""Real TCP endpoints for the live tests and benchmarks (run inside network namespaces).

    python -m l4lb.live.tcp server ID PORT
    python -m l4lb.live.tcp client HOST PORT CONNECTIONS BYTES SEED [RATE]

The server answers ``GET <bytes> <seed>\\n`` with ``S<ID>\\n`` and ``bytes`` bytes of
``random.Random(seed)``, then closes. The client opens CONNECTIONS concurrent
connections, downloads (each at most RATE bytes/s, so transfers last long enough for
something to happen during them), checks every byte and prints one JSON line per
connection: ``{"seed", "server", "bytes", "ok", "error", "seconds"}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

CHUNK = 64 * 1024


def payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


async def serve(sid: int, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            _, n, seed = line.split()
            data = payload(int(n), int(seed))
            writer.write(f"S{sid}\n".encode())
            for i in range(0, len(data), CHUNK):
                writer.write(data[i:i + CHUNK])
                await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, ValueError) as e:
            print(json.dumps({"server_error": repr(e)}), flush=True)

    srv = await asyncio.start_server(handle, "0.0.0.0", port, backlog=128)
    print(json.dumps({"listening": port}), flush=True)
    async with srv:
        await srv.serve_forever()


async def fetch(host: str, port: int, n: int, seed: int, rate: float) -> dict:
    res = {"seed": seed, "server": None, "bytes": 0, "ok": False, "error": None}
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
        writer.write(f"GET {n} {seed}\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 60)
        res["server"] = head.decode().strip()
        got = bytearray()
        while True:
            chunk = await asyncio.wait_for(reader.read(CHUNK), 60)
            if not chunk:
                break
            got += chunk
            if rate:  # a slow reader: the window closes, the sender waits
                await asyncio.sleep(max(0.0, len(got) / rate - (time.monotonic() - t0)))
        res["bytes"] = len(got)
        res["ok"] = bytes(got) == payload(n, seed)
        writer.close()
    except (TimeoutError, OSError) as e:
        res["error"] = repr(e)
    res["seconds"] = round(time.monotonic() - t0, 3)
    return res


async def clients(host: str, port: int, count: int, n: int, seed: int, rate: float) -> None:
    for r in await asyncio.gather(*(fetch(host, port, n, seed + k, rate)
                                    for k in range(count))):
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve(int(sys.argv[2]), int(sys.argv[3])))
    else:
        asyncio.run(clients(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]),
                            int(sys.argv[5]), int(sys.argv[6]),
                            float(sys.argv[7]) if len(sys.argv) > 7 else 0.0))
