"""The built-in agents (echo, command) and agent kinds from plugins."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest

from spacebot_core import (
    Agent,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
    hookimpl,
)
from spacebot_core.agents.echo import EchoAgent, EchoSettings
from spacebot_core.store import StateStore
from tests.core_fixtures import (
    Folder,
    make_folder,
    run_once,
    single_folder_config,
    write_config,
)

pytest_plugins = ["tests.core_fixtures"]

pytestmark = pytest.mark.usefixtures("folder_plugin")

# An agent program whose behaviour the test sets through a file: it records each JSON
# document it gets on stdin, then answers, stays silent, fails or hangs.
SCRIPT = """\
import json, pathlib, sys, time
document = json.load(sys.stdin)
calls, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]).read_text().strip()
with calls.open("a") as file:
    file.write(json.dumps(document) + "\\n")
if mode == "answer":
    print("answer to " + document["message"]["content"]["text"])
elif mode == "json":
    print(json.dumps([{"type": "text", "text": "first"}, {"type": "reaction", "emoji": "ok"}]))
elif mode == "fail":
    print("model unavailable", file=sys.stderr)
    sys.exit(3)
elif mode == "hang":
    time.sleep(30)
"""


@attrs.define
class ScriptAgent:
    """A ``command`` agent running :data:`SCRIPT`, and what it was given."""

    directory: Path

    @property
    def calls_file(self) -> Path:
        return self.directory / "calls.jsonl"

    def set_mode(self, mode: str) -> None:
        (self.directory / "mode").write_text(mode)

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def toml(self, **settings: Any) -> str:
        script = self.directory / "agent.py"
        script.write_text(SCRIPT)
        command = [sys.executable, str(script), str(self.calls_file), str(self.directory / "mode")]
        lines = [f"{key} = {json.dumps(value)}\n" for key, value in settings.items()]
        return '[[agents]]\nid = "main"\nkind = "command"\n' + (
            f"command = {json.dumps(command)}\n" + "".join(lines)
        )


@pytest.fixture
def script_agent(tmp_path: Path) -> ScriptAgent:
    agent = ScriptAgent(tmp_path)
    agent.set_mode("answer")
    return agent


def command_setup(tmp_path: Path, agent: ScriptAgent, **settings: Any) -> tuple[Folder, Path]:
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder, agent.toml(**settings)))
    return folder, config


def _message(text: str, content: Any = None) -> InboundMessage:
    return InboundMessage(
        id="m1",
        source="folder",
        adapter="folder",
        conversation_id="c1",
        sender_id="alice",
        content=content or MessageContent.Text(text),
        timestamp=datetime(2026, 5, 1, tzinfo=UTC),
    )


async def test_echo_quotes_the_incoming_text_in_full() -> None:
    text = "First line\n\n  indented second paragraph\n" + "long " * 2000 + "\nlast line"

    (response,) = await EchoAgent("main", EchoSettings()).respond(_message(text), [])

    assert isinstance(response, OutboundResponse.Text)
    greeting, blank, *quoted = response.text.split("\n")
    assert greeting == EchoSettings().greeting and len(greeting) < 80
    assert blank == ""
    assert [line.removeprefix("> ").removeprefix(">") for line in quoted] == [
        line.rstrip() for line in text.split("\n")
    ]


async def test_echo_lists_attachments() -> None:
    from spacebot_core import Attachment

    content = MessageContent.Media("see file", (Attachment("a.pdf", "application/pdf", 12, b""),))

    (response,) = await EchoAgent("main").respond(_message("", content), [])

    assert "> see file" in response.text
    assert "a.pdf (application/pdf, 12 bytes)" in response.text


async def test_echo_answers_through_the_channel_by_default(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder))
    folder.drop("m1", "Is anyone there?\nHello?")

    await run_once(config)

    (text,) = folder.reply_texts()
    assert text.endswith("> Is anyone there?\n> Hello?")


async def test_command_agent_gets_the_message_and_history_as_json_on_stdin(
    tmp_path: Path, script_agent: ScriptAgent
) -> None:
    folder, config = command_setup(tmp_path, script_agent)
    folder.drop("m1", "What's new?", sender="bob", conversation="t1")

    await run_once(config)

    (call,) = script_agent.calls()
    assert call["agent_id"] == "main"
    assert call["history"] == []
    message = call["message"]
    assert message["id"] == "m1"
    assert message["sender_id"] == "bob"
    assert message["conversation_id"] == "t1"
    assert message["adapter"] == "folder"
    assert message["content"] == {"type": "text", "text": "What's new?"}
    assert folder.reply_texts() == ["answer to What's new?"]
    assert folder.done("answered") == ["m1.json"]


async def test_history_includes_both_sides_after_restarts(
    tmp_path: Path, script_agent: ScriptAgent
) -> None:
    folder, config = command_setup(tmp_path, script_agent)
    folder.drop("m1", "first question", conversation="t1")
    await run_once(config)  # each run opens and closes the store, as a restart does
    folder.drop("m2", "second question", conversation="t1")
    folder.drop("x1", "another conversation", conversation="t2")
    await run_once(config)
    folder.drop("m3", "third question", conversation="t1")
    await run_once(config)

    histories = {call["message"]["id"]: call["history"] for call in script_agent.calls()}
    assert [(e["role"], e["text"]) for e in histories["m3"]] == [
        ("user", "first question"),
        ("assistant", "answer to first question"),
        ("user", "second question"),
        ("assistant", "answer to second question"),
    ]
    assert histories["x1"] == []
    assert histories["m3"][0]["sender_id"] == "alice"


async def test_empty_output_is_no_reply_but_the_message_is_acknowledged(
    tmp_path: Path, script_agent: ScriptAgent
) -> None:
    folder, config = command_setup(tmp_path, script_agent)
    script_agent.set_mode("silent")
    folder.drop("m1", "just so you know")

    await run_once(config)
    await run_once(config)

    assert folder.replies() == []
    assert folder.done("answered") == ["m1.json"]
    assert len(script_agent.calls()) == 1


@pytest.mark.parametrize(
    ("mode", "settings"),
    [("fail", {}), ("hang", {"timeout_secs": 0.5})],
    ids=["non-zero exit", "timeout"],
)
async def test_a_failing_agent_leaves_the_message_to_be_retried_and_answered_later(
    tmp_path: Path, script_agent: ScriptAgent, mode: str, settings: dict[str, Any]
) -> None:
    folder, config = command_setup(tmp_path, script_agent, **settings)
    script_agent.set_mode(mode)
    folder.drop("m1", "are you up?")

    await run_once(config)
    assert folder.pending() == ["m1.json"]
    assert folder.replies() == []
    await run_once(config)
    assert folder.pending() == ["m1.json"]

    script_agent.set_mode("answer")
    await run_once(config)
    await run_once(config)

    assert len(script_agent.calls()) == 3
    assert folder.reply_texts() == ["answer to are you up?"]
    assert folder.done("answered") == ["m1.json"]
    store = StateStore.open(tmp_path / "state")
    record = store.message("folder", "m1")
    store.close()
    assert (record.state, record.attempts) == ("answered", 2)
    expected = "exited with status 3: model unavailable" if mode == "fail" else "did not answer"
    assert expected in record.last_error


async def test_an_agent_that_keeps_failing_is_given_up_and_marked_failed(
    tmp_path: Path, script_agent: ScriptAgent
) -> None:
    folder = make_folder(tmp_path)
    text = single_folder_config(folder, script_agent.toml())
    config = write_config(tmp_path, text)
    config.write_text(config.read_text().replace("[runtime]\n", "[runtime]\nmax_attempts = 2\n"))
    script_agent.set_mode("fail")
    folder.drop("m1", "hello?")

    await run_once(config)
    assert folder.pending() == ["m1.json"]
    await run_once(config)

    assert folder.done("failed") == ["m1.json"]
    assert folder.replies() == []


async def test_command_agent_json_output_gives_tagged_responses(
    tmp_path: Path, script_agent: ScriptAgent
) -> None:
    folder, config = command_setup(tmp_path, script_agent, output="json")
    script_agent.set_mode("json")
    folder.drop("m1", "hi")

    await run_once(config)

    assert [reply["response"] for reply in folder.replies()] == [
        {"type": "text", "text": "first"},
        {"type": "reaction", "emoji": "ok"},
    ]


@attrs.frozen
class ShoutSettings:
    suffix: str = "!"


@attrs.define(eq=False)
class ShoutAgent(Agent):
    """A third party's agent kind: answers in capitals."""

    settings_type = ShoutSettings

    # Written as agents were before they had tools: the runtime still asks it.
    async def respond(
        self, message: InboundMessage, history: list[HistoryEntry]
    ) -> list[OutboundResponse.Text]:
        return [OutboundResponse.Text(message.text.upper() + self.settings.suffix)]


