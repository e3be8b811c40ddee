"""The state store: schema versions, migrations, planned replies, conversation history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spacebot_core import InboundMessage, MessageContent, OutboundResponse
from spacebot_core import store as store_module
from spacebot_core.store import (
    ANSWERED,
    RECEIVED,
    SENT,
    StateStore,
    StoreLockedError,
    delivery_id_for,
)

START = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def _message(number: int, conversation: str = "c1", adapter: str = "folder") -> InboundMessage:
    return InboundMessage(
        id=f"m{number}",
        source="folder",
        adapter=adapter,
        conversation_id=conversation,
        sender_id="alice",
        content=MessageContent.Text(f"question {number}"),
        timestamp=START + timedelta(minutes=number),
    )


@pytest.fixture
def store(tmp_path: Path):
    opened = StateStore.open(tmp_path)
    yield opened
    opened.close()


def test_new_store_is_at_the_latest_schema_version(store: StateStore) -> None:
    assert store.schema_version() == len(store_module.MIGRATIONS)


def test_reopening_runs_no_migration_twice(tmp_path: Path) -> None:
    StateStore.open(tmp_path).close()
    first = StateStore.open(tmp_path)
    first.record_received(_message(1))
    first.close()

    again = StateStore.open(tmp_path)

    assert again.schema_version() == len(store_module.MIGRATIONS)
    assert again.message("folder", "m1") is not None
    again.close()


def test_a_new_migration_is_applied_once_and_keeps_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = StateStore.open(tmp_path)
    old.record_received(_message(1))
    old.close()
    added = "ALTER TABLE messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 0"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, added))

    for _ in range(2):  # a second ALTER TABLE ... ADD COLUMN would fail
        upgraded = StateStore.open(tmp_path)
        assert upgraded.schema_version() == len(store_module.MIGRATIONS)
        row = upgraded.connection.execute("SELECT message_id, priority FROM messages").fetchone()
        assert tuple(row) == ("m1", 0)
        upgraded.close()


def test_a_message_is_recorded_once(store: StateStore) -> None:
    first = store.record_received(_message(1))
    again = store.record_received(_message(1))

    assert first.state == again.state == RECEIVED
    assert store.connection.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 1


def test_planned_replies_keep_their_delivery_ids_across_restarts(tmp_path: Path) -> None:
    message = _message(1)
    first = StateStore.open(tmp_path)
    first.record_received(message)
    planned = first.plan_replies(
        message, [OutboundResponse.Text("one"), OutboundResponse.File("a.bin", b"\x00\x01")]
    )
    first.mark_sent(planned[0])
    first.close()

    reopened = StateStore.open(tmp_path)
    # A second plan (an agent asked again after a crash) does not replace the first.
    reopened.plan_replies(message, [OutboundResponse.Text("different")])
    again = reopened.planned_replies(message)
    reopened.close()

    assert [reply.delivery_id for reply in again] == [
        delivery_id_for(message, 0),
        delivery_id_for(message, 1),
    ]
    assert [reply.delivery_id for reply in again] == [reply.delivery_id for reply in planned]
    assert [reply.response for reply in again] == [reply.response for reply in planned]
    assert [reply.state for reply in again] == [SENT, "pending"]


def test_delivery_ids_differ_between_instances_and_messages() -> None:
    ids = {
        delivery_id_for(_message(1), 0),
        delivery_id_for(_message(1), 1),
        delivery_id_for(_message(2), 0),
        delivery_id_for(_message(1, adapter="sales"), 0),
    }
    assert len(ids) == 4


def test_an_empty_plan_still_counts_as_answered_by_the_agent(store: StateStore) -> None:
    message = _message(1)
    store.record_received(message)
    assert not store.has_plan(message)

    store.plan_replies(message, [])

    assert store.has_plan(message)
    assert store.planned_replies(message) == []


def test_history_is_in_order_with_both_sides(tmp_path: Path) -> None:
    store = StateStore.open(tmp_path)
    for number in (1, 2, 3):
        message = _message(number)
        store.record_received(message)
        replies = store.plan_replies(
            message, [OutboundResponse.Text(f"answer {number}"), OutboundResponse.Reaction("x")]
        )
        store.mark_answered(message, replies)
    store.record_received(_message(9, conversation="other"))
    store.mark_answered(_message(9, conversation="other"), [])
    store.close()

    reopened = StateStore.open(tmp_path)
    history = reopened.history("c1")
    last_two = reopened.history("c1", limit=2)
    assert reopened.message("folder", "m3").state == ANSWERED
    reopened.close()

    assert [(entry.role, entry.text) for entry in history] == [
        ("user", "question 1"),
        ("assistant", "answer 1"),
        ("user", "question 2"),
        ("assistant", "answer 2"),
        ("user", "question 3"),
        ("assistant", "answer 3"),
    ]
    assert history[0].sender_id == "alice"
    assert history[0].timestamp == START + timedelta(minutes=1)
    assert [entry.text for entry in last_two] == ["question 3", "answer 3"]


def test_failures_are_counted(store: StateStore) -> None:
    message = _message(1)
    store.record_received(message)

    assert store.record_failure(message, "boom", retry_after_secs=0) == 1
    assert not store.retry_later(message)
    assert store.record_failure(message, "boom again", retry_after_secs=600) == 2
    assert store.retry_later(message)
    record = store.message("folder", "m1")
    assert (record.attempts, record.last_error, record.state) == (2, "boom again", RECEIVED)


def test_a_requeued_message_starts_over(store: StateStore) -> None:
    message = _message(1)
    store.record_received(message)
    store.record_failure(message, "boom", retry_after_secs=600)
    store.mark_failed(message, "boom")

    assert store.failed_messages("folder") == [("folder", "m1", message.metadata)]
    store.requeue("folder", "m1")

    record = store.message("folder", "m1")
    assert (record.state, record.attempts, record.last_error) == (RECEIVED, 0, None)
    assert not store.retry_later(message)
    assert store.failed_messages("folder") == []


def test_a_second_process_cannot_take_the_state_directory(tmp_path: Path) -> None:
    holder = StateStore.open(tmp_path)
    try:
        with pytest.raises(StoreLockedError, match="in use by process"):
            StateStore.open(tmp_path)
        reader = StateStore.open(tmp_path, exclusive=False)
        reader.close()
    finally:
        holder.close()
    StateStore.open(tmp_path).close()


def test_a_version_1_store_is_migrated_in_place_to_the_current_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
        first_release = StateStore.open(tmp_path)
        first_release.record_received(_message(1))
        assert first_release.schema_version() == 1
        first_release.close()

    current = StateStore.open(tmp_path)

    assert current.schema_version() == len(store_module.MIGRATIONS) >= 2
    assert current.message("folder", "m1") is not None
    assert not current.retry_later(_message(1))
    assert current.status("folder").last_poll_at is None
    current.close()


def test_a_version_2_store_keeps_its_history_and_records_message_ids_from_now_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:2])
        second_release = StateStore.open(tmp_path)
        # A history row as the second release wrote it: no message_id column yet.
        second_release.connection.execute(
            "INSERT INTO history (conversation_id, role, sender_id, text, timestamp)"
            " VALUES ('c1', 'user', 'alice', 'question 0', ?)",
            (START.isoformat(),),
        )
        assert second_release.schema_version() == 2
        second_release.close()

    current = StateStore.open(tmp_path)
    message = _message(1)
    current.record_received(message)
    current.mark_answered(
        message, current.plan_replies(message, [OutboundResponse.Text("answer 1")])
    )
    history = current.history("c1")
    version = current.schema_version()
    current.close()

    assert version == len(store_module.MIGRATIONS) >= 3
    assert [(entry.text, entry.message_id) for entry in history] == [
        ("question 0", None),
        ("question 1", "m1"),
        ("answer 1", delivery_id_for(message, 0)),
    ]


async def test_syncs_asked_together_share_one_fsync_and_a_later_commit_gets_its_own(
    store: StateStore,
) -> None:
    store.record_received(_message(1))

    await asyncio.gather(*(store.sync() for _ in range(20)))
    shared = store.log_sync.finished
    store.record_received(_message(2))
    await store.sync()

    # The first caller's fsync, then one for all who asked while it ran.
    assert shared <= 2
    assert store.log_sync.finished == shared + 1
    assert store.path.with_name(store.path.name + "-wal") == store.log_sync.wal_path
    assert store.log_sync.wal_path.exists()
