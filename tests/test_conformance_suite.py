"""The conformance suite itself: a correct channel passes it, and each kind of broken
channel fails the check that names its fault.

Each case is a small in-memory channel written into a test file of its own and run by
pytest in a pytest (``pytester``), as a plugin author's test run would.
"""

from __future__ import annotations

import sys

import pytest

from spacebot_core.testing import (
    AgentRecorder,
    SpacebotHost,
    recording_agent_plugin,
    toml_table,
)

pytest_plugins = ["pytester", "spacebot_core.testing.pytest_plugin"]

CHANNEL_TESTS = """
import attrs
import pytest
from datetime import UTC, datetime

from spacebot_core import Adapter, InboundMessage, MessageContent, hookimpl
from spacebot_core.testing import AdapterConformance, ChannelDriver, Delivered

INBOX = {{}}
OUTBOX = []


@attrs.frozen
class MemorySettings:
    poll_interval_secs: float = 1.0


@attrs.define(eq={eq})
class MemoryAdapter(Adapter):
    settings_type = MemorySettings

    @hookimpl
    async def spacebot_poll(self):
        return list(INBOX.values())

    @hookimpl
    def spacebot_normalize_inbound(self, raw):
        return InboundMessage(
            id={message_id},
            source={source!r},
            adapter=self.runtime_key,
            conversation_id=raw["conversation"],
            sender_id=raw["sender"],
            content=MessageContent.Text(raw["text"]),
            timestamp=datetime.now(UTC),
            metadata={{"seen_at": {metadata}}},
        )

    @hookimpl
    async def spacebot_send(self, message, response, delivery_id):
        OUTBOX.append(Delivered(response.text, message.id))

    @hookimpl
    async def spacebot_ack(self, message, outcome):
        if {acknowledges}:
            INBOX.pop(message.id, None)


class Plugin:
    @hookimpl
    def spacebot_register_adapters(self, register):
        register("memory", MemoryAdapter)


class MemoryDriver(ChannelDriver):
    def settings(self, runtime_key):
        return {{}}

    async def inject(self, adapter, message):
        INBOX[message.key] = {{
            "text": message.text, "sender": message.sender_id, "conversation": message.conversation
        }}

    async def delivered(self, adapter):
        return list(OUTBOX)


class TestMemoryChannel(AdapterConformance):
    channel = "memory"

    @pytest.fixture
    def driver(self, spacebot_host):
        INBOX.clear()
        OUTBOX.clear()
        spacebot_host.register("memory", Plugin())
        return MemoryDriver()
"""

CORRECT = {
    "eq": "False",
    "message_id": 'raw["text"].rsplit(" ", 1)[-1]',
    "source": "memory",
    "metadata": '"now"',
    "acknowledges": "True",
}
ALL_CHECKS = [
    "test_conformance_registers_through_its_entry_point",
    "test_conformance_each_instance_is_its_own_plugin",
    "test_conformance_hooks_are_async_where_the_contract_says",
    "test_conformance_polls_and_normalizes_a_valid_message",
    "test_conformance_reply_arrives",
    "test_conformance_acknowledged_message_is_not_polled_again",
    "test_conformance_ignored_message_is_acknowledged_not_answered",
    "test_conformance_restart_answers_nothing_twice",
]


def run_suite(pytester: pytest.Pytester, **fault: str) -> set[str]:
    """Run the suite on the memory channel with ``fault``; the names of the checks failed."""
    pytester.makepyfile(test_memory=CHANNEL_TESTS.format(**{**CORRECT, **fault}))
    # No asyncio plugin: the checks run their own event loops.
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "-q")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == len(ALL_CHECKS), outcomes
    return {
        check
        for check in ALL_CHECKS
        if any("FAILED" in line and check in line for line in result.outlines)
    }


def test_a_correct_channel_passes_every_check(pytester: pytest.Pytester) -> None:
    assert run_suite(pytester) == set()


def test_a_channel_that_does_not_acknowledge_fails_the_ack_checks(
    pytester: pytest.Pytester,
) -> None:
    assert run_suite(pytester, acknowledges="False") == {
        "test_conformance_acknowledged_message_is_not_polled_again",
        "test_conformance_ignored_message_is_acknowledged_not_answered",
        "test_conformance_restart_answers_nothing_twice",
    }


def test_an_adapter_compared_by_value_fails_the_instance_check(pytester: pytest.Pytester) -> None:
    failed = run_suite(pytester, eq="True")

    # Unhashable, it cannot be a plugin at all: the runs fail too, the instance check says why.
    assert "test_conformance_each_instance_is_its_own_plugin" in failed


def test_metadata_that_is_not_json_fails_the_normalize_check(pytester: pytest.Pytester) -> None:
    failed = run_suite(pytester, metadata="datetime.now(UTC)")

    assert "test_conformance_polls_and_normalizes_a_valid_message" in failed


def test_a_message_id_that_changes_between_polls_fails_the_normalize_check(
    pytester: pytest.Pytester,
) -> None:
    failed = run_suite(pytester, message_id="str(id(raw)) + str(datetime.now(UTC))")

    assert "test_conformance_polls_and_normalizes_a_valid_message" in failed


def test_a_wrong_source_fails_the_normalize_check(pytester: pytest.Pytester) -> None:
    failed = run_suite(pytester, source="email")

    assert failed == {"test_conformance_polls_and_normalizes_a_valid_message"}


ADAPTER_MODULE = """
import attrs
from spacebot_core import Adapter, hookimpl


@attrs.define(eq=False)
class NothingAdapter(Adapter):
    pass


@hookimpl
def spacebot_register_adapters(register):
    register("nothing", NothingAdapter)
"""


def test_spacebot_host_installs_a_distribution_for_one_test(spacebot_host: SpacebotHost) -> None:
    site = spacebot_host.install(
        "spacebot-nothing",
        {"spacebot_nothing": ADAPTER_MODULE},
        {"nothing": "spacebot_nothing"},
        "2.5",
    )

    registration = spacebot_host.load().adapter_types["nothing"]
    spacebot_host.close()

    assert (registration.distribution, registration.version) == ("spacebot-nothing", "2.5")
    assert str(site) not in sys.path
    assert "spacebot_nothing" not in sys.modules
    assert "nothing" not in spacebot_host.load().adapter_types


async def test_spacebot_host_runs_a_config_once(spacebot_host: SpacebotHost) -> None:
    recorder = AgentRecorder()
    spacebot_host.register("recorder", recording_agent_plugin(recorder))
    spacebot_host.install(
        "spacebot-nothing", {"spacebot_nothing": ADAPTER_MODULE}, {"nothing": "spacebot_nothing"}
    )
    config = spacebot_host.write_config(
        toml_table("[messaging.nothing]", {})
        + toml_table("[[agents]]", {"id": "main", "kind": "spacebot-conformance"})
    )

    failures = await spacebot_host.run_once(config)

    assert failures == []
    assert (spacebot_host.state_dir / "spacebot.sqlite3").exists()
    assert recorder.messages == []
