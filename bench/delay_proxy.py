"""A TCP proxy on loopback that delays each direction, to give the bench a network's
round-trip time: ``python -m bench.delay_proxy --delay-ms 5 --route 7000:127.0.0.1:143``
forwards 127.0.0.1:7000 to port 143 with 5 ms added each way (10 ms round trip).

Bytes are held back, not throttled: each chunk leaves ``delay`` after it arrived, in
order, so bandwidth stays that of loopback and only latency is added, as on a fast
link far away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

CHUNK = 256 * 1024


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it arrived."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def take_in() -> None:
        while data := await reader.read(CHUNK):
            queue.put_nowait((loop.time() + delay, data))
        queue.put_nowait((loop.time() + delay, b""))

    taking = asyncio.create_task(take_in())
    try:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        taking.cancel()
        with contextlib.suppress(Exception):
            writer.close()


def _handler(target_host: str, target_port: int, delay: float):  # type: ignore[no-untyped-def]
    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter):  # type: ignore[no-untyped-def]
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            return
        # When the proxy stops, its connections end with it, quietly.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(
                _forward(client_reader, server_writer, delay),
                _forward(server_reader, client_writer, delay),
            )

    return handle


async def serve(routes: list[tuple[int, str, int]], delay: float) -> None:
    """Listen on each route's port on 127.0.0.1 until SIGTERM."""
    loop = asyncio.get_running_loop()
    servers = [
        await asyncio.start_server(_handler(host, port, delay), "127.0.0.1", listen)
        for listen, host, port in routes
    ]
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    print("ready", flush=True)
    await stopped.wait()
    for server in servers:
        server.close()


def _route(text: str) -> tuple[int, str, int]:
    listen, host, port = text.split(":")
    if host not in ("127.0.0.1", "localhost"):
        raise argparse.ArgumentTypeError("the bench proxies to loopback only")
    return int(listen), host, int(port)


def main() -> None:
    """``python -m bench.delay_proxy --delay-ms MS --route LISTEN:HOST:PORT [...]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, required=True, help="added each way")
    parser.add_argument("--route", type=_route, action="append", required=True)
    arguments = parser.parse_args()
    asyncio.run(serve(arguments.route, arguments.delay_ms / 1000))


if __name__ == "__main__":
    main()
