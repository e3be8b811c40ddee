"""The webhook channel: HTTP POST in, the agent's responses in the HTTP reply.

Each test runs the real runtime loop of one webhook instance on a free loopback port and
talks to it with a real HTTP client, as a user's program would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from spacebot_contrib.webhook import WebhookAdapter, parse_request_body
from spacebot_core.errors import ConfigError
from spacebot_core.testing import AgentRecorder, SpacebotHost, toml_table
from spacebot_core.testing.conformance import recording_agent_plugin
from spacebot_email.testing import CertFiles

TOKEN = "test-token-0123456789abcdef"
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=10)
WAIT_SECS = 10.0


@pytest.fixture
def recorder() -> AgentRecorder:
    """What the agent kind ``spacebot-conformance`` was asked."""
    return AgentRecorder()


@pytest.fixture
def host(tmp_path: Path, recorder: AgentRecorder) -> SpacebotHost:
    """A temporary spacebot with the recording agent kind registered."""
    host = SpacebotHost(tmp_path)
    host.register("recorder", recording_agent_plugin(recorder))
    return host


def webhook_config(
    host: SpacebotHost, agent: dict[str, Any] | None = None, **settings: Any
) -> Path:
    """One webhook instance on a free port, bound to ``agent`` (the recording one)."""
    values = {"token": TOKEN, "port": 0, "poll_interval_secs": 30.0, **settings}
    agents = agent or {"id": "main", "kind": "spacebot-conformance"}
    runtime = {"state_dir": str(host.state_dir), "retry_backoff_secs": 0, "max_attempts": 1}
    return host.write_config(
        toml_table("[runtime]", runtime)
        + toml_table("[messaging.webhook]", values)
        + toml_table("[[agents]]", agents)
        + toml_table("[[bindings]]", {"agent_id": "main", "channel": "webhook"})
    )


@asynccontextmanager
async def running(host: SpacebotHost, config: Path) -> AsyncIterator[WebhookAdapter]:
    """The instance's runtime loop (``spacebot run``) in a task; stopped afterwards."""
    async with host.runtime(config) as runtime:
        [runner] = runtime.runners
        stopping = asyncio.Event()
        task = asyncio.create_task(runner.run_forever(stopping))
        adapter = runner.hooks.adapter
        try:
            await until(lambda: adapter.bound_port is not None or task.done())
            if task.done():
                task.result()
            yield adapter
        finally:
            stopping.set()
            await asyncio.wait_for(task, WAIT_SECS)


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECS
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def post(
    url: str, body: Any, token: str | None = TOKEN, ssl_context: ssl.SSLContext | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST ``body`` as JSON (or bytes as they are); the status, JSON answer and headers."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers["Content-Type"] = "application/json"
    async with (
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as session,
        session.post(url, data=data, headers=headers, ssl=ssl_context) as reply,
    ):
        return reply.status, await reply.json(content_type=None), dict(reply.headers)


async def test_a_post_is_answered_with_the_agents_responses(
    host: SpacebotHost, recorder: AgentRecorder
) -> None:
    async with running(host, webhook_config(host)) as webhook:
        started = time.monotonic()
        status, answer, _ = await post(
            webhook.url,
            {"message": "Where is my order?", "sender_id": "u1", "conversation_id": "c1"},
        )
        elapsed = time.monotonic() - started

    assert status == 200
    assert answer["outcome"] == "answered"
    assert answer["conversation_id"] == "c1"
    assert answer["responses"] == [
        {"type": "text", "text": "conformance reply: Where is my order?"}
    ]
    [asked] = recorder.messages
    assert (asked.source, asked.sender_id, asked.conversation_id) == ("webhook", "u1", "c1")
    # Answered at once, not after the 30 s poll interval: the arrival wakes the loop.
    assert elapsed < 5


async def test_the_agent_sees_the_conversation_history(host: SpacebotHost) -> None:
    async with running(host, webhook_config(host, agent={"id": "main", "kind": "echo"})) as webhook:
        first = {"message": "one", "sender_id": "u1", "conversation_id": "c1"}
        await post(webhook.url, first)
        _, answer, _ = await post(webhook.url, {**first, "message": "two"})

    assert "(message 2 of this conversation)" in answer["responses"][0]["text"]


async def test_the_conversation_defaults_to_the_sender(
    host: SpacebotHost, recorder: AgentRecorder
) -> None:
    async with running(host, webhook_config(host)) as webhook:
        _, answer, _ = await post(webhook.url, {"message": "hi", "sender_id": "u7"})

    assert answer["conversation_id"] == "u7"
    assert recorder.messages[0].conversation_id == "u7"


@pytest.mark.parametrize("token", [None, "wrong-token-0123456789abcdef", ""])
async def test_a_missing_or_wrong_token_is_refused_with_401(
    host: SpacebotHost, recorder: AgentRecorder, token: str | None
) -> None:
    async with running(host, webhook_config(host)) as webhook:
        status, answer, headers = await post(
            webhook.url, {"message": "hi", "sender_id": "u1"}, token=token
        )

    assert status == 401
    assert headers.get("WWW-Authenticate") == "Bearer"
    assert "token" in answer["error"]
    assert recorder.messages == []


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{not json", "not valid JSON"),
        (b'["a list"]', "JSON object"),
        (b'{"sender_id": "u1"}', "message: is required"),
        (b'{"message": "hi"}', "sender_id: is required"),
        (b'{"message": 5, "sender_id": "u1"}', "message: must be a string"),
        (b'{"message": "hi", "sender_id": "u1", "conversation_id": ""}', "must not be empty"),
    ],
)
async def test_a_malformed_body_is_refused_with_400_naming_the_field(
    host: SpacebotHost, body: bytes, error: str
) -> None:
    async with running(host, webhook_config(host)) as webhook:
        status, answer, _ = await post(webhook.url, body)

    assert status == 400
    assert error in answer["error"]


