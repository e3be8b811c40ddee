"""The state store: one SQLite file in the state directory.

It records each inbound message and what became of it, the replies planned for it
(with their stable delivery ids), and every conversation's messages in order. It is
what makes "nothing lost, nothing answered twice" hold across restarts: a message is
acknowledged on its channel only after the store says all its replies were sent.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
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
    """
    CREATE TABLE instances (
        runtime_key TEXT PRIMARY KEY,
        last_poll_at TEXT,
        last_error TEXT,
        last_error_at TEXT
    );
    ALTER TABLE messages ADD COLUMN retry_at TEXT;
    CREATE INDEX messages_by_state ON messages (runtime_key, state);
    CREATE INDEX replies_by_sent_at ON replies (runtime_key, sent_at)
    """,
    # Which message each history entry was (None for entries written before): the
    # inbound message's id, or the reply's delivery id. A channel that looks up a
    # conversation's earlier messages itself leaves out those the store has.
    """
    ALTER TABLE history ADD COLUMN message_id TEXT
    """,
    # The reply caps count one sender's or one conversation's replies of the last hour
    # for every message: found from their messages, not by scanning every reply sent
    # in the hour (which grew with the traffic, each message slower than the last).
    """
    DROP INDEX replies_by_sent_at;
    CREATE INDEX messages_by_sender ON messages (runtime_key, sender_id);
    CREATE INDEX messages_by_conversation ON messages (runtime_key, conversation_id)
    """,
)

# Message states. HELD: over a reply cap, recorded and left unread, not answered.
RECEIVED, ANSWERED, IGNORED, FAILED, HELD = "received", "answered", "ignored", "failed", "held"
# Reply states. SENDING: handed to the channel, not yet confirmed; after a crash it is
# unknown whether the channel accepted it, which the channel is asked before a resend.
PENDING, SENDING, SENT = "pending", "sending", "sent"


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
class InstanceStatus:
    """One instance's health, as ``spacebot status`` prints it."""

    runtime_key: str
    counts: dict[str, int]
    outbox: int
    last_poll_at: str | None
    last_error: str | None
    last_error_at: str | None

    @property
    def pending(self) -> int:
        """Messages seen but not yet answered, ignored, failed or held."""
        return self.counts.get(RECEIVED, 0)


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
class LogSync:
    """Group commit for a WAL-mode database: fsyncs of its log shared by their callers.

    A caller is served by the first fsync that begins after it asked: the fsyncs run
    one at a time, so callers that ask while one runs share the next.
    """

    wal_path: Path
    started: int = 0
    finished: int = 0
    directory_synced: bool = False
    _lock: asyncio.Lock | None = None
    _lock_loop: asyncio.AbstractEventLoop | None = None

    async def sync(self) -> None:
        """Return once every commit made before this call is on the disk."""
        asked_after = self.started
        async with self._loop_lock():
            if self.finished > asked_after:
                return  # an fsync that began after we asked has finished
            self.started += 1
            number = self.started
            await asyncio.to_thread(self._fsync)
            self.finished = number

    def _loop_lock(self) -> asyncio.Lock:
        """The lock of the running event loop (a store may outlive one: tests, commands)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _fsync(self) -> None:
        try:
            descriptor = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # no log: every commit is in the database file, synced by SQLite
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if not self.directory_synced:  # the log's own directory entry, once
            directory = os.open(self.wal_path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            self.directory_synced = True


@attrs.define(eq=False)
class StateStore:
    """The SQLite state of one spacebot process; open with :meth:`open`."""

    path: Path
    connection: sqlite3.Connection
    log_sync: LogSync
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
        # status, history and retry work beside a running spacebot: wait for its writes.
        connection.execute("PRAGMA busy_timeout = 5000")
        connection.execute("PRAGMA journal_mode=WAL")
        # Commits reach the disk when the runtime asks (see sync); a crash of the
        # process loses nothing either way, as WAL commits are in the OS's hands.
        connection.execute("PRAGMA synchronous=NORMAL")
        store = cls(path, connection, LogSync(path.with_name(path.name + "-wal")), lock_file)
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

    async def sync(self) -> None:
        """Make every commit so far durable, without holding up the event loop.

        Commits are not synced one by one (``synchronous=NORMAL`` in WAL mode: a crash
        of the process loses none, a power cut may lose the last ones). The runtime
        awaits this before a step acts outside the store (a reply handed to SMTP, a
        message flagged on its channel), so that after a power cut the store is never
        behind what the outside world saw. One fsync of the log, in a worker thread,
        serves every caller whose commits came before it began (group commit).
        """
        await self.log_sync.sync()

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

    def record_failure(self, message: InboundMessage, error: str, retry_after_secs: float) -> int:
        """Count one failed attempt at a message; returns the attempts so far.

        :param retry_after_secs: the message is not tried again before this delay.
        """
        retry_at = datetime.now(UTC) + timedelta(seconds=retry_after_secs)
        self.connection.execute(
            "UPDATE messages SET attempts = attempts + 1, last_error = ?, retry_at = ?,"
            " updated_at = ? WHERE runtime_key = ? AND message_id = ?",
            (error, retry_at.isoformat(), _now(), message.adapter, message.id),
        )
        record = self.message(message.adapter, message.id)
        return record.attempts if record else 0

    def retry_later(self, message: InboundMessage) -> bool:
        """Whether a message that failed before must wait longer before its next attempt."""
        row = self.connection.execute(
            "SELECT retry_at FROM messages WHERE runtime_key = ? AND message_id = ?",
            (message.adapter, message.id),
        ).fetchone()
        return bool(row and row["retry_at"] and row["retry_at"] > _now())

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

    def mark_sending(self, reply: PlannedReply) -> None:
        """Record that one reply is being handed to the channel (before the send)."""
        self.connection.execute(
            "UPDATE replies SET state = ? WHERE delivery_id = ?", (SENDING, reply.delivery_id)
        )

    def mark_pending(self, reply: PlannedReply) -> None:
        """Record that the channel refused one reply for sure: it was not sent."""
        self.connection.execute(
            "UPDATE replies SET state = ? WHERE delivery_id = ?", (PENDING, reply.delivery_id)
        )

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
                message.id,
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
                        reply.delivery_id,
                    )

    @staticmethod
    def _append_history(
        connection: sqlite3.Connection,
        conversation_id: str,
        role: str,
        sender_id: str | None,
        text: str,
        timestamp: str,
        message_id: str,
    ) -> None:
        connection.execute(
            "INSERT INTO history (conversation_id, role, sender_id, text, timestamp, message_id)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (conversation_id, role, sender_id, text, timestamp, message_id),
        )

    def history(self, conversation_id: str, limit: int = 50) -> list[HistoryEntry]:
        """The conversation's last ``limit`` messages, oldest first, both sides.

        Each entry's ``message_id`` is the inbound message's id (``user``) or the
        reply's delivery id (``assistant``); None for entries stored before schema 3.
        """
        rows = self.connection.execute(
            "SELECT * FROM (SELECT * FROM history WHERE conversation_id = ?"
            " ORDER BY seq DESC LIMIT ?) ORDER BY seq",
            (conversation_id, limit),
        ).fetchall()
        return [
            HistoryEntry(
                row["role"],
                row["text"],
                datetime.fromisoformat(row["timestamp"]),
                row["sender_id"],
                row["message_id"],
            )
            for row in rows
        ]

    def mark_held(self, message: InboundMessage, reason: str) -> None:
        """Record that a message was over a reply cap: kept, unread, not answered."""
        self._set_state(message, HELD, reason=reason)

    def replies_sent_since(
        self,
        runtime_key: str,
        since: datetime,
        *,
        sender_id: str | None = None,
        conversation_id: str | None = None,
    ) -> int:
        """How many replies went out since ``since``, to one sender or in one conversation.

        Exactly one of ``sender_id`` and ``conversation_id`` is given.
        """
        if sender_id is not None:
            column, value = "sender_id", sender_id
        else:
            column, value = "conversation_id", conversation_id
        # CROSS JOIN makes SQLite start from the (few) messages of the sender or the
        # conversation, through their index, and look up each one's replies.
        query = (
            "SELECT COUNT(*) FROM messages CROSS JOIN replies USING (runtime_key, message_id)"
            f" WHERE messages.runtime_key = ? AND messages.{column} = ?"
            " AND replies.state = ? AND replies.sent_at >= ?"
        )
        arguments = (runtime_key, value, SENT, since.isoformat())
        return self.connection.execute(query, arguments).fetchone()[0]

    def record_poll(self, runtime_key: str) -> None:
        """Note a successful poll of an instance."""
        self.connection.execute(
            "INSERT INTO instances (runtime_key, last_poll_at) VALUES (?, ?)"
            " ON CONFLICT (runtime_key) DO UPDATE SET last_poll_at = excluded.last_poll_at",
            (runtime_key, _now()),
        )

    def record_error(self, runtime_key: str, error: str) -> None:
        """Note the latest error of an instance (shown by ``spacebot status``)."""
        now = _now()
        self.connection.execute(
            "INSERT INTO instances (runtime_key, last_error, last_error_at) VALUES (?, ?, ?)"
            " ON CONFLICT (runtime_key) DO UPDATE SET last_error = excluded.last_error,"
            " last_error_at = excluded.last_error_at",
            (runtime_key, error, now),
        )

    def status(self, runtime_key: str) -> InstanceStatus:
        """What ``spacebot status`` shows for one instance."""
        row = self.connection.execute(
            "SELECT * FROM instances WHERE runtime_key = ?", (runtime_key,)
        ).fetchone()
        outbox = self.connection.execute(
            "SELECT COUNT(*) FROM replies WHERE runtime_key = ? AND state != ?",
            (runtime_key, SENT),
        ).fetchone()[0]
        return InstanceStatus(
            runtime_key=runtime_key,
            counts=self.counts(runtime_key),
            outbox=outbox,
            last_poll_at=row["last_poll_at"] if row else None,
            last_error=row["last_error"] if row else None,
            last_error_at=row["last_error_at"] if row else None,
        )

    def failed_messages(self, runtime_key: str | None = None) -> list[tuple[str, str, dict]]:
        """Failed and held messages: (runtime_key, message_id, channel metadata)."""
        query = "SELECT runtime_key, message_id, metadata FROM messages WHERE state IN (?, ?)"
        arguments: list[Any] = [FAILED, HELD]
        if runtime_key is not None:
            query += " AND runtime_key = ?"
            arguments.append(runtime_key)
        rows = self.connection.execute(query, arguments).fetchall()
        return [(row[0], row[1], json.loads(row[2])) for row in rows]

    def requeue(self, runtime_key: str, message_id: str) -> None:
        """Make a failed or held message new again: attempts reset, agent asked again."""
        self.connection.execute(
            "UPDATE messages SET state = ?, reason = NULL, attempts = 0, last_error = NULL,"
            " retry_at = NULL, updated_at = ? WHERE runtime_key = ? AND message_id = ?",
            (RECEIVED, _now(), runtime_key, message_id),
        )

    def conversation_exists(self, conversation_id: str) -> bool:
        """Whether the store holds any message of this conversation."""
        row = self.connection.execute(
            "SELECT 1 FROM history WHERE conversation_id = ? LIMIT 1", (conversation_id,)
        ).fetchone()
        return row is not None

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
