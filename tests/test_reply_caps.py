"""Reply caps: a sender or a thread that would make the bot talk forever is held back."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacebot_core.store import HELD, StateStore
from tests.core_fixtures import make_folder, run_once, single_folder_config, write_config

pytest_plugins = ["tests.core_fixtures"]

pytestmark = pytest.mark.usefixtures("folder_plugin")


def _capped_config(tmp_path: Path, caps: str):
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder))
    config.write_text(config.read_text().replace("[runtime]\n", f"[runtime]\n{caps}\n"))
    return folder, config


async def test_a_sender_over_the_hourly_cap_is_held_not_answered(tmp_path: Path) -> None:
    folder, config = _capped_config(tmp_path, "max_replies_per_sender_per_hour = 2")
    for number in range(1, 4):
        folder.drop(f"m{number}", f"message {number}", conversation=f"thread-{number}")
    folder.drop("b1", "from someone else", sender="bob")

    await run_once(config)

    assert len(folder.reply_texts()) == 3
    assert folder.done("answered") == ["b1.json", "m1.json", "m2.json"]
    assert folder.done("held") == ["m3.json"]
    store = StateStore.open(tmp_path / "state", exclusive=False)
    record = store.message("folder", "m3")
    assert record.state == HELD
    assert "max_replies_per_sender_per_hour = 2" in record.reason
    store.close()


async def test_a_thread_over_its_hourly_cap_is_held(tmp_path: Path) -> None:
    folder, config = _capped_config(tmp_path, "max_replies_per_thread_per_hour = 2")
    senders = ["alice", "bob", "carol"]
    for number, sender in enumerate(senders, start=1):
        folder.drop(f"m{number}", f"round {number}", sender=sender, conversation="loop")

    await run_once(config)

    assert folder.done("answered") == ["m1.json", "m2.json"]
    assert folder.done("held") == ["m3.json"]
