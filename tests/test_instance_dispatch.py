"""Instances of one adapter type, keyed by runtime_key, each called on its own.

Two folder instances run side by side: each polls only its own inbox, and the reply to
a message goes back through the instance it came from. Plugins that are not instances
(a logging wrapper, a filter) take part in every instance's calls.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spacebot_core import InboundMessage, hookimpl
from tests.core_fixtures import (
    Folder,
    adapter_of,
    make_folder,
    open_runtime,
    run_once,
    single_folder_config,
    write_config,
)

pytest_plugins = ["tests.core_fixtures"]

pytestmark = pytest.mark.usefixtures("folder_plugin")


def two_instances(tmp_path: Path, extra: str = "", **settings: Any) -> tuple[Folder, Folder, Path]:
    """``[messaging.folder]`` (runtime_key ``folder``) and a named instance ``folder-b``."""
    primary, named = make_folder(tmp_path, "folder"), make_folder(tmp_path, "folder-b")
    text = single_folder_config(primary, **settings)
    text += f'[[messaging.folder.instances]]\nruntime_key = "folder-b"\n{named.toml()}\n{extra}'
    return primary, named, write_config(tmp_path, text)


class CallLog:
    """A cross-cutting plugin: wraps the channel hooks and records each call's runtime_key."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str | None]] = []

    @hookimpl(wrapper=True)
    def spacebot_start(self, runtime_key: str):
        self.calls.append(("start", runtime_key, None))
        return (yield)

    @hookimpl(wrapper=True)
    def spacebot_poll(self, runtime_key: str):
        self.calls.append(("poll", runtime_key, None))
        return (yield)

    @hookimpl(wrapper=True)
    def spacebot_normalize_inbound(self, runtime_key: str, raw: Any):
        results = yield
        self.calls.append(("normalize", runtime_key, raw["data"]["id"]))
        return results

    @hookimpl(wrapper=True)
    def spacebot_send(self, runtime_key: str, message: InboundMessage, delivery_id: str):
        self.calls.append(("send", runtime_key, message.id))
        return (yield)

    @hookimpl(wrapper=True)
    def spacebot_ack(self, runtime_key: str, message: InboundMessage, outcome: str):
        self.calls.append(("ack", runtime_key, message.id))
        return (yield)


class BlockSender:
    """A cross-cutting filter plugin: one sender is never answered."""

    def __init__(self, sender: str) -> None:
        self.sender = sender
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def spacebot_filter_inbound(self, runtime_key: str, message: InboundMessage) -> str | None:
        self.seen.append((runtime_key, message.id))
        return "blocked sender" if message.sender_id == self.sender else None


async def test_hook_spacebot_poll(tmp_path: Path) -> None:
    primary, named, config = two_instances(tmp_path)
    primary.drop("a1", "for the primary")
    named.drop("b1", "for the named one")
    named.drop("b2", "also for the named one")

    async with open_runtime(config) as runtime:
        assert await runtime.run_once() == []
        polls = {key: adapter_of(runtime, key).events for key in ("folder", "folder-b")}

    assert ("poll", 1) in polls["folder"]
    assert ("poll", 2) in polls["folder-b"]
    assert primary.done("answered") == ["a1.json"]
    assert named.done("answered") == ["b1.json", "b2.json"]


async def test_replies_go_back_through_the_instance_the_message_came_from(
    tmp_path: Path,
) -> None:
    primary, named, config = two_instances(tmp_path)
    primary.drop("a1", "to the primary")
    named.drop("b1", "to the named one")

    await run_once(config)

    assert [(r["runtime_key"], r["in_reply_to"]) for r in primary.replies()] == [("folder", "a1")]
    assert [(r["runtime_key"], r["in_reply_to"]) for r in named.replies()] == [("folder-b", "b1")]
    assert "> to the primary" in primary.reply_texts()[0]
    assert "> to the named one" in named.reply_texts()[0]


async def test_the_second_instance_loses_no_message(tmp_path: Path) -> None:
    """The firstresult pitfall: a dispatch that stops at the first instance's coroutine."""
    primary, named, config = two_instances(tmp_path)
    for number in range(5):
        named.drop(f"b{number}", f"message {number}")

    await run_once(config)

    assert primary.replies() == []
    assert len(named.replies()) == 5
    assert named.pending() == []


async def test_hook_spacebot_send(tmp_path: Path) -> None:
    primary, named, config = two_instances(tmp_path)
    named.drop("b1", "hello")

    async with open_runtime(config) as runtime:
        await runtime.run_once()
        sends = [event for event in adapter_of(runtime, "folder-b").events if event[0] == "send"]
        assert not [event for event in adapter_of(runtime, "folder").events if event[0] == "send"]

    assert sends == [("send", "folder-b/b1/0")]
    assert primary.replies() == []
    (reply,) = named.replies()
    assert reply["to"] == "alice"
    assert reply["delivery_id"] == "folder-b/b1/0"
    assert reply["response"]["type"] == "text"


