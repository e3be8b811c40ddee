"""The state store: one SQLite file in the state directory.

It records each inbound message and what became of it, the replies planned for it
(with their stable delivery ids), and every conversation's messages in order. It is
what makes "nothing lost, nothing answered twice" hold across restarts: a message is
acknowledged on its channel only after the store says all its replies were sent.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import attrs

from spacebot_core.convert import response_from_data, response_to_data
from spacebot_core.errors import SpacebotError
from spacebot_core.types import TEXT_RESPONSES, AnyResponse, HistoryEntry, InboundMessage

DATABASE_NAME = "spacebot.sqlite3"
LOCK_NAME = "spacebot.lock"

# Each entry takes the schema from the version before it to its own number.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE messages (
        runtime_key TEXT NOT NULL,
        message_id TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        sender_id TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        planned_at TEXT,
        metadata TEXT NOT NULL,
        received_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (runtime_key, message_id)
    );
    CREATE TABLE replies (
        delivery_id TEXT PRIMARY KEY,
        runtime_key TEXT NOT NULL,
        message_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        response TEXT NOT NULL,
        state TEXT NOT NULL,
        sent_at TEXT
    );
    CREATE INDEX replies_by_message ON replies (runtime_key, message_id, position);
    CREATE TABLE history (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL,
        role TEXT NOT NULL,
        sender_id TEXT,
        text TEXT NOT NULL,
        timestamp TEXT NOT NULL
    );
    CREATE INDEX history_by_conversation ON history (conversation_id, seq);
    """,
)

RECEIVED, ANSWERED, IGNORED, FAILED = "received", "answered", "ignored", "failed"
PENDING, SENT = "pending", "sent"


class StoreLockedError(SpacebotError):
    """Another spacebot process already uses this state directory."""


@attrs.frozen
class MessageRecord:
    """What the store knows of one inbound message."""

    runtime_key: str
    message_id: str
    state: str
    attempts: int
    reason: str | None
    last_error: str | None


@attrs.frozen
class PlannedReply:
    """One response planned for a message, with the id that makes its send idempotent."""

    delivery_id: str
    position: int
    response: AnyResponse
    state: str


def _now() -> str:
    return datetime.now(UTC).isoformat()


