"""A network hop on one machine: a TCP proxy that holds every chunk for a fixed delay in each
direction, so a worker talks to PostgreSQL as it would from another host.

This kernel refuses `tc qdisc ... netem` (no such qdisc), so the delay is made in user space:
asyncio, one task per direction, order kept. Its timers add about a millisecond of their own
each way, so what counts is the round trip measured through it (`delayed` reports it), not
the delay asked for.

    python hop.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS     # prints "ready"
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

from common import free_port


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay: float) -> None:
    loop = asyncio.get_running_loop()
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await held.get()
            if not data:
                writer.close()
                return
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    releasing = asyncio.create_task(release())
    while True:
        data = await reader.read(65536)
        await held.put((loop.time() + delay, data))
        if not data:
            break
    await releasing


async def _serve(listen: int, host: str, port: int, delay: float) -> None:
    async def connect(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(host, port)
        await asyncio.gather(_pump(client_r, server_w, delay), _pump(server_r, client_w, delay),
                             return_exceptions=True)

    server = await asyncio.start_server(connect, "127.0.0.1", listen)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def round_trip_ms(url: str, samples: int = 200) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1").fetchone()
        start = time.perf_counter()
        for _ in range(samples):
            conn.execute("SELECT 1").fetchone()
        return (time.perf_counter() - start) / samples * 1e3


@contextlib.contextmanager
def delayed(url: str, delay_ms: float) -> Iterator[tuple[str, float]]:
    """A proxy in front of the server of `url`: yields the URL through it and the `SELECT 1`
    round trip measured through it, in ms."""
    parts = urlsplit(url)
    listen = free_port()
    proxy = subprocess.Popen([sys.executable, os.path.abspath(__file__), str(listen),
                              parts.hostname or "127.0.0.1", str(parts.port or 5432),
                              str(delay_ms)], stdout=subprocess.PIPE, text=True)
    try:
        if proxy.stdout is None or proxy.stdout.readline().strip() != "ready":
            raise RuntimeError("the delay proxy did not start")
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{listen}" if userinfo else f"127.0.0.1:{listen}"
        proxied = urlunsplit(parts._replace(netloc=netloc))
        yield proxied, round_trip_ms(proxied)
    finally:
        proxy.terminate()
        proxy.wait(timeout=10)


if __name__ == "__main__":
    listen_port, host, port, delay_ms = sys.argv[1:5]
    asyncio.run(_serve(int(listen_port), host, int(port), float(delay_ms) / 1000))
