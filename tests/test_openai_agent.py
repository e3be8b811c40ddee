"""The ``openai`` agent against a chat-completions server on loopback.

The server in the test speaks the part of the API the agent uses
(``POST /v1/chat/completions``), records every request, and answers each one as the
test scripts it: a completion, an error status, a delay.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web

from spacebot_contrib.openai_agent import OpenAIAgent, OpenAISettings
from spacebot_core.config import load_config
from spacebot_core.errors import AgentError
from spacebot_core.plugins import load_plugins
from spacebot_core.tools import AgentTools
from spacebot_core.types import (
    Attachment,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
)
from tests.core_fixtures import make_folder, open_runtime, run_once, write_config
from tests.email_setup import instance_keys, mail_from, run_bot_once
from tests.email_setup import write_config as email_write_config
from tests.running_bot import bot_from

pytest_plugins = ["tests.core_fixtures"]

API_KEY = "sk-test-secret-key-123"


def completion(text: str | None) -> dict[str, Any]:
    """A chat-completions answer whose message says ``text``."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}}],
    }


@attrs.frozen
class Scripted:
    """One scripted answer: status, JSON body, headers, and a delay before it."""

    status: int = 200
    body: Any = attrs.Factory(lambda: completion("Hello from the model"))
    headers: dict[str, str] = attrs.Factory(dict)
    delay: float = 0.0


@attrs.define
class ModelServer:
    """A chat-completions server; answers from ``script``, then the last answer again."""

    script: list[Scripted] = attrs.field(factory=list)
    requests: list[dict[str, Any]] = attrs.field(factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"headers": dict(request.headers), "json": await request.json()})
        answer = self.script.pop(0) if len(self.script) > 1 else (self.script or [Scripted()])[0]
        if answer.delay:
            await asyncio.sleep(answer.delay)
        return web.json_response(answer.body, status=answer.status, headers=answer.headers)


@pytest.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    server = ModelServer()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = runner.addresses[0][1]
    try:
        yield server
    finally:
        await runner.cleanup()


def agent(server: ModelServer, **settings: Any) -> OpenAIAgent:
    values = {
        "base_url": server.base_url,
        "model": "test-model",
        "api_key": API_KEY,
        "retry_backoff_secs": 0.01,
        **settings,
    }
    return OpenAIAgent("main", OpenAISettings(**values))


def message(text: str = "Where is my order?", **content: Any) -> InboundMessage:
    return InboundMessage(
        id="m1",
        source="test",
        adapter="test",
        conversation_id="c1",
        sender_id="alice",
        content=MessageContent.Media(text, **content) if content else MessageContent.Text(text),
        timestamp=datetime.now(UTC),
    )


def entry(role: str, text: str) -> HistoryEntry:
    return HistoryEntry(role, text, datetime.now(UTC))


async def test_the_request_has_the_model_system_history_and_bearer_key(
    model_server: ModelServer,
) -> None:
    history = [entry("user", "Hi"), entry("assistant", "Hello! How can I help?")]

    responses = await agent(model_server, system="Be brief.", temperature=0.2).respond(
        message(), history
    )

    assert responses == [OutboundResponse.Text("Hello from the model")]
    [request] = model_server.requests
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert request["json"] == {
        "model": "test-model",
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Where is my order?"},
        ],
    }


async def test_without_an_api_key_no_authorization_is_sent(model_server: ModelServer) -> None:
    await agent(model_server, api_key=None).respond(message(), [])

    assert "Authorization" not in model_server.requests[0]["headers"]


async def test_history_is_cut_to_max_history(model_server: ModelServer) -> None:
    history = [entry("user", f"line {n}") for n in range(10)]

    await agent(model_server, max_history=3).respond(message("now"), history)

    contents = [m["content"] for m in model_server.requests[0]["json"]["messages"]]
    assert contents == ["line 7", "line 8", "line 9", "now"]


