"""A tiny OAuth2 authorization server on loopback, for tests of XOAUTH2 logins.

`TokenService` answers the two requests an XOAUTH2 setup makes, over plain HTTP on
127.0.0.1, from a thread of its own (the standard library's ``http.server``):

- ``POST /token`` with ``grant_type=refresh_token``: the OAuth2 token endpoint the bot
  calls (RFC 6749 section 6). It answers ``{"access_token", "token_type", "expires_in"}``,
  or ``400 {"error": "invalid_grant"}`` for a refresh token it did not issue.
- ``GET /introspect`` with ``Authorization: Bearer <token>`` (or ``POST`` with
  ``token=<token>``): the introspection endpoint (RFC 7662) that Dovecot's ``oauth2``
  passdb calls to check the token a client logged in with. It answers ``{"active": true,
  "username": ...}`` for a live token and ``{"active": false}`` for any other.

An `SmtpRelay` checks XOAUTH2 logins with `TokenService.is_valid`. Every request is
recorded (`grants`, `introspections`) so tests can say when a token was refreshed.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

log = logging.getLogger(__name__)

TOKEN_PATH = "/token"
INTROSPECTION_PATH = "/introspect"


@attrs.frozen
class Grant:
    """One request to the token endpoint.

    :ivar refresh_token: the refresh token it carried (test secrets only).
    :ivar client_id: the client it named.
    :ivar ok: whether a new access token was issued.
    :ivar scope: the scope it asked for, or None.
    """

    refresh_token: str = attrs.field(repr=False)
    client_id: str | None
    ok: bool
    scope: str | None = None


@attrs.frozen
class Introspection:
    """One request to the introspection endpoint: for which token, and the answer."""

    token: str = attrs.field(repr=False)
    active: bool


@attrs.define
class _AccessToken:
    username: str
    expires_at: float
    revoked: bool = False


class TokenService:
    """An OAuth2 token and introspection endpoint on a free loopback port.

    :param client_id: the only client the token endpoint serves.
    :param client_secret: the secret that client must send; None for a public client.
    :param access_token_lifetime: seconds an issued access token lives (``expires_in``).
    :param clock: the time source for expiry, ``time.monotonic`` by default.
    """

    def __init__(
        self,
        *,
        client_id: str = "spacebot-test-client",
        client_secret: str | None = None,
        access_token_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.access_token_lifetime = access_token_lifetime
        self.clock = clock
        self.host = host
        self.grants: list[Grant] = []
        self.introspections: list[Introspection] = []
        self._refresh_tokens: dict[str, str] = {}
        self._access_tokens: dict[str, _AccessToken] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (once started)."""
        if self._server is None:
            raise RuntimeError("the token service is not running")
        return self._server.server_address[1]

    @property
    def token_url(self) -> str:
        """The token endpoint, for ``oauth2_token_url``."""
        return f"http://{self.host}:{self.port}{TOKEN_PATH}"

    @property
    def introspection_url(self) -> str:
        """The introspection endpoint, for Dovecot's ``introspection_url``."""
        return f"http://{self.host}:{self.port}{INTROSPECTION_PATH}"

    def start(self) -> None:
        """Listen on a free port and serve from a daemon thread."""
        if self._server is not None:
            raise RuntimeError("the token service is already running")
        server = ThreadingHTTPServer((self.host, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="token-service", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> TokenService:
        """Start for a ``with`` block."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop at the end of a ``with`` block."""
        self.stop()

    # -- tokens --------------------------------------------------------------------------

    def issue_refresh_token(self, username: str) -> str:
        """A new refresh token that yields access tokens for ``username``."""
        token = "rt-" + secrets.token_urlsafe(24)
        with self._lock:
            self._refresh_tokens[token] = username
        return token

    def issue_access_token(self, username: str, lifetime: float | None = None) -> str:
        """A new access token for ``username``, as a token command would print it."""
        token = "at-" + secrets.token_urlsafe(24)
        lifetime = self.access_token_lifetime if lifetime is None else lifetime
        with self._lock:
            self._access_tokens[token] = _AccessToken(username, self.clock() + lifetime)
        return token

    def revoke(self, token: str) -> None:
        """Make a refresh or access token worthless from now on."""
        with self._lock:
            self._refresh_tokens.pop(token, None)
            if token in self._access_tokens:
                self._access_tokens[token].revoked = True

    def issued_access_tokens(self) -> list[str]:
        """Every access token issued so far (for tests that search logs for them)."""
        with self._lock:
            return list(self._access_tokens)

    def username_for(self, token: str) -> str | None:
        """The user a live access token belongs to, or None (unknown, expired, revoked)."""
        with self._lock:
            record = self._access_tokens.get(token)
            if record is None or record.revoked or self.clock() >= record.expires_at:
                return None
            return record.username

    def is_valid(self, username: str, token: str) -> bool:
        """Whether ``token`` is a live access token of ``username`` (for `SmtpRelay`)."""
        return self.username_for(token) == username.lower()

    # -- requests (called from the server's threads) -------------------------------------

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        refresh_token = form.get("refresh_token", "")
        client_ok = form.get("client_id") == self.client_id and (
            self.client_secret is None
            or secrets.compare_digest(form.get("client_secret", ""), self.client_secret)
        )
        with self._lock:
            username = self._refresh_tokens.get(refresh_token)
        ok = form.get("grant_type") == "refresh_token" and client_ok and username is not None
        self.grants.append(Grant(refresh_token, form.get("client_id"), ok, form.get("scope")))
        if not client_ok:
            return 401, {"error": "invalid_client"}
        if not ok or username is None:
            return 400, {"error": "invalid_grant", "error_description": "Bad refresh token."}
        token = self.issue_access_token(username)
        return 200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.access_token_lifetime),
        }

    def _introspect(self, token: str) -> dict[str, Any]:
        username = self.username_for(token)
        self.introspections.append(Introspection(token, username is not None))
        if username is None:
            return {"active": False}
        return {"active": True, "username": username}


def _handler_for(service: TokenService) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``service``."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path != INTROSPECTION_PATH:
                self._reply(404, {"error": "not_found"})
                return
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            token = token.strip() if scheme.lower() == "bearer" else ""
            self._reply(200, service._introspect(token))

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            form = self._form()
            if path == TOKEN_PATH:
                self._reply(*service._grant(form))
            elif path == INTROSPECTION_PATH:
                self._reply(200, service._introspect(form.get("token", "")))
            else:
                self._reply(404, {"error": "not_found"})

        def _form(self) -> dict[str, str]:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, 65536)).decode("utf-8", "replace")
            return dict(urllib.parse.parse_qsl(body))

        def _reply(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # http.server writes every request to stderr; requests carry tokens.
            log.debug("token service: %s", self.command)

    return Handler
