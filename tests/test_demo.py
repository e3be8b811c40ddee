"""``spacebot demo``, the README's first command, run as a newcomer runs it.

The demo is started as a separate process, exactly like the installed ``spacebot``
script, and judged by what it prints and, with ``--serve``, by what a mail client
connecting to it sees.
"""

from __future__ import annotations

import email
import imaplib
import os
import queue
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest

DEMO_COMMAND = [sys.executable, "-m", "spacebot_core.cli", "demo"]
DEMO_TIMEOUT = 30.0
"""Seconds the one-shot demo may take (it takes about half a second)."""
REPLY_TIMEOUT = 15.0
"""Seconds a reply may take with --serve (the bot polls every 5 s)."""
NET_TIMEOUT = 10.0


def _demo_environment() -> dict[str, str]:
    return {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}


def _header(output: str, section: str, name: str) -> str:
    """The value of header ``name`` in the printed mail after the line ``section``."""
    after = output[output.index(section) :]
    match = re.search(rf"^\W*{re.escape(name)}:\s+(\S.*)$", after, re.MULTILINE)
    assert match, f"no {name} under {section!r} in:\n{output}"
    return match.group(1).strip()


def test_demo_shows_the_mail_and_its_threaded_reply(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        DEMO_COMMAND,
        cwd=tmp_path,
        env=_demo_environment(),
        capture_output=True,
        encoding="utf-8",
        timeout=DEMO_TIMEOUT,
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    assert result.stderr == "", "the default output must stay clean"
    output = result.stdout
    original_subject = _header(output, "[Sent]", "Subject")
    original_id = _header(output, "[Sent]", "Message-ID")
    assert _header(output, "[Sent]", "From") == "You <you@spacebot.demo>"
    assert _header(output, "[Sent]", "To") == "Spacebot <bot@spacebot.demo>"
    assert _header(output, "reply [INBOX]", "From") == "Spacebot <bot@spacebot.demo>"
    assert _header(output, "reply [INBOX]", "To") == "You <you@spacebot.demo>"
    assert _header(output, "reply [INBOX]", "Subject") == f"Re: {original_subject}"
    assert _header(output, "reply [INBOX]", "In-Reply-To") == original_id
    assert _header(output, "reply [INBOX]", "Message-ID") != original_id
    assert "> Could you tell me where it is?" in output  # the echo agent quoted the body
    assert output.rstrip().splitlines()[-1].startswith("Threaded: ")
    assert elapsed < 10


class _DemoServer:
    """A running ``spacebot demo --serve`` whose output is read line by line."""

    def __init__(self, cwd: Path) -> None:
        self.process = subprocess.Popen(
            [*DEMO_COMMAND, "--serve"],
            cwd=cwd,
            env=_demo_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            encoding="utf-8",
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def output_until(self, marker: str, timeout: float) -> str:
        """Everything printed up to the line containing ``marker``."""
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while not seen or marker not in seen[-1]:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"no {marker!r} within {timeout} s; printed:\n{''.join(seen)}")
            if line is None:
                _, errors = self.process.communicate(timeout=NET_TIMEOUT)
                pytest.fail(f"the demo ended early; printed:\n{''.join(seen)}\n{errors}")
            seen.append(line)
        return "".join(seen)


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[_DemoServer]:
    """``spacebot demo --serve`` running; killed after the test if it is still up."""
    server = _DemoServer(tmp_path)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate(timeout=NET_TIMEOUT)


def _client_settings(output: str) -> dict[str, str]:
    """The printed IMAP and SMTP settings, as ``imap_port``, ``smtp_username``, ..."""
    settings: dict[str, str] = {}
    prefix = ""
    for line in output.splitlines():
        if "(IMAP)" in line or "(SMTP)" in line:
            prefix = "imap_" if "(IMAP)" in line else "smtp_"
        elif prefix and (match := re.match(r"^\s+(\w+):\s+(\S+)", line)):
            settings[prefix + match.group(1)] = match.group(2)
    return settings


def _wait_for_reply(settings: dict[str, str], original_id: str) -> EmailMessage:
    """The reply to ``original_id`` from the INBOX, polled over IMAP."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while time.monotonic() < deadline:
        with imaplib.IMAP4(
            settings["imap_server"], int(settings["imap_port"]), timeout=NET_TIMEOUT
        ) as imap:
            imap.login(settings["imap_username"], settings["imap_password"])
            imap.select("INBOX", readonly=True)
            _, found = imap.search(None, "HEADER", "In-Reply-To", original_id)
            if found[0]:
                number = found[0].split()[-1]
                _, data = imap.fetch(number, "(BODY.PEEK[])")
                raw = data[0][1]
                assert isinstance(raw, bytes)
                message = email.message_from_bytes(raw, policy=policy.default)
                assert isinstance(message, EmailMessage)
                return message
        time.sleep(0.5)
    pytest.fail(f"no reply to {original_id} within {REPLY_TIMEOUT} s")


def test_demo_serve_answers_a_mail_client_until_ctrl_c(demo_server: _DemoServer) -> None:
    output = demo_server.output_until("Ctrl-C", timeout=DEMO_TIMEOUT)
    settings = _client_settings(output)
    assert settings["imap_username"] == settings["smtp_username"] == "you@spacebot.demo"
    assert settings["imap_security"] == settings["smtp_security"] == "none"

    mail = EmailMessage()
    mail["From"] = settings["smtp_username"]
    mail["To"] = "bot@spacebot.demo"
    mail["Subject"] = "Written in my own mail client"
    mail["Message-ID"] = original_id = make_msgid(domain="client.example")
    mail.set_content("Do you answer me too?")
    with smtplib.SMTP(
        settings["smtp_server"], int(settings["smtp_port"]), timeout=NET_TIMEOUT
    ) as smtp:
        smtp.login(settings["smtp_username"], settings["smtp_password"])
        smtp.send_message(mail)

    reply = _wait_for_reply(settings, original_id)
    assert reply["Subject"] == "Re: Written in my own mail client"
    assert reply["In-Reply-To"] == original_id
    assert "> Do you answer me too?" in reply.get_content()

    demo_server.process.send_signal(signal.SIGINT)
    assert demo_server.process.wait(timeout=5) == 0
