"""OAuth2 access tokens for XOAUTH2 logins (Gmail, Microsoft 365), and where they come from.

Two sources, chosen in the config:

- :class:`RefreshTokenFlow` (``oauth2_refresh_token``, ``oauth2_client_id``,
  ``oauth2_token_url``): the OAuth2 refresh-token grant (RFC 6749 section 6). The access
  token is kept in memory and refreshed before it expires; a refresh token the server
  rotates is kept in memory too, never written anywhere.
- :class:`TokenCommand` (``oauth2_token_command``): a program that prints a token, such
  as ``oama access bot@example.com`` or ``gcloud auth print-access-token``. It prints a
  bare token (used for one login) or JSON ``{"access_token": ..., "expires_in": ...}``
  (kept until shortly before it expires).

Tokens, refresh tokens and client secrets never appear in a repr, a log line or an
error message: errors name the endpoint or the program and what the server said.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs

from spacebot_core.errors import ChannelError

log = logging.getLogger(__name__)

#: Refresh this many seconds before expiry (or at half the lifetime, if that is sooner).
REFRESH_MARGIN_SECS = 300.0
#: What a token endpoint that leaves out ``expires_in`` is assumed to mean (RFC 6749
#: recommends it; Google and Microsoft send it, with 3599 and 3599-4000 seconds).
DEFAULT_LIFETIME_SECS = 3600.0
#: The most of a token endpoint's answer or a token command's output that is read.
MAX_RESPONSE_BYTES = 1 << 20
#: A bearer token is printable ASCII without spaces (RFC 6750's b64token and more).
_TOKEN = re.compile(r"[\x21-\x7e]+")
_SHOWN_CHARS = 200

OAUTH2_HINT = (
    "check oauth2_client_id, oauth2_client_secret and oauth2_refresh_token; a refresh "
    "token stops working when it is revoked or unused for months: authorize again"
)
COMMAND_HINT = "run oauth2_token_command yourself to see what it says"


class OAuth2Error(ChannelError):
    """No access token could be had: the endpoint or the command failed."""


class TokenSource(Protocol):
    """Where an XOAUTH2 login gets its access token."""

    async def token(self) -> str:
        """A current access token.

        :raises OAuth2Error: none could be had.
        """

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it): the next call gets a new one."""


def xoauth2_initial_response(username: str, token: str) -> str:
    """The base64 XOAUTH2 initial client response: ``user=U^Aauth=Bearer T^A^A``.

    :raises OAuth2Error: the username or the token holds a character that would
        change the meaning of the SASL message (a control character, a space).
    """
    if not username or any(ord(char) < 0x20 or ord(char) == 0x7F for char in username):
        raise OAuth2Error(
            "the login name for XOAUTH2 holds a control character",
            "set imap_username (and smtp_username) to a plain address",
        )
    if not _TOKEN.fullmatch(token):
        raise OAuth2Error("the OAuth2 access token is not a printable token", OAUTH2_HINT)
    raw = f"user={username}\x01auth=Bearer {token}\x01\x01".encode()
    return base64.b64encode(raw).decode("ascii")


@attrs.define(eq=False)
class _CachedToken:
    """An access token and the monotonic time after which it must not be used."""

    value: str = attrs.field(repr=False)
    refresh_after: float