async def test_attachments_are_named_to_the_model(model_server: ModelServer) -> None:
    attachment = Attachment("invoice.pdf", "application/pdf", 1234)

    await agent(model_server).respond(message("see attached", attachments=(attachment,)), [])

    last = model_server.requests[0]["json"]["messages"][-1]["content"]
    assert last == "see attached\n[attachment: invoice.pdf, application/pdf, 1234 bytes]"


async def test_429_is_tried_again_after_retry_after(model_server: ModelServer) -> None:
    model_server.script = [
        Scripted(429, {"error": {"message": "slow down"}}, {"Retry-After": "0.05"}),
        Scripted(),
    ]

    responses = await agent(model_server, retry_backoff_secs=30).respond(message(), [])

    assert responses == [OutboundResponse.Text("Hello from the model")]
    assert len(model_server.requests) == 2


async def test_5xx_is_tried_max_retries_times_then_fails(model_server: ModelServer) -> None:
    model_server.script = [Scripted(503, {"error": {"message": "overloaded"}})]

    with pytest.raises(AgentError, match="503: overloaded") as failure:
        await agent(model_server, max_retries=2).respond(message(), [])

    assert len(model_server.requests) == 3
    assert "after 3 attempts" in str(failure.value)


async def test_a_timeout_is_tried_again(model_server: ModelServer) -> None:
    model_server.script = [Scripted(delay=2.0), Scripted(body=completion("late but fine"))]

    responses = await agent(model_server, timeout_secs=0.3).respond(message(), [])

    assert responses == [OutboundResponse.Text("late but fine")]
    assert len(model_server.requests) == 2


async def test_401_fails_at_once_without_showing_the_key(model_server: ModelServer) -> None:
    model_server.script = [Scripted(401, {"error": {"message": "Incorrect API key provided"}})]

    with pytest.raises(AgentError) as failure:
        await agent(model_server).respond(message(), [])

    assert len(model_server.requests) == 1
    assert "401: Incorrect API key provided (check api_key)" in str(failure.value)
    assert API_KEY not in str(failure.value)


async def test_a_key_the_server_quotes_in_its_error_is_not_repeated(
    model_server: ModelServer,
) -> None:
    quoted = {"error": {"message": f"Incorrect API key provided: {API_KEY}"}}
    model_server.script = [Scripted(401, quoted)]

    with pytest.raises(AgentError) as failure:
        await agent(model_server).respond(message(), [])

    assert API_KEY not in str(failure.value)
    assert "Incorrect API key provided: ***" in str(failure.value)


async def test_an_unreachable_server_fails_after_the_retries() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = OpenAISettings(
        base_url=f"http://127.0.0.1:{port}/v1", model="m", max_retries=1, retry_backoff_secs=0.01
    )

    with pytest.raises(AgentError, match="cannot reach"):
        await OpenAIAgent("main", settings).respond(message(), [])


async def test_an_empty_answer_is_no_reply(model_server: ModelServer) -> None:
    model_server.script = [Scripted(body=completion("   "))]

    assert await agent(model_server).respond(message(), []) == []


async def test_an_answer_that_is_no_completion_fails(model_server: ModelServer) -> None:
    model_server.script = [Scripted(body={"unexpected": True})]

    with pytest.raises(AgentError, match="not a chat completion"):
        await agent(model_server).respond(message(), [])


def test_the_api_key_is_not_in_the_settings_repr() -> None:
    settings = OpenAISettings(base_url="http://x/v1", model="m", api_key=API_KEY)

    assert API_KEY not in repr(settings)


def openai_config(tmp_path: Path, server: ModelServer, **extra: Any) -> tuple[Path, Any]:
    """A folder instance answered by an openai agent at ``server``; its api_key from env."""
    folder = make_folder(tmp_path)
    agent_keys = {
        "base_url": server.base_url,
        "model": "test-model",
        "api_key": "env:TEST_OPENAI_KEY",
        "system": "You are a test.",
        "retry_backoff_secs": 0.01,
        **extra,
    }
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in agent_keys.items())
    config = write_config(
        tmp_path,
        f"[messaging.folder]\n{folder.toml()}\n"
        f'[[agents]]\nid = "main"\nkind = "openai"\n{lines}\n'
        '[[bindings]]\nagent_id = "main"\nchannel = "folder"\n',
    )
    return config, folder


