"""A private Dovecot IMAP server on loopback, for tests and the demo.

`DovecotServer` writes its own configuration into a directory of its own (sockets, state,
log and mail all stay inside it) and runs ``dovecot -F`` on free ports of 127.0.0.1:

- plain IMAP, which also offers STARTTLS (``imap_port``),
- IMAPS, TLS from the first byte (``imaps_port``),
- LMTP, to deliver mail the way a mail server would (``lmtp_port``).

Users are added at runtime, one passwd-file per user, so every test can have fresh
accounts without a restart. Helpers read and write mailboxes with the standard library
(imaplib, smtplib), synchronously: they are for setting up and checking, not for the
code under test. The server targets Dovecot 2.3 configuration syntax.

Running as root, Dovecot refuses root for its login processes and passwd-file refuses
uid 0, so mail users and the login user are ``nobody``; run as another user, everything
runs as that user.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import grp
import imaplib
import itertools
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import attrs

from spacebot_email.testing.certs import CertFiles, make_certs

log = logging.getLogger(__name__)

MISSING_HINT = "run the README's test command, which installs it"
"""What to tell a developer whose machine lacks the Dovecot packages."""

DEFAULT_TIMEOUT = 10.0
"""Seconds any single network or process wait may take before it is an error."""

STOP_GRACE = 2.0
"""Seconds a graceful `DovecotServer.stop` waits for Dovecot before killing it."""

DEFAULT_SENDER = "sender@example.com"
"""Envelope sender of `DovecotServer.deliver` when none is given."""

_LIBEXEC_CANDIDATES = ("lib/dovecot", "libexec/dovecot")
_ADDRESS_RE = re.compile(r"^[A-Za-z0-9._@-]+$")
_APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]")
_FETCH_UID_RE = re.compile(rb"UID (\d+)")
_FETCH_FLAGS_RE = re.compile(rb"FLAGS \(([^)]*)\)")


class DovecotError(Exception):
    """The test Dovecot could not be started, stopped or used."""


class DovecotNotInstalled(DovecotError):
    """A Dovecot package the test servers need is not installed."""


@attrs.frozen
class Account:
    """A mailbox user: the login is the address.

    :ivar address: the login name and mail address, e.g. ``bot-3@example.com``.
    :ivar password: the plaintext password (not shown in ``repr``).
    """

    address: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class MailAccounts:
    """The two fresh accounts most tests need.

    :ivar bot: the account the agent's adapter logs into.
    :ivar alice: a human who writes to the bot and reads its replies.
    """

    bot: Account
    alice: Account


@attrs.frozen
class StoredMessage:
    """One message as it is stored in a mailbox.

    :ivar uid: its IMAP UID in the folder.
    :ivar flags: its flags, e.g. ``frozenset({"\\\\Seen"})``; ``\\Recent`` is left out, as
        it belongs to an IMAP session, not to the message.
    :ivar raw: the full message as stored (Dovecot's LMTP adds Return-Path and
        Received headers at the top).
    """

    uid: int
    flags: frozenset[str]
    raw: bytes

    @property
    def seen(self) -> bool:
        """Whether the message carries the ``\\Seen`` flag."""
        return "\\Seen" in self.flags


@attrs.frozen
class DovecotInstall:
    """Where the Dovecot programs are.

    :ivar binary: the ``dovecot`` master program.
    :ivar version: its version, e.g. ``(2, 3, 19)``.
    """

    binary: Path
    version: tuple[int, ...]


def locate_dovecot() -> DovecotInstall:
    """Find the Dovecot master, its IMAP and LMTP programs, and check the version.

    :raises DovecotNotInstalled: when ``dovecot-imapd`` or ``dovecot-lmtpd`` is missing.
    :raises DovecotError: when the version is not 2.3 (the configuration's syntax).
    """
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise DovecotNotInstalled(f"dovecot-imapd is missing: {MISSING_HINT}")
    binary = Path(found)
    prefix = binary.resolve().parent.parent
    libexec = [prefix / candidate for candidate in _LIBEXEC_CANDIDATES]
    for program, package in (("imap", "dovecot-imapd"), ("lmtp", "dovecot-lmtpd")):
        if not any((directory / program).exists() for directory in libexec):
            raise DovecotNotInstalled(f"{package} is missing: {MISSING_HINT}")
    version = _dovecot_version(binary)
    if version[:2] != (2, 3):
        raise DovecotError(
            f"Dovecot {'.'.join(map(str, version))} found; the test server writes"
            " Dovecot 2.3 configuration: install Dovecot 2.3 (Debian 12's dovecot-imapd)"
        )
    return DovecotInstall(binary=binary, version=version)


def _dovecot_version(binary: Path) -> tuple[int, ...]:
    """The version ``dovecot --version`` reports, as numbers."""
    output = subprocess.run(
        [str(binary), "--version"],
        capture_output=True,
        text=True,
        check=True,
        timeout=DEFAULT_TIMEOUT,
    ).stdout
    match = re.match(r"(\d+(?:\.\d+)*)", output.strip())
    if match is None:
        raise DovecotError(f"cannot read the version of {binary}: {output!r}")
    return tuple(int(part) for part in match.group(1).split("."))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now.

    The port is found by binding port 0 and closing the socket, so another program
    could take it before it is used; on a test machine that does not happen in practice.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@attrs.frozen
class _Identity:
    """The uid/gid and names Dovecot's processes and mail files run as."""

    mail_user: str
    mail_uid: int
    mail_gid: int
    internal_user: str
    internal_group: str

    @classmethod
    def for_current_process(cls) -> _Identity:
        """``nobody`` for mail and logins when running as root, else the current user."""
        me = pwd.getpwuid(os.geteuid())
        my_group = grp.getgrgid(os.getegid()).gr_name
        if os.geteuid() != 0:
            return cls(me.pw_name, me.pw_uid, me.pw_gid, me.pw_name, my_group)
        nobody = pwd.getpwnam("nobody")
        return cls("nobody", nobody.pw_uid, nobody.pw_gid, me.pw_name, my_group)


class DovecotServer:
    """A private Dovecot instance on loopback, with helpers to fill and read mailboxes.

    Typical use::

        server = DovecotServer(certs=make_certs(tmp / "certs"))
        server.start()
        try:
            bot = server.new_account("bot")
            server.deliver(bot.address, b"Subject: hi\\r\\n\\r\\nhello\\r\\n")
            assert len(server.fetch_all(bot)) == 1
        finally:
            server.close()

    The ports are chosen when the object is made and stay the same across `stop` and
    `start`, as does the mail, so a test can take the server away and bring it back.

    :param directory: where configuration, sockets, state, log and mail live; a new
        temporary directory (removed by `close`) when omitted. When running as root,
        it and its parents must be traversable by ``nobody``.
    :param certs: the certificate for IMAPS and STARTTLS; a fresh one when omitted.
    :param host: the loopback address to listen on.
    :param oauth2_introspection_url: when given, users may also log in with XOAUTH2 or
        OAUTHBEARER: Dovecot's ``oauth2`` passdb sends the client's token to this
        introspection endpoint (``GET`` with ``Authorization: Bearer``, see
        `spacebot_email.testing.token_service`) and lets in the user it names. Passwords
        keep working for every user.
    """

    def __init__(
        self,
        directory: Path | None = None,
        *,
        certs: CertFiles | None = None,
        host: str = "127.0.0.1",
        oauth2_introspection_url: str | None = None,
    ) -> None:
        self._install = locate_dovecot()
        self.oauth2_introspection_url = oauth2_introspection_url
        self._owns_directory = directory is None
        self.directory = (
            Path(tempfile.mkdtemp(prefix="spacebot-dovecot-")) if directory is None else directory
        )
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)
        self.certs = certs if certs is not None else make_certs(self.directory / "certs")
        self.host = host
        self.imap_port = free_port(host)
        self.imaps_port = free_port(host)
        self.lmtp_port = free_port(host)
        self._identity = _Identity.for_current_process()
        self._process: subprocess.Popen[bytes] | None = None
        self._counter = itertools.count(1)
        self._passwords: dict[str, str] = {}
        self._prepare_directory()

    # -- paths -------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        """The generated ``dovecot.conf``."""
        return self.directory / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        """Dovecot's log file (errors, logins, deliveries): read it when a test fails."""
        return self.directory / "dovecot.log"

    @property
    def stderr_path(self) -> Path:
        """What the master process printed before its log was set up (config errors)."""
        return self.directory / "dovecot.stderr"

    @property
    def users_dir(self) -> Path:
        """One passwd-file per user, named by the address."""
        return self.directory / "users"

    @property
    def mail_dir(self) -> Path:
        """The users' home directories, each holding a ``Maildir``."""
        return self.directory / "mail"

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the log and of the master's stderr."""
        parts = []
        for path in (self.stderr_path, self.log_path):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path} ---\n" + "\n".join(text))
        return "\n".join(parts)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the master process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Start Dovecot and wait until its IMAP greeting and LMTP port answer.

        :raises DovecotError: if it exits or does not answer within ``timeout``; the
            message holds the end of its log.
        """
        if self.running:
            raise DovecotError("Dovecot is already running")
        self.config_path.write_text(self._render_config())
        with self.stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                [str(self._install.binary), "-F", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
            )
        atexit.register(self._kill_at_exit)
        try:
            self._wait_until_ready(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        log.info(
            "dovecot started: imap=%s imaps=%s lmtp=%s",
            self.imap_port,
            self.imaps_port,
            self.lmtp_port,
        )

    def stop(self, timeout: float = STOP_GRACE, *, graceful: bool = True) -> None:
        """Stop Dovecot and every process it started; the mail stays. Idempotent.

        Connected clients see their connection closed. A graceful stop sends SIGTERM and
        gives Dovecot ``timeout`` seconds (it usually needs about one, but up to six
        right after a start) before SIGKILL; a stop that is not graceful kills every
        process at once, like a crash. Delivered mail survives both.
        """
        process, self._process = self._process, None
        atexit.unregister(self._kill_at_exit)
        if process is None:
            return
        if graceful and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.info("dovecot did not stop within %ss: killing it", timeout)
        _kill_process_group(process)
        process.wait(DEFAULT_TIMEOUT)

    def restart(self, *, graceful: bool = True) -> None:
        """Stop (see `stop`), then start again on the same ports with the same mail."""
        self.stop(graceful=graceful)
        self.start()

    def close(self) -> None:
        """Stop Dovecot and remove the directory if this object created it.

        A directory about to be removed needs no graceful stop, which saves a second.
        """
        self.stop(graceful=not self._owns_directory)
        if self._owns_directory:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        """Start the server for a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the server and clean up at the end of a ``with`` block."""
        self.close()

    def _kill_at_exit(self) -> None:
        """Backstop for interpreters that exit without `stop`: leave no Dovecot behind."""
        with contextlib.suppress(Exception):
            self.close()

    def _wait_until_ready(self, deadline: float) -> None:
        """Poll until IMAP greets and LMTP accepts, or raise with the log's tail."""
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise DovecotError(f"dovecot exited at start:\n{self.log_tail()}")
            try:
                self._check_ready(max(0.1, deadline - time.monotonic()))
                return
            except OSError as error:
                last_error = error
                time.sleep(0.02)
        raise DovecotError(f"dovecot did not answer in time ({last_error}):\n{self.log_tail()}")

    def _check_ready(self, timeout: float) -> None:
        """One probe: the IMAP greeting is read and the LMTP port connects."""
        with socket.create_connection((self.host, self.imap_port), timeout=timeout) as imap:
            greeting = imap.recv(1024)
            if not greeting.startswith(b"* OK"):
                raise ConnectionError(f"unexpected IMAP greeting {greeting!r}")
        with socket.create_connection((self.host, self.lmtp_port), timeout=timeout):
            pass

    # -- configuration -------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        """Create the sub-directories; mail belongs to the mail user."""
        for path in (
            self.directory / "run",
            self.directory / "state",
            self.users_dir,
            self.mail_dir,
        ):
            path.mkdir(exist_ok=True)
        os.chown(self.mail_dir, self._identity.mail_uid, self._identity.mail_gid)
        # lookup and read, no flags: see the config's ACL comment.
        (self.directory / "global-acl").write_text("ReadOnly anyone lr\n")

    def _render_config(self) -> str:
        """The Dovecot 2.3 configuration for this instance."""
        ident = self._identity
        return _CONFIG_TEMPLATE.format(
            instance=f"spacebot-test-{self.directory.name}",
            directory=self.directory,
            host=self.host,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            lmtp_port=self.lmtp_port,
            cert=self.certs.cert_chain,
            key=self.certs.key,
            internal_user=ident.internal_user,
            internal_group=ident.internal_group,
            login_user=ident.mail_user,
            uid=ident.mail_uid,
            gid=ident.mail_gid,
            users_dir=self.users_dir,
            auth_mechanisms=self._auth_mechanisms(),
            passdbs=self._passdbs(),
        )

    def _auth_mechanisms(self) -> str:
        """The SASL mechanisms offered: XOAUTH2 and OAUTHBEARER only with a token service."""
        if self.oauth2_introspection_url is None:
            return "plain login"
        return "plain login xoauth2 oauthbearer"

    def _passdbs(self) -> str:
        """Password logins from the passwd-files; token logins through the oauth2 passdb.

        Each passdb is tied to its mechanisms: without that, Dovecot would also try a
        token as a password against the passwd-file, and a password against the
        token service.
        """
        passwd_file = _PASSWD_FILE_PASSDB.format(users_dir=self.users_dir, mechanisms="")
        if self.oauth2_introspection_url is None:
            return passwd_file
        settings = self.directory / "dovecot-oauth2.conf.ext"
        settings.write_text(
            _OAUTH2_SETTINGS.format(introspection_url=self.oauth2_introspection_url)
        )
        return _PASSWD_FILE_PASSDB.format(
            users_dir=self.users_dir, mechanisms="  mechanisms = plain login\n"
        ) + _OAUTH2_PASSDB.format(settings=settings)

    # -- users ---------------------------------------------------------------------------

    def add_user(self, address: str, password: str) -> Account:
        """Create a mail user that can log in at once; no restart needed.

        Each user has a passwd-file of its own: Dovecot re-reads a passwd-file at most
        once a second, so users appended to one shared file could stay unknown for up to
        a second.

        :param address: login and address; letters, digits and ``. _ @ -`` only.
        :param password: plaintext password, without ``:`` or line breaks.
        :raises ValueError: on a bad address or password, or an existing user.
        """
        address = address.lower()
        if not _ADDRESS_RE.match(address):
            raise ValueError(f"address {address!r} has characters Dovecot does not accept")
        if any(char in password for char in ":\r\n"):
            raise ValueError("password must not contain ':' or line breaks")
        entry = self.users_dir / address
        if entry.exists():
            raise ValueError(f"user {address} already exists")
        ident = self._identity
        home = self.mail_dir / address
        line = f"{address}:{{PLAIN}}{password}:{ident.mail_uid}:{ident.mail_gid}::{home}::\n"
        temporary = entry.with_name(f".{address}.tmp")
        temporary.write_text(line)
        temporary.rename(entry)
        self._passwords[address] = password
        return Account(address=address, password=password)

    def new_account(self, prefix: str = "user", domain: str = "example.com") -> Account:
        """Add a user with a unique address ``<prefix>-<n>@<domain>`` and a random password."""
        while True:
            address = f"{prefix}-{next(self._counter)}@{domain}".lower()
            if not (self.users_dir / address).exists():
                return self.add_user(address, secrets.token_urlsafe(12))

    def new_accounts(self) -> MailAccounts:
        """A fresh bot and a fresh alice (see `MailAccounts`)."""
        return MailAccounts(bot=self.new_account("bot"), alice=self.new_account("alice"))

    def _account(self, user: Account | str) -> Account:
        """The account for ``user``, which is an `Account` or an address added here."""
        if isinstance(user, Account):
            return user
        try:
            return Account(address=user.lower(), password=self._passwords[user.lower()])
        except KeyError:
            raise ValueError(f"no user {user} on this server") from None

    # -- mail in and out -----------------------------------------------------------------

    def deliver(
        self,
        recipient: str,
        raw: bytes,
        *,
        sender: str = DEFAULT_SENDER,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Deliver one message to one recipient's INBOX through LMTP, as a mail server does.

        Blocking: from async code use ``await asyncio.to_thread(server.deliver, ...)``.

        :param sender: envelope sender, stored as Return-Path; ``""`` for a bounce.
        :raises smtplib.SMTPException: when Dovecot refuses it (e.g. unknown user).
        """
        with smtplib.LMTP(self.host, self.lmtp_port, timeout=timeout) as lmtp:
            lmtp.sendmail(sender, [recipient], raw)

    def create_folder(
        self, user: Account | str, name: str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        """Create and subscribe folder ``name`` (ASCII; ``/`` separates levels) for ``user``."""
        with self.imap_session(user, timeout=timeout) as imap:
            _check(imap.create(_quote(name)), f"CREATE {name}")
            _check(imap.subscribe(_quote(name)), f"SUBSCRIBE {name}")

    def append(
        self,
        user: Account | str,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> int:
        """Store ``raw`` in ``folder`` with IMAP APPEND, as another mail client would.

        :param flags: e.g. ``["\\\\Seen"]``; none makes it unseen.
        :return: the UID the message got.
        """
        flag_list = f"({' '.join(flags)})"
        with self.imap_session(user, timeout=timeout) as imap:
            typ, data = imap.append(_quote(folder), flag_list, None, raw)
            _check((typ, data), f"APPEND to {folder}")
        match = _APPENDUID_RE.search(data[0] or b"")
        if match is None:
            raise DovecotError(f"APPEND to {folder} gave no UID: {data!r}")
        return int(match.group(1))

    def fetch_all(
        self, user: Account | str, folder: str = "INBOX", *, timeout: float = DEFAULT_TIMEOUT
    ) -> list[StoredMessage]:
        """Every message in ``folder``, oldest first, read without changing any flag."""
        with self.imap_session(user, timeout=timeout) as imap:
            _check(imap.select(_quote(folder), readonly=True), f"EXAMINE {folder}")
            typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[])")
            _check((typ, data), f"FETCH in {folder}")
        return sorted(_parse_fetch(data), key=lambda message: message.uid)

    async def wait_for_messages(
        self,
        user: Account | str,
        folder: str = "INBOX",
        *,
        count: int = 1,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> list[StoredMessage]:
        """Wait, without blocking the event loop, until ``folder`` holds ``count`` messages.

        :return: all messages in the folder once there are at least ``count``.
        :raises TimeoutError: with what was there, if they do not arrive in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            messages = await asyncio.to_thread(self.fetch_all, user, folder)
            if len(messages) >= count:
                return messages
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{len(messages)} of {count} messages in {folder} after {timeout}s"
                )
            await asyncio.sleep(0.05)

    @contextlib.contextmanager
    def imap_session(
        self, user: Account | str, *, timeout: float = DEFAULT_TIMEOUT
    ) -> Iterator[imaplib.IMAP4]:
        """A logged-in stdlib IMAP connection on the plain port, logged out afterwards."""
        account = self._account(user)
        imap = imaplib.IMAP4(self.host, self.imap_port, timeout=timeout)
        try:
            imap.login(account.address, account.password)
            yield imap
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                imap.logout()


