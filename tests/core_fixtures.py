"""Helpers and fixtures shared by the core framework's tests.

They run spacebot against the folder channel of ``tests/folder_channel``, installed as
a real third-party distribution (see :mod:`tests.distribution`): in-process through
``sys.path``, or as the ``spacebot`` command with ``PYTHONPATH``. Test modules import
the helpers and load the fixtures with ``pytest_plugins = ["tests.core_fixtures"]``.

The module holds no assertions, so pytest need not rewrite it: PYTEST_DONT_REWRITE.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest

from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_core.runtime import Runtime
from spacebot_core.store import StateStore
from tests.distribution import installed, subprocess_env, write_folder_channel

CLI_TIMEOUT_SECS = 30


@attrs.define
class Folder:
    """The inbox and outbox of one folder instance."""

    root: Path
    runtime_key: str

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def drop(
        self, message_id: str, text: str, sender: str = "alice", conversation: str | None = None
    ) -> Path:
        """Put one message in the inbox, as the other side would."""
        document = {"id": message_id, "sender": sender, "text": text}
        if conversation is not None:
            document["conversation"] = conversation
        path = self.inbox / f"{message_id}.json"
        path.write_text(json.dumps(document), encoding="utf-8")
        return path

    def pending(self) -> list[str]:
        """Names of the inbox files not yet acknowledged."""
        return sorted(path.name for path in self.inbox.glob("*.json"))

    def done(self, outcome: str) -> list[str]:
        """Names of the inbox files acknowledged with ``outcome``."""
        return sorted(path.name for path in (self.inbox / "done" / outcome).glob("*.json"))

    def replies(self) -> list[dict[str, Any]]:
        """Everything written to the outbox, oldest first."""
        paths = sorted(self.outbox.glob("*.json"), key=lambda path: path.stat().st_mtime_ns)
        return [json.loads(path.read_text(encoding="utf-8")) for path in paths]

    def reply_texts(self) -> list[str]:
        return [reply["response"].get("text") for reply in self.replies()]

    def toml(self, **extra: Any) -> str:
        """The instance's keys as TOML lines."""
        values = {"inbox": str(self.inbox), "outbox": str(self.outbox), **extra}
        return "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())


def make_folder(root: Path, runtime_key: str = "folder") -> Folder:
    folder = Folder(root / runtime_key, runtime_key)
    folder.inbox.mkdir(parents=True)
    folder.outbox.mkdir(parents=True)
    return folder


def write_config(directory: Path, text: str, name: str = "config.toml") -> Path:
    """Write a config file whose state directory is ``<directory>/state``."""
    path = directory / name
    # Retries at once: tests run cycle after cycle without waiting.
    runtime = f'[runtime]\nstate_dir = "{directory / "state"}"\nretry_backoff_secs = 0\n'
    path.write_text(f"{runtime}\n{text}", encoding="utf-8")
    return path


def single_folder_config(folder: Folder, extra: str = "", **settings: Any) -> str:
    """``[messaging.folder]`` for one instance, followed by ``extra`` tables."""
    return f"[messaging.folder]\n{folder.toml(**settings)}\n{extra}"


@pytest.fixture
def folder_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site directory holding the folder channel distribution, version 1.0."""
    return write_folder_channel(tmp_path_factory.mktemp("site"))


@pytest.fixture
def folder_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The folder channel installed in this process for the test; yields its site."""
    site = write_folder_channel(tmp_path_factory.mktemp("site"))
    with installed(site):
        yield site


#: The ``spacebot`` console script of the Python running the tests: the one this
#: checkout installed, whatever else is on PATH.
SPACEBOT = str(Path(sys.executable).with_name("spacebot"))


def run_cli(
    args: Sequence[str],
    cwd: Path,
    sites: Sequence[Path],
    timeout: float = CLI_TIMEOUT_SECS,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run the ``spacebot`` command as a user would, seeing the plugins in ``sites``."""
    return subprocess.run(
        [SPACEBOT, *args],
        cwd=cwd,
        env=subprocess_env(*sites, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(stderr: str) -> list[str]:
    """The lines of ``stderr`` that are not reports of plugins failing to load.

    Plugins of this repository that are still being written (an entry point whose
    module does not exist yet) are reported on every run; those reports are tested
    in ``test_plugins_entry_points`` and left out here.
    """
    broken = [failure.plugin_name for failure in load_plugins().failures]
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not any(f"plugin {name!r} failed to load" in line for name in broken)
    ]


@asynccontextmanager
async def open_runtime(config_path: Path, **extra_plugins: Any) -> AsyncIterator[Runtime]:
    """The runtime of ``config_path``, with ``extra_plugins`` registered by name."""
    host = load_plugins(extra_plugins)
    config = load_config(config_path, host.adapter_classes(), host.agent_classes())
    store = StateStore.open(config.state_dir)
    try:
        yield Runtime.create(config, host, store)
    finally:
        store.close()


async def run_once(config_path: Path, **extra_plugins: Any) -> list[tuple[str, Exception]]:
    """One cycle of every instance in-process, as ``spacebot run --once``."""
    async with open_runtime(config_path, **extra_plugins) as runtime:
        return await runtime.run_once()


def adapter_of(runtime: Runtime, runtime_key: str) -> Any:
    """The adapter object of one instance."""
    return runtime.runner(runtime_key).hooks.adapter