@attrs.define(eq=False)
class StateStore:
    """The SQLite state of one spacebot process; open with :meth:`open`."""

    path: Path
    connection: sqlite3.Connection
    lock_file: IO[str] | None = None

    @classmethod
    def open(cls, state_dir: Path, *, exclusive: bool = True) -> StateStore:
        """Open (creating and migrating) the store in ``state_dir``.

        :param exclusive: take the directory's lock; a second process that tries is
            refused with :class:`StoreLockedError`. Read-only commands pass False.
        """
        state_dir.mkdir(parents=True, exist_ok=True)
        lock_file = _take_lock(state_dir) if exclusive else None
        path = state_dir / DATABASE_NAME
        connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        connection.row_factory = sqlite3.Row
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        store = cls(path, connection, lock_file)
        store._migrate()
        return store

    def close(self) -> None:
        """Close the database and release the directory's lock."""
        self.connection.close()
        if self.lock_file is not None:
            self.lock_file.close()

    def _migrate(self) -> None:
        version = self.connection.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self.connection.execute(statement)
                self.connection.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def schema_version(self) -> int:
        """The schema version the file is at."""
        return self.connection.execute("PRAGMA user_version").fetchone()[0]

    def message(self, runtime_key: str, message_id: str) -> MessageRecord | None:
        """The record of one message, or None if it was never seen."""
        row = self.connection.execute(
            "SELECT * FROM messages WHERE runtime_key = ? AND message_id = ?",
            (runtime_key, message_id),
        ).fetchone()
        if row is None:
            return None
        return MessageRecord(
            row["runtime_key"],
            row["message_id"],
            row["state"],
            row["attempts"],
            row["reason"],
            row["last_error"],
        )

    def record_received(self, message: InboundMessage) -> MessageRecord:
        """Record a message as received (once) and return its record."""
        now = _now()
        self.connection.execute(
            "INSERT OR IGNORE INTO messages (runtime_key, message_id, conversation_id, sender_id,"
            " state, metadata, received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message.adapter,
                message.id,
                message.conversation_id,
                message.sender_id,
                RECEIVED,
                json.dumps(message.metadata, default=str),
                now,
                now,
            ),
        )
        record = self.message(message.adapter, message.id)
        assert record is not None
        return record

    def mark_ignored(self, message: InboundMessage, reason: str) -> None:
        """Record that a message was deliberately not answered, and why."""
        self._set_state(message, IGNORED, reason=reason)

    def record_failure(self, message: InboundMessage, error: str) -> int:
        """Count one failed attempt at a message; returns the attempts so far."""
        self.connection.execute(
            "UPDATE messages SET attempts = attempts + 1, last_error = ?, updated_at = ?"
            " WHERE runtime_key = ? AND message_id = ?",
            (error, _now(), message.adapter, message.id),
        )
        record = self.message(message.adapter, message.id)
        return record.attempts if record else 0

    def mark_failed(self, message: InboundMessage, error: str) -> None:
        """Give up on a message after too many failed attempts."""
        self._set_state(message, FAILED, reason=error)

    def _set_state(self, message: InboundMessage, state: str, reason: str | None = None) -> None:
        self.connection.execute(
            "UPDATE messages SET state = ?, reason = ?, updated_at = ?"
            " WHERE runtime_key = ? AND message_id = ?",
            (state, reason, _now(), message.adapter, message.id),
        )

    def plan_replies(
        self, message: InboundMessage, responses: list[AnyResponse]
    ) -> list[PlannedReply]:
        """Store the agent's responses before any is sent, each with its delivery id.

        The delivery id is derived from the message's id and the response's position, so
        the same reply keeps the same id (and email Message-ID) across restarts.
        """
        with self._transaction() as connection:
            connection.execute(
                "UPDATE messages SET planned_at = ? WHERE runtime_key = ? AND message_id = ?",
                (_now(), message.adapter, message.id),
            )
            for position, response in enumerate(responses):
                connection.execute(
                    "INSERT OR IGNORE INTO replies (delivery_id, runtime_key, message_id,"
                    " position, response, state) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        delivery_id_for(message, position),
                        message.adapter,
                        message.id,
                        position,
                        json.dumps(response_to_data(response)),
                        PENDING,
                    ),
                )
        return self.planned_replies(message)

    def planned_replies(self, message: InboundMessage) -> list[PlannedReply]:
        """The replies planned for a message, in order (empty if the agent was not asked)."""
        rows = self.connection.execute(
            "SELECT * FROM replies WHERE runtime_key = ? AND message_id = ? ORDER BY position",
            (message.adapter, message.id),
        ).fetchall()
        return [
            PlannedReply(
                row["delivery_id"],
                row["position"],
                response_from_data(json.loads(row["response"])),
                row["state"],
            )
            for row in rows
        ]

    def has_plan(self, message: InboundMessage) -> bool:
        """Whether the agent's answer (possibly no reply at all) is already stored."""
        row = self.connection.execute(
            "SELECT planned_at FROM messages WHERE runtime_key = ? AND message_id = ?",
            (message.adapter, message.id),
        ).fetchone()
        return row is not None and row["planned_at"] is not None

    def mark_sent(self, reply: PlannedReply) -> None:
        """Record that the channel accepted one reply."""
        self.connection.execute(
            "UPDATE replies SET state = ?, sent_at = ? WHERE delivery_id = ?",
            (SENT, _now(), reply.delivery_id),
        )

    def mark_answered(self, message: InboundMessage, replies: list[PlannedReply]) -> None:
        """Record the exchange in the conversation's history and the message as answered."""
        with self._transaction() as connection:
            connection.execute(
                "UPDATE messages SET state = ?, reason = NULL, updated_at = ?"
                " WHERE runtime_key = ? AND message_id = ?",
                (ANSWERED, _now(), message.adapter, message.id),
            )
            self._append_history(
                connection,
                message.conversation_id,
                "user",
                message.sender_id,
                message.text,
                message.timestamp.isoformat(),
            )
            for reply in replies:
                if isinstance(reply.response, TEXT_RESPONSES):
                    self._append_history(
                        connection,
                        message.conversation_id,
                        "assistant",
                        None,
                        reply.response.text,
                        _now(),
                    )

    @staticmethod
    def _append_history(
        connection: sqlite3.Connection,
        conversation_id: str,
        role: str,
        sender_id: str | None,
        text: str,
        timestamp: str,
    ) -> None:
        connection.execute(
            "INSERT INTO history (conversation_id, role, sender_id, text, timestamp)"
            " VALUES (?, ?, ?, ?, ?)",
            (conversation_id, role, sender_id, text, timestamp),
        )

    def history(self, conversation_id: str, limit: int = 50) -> list[HistoryEntry]:
        """The conversation's last ``limit`` messages, oldest first, both sides."""
        rows = self.connection.execute(
            "SELECT * FROM (SELECT * FROM history WHERE conversation_id = ?"
            " ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (conversation_id, limit),
        ).fetchall()
        return [
            HistoryEntry(
                row["role"], row["text"], datetime.fromisoformat(row["timestamp"]), row["sender_id"]
            )
            for row in rows
        ]

    def counts(self, runtime_key: str) -> dict[str, Any]:
        """How many of the instance's messages are in each state."""
        rows = self.connection.execute(
            "SELECT state, COUNT(*) AS n FROM messages WHERE runtime_key = ? GROUP BY state",
            (runtime_key,),
        ).fetchall()
        return {row["state"]: row["n"] for row in rows}


def delivery_id_for(message: InboundMessage, position: int) -> str:
    """The stable id of a message's ``position``-th reply."""
    return f"{message.adapter}/{message.id}/{position}"


def _take_lock(state_dir: Path) -> IO[str]:
    lock_file = (state_dir / LOCK_NAME).open("a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "another process"
        lock_file.close()
        raise StoreLockedError(
            f"the state directory {state_dir} is in use by {holder}; stop that spacebot first, "
            "or give this one its own [runtime] state_dir"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(f"process {os.getpid()}")
    lock_file.flush()
    return lock_file