def _kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left of the session Dovecot ran in (its child processes)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _quote(mailbox: str) -> str:
    """A mailbox name as an IMAP quoted string."""
    if not mailbox.isascii():
        raise ValueError(f"folder name {mailbox!r}: only ASCII names are supported here")
    escaped = mailbox.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check(response: tuple[str, list], what: str) -> None:
    """Raise `DovecotError` unless an imaplib response is OK."""
    typ, data = response
    if typ != "OK":
        raise DovecotError(f"{what} failed: {typ} {data!r}")


def _parse_fetch(data: Sequence[object]) -> Iterator[StoredMessage]:
    """`StoredMessage` objects from imaplib's answer to ``FETCH (UID FLAGS BODY.PEEK[])``."""
    for item in data:
        if not isinstance(item, tuple):
            continue
        header, body = item
        uid = _FETCH_UID_RE.search(header)
        flags = _FETCH_FLAGS_RE.search(header)
        if uid is None or flags is None:
            raise DovecotError(f"unexpected FETCH response {header!r}")
        yield StoredMessage(
            uid=int(uid.group(1)),
            flags=frozenset(flags.group(1).decode().split()) - {"\\Recent"},
            raw=body,
        )


_PASSWD_FILE_PASSDB = """\
passdb {{
  driver = passwd-file
{mechanisms}  args = scheme=PLAIN username_format=%u {users_dir}/%u
}}
"""

