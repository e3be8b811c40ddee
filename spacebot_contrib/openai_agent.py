"""The ``openai`` agent kind: any OpenAI-compatible chat-completions endpoint.

That is OpenAI itself and the many servers that speak its API, local model servers
among them (llama.cpp's ``llama-server``, Ollama, vLLM, LM Studio)::

    [[agents]]
    id = "main"
    kind = "openai"
    base_url = "http://127.0.0.1:8080/v1"
    model = "local-model"
    api_key = "env:OPENAI_API_KEY"        # leave out for a server that needs none
    system = "You answer customer mail briefly and politely."

Each message is one ``POST {base_url}/chat/completions`` with the system prompt, the
conversation's history (user and assistant turns) and the new message. A timeout, a
refused connection, ``429`` or a ``5xx`` is tried again after a doubling backoff (a
``Retry-After`` is honoured); what still fails, or any other error, is an
:class:`AgentError`, and the runtime tries the message again later.

Where the instance's channel can search (email), the request offers the model the
``search_mailbox`` tool when ``tools = true`` (:mod:`spacebot_core.tools`).
When the model answers with tool calls, each is run and its result sent back as a
``tool`` message, and the model is asked again; after ``max_tool_rounds`` rounds (4)
it is asked to answer without tools. A bad call (an unknown tool, a wrong argument, a
limit over 50) is an error result the model reads, not a failure of the message.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import attrs

from spacebot_core.agent import Agent
from spacebot_core.errors import AgentError
from spacebot_core.hookspecs import hookimpl
from spacebot_core.tools import NO_TOOLS, AgentTools
from spacebot_core.types import (
    AnyResponse,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_SECS = 60.0
"""The longest ``Retry-After`` honoured; a server asking for more fails the attempt."""
ERROR_DETAIL_CHARS = 300


@attrs.frozen
class OpenAISettings:
    """The keys of an ``[[agents]]`` table of kind ``openai``."""

    base_url: str
    model: str
    api_key: str | None = attrs.field(default=None, repr=False)
    system: str | None = None
    #: Seconds one request may take, from connecting to the last byte of the answer.
    timeout_secs: float = 60.0
    #: How many times a failed request is tried again before the message fails.
    max_retries: int = 2
    #: Seconds before the first retry; each next one waits twice as long.
    retry_backoff_secs: float = 1.0
    #: At most this many earlier messages of the conversation are sent.
    max_history: int = 40
    temperature: float | None = None
    max_tokens: int | None = None
    #: Offer the model the instance's tools (``search_mailbox``) where it has any. Off
    #: by default: whoever may write to the bot could have it search the whole mailbox.
    tools: bool = False
    #: At most this many rounds of tool calls before the model must answer (0: no tools).
    max_tool_rounds: int = 4


class RetryableError(AgentError):
    """A failure worth trying again: a timeout, a refused connection, 429, 5xx."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def chat_messages(
    settings: OpenAISettings, message: InboundMessage, history: list[HistoryEntry]
) -> list[dict[str, str]]:
    """The ``messages`` of the request: system, the history, then the new message; pure."""
    messages = [{"role": "system", "content": settings.system}] if settings.system else []
    earlier = history[-settings.max_history :] if settings.max_history > 0 else []
    for entry in earlier:
        role = "assistant" if entry.role == "assistant" else "user"
        messages.append({"role": role, "content": entry.text})
    messages.append({"role": "user", "content": _message_text(message)})
    return messages


def _message_text(message: InboundMessage) -> str:
    """The text, and the attachments named, since the model cannot open them."""
    text = message.text
    if isinstance(message.content, MessageContent.Media) and message.content.attachments:
        names = [
            f"[attachment: {a.filename}, {a.mime_type}, {a.size} bytes]"
            for a in message.content.attachments
        ]
        text = "\n".join([text, *names]) if text else "\n".join(names)
    return text


