"""The bench's servers, all on 127.0.0.1: the test Dovecot, an SMTP sink and a delay proxy
(each of the last two a process of its own), and mailboxes filled with a backlog."""

from __future__ import annotations

import imaplib
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

import attrs

from bench.mailgen import Backlog, fill_maildir
from spacebot_email.testing import Account, DovecotServer, free_port

#: Seconds a helper process has to say it is ready.
READY_TIMEOUT = 20.0
REPO = Path(__file__).resolve().parent.parent


def _start_helper(module: str, *arguments: str) -> subprocess.Popen[str]:
    """Start ``python -m bench.<module>`` and wait for its ``ready`` line."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"bench.{module}", *arguments],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # the helpers print "ready" within a second
    if line.strip() != "ready":
        process.kill()
        raise RuntimeError(f"bench.{module} did not start: {line!r}")
    return process


def _stop_helper(process: subprocess.Popen[str]) -> None:
    process.terminate()
    try:
        process.wait(READY_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(READY_TIMEOUT)


@attrs.define
class SmtpSink:
    """The SMTP server replies go to; counts them and knows when each arrived."""

    log: Path
    port: int = attrs.field(factory=free_port)
    process: subprocess.Popen[str] | None = None

    def start(self) -> SmtpSink:
        """Start the sink process."""
        self.log.write_text("")
        self.process = _start_helper("smtp_sink", "--port", str(self.port), "--log", str(self.log))
        return self

    def stop(self) -> None:
        """Stop the sink process."""
        if self.process is not None:
            _stop_helper(self.process)
            self.process = None

    def arrivals(self) -> dict[str, float]:
        """When the reply to each Message-ID arrived (unix time)."""
        found: dict[str, float] = {}
        for line in self.log.read_text().splitlines():
            stamp, _, answered = line.partition(" ")
            found.setdefault(answered, float(stamp))
        return found

    def count(self) -> int:
        """How many mails arrived."""
        with self.log.open("rb") as log:
            return sum(1 for _ in log)


@attrs.define
class DelayProxy:
    """Adds ``rtt_ms`` of round trip to connections to the given loopback ports."""

    rtt_ms: float
    targets: list[int]
    ports: dict[int, int] = attrs.field(factory=dict)
    process: subprocess.Popen[str] | None = None

    def start(self) -> DelayProxy:
        """Start the proxy process: one listening port per target port."""
        self.ports = {target: free_port() for target in self.targets}
        routes = [f"--route={port}:127.0.0.1:{target}" for target, port in self.ports.items()]
        self.process = _start_helper("delay_proxy", f"--delay-ms={self.rtt_ms / 2}", *routes)
        return self

    def stop(self) -> None:
        """Stop the proxy process."""
        if self.process is not None:
            _stop_helper(self.process)
            self.process = None


def new_mailbox(dovecot: DovecotServer, backlog: Backlog, count: int) -> Account:
    """A new account whose INBOX holds the first ``count`` mails of ``backlog``, unseen.

    Dovecot indexes them here (one SELECT), outside any timed part: a mailbox with a
    backlog is indexed already when a bot meets it.
    """
    account = dovecot.new_account("bot")
    user = pwd.getpwuid(os.stat(dovecot.mail_dir).st_uid)
    maildir = dovecot.mail_dir / account.address / "Maildir"
    fill_maildir(backlog, maildir, user.pw_uid, user.pw_gid, limit=count)
    with dovecot.imap_session(account, timeout=600) as imap:
        imap.select("INBOX")
    return account


def unseen_count(dovecot: DovecotServer, account: Account) -> int:
    """How many mails in INBOX are not seen."""
    with dovecot.imap_session(account, timeout=600) as imap:
        _, data = imap.status("INBOX", "(UNSEEN)")
    return int(data[0].split(b"UNSEEN")[1].strip(b" )"))


def measure_rtt(port: int, samples: int = 20) -> float:
    """The median round trip of an IMAP NOOP to ``port``, in milliseconds."""
    imap = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            imap.noop()
            times.append((time.perf_counter() - start) * 1000)
    finally:
        imap.shutdown()
    return sorted(times)[len(times) // 2]