async def test_a_wrapper_plugin_sees_every_call_with_its_runtime_key(tmp_path: Path) -> None:
    primary, named, config = two_instances(tmp_path)
    primary.drop("a1", "one")
    named.drop("b1", "two")
    log = CallLog()

    await run_once(config, call_log=log)

    assert set(log.calls) == {
        ("start", "folder", None),
        ("start", "folder-b", None),
        ("poll", "folder", None),
        ("poll", "folder-b", None),
        ("normalize", "folder", "a1"),
        ("normalize", "folder-b", "b1"),
        ("send", "folder", "a1"),
        ("send", "folder-b", "b1"),
        ("ack", "folder", "a1"),
        ("ack", "folder-b", "b1"),
    }
    assert len(log.calls) == 10


async def test_hook_spacebot_normalize_inbound(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder))
    folder.drop("good", "fine", sender="bob", conversation="thread-7")
    (folder.inbox / "broken.json").write_text("{not json", encoding="utf-8")
    (folder.inbox / "incomplete.json").write_text('{"id": "x"}', encoding="utf-8")
    seen: list[InboundMessage] = []

    class Spy:
        @hookimpl(wrapper=True)
        def spacebot_normalize_inbound(self, runtime_key: str, raw: Any):
            results = yield  # pluggy leaves out the None of a malformed item
            seen.extend(results)
            return results

    await run_once(config, spy=Spy())

    assert folder.pending() == ["broken.json", "incomplete.json"]
    assert folder.done("answered") == ["good.json"]
    (message,) = seen
    assert (message.adapter, message.source) == ("folder", "folder")
    assert (message.sender_id, message.conversation_id, message.text) == (
        "bob",
        "thread-7",
        "fine",
    )


async def test_hook_spacebot_filter_inbound(tmp_path: Path) -> None:
    primary, named, config = two_instances(tmp_path)
    primary.drop("a1", "from a friend", sender="friend")
    named.drop("b1", "from a spammer", sender="spammer")
    named.drop("b2", "from a friend", sender="friend")
    block = BlockSender("spammer")

    await run_once(config, block=block)

    assert sorted(block.seen) == [("folder", "a1"), ("folder-b", "b1"), ("folder-b", "b2")]
    assert named.done("ignored") == ["b1.json"]
    assert named.done("answered") == ["b2.json"]
    assert [reply["in_reply_to"] for reply in named.replies()] == ["b2"]
    assert len(primary.replies()) == 1


async def test_hook_spacebot_ack(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder))
    folder.drop("m1", "hello")

    async with open_runtime(config) as runtime:
        await runtime.run_once()
        events = adapter_of(runtime, "folder").events

    assert [event[0] for event in events] == ["start", "poll", "send", "ack", "stop"]
    assert ("ack", ("m1", "answered")) in events
    assert folder.pending() == []
    assert folder.done("answered") == ["m1.json"]


async def test_an_answered_message_polled_again_is_acknowledged_not_answered_again(
    tmp_path: Path,
) -> None:
    """A crash between the send and the acknowledgement must not answer twice."""
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder))
    path = folder.drop("m1", "hello")
    content = path.read_text()

    await run_once(config)
    path.write_text(content)  # as if the acknowledgement had been lost
    await run_once(config)

    assert len(folder.replies()) == 1
    assert folder.pending() == []


async def test_hook_spacebot_start(tmp_path: Path) -> None:
    primary, named, config = two_instances(tmp_path)
    config.write_text(
        config.read_text().replace(
            'runtime_key = "folder-b"\n', 'runtime_key = "folder-b"\nfail_start = true\n'
        )
    )
    primary.drop("a1", "to the working instance")
    named.drop("b1", "to the unreachable one")

    async with open_runtime(config) as runtime:
        failures = await runtime.run_once()
        named_events = adapter_of(runtime, "folder-b").events

    assert [(key, type(error).__name__) for key, error in failures] == [
        ("folder-b", "ChannelError")
    ]
    assert "cannot reach the folder server for folder-b" in str(failures[0][1])
    assert named_events == [("start", None)]
    assert primary.done("answered") == ["a1.json"]
    assert named.pending() == ["b1.json"]


async def test_hook_spacebot_stop(tmp_path: Path) -> None:
    _, _, config = two_instances(tmp_path)

    async with open_runtime(config) as runtime:
        await runtime.run_once()
        for key in ("folder", "folder-b"):
            events = adapter_of(runtime, key).events
            assert events[0] == ("start", None)
            assert events[-1] == ("stop", None)
            assert events.count(("stop", None)) == 1
