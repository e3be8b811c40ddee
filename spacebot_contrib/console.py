"""The ``console`` channel: talk to any agent in the terminal.

Each line typed on standard input is a message; the agent's responses are printed on
standard output. One ``spacebot run`` is one session and one conversation, so the agent
sees the earlier lines of the session as history, and a new run starts afresh.

Standard input is read by a thread with ``os.read``: it works the same for a terminal, a
pipe and a redirected file (asyncio's pipe transports refuse regular files), and a raw
read holds no lock of Python's buffered ``sys.stdin`` that could hang the interpreter's
exit while the thread waits. At the end of input (Ctrl-D, or the end of a pipe) the
channel answers what it still holds and then asks the runtime to stop, as Ctrl-C does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import attrs

from spacebot_core.adapter import Adapter
from spacebot_core.errors import ChannelError
from spacebot_core.hookspecs import hookimpl
from spacebot_core.types import (
    TEXT_RESPONSES,
    AnyResponse,
    InboundMessage,
    MessageContent,
    OutboundResponse,
)

CHANNEL = "console"
READ_CHUNK_BYTES = 65536


@attrs.frozen
class ConsoleSettings:
    """The ``[messaging.console]`` table."""

    #: The sender_id of every line typed (the name the agent sees).
    sender: str = "you"
    #: Shown before each line to type, on a terminal only.
    prompt: str = "you> "
    #: Put before the agent's responses.
    reply_prefix: str = "bot> "
    #: Stop spacebot at the end of input (Ctrl-D), once every line was answered.
    stop_on_eof: bool = True
    #: Seconds between polls when nothing is typed: how soon a line the agent failed on
    #: is tried again.
    poll_interval_secs: float = 5.0


@attrs.frozen
class ConsoleLine:
    """One line read from standard input: a raw item of the console's poll."""

    number: int
    text: str
    received_at: datetime


@attrs.define(eq=False)
class LineReader:
    """Reads lines from a file descriptor in a thread and hands them to the event loop.

    ``on_line`` and ``on_eof`` are called in the loop's thread.
    """

    fd: int
    loop: asyncio.AbstractEventLoop
    on_line: Callable[[str], None]
    on_eof: Callable[[], None]
    _thread: threading.Thread | None = attrs.field(default=None, init=False)

    def start(self) -> None:
        """Start the reading thread (a daemon: it must not keep the process alive)."""
        self._thread = threading.Thread(target=self._run, name="console-stdin", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self.fd, READ_CHUNK_BYTES)
            except OSError:
                chunk = b""
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self._hand_over(self.on_line, line.decode("utf-8", errors="replace"))
        if pending:
            self._hand_over(self.on_line, pending.decode("utf-8", errors="replace"))
        self._hand_over(self.on_eof)

    def _hand_over(self, callback: Callable[..., None], *args: Any) -> None:
        # A closed loop raises RuntimeError: spacebot is exiting, and the line goes with it.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(callback, *args)