async def test_through_the_runtime_the_model_sees_the_conversation(
    tmp_path: Path,
    model_server: ModelServer,
    folder_plugin: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)
    config, folder = openai_config(tmp_path, model_server)
    model_server.script = [
        Scripted(body=completion("Order 7 ships tomorrow.")),
        Scripted(body=completion("You're welcome.")),
    ]

    folder.drop("m1", "Where is order 7?", conversation="order-7")
    assert await run_once(config) == []
    folder.drop("m2", "Thanks!", conversation="order-7")
    assert await run_once(config) == []

    assert folder.reply_texts() == ["Order 7 ships tomorrow.", "You're welcome."]
    assert model_server.requests[1]["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert model_server.requests[1]["json"]["messages"] == [
        {"role": "system", "content": "You are a test."},
        {"role": "user", "content": "Where is order 7?"},
        {"role": "assistant", "content": "Order 7 ships tomorrow."},
        {"role": "user", "content": "Thanks!"},
    ]


async def test_through_the_runtime_a_failing_model_leaves_the_message_for_later(
    tmp_path: Path,
    model_server: ModelServer,
    folder_plugin: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", API_KEY)
    config, folder = openai_config(tmp_path, model_server, max_retries=0)
    model_server.script = [Scripted(500, {"error": "down"}), Scripted()]
    folder.drop("m1", "hello?")

    assert await run_once(config) == []
    assert folder.pending() == ["m1.json"]
    assert folder.replies() == []
    async with open_runtime(config) as runtime:
        record = runtime.store.message("folder", "m1")
        assert record is not None and "500: down" in (record.last_error or "")

    assert await run_once(config) == []
    assert folder.reply_texts() == ["Hello from the model"]
    assert folder.done("answered") == ["m1.json"]


def test_the_readme_example_is_a_valid_config(tmp_path: Path, folder_plugin: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    start = readme.index('[[agents]]\nid = "main"\nkind = "openai"')
    example = readme[start : readme.index("```", start)]
    folder = make_folder(tmp_path)
    config = write_config(
        tmp_path,
        f"[messaging.folder]\n{folder.toml()}\n{example}\n"
        '[[bindings]]\nagent_id = "main"\nchannel = "folder"\n',
    )

    host = load_plugins()
    loaded = load_config(config, host.adapter_classes(), host.agent_classes())

    [agent_config] = loaded.agents
    assert agent_config.kind == "openai"
    assert agent_config.settings.base_url == "http://127.0.0.1:8080/v1"


# -- the search_mailbox tool, against Dovecot --------------------------------------------


def tool_call_completion(*calls: tuple[str, Any]) -> dict[str, Any]:
    """A chat-completions answer asking for tool calls: (name, arguments) each."""
    return {
        "id": "chatcmpl-2",
        "object": "chat.completion",
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": f"call_{number}",
                            "type": "function",
                            "function": {"name": name, "arguments": json.dumps(arguments)},
                        }
                        for number, (name, arguments) in enumerate(calls)
                    ],
                },
            }
        ],
    }


def email_openai_config(
    tmp_path: Path, server: ModelServer, dovecot, relay, certs, bot, **extra: Any
) -> Path:
    """An email instance answered by an openai agent at ``server``."""
    agent_keys = {
        "base_url": server.base_url,
        "model": "test-model",
        "retry_backoff_secs": 0.01,
        **extra,
    }
    lines = "".join(f"{key} = {json.dumps(value)}\n" for key, value in agent_keys.items())
    return email_write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + f'\n[[agents]]\nid = "main"\nkind = "openai"\n{lines}\n'
        + '[[bindings]]\nagent_id = "main"\nchannel = "email"\n',
    )


