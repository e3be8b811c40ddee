"""Send mail over SMTP with aiosmtplib: STARTTLS, implicit TLS, or plain to loopback.

:class:`SmtpSender` holds the settings of one instance; :meth:`SmtpSender.session`
opens one connection (connect, TLS, login) that can send several messages, and
:meth:`SmtpSender.send` is the one-shot form. :meth:`SmtpSender.check` runs the same
steps for ``spacebot check`` and reports each one. Every failure surfaces as a
:class:`~spacebot_core.errors.ChannelError` in the words of the spec's troubleshooting
table, with a hint (:mod:`.smtp_errors`); the password is never part of a message, a
repr or a log line. Connections kept open between sends are :mod:`.smtp_pool`'s job.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from types import TracebackType
from typing import Literal

import aiosmtplib
import attrs

from spacebot_core.checks import CheckResult
from spacebot_core.errors import ChannelError
from spacebot_email.oauth2 import OAuth2Error, TokenSource
from spacebot_email.smtp_errors import HINT_PLAINTEXT, HINT_XOAUTH2, translate_error

logger = logging.getLogger(__name__)

Security = Literal["starttls", "tls", "plain"]

_Step = Callable[[], Awaitable[str]]


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost``, 127.0.0.0/8 or ::1.

    Decided on the name alone, without DNS, so no lookup can make a remote host
    count as local.
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@attrs.define(eq=False)
class SmtpSender:
    """The SMTP side of one email instance: where to send and how to log in.

    ``security`` is ``starttls`` (port 587), ``tls`` (implicit TLS, port 465) or
    ``plain``, which is refused for any host that is not loopback. Certificates are
    always verified: against the system's CAs, or only against ``tls_ca_file`` when it
    is set, or by ``tls_context`` when the caller builds its own. ``timeout`` bounds
    every network wait (connect, each reply, the TLS handshake), in seconds. With
    ``token_source``, the login is XOAUTH2 with its access token instead of a password.
    """

    host: str
    port: int
    security: Security = attrs.field(
        default="starttls", validator=attrs.validators.in_(("starttls", "tls", "plain"))
    )
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    tls_ca_file: str | None = None
    tls_context: ssl.SSLContext | None = attrs.field(default=None, repr=False)
    timeout: float = 30.0
    local_hostname: str | None = None
    token_source: TokenSource | None = attrs.field(default=None, repr=False)
    _default_context: ssl.SSLContext | None = attrs.field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        """``host:port``, as messages show it."""
        return f"{self.host}:{self.port}"

    def ensure_transport_allowed(self) -> None:
        """Refuse plaintext to a host that is not loopback, before any connection.

        :raises ChannelError: ``security`` is ``plain`` and the host is not loopback.
        """
        if self.security == "plain" and not is_loopback_host(self.host):
            raise ChannelError(
                f"refusing to send mail unencrypted to SMTP server {self.address}",
                HINT_PLAINTEXT,
            )

    def session(self) -> SmtpSession:
        """A connection to open with ``async with`` (or ``open()``/``close()``)."""
        return SmtpSession(self)

    async def send(
        self,
        message: EmailMessage,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
    ) -> None:
        """Connect, log in, send one message, and quit.

        :param sender: the envelope sender; the message's From when ``None``.
        :param recipients: the envelope recipients; To, Cc and Bcc when ``None``.
        :raises ChannelError: any failure, with a hint for the user.
        """
        async with self.session() as session:
            await session.send(message, sender=sender, recipients=recipients)

    async def check(self) -> list[CheckResult]:
        """Try each step of a connection (connect, TLS, login) and report each one.

        Stops at the first step that fails; that step's result carries the fix.
        """
        results: list[CheckResult] = []
        session = self.session()
        try:
            # A failure is not lost: open() reports it as the failed step in results.
            with contextlib.suppress(ChannelError):
                await session.open(progress=results.append)
        finally:
            await session.close()
        return results

    def redact(self, text: str) -> str:
        """``text`` with the password replaced, for text that came from the server."""
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def client_tls_context(self) -> ssl.SSLContext:
        """The context that verifies the server: given, from ``tls_ca_file``, or default.

        :raises ChannelError: ``tls_ca_file`` cannot be read as PEM certificates.
        """
        if self.tls_context is not None:
            return self.tls_context
        if self._default_context is None:
            try:
                self._default_context = ssl.create_default_context(cafile=self.tls_ca_file)
            except (OSError, ValueError) as exc:
                raise ChannelError(
                    f"cannot load tls_ca_file {self.tls_ca_file!r} ({exc})",
                    "Set tls_ca_file to a PEM file holding the CA certificate",
                ) from exc
        return self._default_context


@attrs.define(eq=False)
class SmtpSession:
    """One SMTP connection, logged in, that sends messages until closed.

    Use ``async with sender.session() as session: await session.send(msg)``; a later
    connection pool can keep sessions open between sends.
    """

    settings: SmtpSender
    _client: aiosmtplib.SMTP | None = attrs.field(default=None, init=False, repr=False)

    async def __aenter__(self) -> SmtpSession:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def is_open(self) -> bool:
        """Whether the connection is up (the server may still drop it at any time)."""
        return self._client is not None and self._client.is_connected

    async def open(self, progress: Callable[[CheckResult], None] | None = None) -> None:
        """Connect, secure the connection and log in, one step after the other.

        :param progress: called with the result of each step, the failed one included.
        :raises ChannelError: the first step that failed, with a hint.
        """
        report = progress or (lambda result: None)
        try:
            self.settings.ensure_transport_allowed()
        except ChannelError as exc:
            report(CheckResult("SMTP transport security", False, exc.args[0], exc.hint))
            raise
        for name, step in self._steps():
            try:
                detail = await step()
            except ChannelError as exc:
                report(CheckResult(name, False, exc.args[0], exc.hint))
                self._drop()
                raise
            except BaseException:
                self._drop()  # cancelled: leave no half-open connection behind
                raise
            report(CheckResult(name, True, detail))

    async def send(
        self,
        message: EmailMessage,
        *,
        sender: str | None = None,
        recipients: Sequence[str] | None = None,
    ) -> None:
        """Send one message on this connection.

        The first recipient is the one the mail is for; others are copies (the bot's
        own, for instance). A refused copy is logged, not raised: the mail went out, and
        sending it again would duplicate it. A refused first recipient is an error,
        ``permanent`` when the server's code says so (5xx).

        :raises ChannelError: not open, the addressee or every recipient refused, or the
            server failed.
        """
        client = self._require_client()
        try:
            refused, _ = await client.send_message(
                message,
                sender=sender,
                recipients=list(recipients) if recipients is not None else None,
            )
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise self._error(exc, "send") from exc
        addressee = recipients[0] if recipients else None
        if addressee is not None and addressee in refused:
            answer = refused[addressee]
            raise ChannelError(
                f"SMTP server {self.settings.address} refused the recipient {addressee} "
                f"({answer.code} {self.settings.redact(answer.message)})",
                "Check the recipient address; the server will not accept mail for it",
                permanent=answer.code >= 500,
            )
        if refused:
            logger.warning(
                "SMTP server %s refused %s for %s",
                self.settings.address,
                ", ".join(refused),
                message.get("Message-ID"),
            )
        logger.info("sent %s via %s", message.get("Message-ID"), self.settings.address)

    async def close(self) -> None:
        """Say QUIT (bounded by the timeout) and close; safe to call more than once."""
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            # The mail is already accepted; a failed goodbye only costs the socket.
            logger.debug("SMTP QUIT to %s failed: %r", self.settings.address, exc)
        finally:
            client.close()

    def _steps(self) -> list[tuple[str, _Step]]:
        """The steps of opening, named as ``spacebot check`` shows them."""
        settings = self.settings
        connect = f"SMTP connect to {settings.address}"
        if settings.security == "tls":
            connect += " (implicit TLS)"
        steps: list[tuple[str, _Step]] = [(connect, self._connect)]
        if settings.security == "starttls":
            steps.append(("SMTP STARTTLS", self._start_tls))
        if settings.username is not None and settings.token_source is not None:
            steps.append((f"SMTP login as {settings.username} (XOAUTH2)", self._login_xoauth2))
        elif settings.username is not None:
            steps.append((f"SMTP login as {settings.username}", self._login))
        return steps

    async def _connect(self) -> str:
        """Open the TCP connection (TLS first for implicit TLS) and read the greeting."""
        settings = self.settings
        context = None if settings.security == "plain" else settings.client_tls_context()
        client = aiosmtplib.SMTP(
            hostname=settings.host,
            port=settings.port,
            use_tls=settings.security == "tls",
            start_tls=False,  # STARTTLS is our own step, never opportunistic
            tls_context=context,
            timeout=settings.timeout,
            # aiosmtplib would otherwise call socket.getfqdn(), a DNS wait with no timeout
            local_hostname=settings.local_hostname or _local_hostname(),
        )
        try:
            response = await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc, "connect") from exc
        self._client = client
        detail = f"{response.code} {response.message}".splitlines()[0]
        return f"{detail} ({_tls_version(client)})" if settings.security == "tls" else detail

    async def _start_tls(self) -> str:
        """Upgrade the connection with STARTTLS, verifying the server's certificate."""
        client = self._require_client()
        try:
            await client.starttls()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc, "tls") from exc
        return _tls_version(client)

    async def _login(self) -> str:
        """Log in with the username and password (the methods the server offers)."""
        settings = self.settings
        if settings.password is None:
            raise ChannelError(
                f"smtp_username is set but smtp_password is not, for {settings.address}",
                "Set smtp_password (or env:NAME) next to smtp_username",
            )
        client = self._require_client()
        try:
            await client.login(settings.username or "", settings.password)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc, "login") from exc
        return "authenticated"

    async def _login_xoauth2(self) -> str:
        """Log in with XOAUTH2 and the token source's access token."""
        settings = self.settings
        assert settings.token_source is not None
        client = self._require_client()
        try:
            if client.is_ehlo_or_helo_needed:  # STARTTLS forgot the first EHLO's answer
                await client.ehlo()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc, "login") from exc
        if "xoauth2" not in client.server_auth_methods:
            raise OAuth2Error(
                f"SMTP server {settings.address} does not offer XOAUTH2 login",
                'set smtp_auth = "password", or check smtp_host: Gmail and Microsoft 365 '
                "offer it after STARTTLS",
            )
        token = await settings.token_source.token()
        try:
            # aiosmtplib answers the server's error challenge (334) itself.
            await client.auth_xoauth2(settings.username or "", token)
        except aiosmtplib.SMTPAuthenticationError as exc:
            settings.token_source.invalidate()  # the next attempt gets a fresh token
            raise ChannelError(
                f"SMTP authentication failed for {settings.username} at {settings.address} "
                f"({exc.code}, XOAUTH2)",
                HINT_XOAUTH2,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._error(exc, "login") from exc
        return "authenticated"

    def _require_client(self) -> aiosmtplib.SMTP:
        """The connected client, or the error that says the session is not open."""
        if self._client is None or not self._client.is_connected:
            raise ChannelError(
                f"not connected to SMTP server {self.settings.address}",
                "Open the session before sending; the server may have closed it",
            )
        return self._client

    def _drop(self) -> None:
        """Close the connection at once, without QUIT (after a failed step)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _error(self, exc: BaseException, stage: str) -> ChannelError:
        """The user-facing error for ``exc``, raised while doing ``stage``."""
        error = translate_error(self.settings, exc, stage)
        # The caller logs the ChannelError; keep the raw exception for debugging.
        logger.debug("%s (%s: %s)", error.args[0], stage, self.settings.redact(repr(exc)))
        return error


def _tls_version(client: aiosmtplib.SMTP) -> str:
    """The negotiated TLS version, such as ``TLSv1.3``."""
    ssl_object = client.get_transport_info("ssl_object")
    return ssl_object.version() if ssl_object is not None else "TLS"


def _local_hostname() -> str:
    """The name we give in EHLO: this machine's name, without a DNS lookup."""
    name = socket.gethostname()
    return name if name and name.isascii() and " " not in name else "localhost"
