"""Helpers for tests that run the bot for a while: the runtime in a task, and the IMAP
commands it sent, read off the wire.

The transcript is what went to the server (tags and literals left out), so a test can
state the protocol outcome: "the bot sent IDLE", "one UID STORE covered ten mails".
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import attrs
import pytest

from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_core.runtime import Runtime
from spacebot_core.store import StateStore
from spacebot_email.adapter import EmailAdapter
from spacebot_email.imap import ImapSession

#: Generous bounds: a test fails by them only when the behaviour is missing.
EVENT_TIMEOUT = 15.0


@attrs.define
class Transcript:
    """The IMAP commands the bot sent, oldest first, without their tags."""

    commands: list[str] = attrs.Factory(list)

    def named(self, prefix: str) -> list[str]:
        """The commands that start with ``prefix`` (``"IDLE"``, ``"UID STORE"``)."""
        return [command for command in self.commands if command.startswith(prefix)]

    async def wait_for(self, prefix: str, count: int = 1) -> None:
        """Wait until ``count`` commands starting with ``prefix`` were sent."""
        async with asyncio.timeout(EVENT_TIMEOUT):
            while len(self.named(prefix)) < count:
                await asyncio.sleep(0.02)


def record_imap(monkeypatch: pytest.MonkeyPatch) -> Transcript:
    """Record every IMAP command of every session opened from now on in the test."""
    transcript = Transcript()
    opened = ImapSession.open.__func__  # type: ignore[attr-defined]

    async def open_and_record(cls, **arguments):  # type: ignore[no-untyped-def]
        session = await opened(cls, **arguments)
        protocol = session.client.protocol
        send = protocol.send

        def record(line: str, scrub: str | None = None) -> None:
            command = re.sub(r"^\S+ ", "", line, count=1) if line != "DONE" else line
            if not command.startswith(("LOGIN", "AUTHENTICATE")):
                transcript.commands.append(command)
            send(line, scrub=scrub)

        protocol.send = record
        return session

    monkeypatch.setattr(ImapSession, "open", classmethod(open_and_record))
    return transcript


@attrs.define
class Bot:
    """A runtime built from a config file, and its store, for one test."""

    runtime: Runtime
    store: StateStore

    @property
    def adapter(self) -> EmailAdapter:
        """The first instance's adapter object."""
        adapter = self.runtime.runners[0].hooks.adapter
        assert isinstance(adapter, EmailAdapter)
        return adapter

    def tune(self, **settings: object) -> None:
        """Change settings past the config's checks (a poll interval under 5 s)."""
        self.adapter.settings = attrs.evolve(self.adapter.settings, **settings)

    async def cycles(self, limit: int = 20) -> int:
        """Run poll cycles until one finds nothing, as a backlog is worked through."""
        runner = self.runtime.runners[0]
        handled = 0
        try:
            for _ in range(limit):
                count = await runner.run_cycle()
                handled += count
                if count == 0 and not self.adapter.more_pending:
                    break
        finally:
            await runner.stop()
        return handled


@contextlib.contextmanager
def bot_from(config_path: Path) -> Iterator[Bot]:
    """The runtime of ``config_path`` with its store, closed afterwards."""
    host = load_plugins()
    config = load_config(config_path, host.adapter_classes(), host.agent_classes())
    store = StateStore.open(config.state_dir)
    try:
        yield Bot(Runtime.create(config, host, store), store)
    finally:
        store.close()


@contextlib.asynccontextmanager
async def running(bot: Bot) -> AsyncIterator[Callable[[], None]]:
    """Run the bot's instances as ``spacebot run`` does; stopped (and awaited) on exit."""
    stopping = asyncio.Event()
    tasks = [asyncio.create_task(runner.run_forever(stopping)) for runner in bot.runtime.runners]
    try:
        yield stopping.set
    finally:
        stopping.set()
        async with asyncio.timeout(EVENT_TIMEOUT):
            await asyncio.gather(*tasks)
