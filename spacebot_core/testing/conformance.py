"""The adapter conformance suite: the checks every channel must pass.

A channel's own tests subclass :class:`AdapterConformance`, name the channel, and give a
``driver`` fixture: a :class:`ChannelDriver` that plays the other side of the channel
(makes a message arrive, reads what the bot sent back)::

    class TestMyChannel(AdapterConformance):
        channel = "mychannel"
        distribution = "spacebot-mychannel"

        @pytest.fixture
        def driver(self, tmp_path):
            return MyDriver(tmp_path)

The suite runs the real runtime against the installed plugin, with an agent of its own
that answers every message and counts what it was asked. It checks that the adapter
type is registered through its entry point, that each configured instance is its own
plugin, that hooks are async where the contract says, that a message is polled and
normalized into a valid :class:`InboundMessage` (JSON round trip included), that the
reply arrives, that an acknowledged or ignored message is not returned again, and that
after a crash between the reply and its acknowledgement a new runtime on the same state
directory answers nothing twice.

The checks are plain (not async) tests, each running in an event loop of its own, so
they need no asyncio plugin for pytest; the driver's async methods run in that loop, and
a task a driver starts (an HTTP request waiting for its answer) lives through the check.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import attrs
import pytest

from spacebot_core import hookspecs
from spacebot_core.adapter import Adapter
from spacebot_core.agent import Agent
from spacebot_core.convert import dumps, loads
from spacebot_core.hookspecs import hookimpl
from spacebot_core.testing.host import SpacebotHost, toml_table
from spacebot_core.tools import NO_TOOLS, AgentTools
from spacebot_core.types import AnyResponse, HistoryEntry, InboundMessage, OutboundResponse

T = TypeVar("T")

CHECK_TIMEOUT_SECS = 60.0
"""Seconds one check may take in all: an adapter that hangs fails, it does not hang."""
AGENT_KIND = "spacebot-conformance"
AGENT_ID = "conformance"
REPLY_PREFIX = "conformance reply: "


@attrs.frozen
class Injected:
    """A message the other side sends; the driver makes it arrive on the channel.

    ``key`` is unique to the message and appears in its ``text``. A channel that lets
    the sender choose the message's id (a Message-ID, a request id, a file name) should
    use ``key`` for it, so that sending the same message again is recognisably the same.
    """

    key: str
    text: str
    sender_id: str = "alice"
    conversation: str = "conformance-thread"


@attrs.frozen
class Delivered:
    """One thing the other side received from the bot.

    ``in_reply_to`` is the id of the message it answers, when the channel shows it
    (None when it does not).
    """

    text: str
    in_reply_to: str | None = None


class ChannelDriver:
    """The other side of a channel, for the conformance suite. Subclass it.

    A driver may keep state (a temporary folder, a mailbox); the suite makes one per
    test through the ``driver`` fixture.
    """

    #: Whether the channel keeps a message that was not acknowledged across a restart
    #: (a mailbox, a folder). A request/response channel (a webhook) does not: after a
    #: restart the suite sends the message again, as a client that retries would.
    keeps_unacknowledged: ClassVar[bool] = True

    def settings(self, runtime_key: str) -> dict[str, Any]:
        """The keys of ``[messaging.<channel>]`` for an instance the driver can reach."""
        raise NotImplementedError

    async def inject(self, adapter: Adapter, message: Injected) -> None:
        """Make ``message`` arrive on the channel, as the other side would send it.

        Called after the instance started (``adapter`` is it); return once a poll
        would find the message.
        """
        raise NotImplementedError

    async def delivered(self, adapter: Adapter) -> list[Delivered]:
        """Everything the other side received from the bot so far, oldest first."""
        raise NotImplementedError


@attrs.define
class AgentRecorder:
    """The messages the suite's agent was asked to answer, in order."""

    messages: list[InboundMessage] = attrs.field(factory=list)

    def texts(self) -> list[str]:
        """The text of each message asked."""
        return [message.text for message in self.messages]


