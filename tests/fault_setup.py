"""Helpers for the fault-injection tests: a ``spacebot run`` process to kill, a relay
that notes every answer it delivered, mailbox counts, and a watcher of the order in
which answers and ``\\Seen`` flags appear.

Everything here reads the servers from outside, as a person's mail client would: the
counts are what the mailboxes hold, not what the bot believes.
"""

from __future__ import annotations

import email
import email.utils
import imaplib
import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from email_setup import instance_keys, mail_from

from spacebot_email.testing import Account, CertFiles, DovecotError, DovecotServer, SmtpRelay

SPACEBOT = str(Path(sys.executable).with_name("spacebot"))

#: Reply caps high enough that a backlog from one sender is answered, not held.
NO_REPLY_CAPS = {
    "max_replies_per_sender_per_hour": 100_000,
    "max_replies_per_thread_per_hour": 100_000,
}

#: What a mailbox read may raise while a server is down or restarting.
SERVER_DOWN = (OSError, imaplib.IMAP4.error, DovecotError, smtplib.SMTPException)

_UID = re.compile(rb"UID (\d+)")
_FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def fault_config(
    tmp_path: Path,
    dovecot: DovecotServer,
    relay: SmtpRelay,
    bot: Account,
    certs: CertFiles,
    *,
    email_keys: str = "",
    agents: str = "",
    runtime: dict[str, object] | None = None,
) -> Path:
    """Write ``config.toml``: one instance on the test servers, and a ``[runtime]`` table.

    :param email_keys: more lines for ``[messaging.email]``.
    :param agents: ``[[agents]]`` tables, as TOML.
    :param runtime: ``[runtime]`` keys beside ``state_dir = "state"`` and `NO_REPLY_CAPS`.
    """
    table = {"state_dir": "state", **NO_REPLY_CAPS, **(runtime or {})}
    lines = [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    path = tmp_path / "config.toml"
    path.write_text(
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + email_keys
        + "\n"
        + agents
        + "\n[runtime]\n"
        + "\n".join(lines)
        + "\n"
    )
    return path


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def deliver_backlog(
    dovecot: DovecotServer,
    sender: Account,
    recipient: Account,
    count: int,
    *,
    start: int = 0,
    body: Callable[[int], str] = lambda number: f"Backlog mail number {number}.",
) -> list[str]:
    """Deliver ``count`` mails from ``sender`` over one LMTP session; returns their Message-IDs."""
    ids = []
    with smtplib.LMTP(dovecot.host, dovecot.lmtp_port, timeout=30) as lmtp:
        for number in range(start, start + count):
            message_id, raw = mail_from(sender, recipient, f"Backlog {number}", body(number))
            lmtp.sendmail(sender.address, [recipient.address], raw)
            ids.append(message_id)
    return ids


def freeze_dovecot(dovecot: DovecotServer) -> None:
    """SIGSTOP every Dovecot process: connections stay open and nothing answers.

    `DovecotServer.stop` kills them later all the same (SIGKILL works on stopped
    processes), so a freeze followed by a stop is a server that hangs, then dies.
    """
    master = int((dovecot.directory / "run" / "master.pid").read_text().strip())
    os.killpg(master, signal.SIGSTOP)


def _headers(raw: bytes) -> email.message.Message:
    """The headers of a mail; the compat32 parser, as the watcher reads 600 mails a round."""
    return email.message_from_bytes(raw)


def _header(headers: email.message.Message, name: str) -> str:
    return str(headers.get(name) or "").strip()


def _address(value: str) -> str:
    return email.utils.parseaddr(value)[1].lower()


def mailbox_headers(
    dovecot: DovecotServer, account: Account, *, timeout: float = 10.0
) -> list[tuple[frozenset[str], email.message.Message]]:
    """(flags, headers) of every message in the INBOX, read-only, without bodies."""
    fields = "FROM MESSAGE-ID IN-REPLY-TO"
    with dovecot.imap_session(account, timeout=timeout) as imap:
        typ, data = imap.select("INBOX", readonly=True)
        if typ != "OK":
            raise DovecotError(f"EXAMINE INBOX failed: {data!r}")
        typ, data = imap.uid("FETCH", "1:*", f"(UID FLAGS BODY.PEEK[HEADER.FIELDS ({fields})])")
        if typ != "OK":
            raise DovecotError(f"FETCH failed: {data!r}")
    found = []
    for index, item in enumerate(data):
        if not isinstance(item, tuple):
            continue
        prefix, literal = item
        following = data[index + 1] if index + 1 < len(data) else b""
        flags = _FLAGS.search(prefix) or _FLAGS.search(
            following if isinstance(following, bytes) else b""
        )
        if _UID.search(prefix) is None or flags is None:
            raise DovecotError(f"unexpected FETCH response {prefix!r}")
        names = frozenset(flags.group(1).decode().split()) - {"\\Recent"}
        found.append((names, _headers(literal)))
    return found


def answers_by_original(dovecot: DovecotServer, account: Account) -> Counter[str]:
    """How many answers ``account``'s INBOX holds for each original, by In-Reply-To."""
    return Counter(
        str(headers["In-Reply-To"] or "").strip()
        for _, headers in mailbox_headers(dovecot, account)
    )


def originals_flags(
    dovecot: DovecotServer, mailbox: Account, sender: Account
) -> dict[str, frozenset[str]]:
    """Message-ID to flags of the mails from ``sender`` in ``mailbox`` (not the bot's copies)."""
    return {
        _header(headers, "Message-ID"): flags
        for flags, headers in mailbox_headers(dovecot, mailbox)
        if _address(_header(headers, "From")) == sender.address.lower()
    }


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` passes (False).

    A server that is down while it is asked counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return True
        except SERVER_DOWN:
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class AnswerLog:
    """A relay's ``deliver`` that notes each answer once the SMTP server has accepted it.

    By default a delivery goes straight into Dovecot and is noted once Dovecot has it,
    before the relay says ``250`` to the bot: so an original the bot marks ``\\Seen``
    must already be noted here.

    With ``queued``, it behaves like a production mail server, whose queue does not
    depend on the mailbox server: every mail is accepted at once, queued, and delivered
    in the background, again and again while Dovecot is down (a retry first looks for
    the Message-ID, in case Dovecot stored the mail but died before saying so). Without
    this, a Dovecot crash makes the test relay say ``451`` to the bot for a reply it had
    already delivered to one of its two recipients: a duplicate no client can avoid.
    """

    def __init__(self, dovecot: DovecotServer, recipient: Account, *, queued: bool = False) -> None:
        self._dovecot = dovecot
        self._recipient = recipient.address.lower()
        self._queued = queued
        self._lock = threading.Lock()
        self._queue: list[tuple[str, bytes, str]] = []
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self.delivered: Counter[str] = Counter()
        self.copies = 0
        self.retried = 0

    def deliver(self, recipient: str, raw: bytes, *, sender: str) -> None:
        """Deliver through LMTP (or queue it), then note the answer or the bot's own copy."""
        if self._queued:
            self._enqueue(recipient, raw, sender)
        else:
            self._dovecot.deliver(recipient, raw, sender=sender)
        with self._lock:
            if recipient.lower() == self._recipient:
                self.delivered[_header(_headers(raw), "In-Reply-To")] += 1
            else:
                self.copies += 1

    def _enqueue(self, recipient: str, raw: bytes, sender: str) -> None:
        with self._lock:
            self._queue.append((recipient, raw, sender))
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._deliver_queue, name="answer-queue", daemon=True
                )
                self._worker.start()

    def _deliver_queue(self) -> None:
        failed = False
        while not self._stopping.is_set():
            with self._lock:
                item = self._queue[0] if self._queue else None
            if item is None:
                self._stopping.wait(0.05)
                continue
            recipient, raw, sender = item
            try:
                if not (failed and self._stored(recipient, raw)):
                    self._dovecot.deliver(recipient, raw, sender=sender, timeout=3)
            except SERVER_DOWN:
                failed = True
                self.retried += 1
                self._stopping.wait(0.2)
                continue
            failed = False
            with self._lock:
                self._queue.pop(0)

    def _stored(self, recipient: str, raw: bytes) -> bool:
        message_id = _header(_headers(raw), "Message-ID")
        with self._dovecot.imap_session(recipient, timeout=3) as imap:
            imap.select("INBOX", readonly=True)
            typ, data = imap.uid("SEARCH", "HEADER", "Message-ID", f'"{message_id}"')
        return typ == "OK" and bool(data and data[0] and data[0].split())

    def pending(self) -> int:
        """Deliveries still queued."""
        with self._lock:
            return len(self._queue)

    def close(self) -> None:
        """Stop the queue's worker (what is still queued is dropped)."""
        self._stopping.set()
        if self._worker is not None:
            self._worker.join(10)

    def answered(self) -> set[str]:
        """The originals answered so far (In-Reply-To of each accepted answer)."""
        with self._lock:
            return set(self.delivered)

    def count(self) -> int:
        """How many answers were accepted so far."""
        with self._lock:
            return sum(self.delivered.values())


class SeenOrderWatcher(threading.Thread):
    """Checks, over and over while the bot runs, that no original is ``\\Seen`` unanswered.

    Each round reads the originals' flags first and the `AnswerLog` after: an original
    seen at the first read must have had its answer delivered before that read.
    """

    def __init__(
        self, dovecot: DovecotServer, mailbox: Account, sender: Account, answers: AnswerLog
    ) -> None:
        super().__init__(name="seen-order-watcher", daemon=True)
        self._dovecot, self._mailbox, self._sender = dovecot, mailbox, sender
        self._answers = answers
        self._stopping = threading.Event()
        self.rounds = 0
        self.unreadable = 0
        self.seen_before_answered: set[str] = set()
        self.max_answered_not_seen = 0

    def run(self) -> None:
        """Take rounds until stopped."""
        while not self._stopping.is_set():
            try:
                flags = originals_flags(self._dovecot, self._mailbox, self._sender)
            except SERVER_DOWN:
                self.unreadable += 1
                self._stopping.wait(0.1)
                continue
            answered = self._answers.answered()
            seen = {message_id for message_id, names in flags.items() if "\\Seen" in names}
            self.seen_before_answered |= seen - answered
            self.max_answered_not_seen = max(self.max_answered_not_seen, len(answered - seen))
            self.rounds += 1
            self._stopping.wait(0.1)

    def __enter__(self) -> SeenOrderWatcher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stopping.set()
        self.join(30)


class BotProcess:
    """``spacebot run`` as a child process, started again after each kill.

    Each run logs into a file of its own (``run-N.log``), read to see what it did.
    """

    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    @property
    def alive(self) -> bool:
        """Whether the current run is still running."""
        return self.process is not None and self.process.poll() is None

    def start(self, *arguments: str) -> None:
        """Start one more run (the previous one must have ended)."""
        assert not self.alive, "the previous run is still going"
        log = self.log_dir / f"run-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [SPACEBOT, "--config", str(self.config), "run", *arguments],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def log_text(self, run: int = -1) -> str:
        """What one run logged (the current one by default)."""
        return self.logs[run].read_text(errors="replace") if self.logs else ""

    def all_logs(self) -> str:
        """Everything every run logged, in order."""
        return "".join(log.read_text(errors="replace") for log in self.logs)

    def wait_for_log(self, text: str, timeout: float, *, count: int = 1) -> None:
        """Wait until the current run logged ``text`` ``count`` times."""
        deadline = time.monotonic() + timeout
        while self.log_text().count(text) < count:
            if not self.alive:
                pytest.fail(f"spacebot exited before logging {text!r}:\n{self.log_text()}")
            if time.monotonic() >= deadline:
                pytest.fail(f"spacebot did not log {text!r} in {timeout} s:\n{self.tail()}")
            time.sleep(0.01)

    def wait_until(
        self, condition: Callable[[], bool], timeout: float, interval: float = 0.25
    ) -> bool:
        """`wait_until`, but a run that exits meanwhile fails the test at once, with its log."""

        def done() -> bool:
            if not self.alive:
                pytest.fail(f"spacebot exited (status {self.process.returncode}):\n{self.tail()}")
            return condition()

        return wait_until(done, timeout, interval)

    def stop(self, timeout: float = 30.0) -> int:
        """Stop the current run as a service manager would, once it is up: its exit status.

        A SIGTERM during the interpreter's own start-up (before any of spacebot's code
        runs) ends any Python program with the default action, so wait for the login.
        """
        self.wait_for_log("connected to", timeout)
        return self.terminate(timeout)

    def kill(self) -> None:
        """SIGKILL the current run, like a power cut for this process."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM the current run and return its exit status."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        """The end of the current run's log, for failure messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> BotProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.alive:
            self.kill()


def summary(
    capsys: pytest.CaptureFixture[str],
    record_property: Callable[[str, object], None],
    label: str,
    counts: dict[str, object],
    text: str,
) -> str:
    """Show a test's counts on the terminal (even under ``-q``) and in the JUnit report."""
    for name, value in counts.items():
        record_property(name, value)
    line = f"fault-injection ({label}): {text}"
    with capsys.disabled():
        print(f"\n{line}", flush=True)
    return line


def exactly_once_counts(
    dovecot: DovecotServer, bot: Account, alice: Account, ids: Iterable[str]
) -> dict[str, int]:
    """The counts item 7 asks for, read from the mailboxes: answered once, twice, missing, seen."""
    expected = set(ids)
    answers = answers_by_original(dovecot, alice)
    flags = originals_flags(dovecot, bot, alice)
    return {
        "mails": len(expected),
        "answered_once": sum(1 for i in expected if answers[i] == 1),
        "answered_more": sum(1 for i in expected if answers[i] > 1),
        "missing": sum(1 for i in expected if answers[i] == 0),
        "stray_answers": sum(n for i, n in answers.items() if i not in expected),
        "seen": sum(1 for i in expected if "\\Seen" in flags.get(i, ())),
    }
