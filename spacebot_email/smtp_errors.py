"""What went wrong with SMTP, in the user's words: aiosmtplib and socket errors mapped
to :class:`~spacebot_core.errors.ChannelError`, each with a hint that says what to do.

The wording follows the spec's troubleshooting table; the server's text is redacted
(see :meth:`.smtp.SmtpSender.redact`), so no password reaches a message.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING

import aiosmtplib

from spacebot_core.errors import ChannelError

if TYPE_CHECKING:
    from spacebot_email.smtp import SmtpSender

HINT_PLAINTEXT = "set smtp_use_starttls = true or smtp_use_tls = true, or use a loopback host"
HINT_AUTH = "Verify SMTP credentials; check if 2FA app password is required"
HINT_XOAUTH2 = (
    "The server refused the OAuth2 token: check that it was issued for this account "
    "with the scope that allows sending (Gmail: https://mail.google.com/)"
)
HINT_TLS = (
    "Gmail/Outlook use smtp_use_starttls = true on port 587 (or TLS on 465); "
    "for a private CA set tls_ca_file"
)
HINT_UNREACHABLE = (
    "Check smtp_host and smtp_port and that the network allows the connection; "
    "port 587 needs smtp_use_starttls = true, port 465 smtp_use_tls = true"
)

#: RFC 4954: "530 5.7.0 Authentication required" (also sent for "STARTTLS first").
_AUTH_REQUIRED = 530


def translate_error(settings: SmtpSender, exc: BaseException, stage: str) -> ChannelError:
    """Map an aiosmtplib or socket exception to the spec's wording.

    Checked from the most specific cause: a TLS failure is often wrapped in a
    connection error by aiosmtplib, so the chain is searched for it first.
    """
    where = settings.address
    tls_failure = _find_ssl_error(exc)
    if tls_failure is not None:
        return ChannelError(
            f"TLS handshake failed with {where} ({_ssl_reason(tls_failure)})", HINT_TLS
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return ChannelError(
            f"SMTP authentication failed for {settings.username} at {where}", HINT_AUTH
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused | aiosmtplib.SMTPRecipientRefused):
        return _refused_error(settings, exc)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code == _AUTH_REQUIRED:
        return ChannelError(
            f"SMTP server {where} requires login before sending ({_reason(settings, exc)})",
            "Set smtp_username and smtp_password, with smtp_use_starttls = true "
            "or smtp_use_tls = true",
        )
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        return ChannelError(
            f"SMTP server {where} refused the sender {exc.sender} "
            f"({exc.code} {settings.redact(exc.message)})",
            "Set from_address to an address this SMTP account may send as",
        )
    if stage == "tls" and isinstance(exc, aiosmtplib.SMTPException | OSError):
        return ChannelError(
            f"TLS handshake failed with {where} ({_reason(settings, exc)})", HINT_TLS
        )
    if isinstance(exc, aiosmtplib.SMTPConnectError) or (
        stage == "connect" and isinstance(exc, OSError)
    ):
        return ChannelError(
            f"cannot reach SMTP server {where} ({_connect_reason(settings, exc)})",
            HINT_UNREACHABLE,
        )
    return _session_error(settings, exc, stage)


def _session_error(settings: SmtpSender, exc: BaseException, stage: str) -> ChannelError:
    """The error for a failure once connected: timeouts, drops, refusals, bad input."""
    where = settings.address
    reason = _reason(settings, exc)
    if isinstance(exc, aiosmtplib.SMTPTimeoutError):
        return ChannelError(
            f"SMTP server {where} did not answer within {settings.timeout:g}s ({reason})",
            "The server is overloaded or the network drops packets; it is retried later",
        )
    if isinstance(exc, aiosmtplib.SMTPServerDisconnected | ConnectionError):
        return ChannelError(
            f"SMTP server {where} closed the connection ({reason})",
            "It is retried later; if it persists, check the server's limits and logs",
        )
    if isinstance(exc, aiosmtplib.SMTPDataError):
        return ChannelError(
            f"SMTP server {where} rejected the message ({reason})",
            "The server's reply says why: often size limits or content filtering",
            permanent=exc.code >= 500,
        )
    if stage == "login":
        return ChannelError(
            f"SMTP server {where} does not offer login ({reason})",
            "Most servers offer AUTH only after STARTTLS or on the TLS port; "
            "set smtp_use_starttls = true or smtp_use_tls = true",
        )
    if isinstance(exc, ValueError):
        return ChannelError(
            f"cannot send through {where}: {reason}",
            "Check from_address and the recipient address",
        )
    return ChannelError(
        f"SMTP server {where} failed ({reason})",
        "See the server's reply; it is retried later",
    )


def _refused_error(settings: SmtpSender, exc: BaseException) -> ChannelError:
    """The error naming each refused recipient with the server's reason."""
    refusals = exc.recipients if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) else [exc]
    named = "; ".join(
        f"{item.recipient} ({item.code} {settings.redact(item.message)})" for item in refusals
    )
    return ChannelError(
        f"SMTP server {settings.address} refused the recipient {named}",
        "Check the recipient address; the server will not accept mail for it",
        permanent=all(item.code >= 500 for item in refusals),
    )


def _find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error in ``exc`` or in what caused it, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _ssl_reason(error: ssl.SSLError) -> str:
    """A short reason: the verification message, else OpenSSL's reason code."""
    if isinstance(error, ssl.SSLCertVerificationError) and error.verify_message:
        return f"certificate verify failed: {error.verify_message}"
    return error.reason or str(error)


def _reason(settings: SmtpSender, exc: BaseException) -> str:
    """The exception as a short, redacted reason for a message."""
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        text = f"{exc.code} {exc.message}"
    else:
        text = str(exc) or type(exc).__name__
    return settings.redact(" ".join(text.split())).rstrip(".")


def _connect_reason(settings: SmtpSender, exc: BaseException) -> str:
    """Why a connection failed, without aiosmtplib's repetition of host and port."""
    if isinstance(exc, aiosmtplib.SMTPTimeoutError | TimeoutError):
        return f"no answer within {settings.timeout:g}s"
    cause = exc if isinstance(exc, OSError) and exc.strerror else exc.__cause__
    if isinstance(cause, ConnectionRefusedError):
        return "connection refused"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return _reason(settings, exc)
