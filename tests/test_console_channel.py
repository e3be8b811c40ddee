"""The console channel: ``spacebot run`` in a terminal, one conversation per session.

Each test runs the installed ``spacebot`` command as a person would, with a console
config, typing lines on its standard input and reading the answers on its output.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from spacebot_contrib.console import ConsoleAdapter, ConsoleLine, ConsoleSettings, render_response
from spacebot_core.types import OutboundResponse
from tests.core_fixtures import SPACEBOT
from tests.distribution import subprocess_env

TIMEOUT_SECS = 20.0


def console_config(directory: Path, extra: str = "") -> Path:
    path = directory / "config.toml"
    path.write_text(
        f'[runtime]\nstate_dir = "{directory / "state"}"\n\n[messaging.console]\n{extra}\n',
        encoding="utf-8",
    )
    return path


class Terminal:
    """A running ``spacebot run``: type lines, read what it prints."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [SPACEBOT, "--config", str(config), "run"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=subprocess_env(PYTHONUNBUFFERED="1"),
            text=True,
        )
        self.output: queue.Queue[str] = queue.Queue()
        self.seen = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.put(line)

    def type(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def wait_for(self, text: str) -> str:
        """Everything printed until ``text`` appears."""
        deadline = time.monotonic() + TIMEOUT_SECS
        while text not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{text!r} never printed; got {self.seen!r}"
            with contextlib.suppress(queue.Empty):
                self.seen += self.output.get(timeout=remaining)
        return self.seen

    def close_input(self) -> int:
        assert self.process.stdin is not None
        self.process.stdin.close()
        return self.process.wait(TIMEOUT_SECS)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT_SECS)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    session = Terminal(console_config(tmp_path))
    try:
        yield session
    finally:
        session.stop()


def test_lines_typed_are_answered_in_one_conversation(terminal: Terminal) -> None:
    terminal.type("hello there")
    first = terminal.wait_for("> hello there")
    terminal.type("and again")
    both = terminal.wait_for("(message 2 of this conversation)")

    assert first.startswith("bot> Hello! This is spacebot. You wrote:")
    assert "> and again" in both
    assert terminal.close_input() == 0  # Ctrl-D: the end of input stops spacebot


def test_ctrl_c_stops_it_cleanly(terminal: Terminal) -> None:
    terminal.type("hello")
    terminal.wait_for("> hello")

    terminal.process.send_signal(signal.SIGINT)

    assert terminal.process.wait(TIMEOUT_SECS) == 0


def test_each_session_is_a_new_conversation(tmp_path: Path) -> None:
    config = console_config(tmp_path)

    def session(text: str) -> str:
        result = subprocess.run(
            [SPACEBOT, "--config", str(config), "run"],
            input=text,
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=TIMEOUT_SECS,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = session("one\ntwo\n")
    second = session("three, without a newline at the end")

    assert "(message 2 of this conversation)" in first
    assert "> three, without a newline at the end" in second
    assert "of this conversation" not in second


def test_a_line_the_agent_gives_up_on_is_said_so(tmp_path: Path) -> None:
    config = console_config(tmp_path)
    agent = f'command = ["{sys.executable}", "-c", "exit(1)"]'
    config.write_text(
        config.read_text().replace('state"\n', 'state"\nmax_attempts = 1\n')
        + f'[[agents]]\nid = "main"\nkind = "command"\n{agent}\n',
        encoding="utf-8",
    )

    result = subprocess.run(
        [SPACEBOT, "--config", str(config), "run"],
        input="please answer\n",
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=TIMEOUT_SECS,
    )

    assert result.returncode == 0, result.stderr
    assert "[could not answer: please answer]" in result.stdout


def test_responses_a_terminal_cannot_show_are_described_or_left_out() -> None:
    assert render_response(OutboundResponse.Text("hi")) == "hi"
    file = OutboundResponse.File("a.pdf", b"12345", "application/pdf", caption="Here")
    assert render_response(file) == "Here\n[file a.pdf, application/pdf, 5 bytes]"
    assert render_response(OutboundResponse.Reaction("👍")) == "[reacts 👍]"
    assert render_response(OutboundResponse.Status("typing")) is None


def test_a_line_keeps_its_id_across_polls_and_belongs_to_the_session() -> None:
    console = ConsoleAdapter("console", ConsoleSettings(sender="ada"))
    line = ConsoleLine(3, "hi", datetime.now(UTC))

    first = console.spacebot_normalize_inbound(line)
    again = console.spacebot_normalize_inbound(line)

    assert first == again
    assert first is not None
    assert first.id == f"{console.session}/3"
    assert first.conversation_id == console.conversation_id
    assert (first.sender_id, first.source, first.adapter) == ("ada", "console", "console")
    assert ConsoleAdapter("console", ConsoleSettings()).session != console.session


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_prompt_is_shown_on_a_terminal_only(tmp_path: Path) -> None:
    controller, device = os.openpty()
    try:
        process = subprocess.Popen(
            [SPACEBOT, "--config", str(console_config(tmp_path)), "run"],
            stdin=device,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=subprocess_env(),
        )
        os.write(controller, b"hi\n\x04")  # a line, then Ctrl-D
        output, _ = process.communicate(timeout=TIMEOUT_SECS)
    finally:
        os.close(controller)
        os.close(device)

    assert output.decode().startswith("you> bot> Hello!")