class ShoutPlugin:
    @hookimpl
    def spacebot_register_agents(self, register: Callable[[str, type], None]) -> None:
        register("shout", ShoutAgent)


async def test_hook_spacebot_register_agents(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    agents = (
        '[[agents]]\nid = "polite"\nkind = "echo"\ngreeting = "Hi."\n\n'
        '[[agents]]\nid = "loud"\nkind = "shout"\nsuffix = "!!!"\ndefault = true\n'
    )
    config = write_config(tmp_path, single_folder_config(folder, agents))
    folder.drop("m1", "hello")

    await run_once(config, shout=ShoutPlugin())

    assert folder.reply_texts() == ["HELLO!!!"]


async def test_a_failed_message_waits_for_its_backoff_before_the_next_attempt(
    tmp_path: Path, script_agent: ScriptAgent
) -> None:
    folder, config = command_setup(tmp_path, script_agent)
    config.write_text(
        config.read_text().replace("retry_backoff_secs = 0", "retry_backoff_secs = 600")
    )
    script_agent.set_mode("fail")
    folder.drop("m1", "are you up?")

    await run_once(config)
    script_agent.set_mode("answer")
    await run_once(config)

    assert len(script_agent.calls()) == 1
    assert folder.pending() == ["m1.json"]
    assert folder.replies() == []