@attrs.define(eq=False)
class RefreshTokenFlow:
    """Access tokens from a token endpoint by the refresh-token grant, kept until due.

    :ivar token_url: the token endpoint (``https://oauth2.googleapis.com/token``).
    :ivar client_id: the OAuth2 client the refresh token was issued to.
    :ivar refresh_token: the long-lived refresh token.
    :ivar client_secret: the client's secret; None for a public client.
    :ivar scope: the scope to ask for (Microsoft wants it); None leaves it out.
    :ivar ssl_context: verifies an https endpoint (the system's CAs or tls_ca_file).
    :ivar timeout: seconds the whole request may take.
    :ivar clock: the time source, ``time.monotonic``; tests move it.
    """

    token_url: str
    client_id: str
    refresh_token: str = attrs.field(repr=False)
    client_secret: str | None = attrs.field(default=None, repr=False)
    scope: str | None = None
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, repr=False)
    timeout: float = 30.0
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    _cached: _CachedToken | None = attrs.field(default=None, init=False, repr=False)
    _lock: asyncio.Lock | None = attrs.field(default=None, init=False, repr=False)

    async def token(self) -> str:
        """The cached access token, or a fresh one when it is due for refresh.

        :raises OAuth2Error: the endpoint cannot be reached or refuses the refresh token.
        """
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one refresh at a time: IMAP and SMTP may ask together
            cached = self._cached
            if cached is not None and self.clock() < cached.refresh_after:
                return cached.value
            document = await asyncio.to_thread(self._request)
            self._cached = self._cache(document)
            log.debug("OAuth2 access token refreshed at %s", self.token_url)
            return self._cached.value

    def invalidate(self) -> None:
        """Forget the access token, so that the next login refreshes it."""
        self._cached = None

    def _cache(self, document: dict[str, Any]) -> _CachedToken:
        """Read the endpoint's answer; keep a rotated refresh token."""
        token = document.get("access_token")
        if not isinstance(token, str) or not _TOKEN.fullmatch(token):
            raise OAuth2Error(
                f"OAuth2 token endpoint {self.token_url} answered without an access_token",
                "check oauth2_token_url: it must be the provider's token endpoint",
            )
        rotated = document.get("refresh_token")
        if isinstance(rotated, str) and _TOKEN.fullmatch(rotated):
            self.refresh_token = rotated  # Microsoft may rotate it; the old one ages out
        lifetime = _lifetime(document.get("expires_in"))
        return _CachedToken(token, self.clock() + lifetime - _margin(lifetime))

    def _form(self) -> bytes:
        fields = {
            "grant_type": "refresh_token",
            "refresh_token": self.refresh_token,
            "client_id": self.client_id,
        }
        if self.client_secret:
            fields["client_secret"] = self.client_secret
        if self.scope:
            fields["scope"] = self.scope
        return urllib.parse.urlencode(fields).encode()

    def _request(self) -> dict[str, Any]:
        """POST the grant and return the JSON answer (runs in a worker thread)."""
        request = urllib.request.Request(
            self.token_url,
            data=self._form(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self.timeout, context=self._context()
            ) as response:
                return _json_object(response.read(MAX_RESPONSE_BYTES), self.token_url)
        except urllib.error.HTTPError as error:
            raise self._refused(error) from None
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise OAuth2Error(
                f"cannot reach OAuth2 token endpoint {self.token_url} ({_shown(str(reason))})",
                "check oauth2_token_url and the network; spacebot tries again later",
            ) from None

    def _context(self) -> ssl.SSLContext | None:
        if not self.token_url.lower().startswith("https:"):
            return None
        return self.ssl_context or ssl.create_default_context()

    def _refused(self, error: urllib.error.HTTPError) -> OAuth2Error:
        """The error for a refusal, with the endpoint's ``error`` code (RFC 6749 5.2)."""
        with contextlib.suppress(OSError, ValueError):
            document = _json_object(error.read(MAX_RESPONSE_BYTES), self.token_url)
            code = self._redacted(str(document.get("error", "")))
            description = self._redacted(str(document.get("error_description", "")))
            detail = f"{code}: {description}" if description else code
            return OAuth2Error(
                f"OAuth2 token endpoint {self.token_url} refused the refresh token "
                f"(HTTP {error.code} {detail})",
                OAUTH2_HINT,
            )
        return OAuth2Error(
            f"OAuth2 token endpoint {self.token_url} refused the refresh token (HTTP {error.code})",
            OAUTH2_HINT,
        )

    def _redacted(self, text: str) -> str:
        """Text from the endpoint, short, with our own secrets taken out should it echo them."""
        for secret in (self.refresh_token, self.client_secret):
            if secret:
                text = text.replace(secret, "***")
        return _shown(text)


@attrs.define(eq=False)
class TokenCommand:
    """Access tokens printed by a program (``oauth2_token_command``).

    A bare token is used for one login: such programs keep their own cache. A JSON
    answer with ``expires_in`` is kept until shortly before it expires.

    :ivar argv: the program and its arguments (no shell).
    :ivar timeout: seconds the program may run.
    """

    argv: Sequence[str] = attrs.field(repr=False)
    timeout: float = 30.0
    clock: Callable[[], float] = attrs.field(default=time.monotonic, repr=False)
    _cached: _CachedToken | None = attrs.field(default=None, init=False, repr=False)

    @property
    def program(self) -> str:
        """The program's name, for messages (its arguments may hold secrets)."""
        return self.argv[0] if self.argv else "?"

    async def token(self) -> str:
        """Run the program (unless a cached token is still good) and return its token.

        :raises OAuth2Error: it cannot be run, fails, times out or prints no token.
        """
        cached = self._cached
        if cached is not None and self.clock() < cached.refresh_after:
            return cached.value
        output = await self._run()
        token, lifetime = self._read(output)
        if lifetime is not None:
            self._cached = _CachedToken(token, self.clock() + lifetime - _margin(lifetime))
        return token

    def invalidate(self) -> None:
        """Forget a cached token: the next login runs the program again."""
        self._cached = None

    async def _run(self) -> bytes:
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            raise OAuth2Error(
                f"cannot run oauth2_token_command {self.program} ({error.strerror or error})",
                "set oauth2_token_command to a program and its arguments, as a list",
            ) from None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise OAuth2Error(
                f"oauth2_token_command {self.program} printed no token within {self.timeout:g} s",
                COMMAND_HINT,
            ) from None
        if process.returncode != 0:
            last = _last_line(stderr, redact=stdout)
            raise OAuth2Error(
                f"oauth2_token_command {self.program} failed with exit status "
                f"{process.returncode}" + (f": {last}" if last else ""),
                COMMAND_HINT,
            )
        return stdout[:MAX_RESPONSE_BYTES]

    def _read(self, output: bytes) -> tuple[str, float | None]:
        """The token and, for a JSON answer, its lifetime in seconds."""
        text = output.decode("utf-8", "replace").strip()
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                document = json.loads(text)
                token = document.get("access_token") if isinstance(document, dict) else None
                if isinstance(token, str) and _TOKEN.fullmatch(token):
                    return token, _lifetime(document.get("expires_in"))
        else:
            lines = text.splitlines()
            if len(lines) == 1 and _TOKEN.fullmatch(lines[0]):
                return lines[0], None
        raise OAuth2Error(
            f"oauth2_token_command {self.program} did not print a token (one line, or "
            'JSON with "access_token")',
            COMMAND_HINT,
        )


def token_source(
    *,
    token_command: Sequence[str] | None,
    token_url: str | None,
    client_id: str | None,
    client_secret: str | None,
    refresh_token: str | None,
    scope: str | None,
    ssl_context: ssl.SSLContext | None,
    timeout: float,
) -> TokenSource:
    """The source the settings ask for: the command when given, else the refresh flow.

    The settings were checked when the config was read, so one of them is complete.
    """
    if token_command:
        return TokenCommand(list(token_command), timeout=timeout)
    if not (token_url and client_id and refresh_token):
        raise OAuth2Error(
            "XOAUTH2 needs oauth2_token_command, or oauth2_token_url, oauth2_client_id "
            "and oauth2_refresh_token"
        )
    return RefreshTokenFlow(
        token_url,
        client_id,
        refresh_token,
        client_secret=client_secret,
        scope=scope,
        ssl_context=ssl_context,
        timeout=timeout,
    )


def _lifetime(expires_in: object) -> float:
    """``expires_in`` as seconds, within sane bounds; the default when absent or odd."""
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        return float(min(max(expires_in, 0), 86400 * 7))
    return DEFAULT_LIFETIME_SECS


def _margin(lifetime: float) -> float:
    """How long before expiry a token is refreshed."""
    return min(REFRESH_MARGIN_SECS, lifetime / 2)


def _json_object(data: bytes, url: str) -> dict[str, Any]:
    document = json.loads(data.decode("utf-8", "replace"))
    if not isinstance(document, dict):
        raise ValueError(f"{url} did not answer with a JSON object")
    return document


def _last_line(stderr: bytes, *, redact: bytes) -> str:
    """The last line a failed command wrote to stderr, short, without what it printed."""
    text = stderr.decode("utf-8", "replace")
    for secret in redact.decode("utf-8", "replace").split():
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _shown(lines[-1]) if lines else ""


def _shown(text: str) -> str:
    """Text from outside, as one short line fit for a message."""
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."