def request_body(
    settings: OpenAISettings, message: InboundMessage, history: list[HistoryEntry]
) -> dict[str, Any]:
    """The JSON body of one chat-completions request; pure."""
    body: dict[str, Any] = {
        "model": settings.model,
        "messages": chat_messages(settings, message, history),
    }
    if settings.temperature is not None:
        body["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        body["max_tokens"] = settings.max_tokens
    return body


def responses_from_completion(document: Any) -> list[AnyResponse]:
    """The reply in a chat-completions answer; no responses when its text is empty.

    :raises AgentError: when the document is not a chat completion.
    """
    try:
        content = document["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise AgentError(
            f"the answer is not a chat completion: {json.dumps(document)[:ERROR_DETAIL_CHARS]}"
        ) from None
    if not isinstance(content, str) or not content.strip():
        return []
    return [OutboundResponse.Text(content.strip())]


def tool_calls(document: Any) -> list[dict[str, Any]]:
    """The tool calls in a chat-completions answer, none when it has none; pure."""
    try:
        calls = document["choices"][0]["message"].get("tool_calls")
    except (KeyError, IndexError, TypeError, AttributeError):
        return []  # responses_from_completion says what is wrong with the document
    if not isinstance(calls, list):
        return []
    return [call for call in calls if isinstance(call, dict)]


def _assistant(document: Any) -> dict[str, Any]:
    """The model's turn that asked for tools, as the next request repeats it."""
    message = document["choices"][0]["message"]
    return {
        "role": "assistant",
        "content": message.get("content"),
        "tool_calls": tool_calls(document),
    }


async def run_tool_calls(calls: list[dict[str, Any]], tools: AgentTools) -> list[dict[str, Any]]:
    """Run each call; one ``tool`` message per call, holding its JSON result."""
    messages = []
    for call in calls:
        function = call.get("function") if isinstance(call.get("function"), dict) else {}
        name = function.get("name")
        arguments = function.get("arguments") or "{}"
        try:
            # The API sends the arguments as JSON text; some servers send the object.
            arguments = arguments if isinstance(arguments, dict) else json.loads(arguments)
        except (TypeError, ValueError):
            result: dict[str, Any] = {"error": "the arguments are not a valid JSON object"}
        else:
            result = await tools.call(name if isinstance(name, str) else "", arguments)
        messages.append(
            {
                "role": "tool",
                "tool_call_id": str(call.get("id", "")),
                "content": json.dumps(result, ensure_ascii=False),
            }
        )
    return messages


@attrs.define(eq=False)
class OpenAIAgent(Agent):
    """Answers with a model behind an OpenAI-compatible ``/chat/completions``."""

    settings_type = OpenAISettings

    @property
    def endpoint(self) -> str:
        """The chat-completions URL."""
        return self.settings.base_url.rstrip("/") + "/chat/completions"

    async def respond(
        self, message: InboundMessage, history: list[HistoryEntry], tools: AgentTools = NO_TOOLS
    ) -> list[AnyResponse]:
        """Ask the model; run the tool calls it makes, round by round (at most
        ``max_tool_rounds``), and return its answer."""
        settings = self.settings
        body = request_body(settings, message, history)
        if settings.tools and settings.max_tool_rounds > 0 and (offered := tools.definitions()):
            body["tools"] = offered
        rounds = 0
        while True:
            document = await self._ask(body)
            calls = tool_calls(document)
            if not calls or "tools" not in body:
                return responses_from_completion(document)
            if rounds >= settings.max_tool_rounds:
                # Told to answer without tools (tool_choice "none"), and still asking.
                responses = responses_from_completion(document)
                if not responses:
                    raise AgentError(
                        f"the model still asked for tools after max_tool_rounds = "
                        f"{settings.max_tool_rounds} rounds, and gave no answer"
                    )
                return responses
            rounds += 1
            results = await run_tool_calls(calls, tools)
            body = {**body, "messages": [*body["messages"], _assistant(document), *results]}
            if rounds >= settings.max_tool_rounds:
                body["tool_choice"] = "none"

    async def _ask(self, body: dict[str, Any]) -> Any:
        """One chat completion, trying again on timeouts, 429 and 5xx."""
        attempt = 0
        while True:
            try:
                return await self._post(body)
            except RetryableError as error:
                if attempt >= self.settings.max_retries:
                    raise AgentError(
                        f"{error} (after {attempt + 1} attempts at {self.endpoint})"
                    ) from None
                await asyncio.sleep(self._delay(attempt, error.retry_after))
                attempt += 1

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, MAX_RETRY_AFTER_SECS)
        nominal = self.settings.retry_backoff_secs * 2.0**attempt
        # Jitter: many messages failing together must not retry together.
        return random.uniform(nominal / 2, nominal)

    async def _post(self, body: dict[str, Any]) -> Any:
        """One request; the client lives for it, as agents have no start or stop."""
        import aiohttp

        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_secs)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(self.endpoint, json=body, headers=headers) as reply,
            ):
                text = await reply.text()
                text = _scrub(text, self.settings.api_key)
                _raise_for_status(reply.status, reply.headers.get("Retry-After"), text)
                return _json(text)
        except TimeoutError:
            raise RetryableError(
                f"no answer within timeout_secs = {self.settings.timeout_secs:g}"
            ) from None
        except aiohttp.ClientError as error:
            raise RetryableError(f"cannot reach {self.endpoint}: {error}") from None


def _scrub(text: str, secret: str | None) -> str:
    """``text`` without ``secret``: some servers quote the key they refused in the error."""
    return text.replace(secret, "***") if secret else text


def _raise_for_status(status: int, retry_after: str | None, text: str) -> None:
    if status < 300:
        return
    detail = _error_detail(text)
    message = f"the model server answered {status}: {detail}"
    if status in RETRY_STATUSES:
        raise RetryableError(message, _seconds(retry_after))
    hint = " (check api_key)" if status in (401, 403) else ""
    raise AgentError(message + hint)


def _error_detail(text: str) -> str:
    """The server's own error message when it sends the usual ``{"error": {...}}``."""
    try:
        error = json.loads(text).get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"][:ERROR_DETAIL_CHARS]
        if isinstance(error, str):
            return error[:ERROR_DETAIL_CHARS]
    except (ValueError, AttributeError):
        pass
    return text.strip()[:ERROR_DETAIL_CHARS] or "(empty body)"


def _seconds(retry_after: str | None) -> float | None:
    try:
        return max(0.0, float(retry_after)) if retry_after else None
    except ValueError:  # an HTTP date: rare from these servers, use our own backoff
        return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise AgentError(
            f"the model server's answer is not JSON: {text[:ERROR_DETAIL_CHARS]}"
        ) from None


@hookimpl
def spacebot_register_agents(register: Callable[[str, type], None]) -> None:
    """Register the ``openai`` agent kind."""
    register("openai", OpenAIAgent)
