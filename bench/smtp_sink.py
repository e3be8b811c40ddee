"""The bench's SMTP server: accepts every mail (AUTH without TLS, any login) and notes
when each arrived and what it answers, one line per mail, in a log file.

Run in a process of its own, so that its work (and memory) is not counted as the bot's:
``python -m bench.smtp_sink --port 2525 --log replies.log``. A line is
``<unix time> <In-Reply-To>``; the bench counts lines and reads reply times from them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import time
from typing import IO, Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

_IN_REPLY_TO = re.compile(rb"^In-Reply-To:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


class SinkHandler:
    """Notes each mail's arrival and drops it."""

    def __init__(self, log: IO[str]) -> None:
        self.log = log

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Write ``<time> <In-Reply-To>`` and accept."""
        raw = envelope.original_content or b""
        header_end = raw.find(b"\r\n\r\n")
        match = _IN_REPLY_TO.search(raw, 0, header_end if header_end > 0 else len(raw))
        answered = match.group(1).decode("ascii", "replace") if match else "-"
        self.log.write(f"{time.time():.6f} {answered}\n")
        self.log.flush()
        return "250 2.0.0 accepted"


def _accept_any_login(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    return AuthResult(success=True)


async def serve(port: int, log_path: str) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM."""
    loop = asyncio.get_running_loop()
    with open(log_path, "a", buffering=1) as log:
        handler = SinkHandler(log)
        server = await loop.create_server(
            lambda: SMTP(
                handler,
                hostname="sink.bench",
                authenticator=_accept_any_login,
                auth_require_tls=False,
                loop=loop,
            ),
            "127.0.0.1",
            port,
        )
        stopped = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopped.set)
        print("ready", flush=True)
        await stopped.wait()
        server.close()


def main() -> None:
    """``python -m bench.smtp_sink --port PORT --log FILE``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    arguments = parser.parse_args()
    # aiosmtpd's own deprecation notice, once per login: not the bench's business.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    asyncio.run(serve(arguments.port, arguments.log))


if __name__ == "__main__":
    main()