async def test_a_body_over_the_limit_is_refused_with_413(host: SpacebotHost) -> None:
    async with running(host, webhook_config(host, max_body_bytes=1024)) as webhook:
        status, answer, _ = await post(webhook.url, {"message": "x" * 5000, "sender_id": "u1"})

    assert status == 413
    assert "over 1024 bytes" in answer["error"]


async def test_a_request_sent_again_gets_the_same_answer_even_after_a_restart(
    host: SpacebotHost, recorder: AgentRecorder
) -> None:
    config = webhook_config(host)
    request = {"id": "req-1", "message": "pay invoice 7", "sender_id": "u1"}
    async with running(host, config) as webhook:
        first = await post(webhook.url, request)
        second = await post(webhook.url, request)
    async with running(host, config) as webhook:
        after_restart = await post(webhook.url, request)

    assert first[0] == second[0] == after_restart[0] == 200
    assert first[1] == second[1] == after_restart[1]
    assert first[1]["id"] == "req-1"
    assert len(recorder.messages) == 1


async def test_a_request_waiting_when_spacebot_stops_gets_503(host: SpacebotHost) -> None:
    config = webhook_config(host)
    async with host.runtime(config) as runtime:
        [runner] = runtime.runners
        await runner.start()  # listening, but the loop never polls
        webhook = runner.hooks.adapter
        client = asyncio.create_task(post(webhook.url, {"message": "hi", "sender_id": "u1"}))
        await until(lambda: webhook.waiting_ids() != [])
        await runner.stop()
        status, answer, _ = await asyncio.wait_for(client, WAIT_SECS)

    assert status == 503
    assert "send the request again" in answer["error"]


async def test_no_answer_in_time_is_504_and_the_request_is_dropped(host: SpacebotHost) -> None:
    config = webhook_config(host, reply_timeout_secs=0.2)
    async with host.runtime(config) as runtime:
        [runner] = runtime.runners
        await runner.start()
        webhook = runner.hooks.adapter
        try:
            status, answer, _ = await post(webhook.url, {"message": "hi", "sender_id": "u1"})
            polled = await runner.hooks.call_async("spacebot_poll")
        finally:
            await runner.stop()

    assert status == 504
    assert "send the request again" in answer["error"]
    assert polled == [[]]


