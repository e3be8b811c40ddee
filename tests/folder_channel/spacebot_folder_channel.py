"""A "folder" channel: a tiny third-party spacebot plugin used by the tests.

It is written exactly as a separate distribution would be: it imports only the public
names of ``spacebot_core`` and is found through its ``spacebot`` entry point.

* Inbound messages are ``*.json`` files in ``inbox``, each
  ``{"id", "sender", "conversation", "text"}``.
* Each reply is written to ``<outbox>/<delivery id, made file-safe>.json``.
* Acknowledging a message moves its file to ``<inbox>/done/<outcome>/``.
* ``fail_start = true`` makes ``spacebot_start`` fail as an unreachable server would.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs

from spacebot_core import (
    Adapter,
    ChannelError,
    CheckResult,
    InboundMessage,
    MessageContent,
    hookimpl,
)
from spacebot_core.convert import response_to_data

CHANNEL = "folder"


@attrs.frozen
class FolderSettings:
    """One folder instance: where messages come in and where replies go."""

    inbox: str
    outbox: str
    poll_interval_secs: float = 5.0
    fail_start: bool = False


def safe_name(delivery_id: str) -> str:
    """A delivery id as a file name: anything but letters, digits, ``.-_`` becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", delivery_id)


@attrs.define(eq=False)
class FolderAdapter(Adapter):
    """One folder instance; ``events`` records the hooks called on it, in order."""

    settings_type = FolderSettings

    events: list[tuple[str, Any]] = attrs.field(init=False, factory=list)

    @property
    def inbox(self) -> Path:
        return Path(self.settings.inbox)

    @property
    def outbox(self) -> Path:
        return Path(self.settings.outbox)

    @hookimpl
    async def spacebot_start(self) -> None:
        self.events.append(("start", None))
        if self.settings.fail_start:
            raise ChannelError(
                f"cannot reach the folder server for {self.runtime_key}",
                hint="check that the server is up, then run 'spacebot check'",
            )
        if not self.inbox.is_dir():
            raise ChannelError(
                f"inbox {self.inbox} is not a directory", hint="create it or fix 'inbox'"
            )
        self.outbox.mkdir(parents=True, exist_ok=True)

    @hookimpl
    async def spacebot_stop(self) -> None:
        self.events.append(("stop", None))

    @hookimpl
    async def spacebot_check(self) -> list[CheckResult]:
        inbox_ok = self.inbox.is_dir()
        outbox_ok = self.outbox.is_dir() or not self.outbox.exists()
        return [
            CheckResult("read the inbox", inbox_ok, str(self.inbox), "create the inbox folder"),
            CheckResult("write the outbox", outbox_ok, str(self.outbox), "fix 'outbox'"),
        ]

    @hookimpl
    async def spacebot_poll(self) -> list[dict[str, Any]]:
        items = []
        for path in sorted(self.inbox.glob("*.json")):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = None
            items.append({"path": str(path), "data": data})
        self.events.append(("poll", len(items)))
        return items

    @hookimpl
    def spacebot_normalize_inbound(self, raw: dict[str, Any]) -> InboundMessage | None:
        data = raw.get("data")
        if not isinstance(data, dict):
            return None
        try:
            sender, text = str(data["sender"]), str(data["text"])
            message_id = str(data["id"])
        except KeyError:
            return None
        return InboundMessage(
            id=message_id,
            source=CHANNEL,
            adapter=self.runtime_key,
            conversation_id=str(data.get("conversation") or sender),
            sender_id=sender,
            content=MessageContent.Text(text),
            timestamp=datetime.now(UTC),
            metadata={"path": raw["path"]},
            formatted_author=sender,
        )

    @hookimpl
    async def spacebot_send(self, message: InboundMessage, response: Any, delivery_id: str) -> None:
        self.events.append(("send", delivery_id))
        document = {
            "to": message.sender_id,
            "in_reply_to": message.id,
            "conversation": message.conversation_id,
            "runtime_key": self.runtime_key,
            "delivery_id": delivery_id,
            "response": response_to_data(response),
        }
        self._write(safe_name(delivery_id), document)

    @hookimpl
    async def spacebot_broadcast(self, target: str, response: Any) -> None:
        self.events.append(("broadcast", target))
        document = {
            "to": target,
            "runtime_key": self.runtime_key,
            "response": response_to_data(response),
        }
        self._write(f"broadcast-{uuid.uuid4().hex}", document)

    @hookimpl
    async def spacebot_ack(self, message: InboundMessage, outcome: str) -> None:
        self.events.append(("ack", (message.id, outcome)))
        source = Path(message.metadata["path"])
        done = self.inbox / "done" / outcome
        done.mkdir(parents=True, exist_ok=True)
        if source.exists():
            source.replace(done / source.name)

    def _write(self, name: str, document: dict[str, Any]) -> None:
        self.outbox.mkdir(parents=True, exist_ok=True)
        partial = self.outbox / f".{name}.partial"
        partial.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        partial.replace(self.outbox / f"{name}.json")


@hookimpl
def spacebot_register_adapters(register: Callable[[str, type], None]) -> None:
    """Declare the ``folder`` channel."""
    register(CHANNEL, FolderAdapter)