@attrs.define(eq=False)
class ConsoleAdapter(Adapter):
    """The terminal as a channel: one conversation per session.

    A line stays pending until it is acknowledged, so a line the agent failed on is
    polled (and tried) again; lines are held in memory only, as the terminal holds them.
    """

    settings_type = ConsoleSettings

    #: Where lines come from and responses go (standard input and output when None);
    #: an embedding program or a test may set them before the start.
    input_fd: int | None = attrs.field(default=None, init=False)
    output: TextIO | None = attrs.field(default=None, init=False)
    session: str = attrs.field(factory=lambda: _new_session_id(), init=False)
    _pending: dict[int, ConsoleLine] = attrs.field(factory=dict, init=False)
    _arrived: asyncio.Event | None = attrs.field(default=None, init=False)
    _reader: LineReader | None = attrs.field(default=None, init=False)
    _count: int = attrs.field(default=0, init=False)
    _eof: bool = attrs.field(default=False, init=False)
    _stop_requested: bool = attrs.field(default=False, init=False)

    @property
    def conversation_id(self) -> str:
        """The one conversation of this session."""
        return f"console/{self.session}"

    @property
    def interactive(self) -> bool:
        """Whether a person types at a terminal (then a prompt is shown)."""
        try:
            return os.isatty(self._input_fd())
        except (OSError, ValueError):
            return False

    def _input_fd(self) -> int:
        if self.input_fd is not None:
            return self.input_fd
        try:
            return sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):  # no stdin, or one without a file
            raise ChannelError(
                "standard input cannot be read",
                hint="run spacebot in a terminal, or pipe the messages into it",
            ) from None

    def _output(self) -> TextIO:
        return self.output if self.output is not None else sys.stdout

    @hookimpl
    async def spacebot_start(self) -> None:
        """Start reading standard input, once per session (restarts keep the reader)."""
        if self._reader is not None:
            return
        fd = self._input_fd()
        self._arrived = asyncio.Event()
        self._reader = LineReader(
            fd, asyncio.get_running_loop(), self._line_read, self._input_ended
        )
        self._reader.start()
        self.log.info("[%s] reading messages from standard input", self.runtime_key)
        self._show_prompt()

    def _line_read(self, text: str) -> None:
        text = text.rstrip("\r")
        if not text.strip():
            self._show_prompt()
            return
        self._count += 1
        self._pending[self._count] = ConsoleLine(self._count, text, datetime.now(UTC))
        self._wake()

    def _input_ended(self) -> None:
        self._eof = True
        self._wake()

    def _wake(self) -> None:
        if self._arrived is not None:
            self._arrived.set()

    @hookimpl
    async def spacebot_poll(self) -> list[ConsoleLine]:
        """Every line typed and not yet acknowledged, oldest first."""
        if self._arrived is not None:
            self._arrived.clear()
        self._stop_when_done()
        return list(self._pending.values())

    @hookimpl
    async def spacebot_wait(self) -> None:
        """Return as soon as a line is typed, or after one poll interval."""
        if self._arrived is None:
            await asyncio.sleep(self.poll_interval)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout=self.poll_interval)

    @hookimpl
    def spacebot_normalize_inbound(self, raw: Any) -> InboundMessage | None:
        """A line as a message of the session's conversation."""
        if not isinstance(raw, ConsoleLine):
            return None
        return InboundMessage(
            id=f"{self.session}/{raw.number}",
            source=CHANNEL,
            adapter=self.runtime_key,
            conversation_id=self.conversation_id,
            sender_id=self.settings.sender,
            content=MessageContent.Text(raw.text),
            timestamp=raw.received_at,
            metadata={"line": raw.number},
            formatted_author=self.settings.sender,
        )

    @hookimpl
    async def spacebot_send(
        self, message: InboundMessage, response: AnyResponse, delivery_id: str
    ) -> None:
        """Print one response; kinds a terminal cannot show are shown as a note."""
        self._print(render_response(response))

    @hookimpl
    async def spacebot_broadcast(self, target: str, response: AnyResponse) -> None:
        """Print a message that answers nothing."""
        self._print(render_response(response))

    @hookimpl
    async def spacebot_ack(self, message: InboundMessage, outcome: str) -> None:
        """Forget the line; a line the agent gave up on is said so."""
        self._pending.pop(int(message.metadata.get("line", 0)), None)
        if outcome == "failed":
            self._print(f"[could not answer: {message.text}]")
        elif outcome not in ("answered", "ignored"):
            self._print(f"[not answered ({outcome}): {message.text}]")
        self._show_prompt()
        self._stop_when_done()

    def _print(self, text: str | None) -> None:
        if text is None:
            return
        prefix = self.settings.reply_prefix
        indent = " " * len(prefix)
        lines = text.splitlines() or [""]
        rest = [indent + line if line.strip() else "" for line in lines[1:]]
        body = "\n".join([prefix + lines[0], *rest])
        output = self._output()
        output.write(body + "\n")
        output.flush()

    def _show_prompt(self) -> None:
        if self.interactive and not self._eof and self.settings.prompt:
            output = self._output()
            output.write(self.settings.prompt)
            output.flush()

    def _stop_when_done(self) -> None:
        """At the end of input with every line answered, stop as Ctrl-C would."""
        if not (self._eof and not self._pending and self.settings.stop_on_eof):
            return
        if self._stop_requested:
            return
        self._stop_requested = True
        if _runtime_handles(signal.SIGTERM):
            self.log.info("[%s] end of input; stopping", self.runtime_key)
            signal.raise_signal(signal.SIGTERM)


def _runtime_handles(signal_number: int) -> bool:
    """Whether a handler is installed for ``signal_number`` (``spacebot run`` installs one).

    Without one (``run --once``, a test) the signal would kill the process, so it is
    not sent: the cycle ends by itself there.
    """
    return signal.getsignal(signal_number) not in (signal.SIG_DFL, signal.SIG_IGN, None)


def render_response(response: AnyResponse) -> str | None:
    """How a terminal shows one response; None for what it does not show at all."""
    if isinstance(response, TEXT_RESPONSES):
        return response.text
    if isinstance(response, OutboundResponse.File):
        note = f"[file {response.filename}, {response.mime_type}, {len(response.data)} bytes]"
        return f"{response.caption}\n{note}" if response.caption else note
    if isinstance(response, OutboundResponse.Reaction):
        return f"[reacts {response.emoji}]"
    if isinstance(response, OutboundResponse.StreamChunk):
        return response.text
    # Status, stream start and end, removed reactions: nothing a reader needs to see.
    return None


def _new_session_id() -> str:
    """A session id that sorts by time and does not repeat."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


@hookimpl
def spacebot_register_adapters(register: Callable[[str, type], None]) -> None:
    """Register the ``console`` channel."""
    register(CHANNEL, ConsoleAdapter)
