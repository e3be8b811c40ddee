"""Logging in to IMAP with aioimaplib: XOAUTH2 that cannot hang, and no secret in its logs.

Two faults of aioimaplib 2.0 are worked around here, measured against Dovecot 2.3:

- **XOAUTH2 hangs on a refused token.** The server answers a bad token with a
  continuation (``+ <base64 JSON error>``) and waits for the client's empty response
  before it sends ``NO``; aioimaplib never sends it, so ``xoauth2()`` waits until its
  timeout. :func:`login_xoauth2` sends the empty response itself, and the refusal is
  back in a fraction of a second.
- **Credentials in DEBUG logs.** aioimaplib logs every command it sends at DEBUG,
  "scrubbing" only the literal password: a password holding ``"`` or ``\\`` is escaped
  on the wire and logged in the clear, and its own ``xoauth2()`` scrubs the raw token,
  which appears only base64-encoded. :class:`CredentialFilter`, installed on its
  logger, replaces the arguments of every ``LOGIN`` and ``AUTHENTICATE`` line.
"""

from __future__ import annotations

import asyncio
import logging
import re

import aioimaplib
from aioimaplib.aioimaplib import AUTH, Command

from spacebot_email.oauth2 import OAuth2Error, xoauth2_initial_response

log = logging.getLogger(__name__)

#: aioimaplib's logger (``aioimaplib/aioimaplib.py`` logs under its module name).
AIOIMAPLIB_LOGGER = "aioimaplib.aioimaplib"
#: A tagged command carrying credentials, as aioimaplib sends and logs it: ``AB12 LOGIN ...``.
_CREDENTIAL_COMMAND = re.compile(r"\b([A-Za-z]+\d+ (?:LOGIN|AUTHENTICATE)) .*", re.DOTALL)


class CredentialFilter(logging.Filter):
    """Rewrites aioimaplib's log records so that no LOGIN or AUTHENTICATE argument shows.

    ``Sending : b'AB12 LOGIN bot "secret"'`` becomes ``Sending : b'AB12 LOGIN
    [credentials not logged]``. The record is kept: the command's name still helps
    to debug a session.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drops it."""
        message = record.getMessage()
        if _CREDENTIAL_COMMAND.search(message):
            record.msg = _CREDENTIAL_COMMAND.sub(r"\1 [credentials not logged]", message)
            record.args = None
        return True


def install_credential_filter() -> None:
    """Put :class:`CredentialFilter` on aioimaplib's logger, once."""
    logger = logging.getLogger(AIOIMAPLIB_LOGGER)
    if not any(isinstance(existing, CredentialFilter) for existing in logger.filters):
        logger.addFilter(CredentialFilter())


async def login_xoauth2(
    client: aioimaplib.IMAP4, username: str, token: str, timeout: float
) -> aioimaplib.Response:
    """``AUTHENTICATE XOAUTH2`` with the initial response (SASL-IR), bounded in time.

    :return: the tagged response: ``OK`` when logged in, ``NO`` when refused.
    :raises TimeoutError: no answer within ``timeout`` seconds.
    :raises OAuth2Error: the server does not offer XOAUTH2, or the username or token
        cannot be put in an XOAUTH2 message.
    """
    # The initial response goes on the command line (RFC 4959 SASL-IR), as Gmail, Microsoft
    # 365, Fastmail and Dovecot all accept; a server without it is told apart clearly.
    for capability in ("AUTH=XOAUTH2", "SASL-IR"):
        if not client.has_capability(capability):
            raise OAuth2Error(
                f"IMAP server {client.host}:{client.port} does not offer XOAUTH2 login "
                f"(no {capability})",
                'set imap_auth = "password", or check imap_host: Gmail and Microsoft 365 offer it',
            )
    protocol = client.protocol
    initial = xoauth2_initial_response(username, token)
    command = Command("AUTHENTICATE", protocol.new_tag(), "XOAUTH2", initial, loop=protocol.loop)
    original_continuation = protocol._continuation

    def continuation(line: bytes) -> None:
        # "+ <base64 error>": the token was refused; the empty response ends the
        # exchange with the server's NO (RFC 7628 3.2.3, Google's XOAUTH2 document).
        if protocol.pending_sync_command is command:
            protocol.transport.write(b"\r\n")
        else:
            original_continuation(line)

    protocol._continuation = continuation
    try:
        return await asyncio.wait_for(_authenticate(protocol, command, initial), timeout)
    finally:
        protocol._continuation = original_continuation


async def _authenticate(
    protocol: aioimaplib.IMAP4ClientProtocol, command: Command, initial: str
) -> aioimaplib.Response:
    """Run the command under aioimaplib's state lock, as its own login() does."""
    async with protocol.state_condition:
        response = await protocol.execute(command, scrub=initial)
        if response.result == "OK":
            protocol.state = AUTH
            _learn_capabilities(protocol, response)
        protocol.state_condition.notify_all()
        return response


def _learn_capabilities(protocol: aioimaplib.IMAP4ClientProtocol, response) -> None:
    """Servers list their capabilities again in the OK of a login; keep them."""
    for line in response.lines:
        text = bytes(line).decode("ascii", "replace")
        if "CAPABILITY" in text:
            words = text.split("CAPABILITY", 1)[1].replace("]", " ").split()
            protocol.capabilities = protocol.capabilities.union(words)


install_credential_filter()
