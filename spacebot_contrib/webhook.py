"""The ``webhook`` channel: an HTTP endpoint that answers with the agent's responses.

A client POSTs ``{"message": "...", "sender_id": "...", "conversation_id": "..."}``
(``conversation_id`` defaults to the sender; an optional ``"id"`` makes a retried
request harmless) to ``/webhook`` with ``Authorization: Bearer <token>``, and the HTTP
reply carries the agent's responses, tagged JSON through the one converter::

    {"id": "...", "conversation_id": "...", "outcome": "answered",
     "responses": [{"type": "text", "text": "..."}]}

The channel is request/response, but the runtime's loop is poll-based; it fits the hooks
like this. ``spacebot_start`` starts an aiohttp server on the running loop. A request
waits in memory; ``spacebot_wait`` returns as soon as one arrives, and
``spacebot_poll`` returns every request not yet acknowledged. ``spacebot_send`` collects
the responses of a request, and ``spacebot_ack`` completes it: the HTTP reply is written
then, after every response was recorded as sent.

Requests wait in memory only: a request in flight when spacebot stops gets ``503`` and
the client sends it again. The responses given to each ``id`` are kept for a week in a
small SQLite file in the state directory, so a request sent again with the same ``id``
is not answered twice: it gets the answer it was given, even across a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import re
import socket
import sqlite3
import ssl
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from spacebot_core.adapter import Adapter
from spacebot_core.checks import CheckResult
from spacebot_core.convert import response_to_data
from spacebot_core.errors import ChannelError, ConfigError
from spacebot_core.hookspecs import hookimpl
from spacebot_core.types import AnyResponse, InboundMessage, MessageContent

if TYPE_CHECKING:  # aiohttp is imported when the server starts: every command loads plugins
    from aiohttp import web

CHANNEL = "webhook"
MIN_TOKEN_CHARS = 16
STOP_TIMEOUT_SECS = 5.0
"""Seconds the server may take to close its connections when the instance stops."""
MAX_ID_CHARS = 200
REPLY_RETENTION = timedelta(days=7)
"""How long the responses to a request id are kept for a client that sends it again."""


@attrs.frozen
class WebhookSettings:
    """The ``[messaging.webhook]`` table."""

    #: The bearer token clients must send; write it as ``"env:WEBHOOK_TOKEN"``.
    token: str = attrs.field(repr=False)
    host: str = "127.0.0.1"
    port: int = 8765
    path: str = "/webhook"
    #: Seconds a request waits for the agent's answer before ``504``.
    reply_timeout_secs: float = 150.0
    max_body_bytes: int = 1048576
    #: Seconds between polls while nothing arrives: how soon a request the agent
    #: failed on is tried again.
    poll_interval_secs: float = 5.0
    #: Serve HTTPS with this certificate chain and key (PEM files).
    tls_cert_file: str | None = None
    tls_key_file: str | None = None


@attrs.frozen
class WebhookRequest:
    """One accepted request: a raw item of the webhook's poll."""

    message_id: str
    sender_id: str
    conversation_id: str
    text: str
    received_at: datetime


@attrs.frozen
class WebhookReply:
    """What the HTTP reply to one request carries."""

    status: int
    body: dict[str, Any]


@attrs.define(eq=False)
class PendingRequest:
    """A request waiting for its answer; every HTTP request with its id waits on it."""

    request: WebhookRequest
    done: asyncio.Future[WebhookReply]
    #: Returned by a poll: the runtime is working on it, so a client that gives up
    #: does not take it away half-answered.
    taken: bool = False


class BadRequest(ValueError):
    """A request body that is not the webhook's JSON document; the text says why."""