def recording_agent_plugin(recorder: AgentRecorder) -> object:
    """A plugin declaring agent kind ``spacebot-conformance``, which records and replies.

    It answers every message with one text, ``"conformance reply: "`` and the message's
    text, so that the reply shows which message it answers.
    """

    @attrs.define(eq=False)
    class RecordingAgent(Agent):
        async def respond(
            self,
            message: InboundMessage,
            history: list[HistoryEntry],
            tools: AgentTools = NO_TOOLS,
        ) -> list[AnyResponse]:
            recorder.messages.append(message)
            return [OutboundResponse.Text(REPLY_PREFIX + message.text.strip())]

    class Plugin:
        @hookimpl
        def spacebot_register_agents(self, register: Any) -> None:
            register(AGENT_KIND, RecordingAgent)

    return Plugin()


class SimulatedCrash(Exception):
    """Raised by the suite where a crash is simulated (between a reply and its ack)."""


class CrashBeforeAck:
    """A cross-cutting plugin: every acknowledgement fails before the channel sees it."""

    @hookimpl(tryfirst=True)
    def spacebot_ack(self, runtime_key: str, message: InboundMessage, outcome: str) -> None:
        raise SimulatedCrash(f"simulated crash before acknowledging {message.id}")


class IgnoreEverything:
    """A cross-cutting filter: no message is to be answered."""

    @hookimpl
    def spacebot_filter_inbound(self, runtime_key: str, message: InboundMessage) -> str:
        return "ignored by the conformance suite"


def run_check(work: Awaitable[T], timeout: float = CHECK_TIMEOUT_SECS) -> T:
    """Run ``work`` in a new event loop, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(work, timeout)

    return asyncio.run(bounded())


def async_hook_names() -> set[str]:
    """The hooks whose implementations must be ``async def`` (their spec says *Async.*)."""
    return {
        name
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "spacebot_spec") and (function.__doc__ or "").startswith("*Async.*")
    }


def sync_hook_names() -> set[str]:
    """The hooks whose implementations must be plain ``def``."""
    return {
        name
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(function, "spacebot_spec") and name not in async_hook_names()
    }


@attrs.define(eq=False)
class ConformanceHarness:
    """One channel, its driver, the suite's agent, and runs of the real runtime.

    Usable on its own (function-based tests) as well as through
    :class:`AdapterConformance`.
    """

    host: SpacebotHost
    driver: ChannelDriver
    channel: str
    recorder: AgentRecorder = attrs.field(factory=AgentRecorder)
    config_path: Path = attrs.field(init=False)
    adapter: Adapter | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        self.config_path = self.host.write_config(self.config_text())

    @property
    def runtime_key(self) -> str:
        """The instance under test: the channel's primary instance."""
        return self.channel

    def config_text(self) -> str:
        """The instance's table, the suite's agent, and a binding between them."""
        return "\n".join(
            [
                toml_table(f"[messaging.{self.channel}]", self.driver.settings(self.runtime_key)),
                toml_table("[[agents]]", {"id": AGENT_ID, "kind": AGENT_KIND}),
                toml_table("[[bindings]]", {"agent_id": AGENT_ID, "channel": self.channel}),
            ]
        )

    def plugins(self, *extra: object) -> dict[str, object]:
        """The suite's agent and ``extra`` cross-cutting plugins, by name."""
        plugins: dict[str, object] = {AGENT_KIND: recording_agent_plugin(self.recorder)}
        for number, plugin in enumerate(extra):
            plugins[f"conformance-{number}-{type(plugin).__name__}"] = plugin
        return plugins

    @staticmethod
    def new_message(sender_id: str = "alice") -> Injected:
        """A message with a key no other message has."""
        key = f"conformance-{uuid.uuid4().hex[:16]}"
        return Injected(key, f"Hello from the conformance suite, {key}", sender_id, key)

    async def _inject_all(self, adapter: Adapter, messages: Sequence[Injected]) -> None:
        self.adapter = adapter
        for message in messages:
            await self.driver.inject(adapter, message)

    async def cycle(
        self,
        inject: Sequence[Injected] = (),
        *,
        crash_before_ack: bool = False,
        ignore: bool = False,
    ) -> int:
        """One cycle of a new runtime: start, inject, poll, handle, stop.

        :param crash_before_ack: every acknowledgement fails, as a crash right after the
            replies were sent would; the :class:`SimulatedCrash` is swallowed.
        :param ignore: a filter ignores every message.
        :return: how many items were handled (0 after a simulated crash).
        """
        extra = [CrashBeforeAck()] if crash_before_ack else []
        extra += [IgnoreEverything()] if ignore else []

        async def after_start(adapter: Adapter) -> None:
            await self._inject_all(adapter, inject)

        try:
            return await self.host.run_cycle(
                self.config_path,
                self.runtime_key,
                after_start=after_start,
                plugins=self.plugins(*extra),
            )
        except SimulatedCrash:
            if not crash_before_ack:
                raise
            return 0

    async def polled(self, inject: Sequence[Injected] = ()) -> list[tuple[Any, InboundMessage]]:
        """Start, inject, poll and normalize, stop, with nothing acknowledged or answered."""
        async with self.host.runtime(self.config_path, self.plugins()) as runtime:
            runner = runtime.runner(self.runtime_key)
            try:
                await runner.start()
                await self._inject_all(runner.hooks.adapter, inject)
                found = []
                for batch in await runner.hooks.call_async("spacebot_poll"):
                    for raw in batch:
                        results = runner.hooks.call("spacebot_normalize_inbound", raw=raw)
                        message = next((m for m in results if m is not None), None)
                        if message is not None:  # a malformed item stays pending, unseen
                            found.append((raw, message))
                return found
            finally:
                await runner.stop()

    @staticmethod
    def originals(
        polled: Sequence[tuple[Any, InboundMessage]], sent: Injected
    ) -> list[InboundMessage]:
        """The polled messages that are ``sent`` itself.

        A channel may show the bot its own replies (email keeps a copy of each reply in
        the bot's inbox, as proof that it went out); those quote ``sent`` too, but are
        not it.
        """
        return [
            message
            for _, message in polled
            if sent.key in message.text and REPLY_PREFIX not in message.text
        ]

    async def delivered(self) -> list[Delivered]:
        """What the other side received so far."""
        assert self.adapter is not None, "no cycle ran yet"
        return await self.driver.delivered(self.adapter)

    async def replies_to(self, message: Injected) -> list[Delivered]:
        """What the other side received that answers ``message``."""
        return [item for item in await self.delivered() if message.key in item.text]


