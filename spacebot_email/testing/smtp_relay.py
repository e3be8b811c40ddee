"""A real SMTP server on loopback that records what it gets and delivers it on.

`SmtpRelay` is an aiosmtpd server, run in a thread of its own by aiosmtpd's
`Controller`, so async tests can talk to it from their event loop. It offers the shapes
a mail provider does: plain, STARTTLS (optionally required) or implicit TLS (port 465
style), AUTH PLAIN/LOGIN checked against a table of logins, and AUTH XOAUTH2 checked by a
token checker (such as `TokenService.is_valid`). Every message it accepts
is recorded as a `RelayedMessage` and handed to a ``deliver`` callable, typically
`DovecotServer.deliver`, so a reply can be read back from the recipient's mailbox.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from spacebot_email.testing.certs import CertFiles
from spacebot_email.testing.dovecot import DEFAULT_TIMEOUT, free_port

log = logging.getLogger(__name__)

TlsMode = Literal["none", "starttls", "implicit"]
"""How the relay offers TLS: not at all, through STARTTLS, or from the first byte."""


class Deliver(Protocol):
    """Where the relay hands each accepted message, once per recipient.

    `DovecotServer.deliver` has this shape. It runs in a worker thread and may block;
    an exception makes the relay answer the DATA command with a 451 temporary error.
    """

    def __call__(self, recipient: str, raw: bytes, *, sender: str) -> None:
        """Deliver ``raw`` to ``recipient``; ``sender`` is the envelope sender."""


@attrs.frozen
class RelayedMessage:
    """One message as the relay received it.

    :ivar mail_from: the envelope sender (``MAIL FROM``), ``""`` for a bounce.
    :ivar rcpt_tos: the envelope recipients (``RCPT TO``).
    :ivar raw: the message bytes exactly as sent after ``DATA``.
    :ivar login: the login the client authenticated as, or None.
    :ivar tls: whether the session was encrypted (STARTTLS or implicit TLS).
    :ivar delivered: whether ``deliver`` succeeded for every recipient.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    raw: bytes
    login: str | None
    tls: bool
    delivered: bool


class SmtpRelay:
    """An SMTP server on a free 127.0.0.1 port, in its own thread.

    ``start`` and ``stop`` may be repeated; the port stays the same, so a test can
    take the relay away and bring it back. When ``send`` returns in the client, the
    message is already recorded and delivered (delivery runs before the reply to DATA).

    :param deliver: called for each recipient of each accepted message; None only
        records.
    :param certs: the server certificate; required unless ``tls`` is ``"none"``.
    :param tls: ``"none"``, ``"starttls"`` or ``"implicit"``.
    :param require_starttls: refuse every command but EHLO, STARTTLS and QUIT until
        STARTTLS (only with ``tls="starttls"``).
    :param credentials: login to password; when given, AUTH PLAIN/LOGIN is required
        before MAIL, and a wrong password gets ``535``.
    :param token_checker: when given, AUTH XOAUTH2 is offered (and AUTH required) and a
        login is accepted when ``token_checker(login, token)`` is true; a refused token
        gets the error challenge and ``535``, as Gmail answers.
    :param auth_require_tls: refuse AUTH before STARTTLS (aiosmtpd's ``538``); set
        False to test plaintext AUTH on loopback. Implicit TLS is always encrypted.
    :param host: the address to listen on.
    :param port: the port; a free one when 0.
    :param data_size_limit: the largest message accepted, in bytes.
    """

    def __init__(
        self,
        deliver: Deliver | None = None,
        *,
        certs: CertFiles | None = None,
        tls: TlsMode = "starttls",
        require_starttls: bool = False,
        credentials: Mapping[str, str] | None = None,
        token_checker: Callable[[str, str], bool] | None = None,
        auth_require_tls: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        data_size_limit: int = 64 * 1024 * 1024,
    ) -> None:
        if tls != "none" and certs is None:
            raise ValueError(f"tls={tls!r} needs certs")
        if require_starttls and tls != "starttls":
            raise ValueError("require_starttls needs tls='starttls'")
        self._deliver = deliver
        self.certs = certs
        self.tls: TlsMode = tls
        self.require_starttls = require_starttls
        self.credentials: dict[str, str] = dict(credentials or {})
        self.token_checker = token_checker
        self.auth_require_tls = auth_require_tls
        self.host = host
        self.port = port or free_port(host)
        self.data_size_limit = data_size_limit
        self.received: list[RelayedMessage] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def running(self) -> bool:
        """Whether the relay is accepting connections."""
        return self._controller is not None

    def add_credentials(self, login: str, password: str) -> None:
        """Allow one more login (effective for the next AUTH)."""
        self.credentials[login] = password

    def start(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Listen on `port` and wait until the server answers."""
        if self._controller is not None:
            raise RuntimeError("the SMTP relay is already running")
        handler = _RelayHandler(self) if self.token_checker is None else _OAuth2Handler(self)
        controller = Controller(
            handler,
            hostname=self.host,
            port=self.port,
            ready_timeout=timeout,
            server_hostname="localhost",
            **self._smtp_options(),
        )
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            raise
        self._controller = controller
        log.info("smtp relay started on %s:%s (tls=%s)", self.host, self.port, self.tls)

    def stop(self) -> None:
        """Close the port and drop open sessions; what was received stays. Idempotent."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpRelay:
        """Start the relay for a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the relay at the end of a ``with`` block."""
        self.stop()

    def _smtp_options(self) -> dict[str, Any]:
        """The aiosmtpd `Controller` and `SMTP` arguments for this relay's mode."""
        server_context = self.certs.server_context() if self.certs is not None else None
        options: dict[str, Any] = {
            "data_size_limit": self.data_size_limit,
            "ssl_context": server_context if self.tls == "implicit" else None,
            "tls_context": server_context if self.tls == "starttls" else None,
            "require_starttls": self.require_starttls,
            # aiosmtpd counts only STARTTLS as encryption; implicit TLS already is.
            "auth_require_tls": self.auth_require_tls and self.tls != "implicit",
        }
        if self.credentials or self.token_checker is not None:
            options["authenticator"] = self._authenticate
            options["auth_required"] = True
        return options

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        """aiosmtpd authenticator: check a login and password against `credentials`.

        A failure is left to aiosmtpd (``handled=False``), which answers ``535``.
        """
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        expected = self.credentials.get(login)
        if expected is None or not hmac.compare_digest(
            expected.encode(), bytes(auth_data.password)
        ):
            log.info("smtp relay: AUTH %s refused for %s", mechanism, login)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=login)

    def _record(self, message: RelayedMessage) -> None:
        """Keep a received message (called from the relay's thread)."""
        with self._lock:
            self.received.append(message)

    def _deliver_all(self, envelope: Envelope, raw: bytes) -> None:
        """Hand ``raw`` to ``deliver`` once per recipient (runs in a worker thread)."""
        if self._deliver is None:
            return
        for recipient in envelope.rcpt_tos:
            self._deliver(recipient, raw, sender=envelope.mail_from or "")