# Measured with Dovecot 2.3.19: "auth" mode sends GET with "Authorization: Bearer
# <token>"; the user is taken from "username" (the default attribute is "email") and
# must be the login name ("Username ... did not match"). A token is refused only when
# the answer says "active": false: an answer without "active" lets the user in, even
# with active_attribute = active and active_value = true, so the token service must
# always say it. A refusal is a "+ <base64 JSON>" challenge, then NO after the
# client's empty response, about half a second later.
_OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {settings}
}}
"""
_OAUTH2_SETTINGS = """\
introspection_mode = auth
introspection_url = {introspection_url}
username_attribute = username
"""

_CONFIG_TEMPLATE = """\
# Generated by spacebot_email.testing.dovecot for one test run. Dovecot 2.3 syntax.
instance_name = {instance}
base_dir = {directory}/run
state_dir = {directory}/state
log_path = {directory}/dovecot.log
protocols = imap lmtp
listen = {host}
hostname = localhost
postmaster_address = postmaster@example.com

ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = {auth_mechanisms}
auth_failure_delay = 0
auth_verbose = yes

default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {uid}
first_valid_gid = {gid}

mail_location = maildir:~/Maildir:LAYOUT=fs
namespace inbox {{
  inbox = yes
  separator = /
  # A folder named Sent, once created, is the account's Sent folder (RFC 6154).
  mailbox Sent {{
    special_use = \\Sent
  }}
}}
mail_fsync = never
mailbox_idle_check_interval = 1 secs

# A folder named ReadOnly can be read but not flagged, by every user: for tests of
# what happens when the account may not mark mail as seen.
mail_plugins = $mail_plugins acl
plugin {{
  acl = vfile:{directory}/global-acl
}}

protocol imap {{
  mail_max_userip_connections = 1000
  mail_plugins = $mail_plugins imap_acl
}}

{passdbs}userdb {{
  driver = passwd-file
  args = username_format=%u {users_dir}/%u
}}

service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {host}
    port = {imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {host}
    port = {lmtp_port}
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""
