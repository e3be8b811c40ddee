"""The folder channel (a third-party plugin, installed by entry point) passes the suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from spacebot_core.adapter import Adapter
from spacebot_core.testing import AdapterConformance, ChannelDriver, Delivered, Injected
from tests.distribution import FOLDER_DISTRIBUTION

pytest_plugins = ["tests.core_fixtures"]


class FolderDriver(ChannelDriver):
    """Drops JSON files in the inbox and reads the outbox, as the folder's users do."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def settings(self, runtime_key: str) -> dict[str, Any]:
        inbox = self.root / runtime_key / "inbox"
        inbox.mkdir(parents=True, exist_ok=True)
        return {"inbox": str(inbox), "outbox": str(self.root / runtime_key / "outbox")}

    async def inject(self, adapter: Adapter, message: Injected) -> None:
        document = {
            "id": message.key,
            "sender": message.sender_id,
            "conversation": message.conversation,
            "text": message.text,
        }
        path = Path(adapter.settings.inbox) / f"{message.key}.json"
        path.write_text(json.dumps(document), encoding="utf-8")

    async def delivered(self, adapter: Adapter) -> list[Delivered]:
        outbox = Path(adapter.settings.outbox)
        paths = sorted(outbox.glob("*.json"), key=lambda path: path.stat().st_mtime_ns)
        documents = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
        return [
            Delivered(document["response"].get("text", ""), document.get("in_reply_to"))
            for document in documents
        ]


class TestFolderChannelConformance(AdapterConformance):
    channel = "folder"
    distribution = FOLDER_DISTRIBUTION

    @pytest.fixture
    def driver(self, tmp_path: Path, folder_plugin: Path) -> FolderDriver:
        return FolderDriver(tmp_path / "folders")
