"""Several messages in hand at once: a slow agent holds up no one, order holds per thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from spacebot_core import Agent, hookimpl
from spacebot_core.types import HistoryEntry, InboundMessage, OutboundResponse
from tests.core_fixtures import make_folder, run_once, single_folder_config, write_config

pytest_plugins = ["tests.core_fixtures"]

#: How long the gate agent lets a message wait for another before giving up.
GATE_SECS = 10.0


@attrs.define
class Gate:
    """What the gate agent of one test saw, and the events it waits on."""

    answered: dict[str, asyncio.Event] = attrs.field(factory=dict)
    histories: dict[str, list[str]] = attrs.field(factory=dict)
    in_hand: int = 0
    most_in_hand: int = 0
    waits: dict[str, str] = attrs.field(factory=dict)
    pause_secs: float = 0.0

    def event(self, text: str) -> asyncio.Event:
        return self.answered.setdefault(text, asyncio.Event())


@attrs.define(eq=False)
class GateAgent(Agent):
    """Answers each message with its text; a message listed in ``gate.waits`` is
    answered only once the message it names has been answered."""

    gate: Gate = attrs.field(factory=Gate)

    async def respond(
        self, message: InboundMessage, history: list[HistoryEntry], tools: Any = None
    ) -> list[OutboundResponse.Text]:
        gate = CURRENT_GATE[0]
        gate.in_hand += 1
        gate.most_in_hand = max(gate.most_in_hand, gate.in_hand)
        try:
            gate.histories[message.text] = [entry.text for entry in history]
            if message.text in gate.waits:
                await asyncio.wait_for(gate.event(gate.waits[message.text]).wait(), GATE_SECS)
            await asyncio.sleep(gate.pause_secs)
            return [OutboundResponse.Text(f"re: {message.text}")]
        finally:
            gate.in_hand -= 1
            gate.event(message.text).set()


#: The gate of the running test (agents are built by the runtime from config).
CURRENT_GATE: list[Gate] = [Gate()]


class GatePlugin:
    @hookimpl
    def spacebot_register_agents(self, register: Callable[[str, type], None]) -> None:
        register("gate", GateAgent)


def _config(tmp_path: Path, folder: Any, runtime: str = "") -> Path:
    agents = '[[agents]]\nid = "gate"\nkind = "gate"\ndefault = true\n'
    path = write_config(tmp_path, single_folder_config(folder, agents))
    text = path.read_text().replace("[runtime]\n", f"[runtime]\n{runtime}", 1)
    path.write_text(text)
    return path


async def test_a_slow_agent_does_not_hold_up_the_next_message(
    tmp_path: Path, folder_plugin: Path
) -> None:
    folder = make_folder(tmp_path)
    CURRENT_GATE[0] = Gate(waits={"slow": "fast"})
    folder.drop("m1", "slow", sender="alice")
    folder.drop("m2", "fast", sender="bob")

    await run_once(_config(tmp_path, folder), gate=GatePlugin())

    # One after the other, "slow" would have waited for "fast" until its timeout.
    assert folder.done("answered") == ["m1.json", "m2.json"]
    assert folder.reply_texts() == ["re: fast", "re: slow"]


async def test_one_conversation_is_answered_in_order(tmp_path: Path, folder_plugin: Path) -> None:
    folder = make_folder(tmp_path)
    CURRENT_GATE[0] = Gate(pause_secs=0.2)
    folder.drop("m1", "first", sender="alice", conversation="t1")
    folder.drop("m2", "second", sender="bob", conversation="t1")

    await run_once(_config(tmp_path, folder), gate=GatePlugin())

    assert folder.reply_texts() == ["re: first", "re: second"]
    assert CURRENT_GATE[0].histories["second"] == ["first", "re: first"]


async def test_reply_caps_count_every_reply_of_a_sender_before_the_next(
    tmp_path: Path, folder_plugin: Path
) -> None:
    folder = make_folder(tmp_path)
    CURRENT_GATE[0] = Gate(pause_secs=0.1)
    for number in range(1, 4):
        folder.drop(f"a{number}", f"alice {number}", sender="alice", conversation=f"t{number}")
    folder.drop("b1", "bob 1", sender="bob", conversation="t9")
    config = _config(tmp_path, folder, runtime="max_replies_per_sender_per_hour = 2\n")

    await run_once(config, gate=GatePlugin())

    assert sorted(folder.reply_texts()) == ["re: alice 1", "re: alice 2", "re: bob 1"]
    assert folder.done("held") == ["a3.json"]


async def test_no_more_than_max_in_flight_messages_are_in_hand(
    tmp_path: Path, folder_plugin: Path
) -> None:
    folder = make_folder(tmp_path)
    CURRENT_GATE[0] = Gate(pause_secs=0.05)
    for number in range(10):
        folder.drop(f"m{number}", f"hello {number}", sender=f"s{number}")

    await run_once(_config(tmp_path, folder, runtime="max_in_flight = 3\n"), gate=GatePlugin())

    assert len(folder.done("answered")) == 10
    assert CURRENT_GATE[0].most_in_hand == 3