def store_invoices(dovecot, bot) -> None:
    """Two invoices, already read, and a note, in the bot's INBOX."""
    for subject, body in (
        ("Invoice 17", "Due on 1 April."),
        ("Invoice 18", "Due on 1 May."),
        ("Team lunch", "Friday."),
    ):
        _, raw = mail_from("billing@example.com", bot, subject, body)
        dovecot.append(bot, "INBOX", raw, flags=["\\Seen"])


async def test_the_model_searches_the_mailbox_and_answers_with_what_it_found(
    tmp_path: Path, model_server: ModelServer, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    bot, alice = mail_accounts.bot, mail_accounts.alice
    store_invoices(dovecot, bot)
    _, question = mail_from(alice, bot, "A question", "Which bills did you get?")
    dovecot.deliver(bot.address, question)
    config = email_openai_config(
        tmp_path, model_server, dovecot, smtp_relay, certs, bot, tools=True
    )
    model_server.script = [
        Scripted(body=tool_call_completion(("search_mailbox", {"subject": "invoice"}))),
        Scripted(body=completion("Invoices 17 and 18 arrived.")),
    ]

    assert await run_bot_once(config) == []

    first, second = (request["json"] for request in model_server.requests)
    assert [tool["function"]["name"] for tool in first["tools"]] == ["search_mailbox"]
    asked, answered = second["messages"][-2:]
    assert asked["role"] == "assistant"
    assert asked["tool_calls"][0]["function"]["name"] == "search_mailbox"
    assert answered["role"] == "tool"
    assert answered["tool_call_id"] == "call_0"
    hits = json.loads(answered["content"])["hits"]
    assert [(hit["subject"], hit["sender"], hit["text"]) for hit in hits] == [
        ("Invoice 18", "billing@example.com", "Due on 1 May."),
        ("Invoice 17", "billing@example.com", "Due on 1 April."),
    ]
    [reply] = dovecot.fetch_all(alice)
    assert b"Invoices 17 and 18 arrived." in reply.raw


async def test_tools_are_offered_to_the_model_only_with_tools_true(
    tmp_path: Path, model_server: ModelServer, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    config = email_openai_config(
        tmp_path, model_server, dovecot, smtp_relay, certs, mail_accounts.bot
    )

    with bot_from(config) as running:
        tools = AgentTools.for_instance(running.runtime.runners[0].hooks, "email")
        await agent(model_server, tools=True).respond(message(), [], tools)
        await agent(model_server).respond(message(), [], tools)

    offered, not_offered = (request["json"] for request in model_server.requests)
    assert [tool["function"]["name"] for tool in offered["tools"]] == ["search_mailbox"]
    assert "tools" not in not_offered


async def test_bad_tool_calls_are_errors_for_the_model_and_rounds_are_bounded(
    tmp_path: Path, model_server: ModelServer, dovecot, mail_accounts, smtp_relay, certs
) -> None:
    bot = mail_accounts.bot
    config = email_openai_config(tmp_path, model_server, dovecot, smtp_relay, certs, bot)
    asking = tool_call_completion(("search_mailbox", {"limit": 51}), ("delete_all", {}))
    model_server.script = [
        Scripted(body=asking),
        Scripted(body=asking),
        Scripted(body=completion("I could not search, sorry.")),
    ]

    with bot_from(config) as running:
        tools = AgentTools.for_instance(running.runtime.runners[0].hooks, "email")
        responses = await agent(model_server, tools=True, max_tool_rounds=2).respond(
            message(), [], tools
        )

    assert responses == [OutboundResponse.Text("I could not search, sorry.")]
    requests = [request["json"] for request in model_server.requests]
    assert len(requests) == 3
    assert "tool_choice" not in requests[1]
    assert requests[2]["tool_choice"] == "none"
    errors = [json.loads(m["content"])["error"] for m in requests[1]["messages"][-2:]]
    assert errors == [
        "limit must be a whole number from 1 to 50, not 51",
        "unknown tool 'delete_all'; the tools are: search_mailbox",
    ]