class AdapterConformance:
    """The conformance checks; subclass with ``channel`` and a ``driver`` fixture."""

    #: The adapter type under test, as registered (``[messaging.<channel>]``).
    channel: ClassVar[str]
    #: The distribution that must have registered it through its entry point; None
    #: accepts any.
    distribution: ClassVar[str | None] = None

    @pytest.fixture
    def driver(self) -> ChannelDriver:
        """Override in the subclass: the channel's other side."""
        raise NotImplementedError(f"{type(self).__name__} must define a 'driver' fixture")

    @pytest.fixture
    def spacebot_host(self, tmp_path: Path) -> Iterator[SpacebotHost]:
        """A temporary spacebot in ``tmp_path``."""
        host = SpacebotHost(tmp_path)
        try:
            yield host
        finally:
            host.close()

    @pytest.fixture
    def harness(self, spacebot_host: SpacebotHost, driver: ChannelDriver) -> ConformanceHarness:
        """The channel, its driver and the suite's agent."""
        return ConformanceHarness(spacebot_host, driver, self.channel)

    def test_conformance_registers_through_its_entry_point(
        self, spacebot_host: SpacebotHost, driver: ChannelDriver
    ) -> None:
        # The driver fixture is asked for too: it is where a test installs the plugin.
        host = spacebot_host.load()
        registration = host.adapter_types.get(self.channel)
        assert registration is not None, (
            f"no plugin registered adapter type {self.channel!r}: implement "
            "spacebot_register_adapters and name its module in an entry point of group "
            f"'spacebot' (plugins that failed to load: {host.failures})"
        )
        assert issubclass(registration.cls, Adapter)
        if self.distribution is not None:
            assert registration.distribution == self.distribution, (
                f"{self.channel!r} was registered by {registration.distribution}, "
                f"not by {self.distribution} through its entry point"
            )

    def test_conformance_each_instance_is_its_own_plugin(self, harness: ConformanceHarness) -> None:
        config = harness.host.load_config(harness.config_path, harness.plugins())
        [instance] = config.instances
        assert instance.runtime_key == self.channel, instance.runtime_key
        cls = harness.host.load(harness.plugins()).adapter_classes()[self.channel]
        first, second = cls("one", instance.settings), cls("two", instance.settings)
        # pluggy keeps plugins in dicts: equal settings must still be two plugins.
        try:
            distinct = first != second and len({first, second}) == 2
        except TypeError:  # compared by value and so not hashable
            distinct = False
        assert distinct, (
            f"{cls.__name__} objects must compare and hash by identity: @attrs.define(eq=False)"
        )

    def test_conformance_hooks_are_async_where_the_contract_says(
        self, harness: ConformanceHarness
    ) -> None:
        cls = harness.host.load(harness.plugins()).adapter_classes()[self.channel]
        for name in async_hook_names() | sync_hook_names():
            method = getattr(cls, name, None)
            if method is None or not hasattr(method, "spacebot_impl"):
                continue
            should_be_async = name in async_hook_names()
            assert inspect.iscoroutinefunction(method) == should_be_async, (
                f"{cls.__name__}.{name} must be {'async def' if should_be_async else 'def'}"
            )

    def test_conformance_polls_and_normalizes_a_valid_message(
        self, harness: ConformanceHarness
    ) -> None:
        async def check() -> None:
            sent = harness.new_message()
            polled = await harness.polled([sent])
            matching = harness.originals(polled, sent)
            assert len(matching) == 1, f"expected the message once in a poll, got {polled!r}"
            [message] = matching
            assert message.adapter == harness.runtime_key, "adapter must be the runtime_key"
            assert message.source == self.channel, "source must be the channel's name"
            assert message.id and message.conversation_id and message.sender_id, (
                f"id, conversation_id and sender_id must not be empty: {message!r}"
            )
            assert loads(dumps(message), InboundMessage) == message, (
                f"the message must come back equal from JSON (spacebot_core.convert): {message!r}"
            )
            json.dumps(message.metadata)  # JSON-safe: the store keeps it
            ids_again = [again.id for again in harness.originals(await harness.polled(), sent)]
            if harness.driver.keeps_unacknowledged:
                assert ids_again == [message.id], (
                    f"a message not acknowledged must be polled again with the same id "
                    f"{message.id!r}, got {ids_again!r}"
                )
            assert not harness.recorder.messages, "polling alone must not ask the agent"

        run_check(check())

    def test_conformance_reply_arrives(self, harness: ConformanceHarness) -> None:
        async def check() -> None:
            sent = harness.new_message()

            handled = await harness.cycle([sent])

            assert handled >= 1, "the poll found nothing"
            asked = harness.recorder.messages
            assert len(asked) == 1, f"the agent must be asked exactly once, was asked {asked!r}"
            assert sent.key in asked[0].text, f"the agent was asked {asked[0]!r}"
            replies = await harness.replies_to(sent)
            assert len(replies) == 1, f"expected one reply to {sent.key}, got {replies!r}"
            assert REPLY_PREFIX.strip() in replies[0].text, replies[0].text
            if replies[0].in_reply_to is not None:
                assert replies[0].in_reply_to == asked[0].id, "the reply answers another message"

        run_check(check())

    def test_conformance_acknowledged_message_is_not_polled_again(
        self, harness: ConformanceHarness
    ) -> None:
        async def check() -> None:
            sent = harness.new_message()
            await harness.cycle([sent])

            again = harness.originals(await harness.polled(), sent)

            assert again == [], f"an acknowledged message was polled again: {again!r}"

        run_check(check())

    def test_conformance_ignored_message_is_acknowledged_not_answered(
        self, harness: ConformanceHarness
    ) -> None:
        async def check() -> None:
            sent = harness.new_message()
            await harness.cycle([sent], ignore=True)

            again = harness.originals(await harness.polled(), sent)

            assert harness.recorder.messages == [], "an ignored message reached the agent"
            replies = await harness.replies_to(sent)
            assert replies == [], f"an ignored message was answered: {replies!r}"
            assert again == [], f"an ignored message must be acknowledged, was polled: {again!r}"

        run_check(check())

    def test_conformance_restart_answers_nothing_twice(self, harness: ConformanceHarness) -> None:
        async def check() -> None:
            sent = harness.new_message()
            await harness.cycle([sent], crash_before_ack=True)
            resent = [] if harness.driver.keeps_unacknowledged else [sent]

            await harness.cycle(resent)  # a new runtime on the same state directory

            asked = harness.recorder.messages
            assert len(asked) == 1, f"the agent must be asked once, was asked {asked!r}"
            replies = await harness.replies_to(sent)
            assert len(replies) == 1, f"expected exactly one reply, got {replies!r}"
            again = harness.originals(await harness.polled(), sent)
            assert again == [], f"still not acknowledged after the restart: {again!r}"

        run_check(check())