async def test_responses_are_tagged_json_through_the_one_converter(host: SpacebotHost) -> None:
    printed = [
        {"type": "text", "text": "Here it is"},
        {"type": "file", "filename": "a.txt", "data": "aGk=", "mime_type": "text/plain"},
        {"type": "reaction", "emoji": "👍"},
    ]
    program = f"import sys; sys.stdin.read(); print({json.dumps(json.dumps(printed))})"
    agent = {"id": "main", "kind": "command", "command": [sys.executable, "-c", program]}
    agent["output"] = "json"
    async with running(host, webhook_config(host, agent=agent)) as webhook:
        status, answer, _ = await post(webhook.url, {"message": "the file?", "sender_id": "u1"})

    assert status == 200
    assert answer["responses"][0] == {"type": "text", "text": "Here it is"}
    assert answer["responses"][1]["type"] == "file"
    assert base64.b64decode(answer["responses"][1]["data"]) == b"hi"
    assert answer["responses"][2] == {"type": "reaction", "emoji": "👍"}


async def test_a_message_the_agent_gives_up_on_is_answered_502(host: SpacebotHost) -> None:
    agent = {"id": "main", "kind": "command", "command": [sys.executable, "-c", "exit(3)"]}
    async with running(host, webhook_config(host, agent=agent)) as webhook:
        status, answer, _ = await post(webhook.url, {"message": "hi", "sender_id": "u1"})

    assert status == 502
    assert answer["outcome"] == "failed"
    assert answer["responses"] == []


async def test_https_with_a_certificate(host: SpacebotHost, certs: CertFiles) -> None:
    config = webhook_config(host, tls_cert_file=str(certs.cert_chain), tls_key_file=str(certs.key))
    client_context = ssl.create_default_context(cafile=str(certs.ca))
    async with running(host, config) as webhook:
        assert webhook.url.startswith("https://127.0.0.1:")
        status, answer, _ = await post(
            webhook.url, {"message": "secure", "sender_id": "u1"}, ssl_context=client_context
        )

    assert status == 200
    assert answer["outcome"] == "answered"


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"token": "short"}, "token: use at least 16 characters"),
        ({"path": "webhook"}, 'path: must start with "/"'),
        ({"tls_cert_file": "/x.pem"}, "set both, or neither"),
    ],
)
def test_config_mistakes_are_reported(host: SpacebotHost, settings: dict, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        host.load_config(webhook_config(host, **settings))


def test_the_token_is_not_in_the_settings_repr(host: SpacebotHost) -> None:
    config = host.load_config(webhook_config(host))

    assert TOKEN not in repr(config)


async def test_check_reports_a_port_in_use(host: SpacebotHost) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = webhook_config(host, port=port)
        async with host.runtime(config) as runtime:
            results = (await runtime.check())["webhook"]

    [listen] = results
    assert not listen.ok
    assert "port" in (listen.fix or "")


def test_parse_request_body_gives_an_id_when_the_client_gives_none() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    first = parse_request_body({"message": "a", "sender_id": "s"}, now)
    second = parse_request_body({"message": "a", "sender_id": "s"}, now)

    assert first.message_id != second.message_id
    assert parse_request_body({"message": "a", "sender_id": "s", "id": "k"}, now).message_id == "k"


@pytest.mark.parametrize("table", ["[messaging.webhook]", "[messaging.console]"])
def test_the_readme_examples_are_valid_configs(
    host: SpacebotHost, monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index(f"```toml\n{table}\n") + len("```toml\n")
    monkeypatch.setenv("WEBHOOK_TOKEN", TOKEN)

    config = host.load_config(host.write_config(readme[start : readme.index("```", start)]))

    [instance] = config.instances
    assert instance.runtime_key == table.strip("[]").split(".")[1]