def parse_request_body(body: Any, received_at: datetime) -> WebhookRequest:
    """The request document as a :class:`WebhookRequest`; pure.

    :raises BadRequest: naming the field that is missing or of the wrong type.
    """
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object: {"message": ..., "sender_id": ...}')
    text = _string_field(body, "message", required=True, allow_empty=True)
    sender_id = _string_field(body, "sender_id", required=True)
    conversation_id = _string_field(body, "conversation_id") or sender_id
    message_id = _string_field(body, "id") or uuid.uuid4().hex
    if len(message_id) > MAX_ID_CHARS:
        raise BadRequest(f"id: at most {MAX_ID_CHARS} characters")
    return WebhookRequest(message_id, sender_id, conversation_id, text, received_at)


def _string_field(
    body: dict[str, Any], name: str, required: bool = False, allow_empty: bool = False
) -> str:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{name}: is required")
        return ""
    if not isinstance(value, str):
        raise BadRequest(f"{name}: must be a string")
    if not value and not allow_empty:
        raise BadRequest(f"{name}: must not be empty")
    return value


def reply_body(
    request: WebhookRequest, outcome: str, responses: list[dict[str, Any]]
) -> dict[str, Any]:
    """The JSON document of an answered (or ignored, or failed) request."""
    return {
        "id": request.message_id,
        "conversation_id": request.conversation_id,
        "outcome": outcome,
        "responses": responses,
    }


def _error(status: int, text: str) -> WebhookReply:
    return WebhookReply(status, {"error": text})