class _RelayHandler:
    """aiosmtpd handler: record the message, deliver it, then answer DATA."""

    def __init__(self, relay: SmtpRelay) -> None:
        self._relay = relay

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Deliver to every recipient, record the outcome, and answer 250 or 451."""
        raw = envelope.original_content or b""
        delivered = True
        try:
            await asyncio.to_thread(self._relay._deliver_all, envelope, raw)
        except Exception:
            log.exception("smtp relay: delivery to %s failed", envelope.rcpt_tos)
            delivered = False
        self._relay._record(
            RelayedMessage(
                mail_from=envelope.mail_from or "",
                rcpt_tos=tuple(envelope.rcpt_tos),
                raw=raw,
                login=session.auth_data if session.authenticated else None,
                tls=_is_encrypted(server, session),
                delivered=delivered,
            )
        )
        if not delivered:
            return "451 4.3.0 Delivery failed, try again later"
        return "250 2.0.0 Message accepted for delivery"


class _OAuth2Handler(_RelayHandler):
    """The relay's handler with AUTH XOAUTH2 (aiosmtpd finds ``auth_<MECHANISM>``)."""

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Check ``user=...^Aauth=Bearer <token>^A^A`` with the relay's token checker."""
        checker = self._relay.token_checker
        assert checker is not None
        if len(args) > 1:
            blob = args[1].encode()
        else:  # no initial response: ask for it with an empty challenge
            answer = await server.challenge_auth("")
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = base64.b64encode(answer)
        login, token = _read_xoauth2(blob)
        if login and token and checker(login, token):
            return AuthResult(success=True, auth_data=login)
        log.info("smtp relay: AUTH XOAUTH2 refused for %s", login or "?")
        # Gmail's way: a 334 error challenge, the client's empty line, then 535. Without
        # a message here aiosmtpd would send nothing and the client would wait.
        error = {"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}
        await server.challenge_auth(json.dumps(error))
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )


def _read_xoauth2(blob: bytes) -> tuple[str, str]:
    """The login and bearer token of an XOAUTH2 initial response; empty when malformed."""
    try:
        text = base64.b64decode(blob, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    fields = dict(item.partition("=")[::2] for item in text.split("\x01") if item)
    scheme, _, token = fields.get("auth", "").partition(" ")
    return fields.get("user", ""), token if scheme.lower() == "bearer" else ""


def _is_encrypted(server: SMTP, session: Session) -> bool:
    """Whether the session runs over TLS, from STARTTLS or from the first byte."""
    if session.ssl is not None:
        return True
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None
