"""A reply the channel refuses for good costs its message an attempt, not the mailbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from spacebot_core import ChannelError, hookimpl
from spacebot_core.store import FAILED, StateStore
from tests.core_fixtures import make_folder, run_once, single_folder_config, write_config

pytest_plugins = ["tests.core_fixtures"]

pytestmark = pytest.mark.usefixtures("folder_plugin")


class RefusesMallory:
    """A server that accepts every recipient but one, and another that is down."""

    def __init__(self, down: bool = False) -> None:
        self.down = down

    @hookimpl(wrapper=True)
    def spacebot_send(self, runtime_key, message, response, delivery_id):
        if self.down:
            raise ChannelError("the server is not answering")
        if message.sender_id == "mallory":
            raise ChannelError("550 recipient refused: mallory", permanent=True)
        return (yield)


def _config(tmp_path: Path):
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder))
    config.write_text(config.read_text().replace("[runtime]\n", "[runtime]\nmax_attempts = 2\n"))
    return folder, config


async def test_a_refused_reply_does_not_block_the_mail_behind_it(tmp_path: Path) -> None:
    folder, config = _config(tmp_path)
    folder.drop("m1", "refuse me", sender="mallory")
    folder.drop("m2", "answer me", sender="alice")

    await run_once(config, refusal=RefusesMallory())
    assert folder.done("answered") == ["m2.json"]
    assert folder.pending() == ["m1.json"]
    await run_once(config, refusal=RefusesMallory())

    assert folder.done("failed") == ["m1.json"]
    store = StateStore.open(tmp_path / "state", exclusive=False)
    record = store.message("folder", "m1")
    store.close()
    assert (record.state, record.attempts) == (FAILED, 2)
    assert "550 recipient refused" in record.reason


async def test_a_channel_that_is_down_costs_no_attempt(tmp_path: Path) -> None:
    folder, config = _config(tmp_path)
    folder.drop("m1", "wait for me", sender="alice")

    for _ in range(3):
        [(_, error)] = await run_once(config, refusal=RefusesMallory(down=True))
        assert "not answering" in str(error)
    await run_once(config)

    assert folder.done("answered") == ["m1.json"]
    assert len(folder.replies()) == 1