@attrs.define(eq=False)
class ReplyLog:
    """The responses given to each request id, oldest first; SQLite, in a file or memory."""

    connection: sqlite3.Connection

    @classmethod
    def open(cls, path: Path | None) -> ReplyLog:
        """Open (creating) the log at ``path``, or one in memory; prune old entries."""
        connection = sqlite3.connect(
            str(path) if path else ":memory:", isolation_level=None, check_same_thread=False
        )
        connection.execute(
            "CREATE TABLE IF NOT EXISTS responses (delivery_id TEXT PRIMARY KEY,"
            " message_id TEXT NOT NULL, response TEXT NOT NULL, created_at TEXT NOT NULL)"
        )
        connection.execute(
            "CREATE INDEX IF NOT EXISTS responses_by_message ON responses (message_id)"
        )
        oldest = (datetime.now(UTC) - REPLY_RETENTION).isoformat()
        connection.execute("DELETE FROM responses WHERE created_at < ?", (oldest,))
        return cls(connection)

    def add(self, message_id: str, delivery_id: str, response: dict[str, Any]) -> None:
        """Record one response; the same delivery id twice is recorded once."""
        self.connection.execute(
            "INSERT OR IGNORE INTO responses VALUES (?, ?, ?, ?)",
            (delivery_id, message_id, json.dumps(response), datetime.now(UTC).isoformat()),
        )

    def responses(self, message_id: str) -> list[dict[str, Any]]:
        """The responses given to ``message_id``, in the order they were sent."""
        rows = self.connection.execute(
            "SELECT response FROM responses WHERE message_id = ? ORDER BY rowid", (message_id,)
        ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def close(self) -> None:
        """Close the database."""
        self.connection.close()


@attrs.define(eq=False)
class WebhookAdapter(Adapter):
    """An HTTP endpoint; one instance is one server on one port."""

    settings_type = WebhookSettings
    personal_keys = frozenset({"token", "port"})

    _pending: dict[str, PendingRequest] = attrs.field(factory=dict, init=False)
    _arrived: asyncio.Event | None = attrs.field(default=None, init=False)
    _runner: web.AppRunner | None = attrs.field(default=None, init=False)
    _replies: ReplyLog | None = attrs.field(default=None, init=False)
    bound_port: int | None = attrs.field(default=None, init=False)

    @classmethod
    def finalize_settings(cls, settings: WebhookSettings, runtime_key: str) -> WebhookSettings:
        """Check what cannot work: a short token, a path without ``/``, half a TLS pair."""
        if len(settings.token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"token: use at least {MIN_TOKEN_CHARS} characters, for example from "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        if not settings.path.startswith("/"):
            raise ConfigError('path: must start with "/", such as "/webhook"')
        if not 0 <= settings.port <= 65535:
            raise ConfigError("port: must be between 0 and 65535")
        if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
            raise ConfigError("tls_cert_file and tls_key_file: set both, or neither")
        if settings.reply_timeout_secs <= 0 or settings.max_body_bytes <= 0:
            raise ConfigError("reply_timeout_secs and max_body_bytes: must be greater than 0")
        return settings

    @property
    def url(self) -> str:
        """Where clients POST, with the port actually bound once started."""
        scheme = "https" if self.settings.tls_cert_file else "http"
        port = self.bound_port if self.bound_port is not None else self.settings.port
        host = self.settings.host
        return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}{self.settings.path}"

    @hookimpl
    async def spacebot_start(self) -> None:
        """Start the HTTP server on the running loop."""
        from aiohttp import web

        if self._runner is not None:
            return
        ssl_context = self._ssl_context()  # before anything is opened: it may fail
        self._replies = self._replies or ReplyLog.open(self._reply_log_path())
        self._arrived = asyncio.Event()
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post(self.settings.path, self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=STOP_TIMEOUT_SECS)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            raise ChannelError(
                f"cannot listen on {self.settings.host}:{self.settings.port}: {error.strerror}",
                hint="another program may use the port; choose another 'port'",
            ) from None
        self._runner = runner
        self.bound_port = runner.addresses[0][1]
        if not self.settings.tls_cert_file and not _is_loopback(self.settings.host):
            self.log.warning(
                "[%s] serving plain HTTP on %s: the token crosses the network in clear; "
                "set tls_cert_file and tls_key_file, or put a TLS proxy in front",
                self.runtime_key,
                self.settings.host,
            )
        self.log.info("[%s] listening on %s", self.runtime_key, self.url)

    def _reply_log_path(self) -> Path | None:
        if self.state_dir is None:
            return None
        name = re.sub(r"[^A-Za-z0-9._-]", "_", self.runtime_key)
        Path(self.state_dir).mkdir(parents=True, exist_ok=True)
        return Path(self.state_dir) / f"webhook-{name}.sqlite3"

    def waiting_ids(self) -> list[str]:
        """The ids of the requests waiting for their answer, oldest first."""
        return [key for key, pending in self._pending.items() if not pending.done.done()]

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.settings.tls_cert_file:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.settings.tls_cert_file, self.settings.tls_key_file)
        except (OSError, ssl.SSLError) as error:
            raise ChannelError(
                f"cannot load tls_cert_file or tls_key_file ({error})",
                hint="set them to the PEM files of the certificate chain and its key",
            ) from None
        return context

    @hookimpl
    async def spacebot_stop(self) -> None:
        """Answer waiting requests with 503 (send again), then stop the server."""
        for pending in self._pending.values():
            if not pending.done.done():
                pending.done.set_result(
                    _error(503, "spacebot is stopping; send the request again (same id)")
                )
        self._pending.clear()
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await asyncio.wait_for(runner.cleanup(), timeout=STOP_TIMEOUT_SECS * 2)
        finally:
            if self._replies is not None:
                self._replies.close()
                self._replies = None

    async def _handle(self, request: web.Request) -> web.Response:
        """One POST: check the token, queue the message, wait for its answer."""
        from aiohttp import web

        reply = await self._reply_to(request)
        headers = {"WWW-Authenticate": "Bearer"} if reply.status == 401 else None
        return web.json_response(reply.body, status=reply.status, headers=headers)

    async def _reply_to(self, request: web.Request) -> WebhookReply:
        from aiohttp import web

        if not self._authorized(request.headers.get("Authorization", "")):
            return _error(401, "missing or wrong bearer token")
        try:
            parsed = parse_request_body(await request.json(), datetime.now(UTC))
        except BadRequest as error:
            return _error(400, str(error))
        except ValueError:
            return _error(400, "the body is not valid JSON")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is over {self.settings.max_body_bytes} bytes")
        pending = self._pending.get(parsed.message_id)
        if pending is None:
            future = asyncio.get_running_loop().create_future()
            pending = PendingRequest(parsed, future)
            self._pending[parsed.message_id] = pending
            self.log.debug(
                "[%s] request %s from %s", self.runtime_key, parsed.message_id, parsed.sender_id
            )
            if self._arrived is not None:
                self._arrived.set()
        try:
            timeout = self.settings.reply_timeout_secs
            return await asyncio.wait_for(asyncio.shield(pending.done), timeout=timeout)
        except TimeoutError:
            if not pending.taken:  # nobody works on it: the client may send it again
                self._pending.pop(parsed.message_id, None)
            return _error(504, "no answer in time; send the request again (same id)")

    def _authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        expected = self.settings.token.encode()
        # Constant time: the comparison must not tell how much of a guess was right.
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)

    @hookimpl
    async def spacebot_poll(self) -> list[WebhookRequest]:
        """Every request not yet acknowledged, oldest first."""
        if self._arrived is not None:
            self._arrived.clear()
        found = []
        for pending in self._pending.values():
            if not pending.done.done():
                pending.taken = True
                found.append(pending.request)
        return found

    @hookimpl
    async def spacebot_wait(self) -> None:
        """Return as soon as a request arrives, or after one poll interval."""
        if self._arrived is None:
            await asyncio.sleep(self.poll_interval)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._arrived.wait(), timeout=self.poll_interval)

    @hookimpl
    def spacebot_normalize_inbound(self, raw: Any) -> InboundMessage | None:
        """A request as a message; the sender and conversation are the client's."""
        if not isinstance(raw, WebhookRequest):
            return None
        return InboundMessage(
            id=raw.message_id,
            source=CHANNEL,
            adapter=self.runtime_key,
            conversation_id=raw.conversation_id,
            sender_id=raw.sender_id,
            content=MessageContent.Text(raw.text),
            timestamp=raw.received_at,
            formatted_author=raw.sender_id,
        )

    @hookimpl
    async def spacebot_send(
        self, message: InboundMessage, response: AnyResponse, delivery_id: str
    ) -> None:
        """Record one response for the request's HTTP reply (written at the ack).

        It is recorded even when the client is gone (it gave up, or spacebot restarted):
        the client that sends the request again gets it.
        """
        if self._replies is None:
            raise ChannelError(f"the {self.runtime_key} webhook is not started")
        self._replies.add(message.id, delivery_id, response_to_data(response))

    @hookimpl
    async def spacebot_ack(self, message: InboundMessage, outcome: str) -> None:
        """Write the HTTP reply: 200 with the responses, or 502 if the agent gave up."""
        pending = self._pending.pop(message.id, None)
        if pending is None or pending.done.done():
            return
        responses = self._replies.responses(message.id) if self._replies else []
        status = 200 if outcome in ("answered", "ignored") else 502
        pending.done.set_result(
            WebhookReply(status, reply_body(pending.request, outcome, responses))
        )

    @hookimpl
    async def spacebot_check(self) -> list[CheckResult]:
        """Can the port be bound, and can the TLS files be loaded."""
        results = [self._check_port()]
        if self.settings.tls_cert_file:
            try:
                self._ssl_context()
                results.append(CheckResult("load the TLS certificate", True))
            except ChannelError as error:
                results.append(
                    CheckResult("load the TLS certificate", False, str(error), error.hint)
                )
        return results

    def _check_port(self) -> CheckResult:
        step = f"listen on {self.url}"
        if self._runner is not None:
            return CheckResult(step, True, "listening")
        family = socket.AF_INET6 if ":" in self.settings.host else socket.AF_INET
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((self.settings.host, self.settings.port))
        except OSError as error:
            return CheckResult(
                step, False, error.strerror or str(error), "choose another 'port' or 'host'"
            )
        return CheckResult(step, True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@hookimpl
def spacebot_register_adapters(register: Callable[[str, type], None]) -> None:
    """Register the ``webhook`` channel."""
    register(CHANNEL, WebhookAdapter)
