"""The ``command`` agent: any program becomes an agent.

The program gets one JSON document on standard input::

    {"agent_id": "...", "message": {...InboundMessage...}, "history": [{...}, ...]}

and writes its reply on standard output: plain text (``output = "text"``, the default)
or a JSON list of tagged responses such as ``[{"type": "text", "text": "Hi"}]``
(``output = "json"``). Empty output means no reply. A non-zero exit or a timeout is
an error for that message, which is retried later, not dropped.

The program can search the mailbox (the ``search_mailbox`` tool of
:mod:`spacebot_core.tools`) without any change to that contract: its environment
holds

* ``SPACEBOT_CONFIG``: the absolute path of the running config file;
* ``SPACEBOT_INSTANCE``: the runtime_key of the instance the message came from;
* ``SPACEBOT_SEARCH``: a shell-quoted command line that runs ``spacebot search
  --config ... --instance ... --json`` with the same Python, set only when the
  instance's channel can search. Arguments go after it, and it prints one JSON hit
  per line (folder, uid, message_id, sender, subject, date, unread, text)::

      $SPACEBOT_SEARCH --from alice@example.com --since-days 30 invoice

  (``eval "$SPACEBOT_SEARCH --unread"`` where a path may hold spaces; in Python,
  ``shlex.split(os.environ["SPACEBOT_SEARCH"])``). It works while ``spacebot run``
  runs: it needs no lock of the state store.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Literal

import attrs

from spacebot_core.agent import Agent
from spacebot_core.convert import (
    UnknownTypeError,
    history_to_data,
    message_to_data,
    response_from_data,
)
from spacebot_core.errors import AgentError
from spacebot_core.tools import NO_TOOLS, AgentTools
from spacebot_core.types import AnyResponse, HistoryEntry, InboundMessage, OutboundResponse

STDERR_TAIL_CHARS = 500
#: Variables that name the instance a message came from; never inherited.
INSTANCE_VARIABLES = ("SPACEBOT_INSTANCE", "SPACEBOT_SEARCH")


@attrs.frozen
class CommandSettings:
    """Settings of the ``command`` kind."""

    command: list[str]
    timeout_secs: float = 60.0
    output: Literal["text", "json"] = "text"
    cwd: str | None = None


@attrs.define(eq=False)
class CommandAgent(Agent):
    """Runs a program per message: the message as JSON in, the reply out."""

    settings_type = CommandSettings

    async def respond(
        self, message: InboundMessage, history: list[HistoryEntry], tools: AgentTools = NO_TOOLS
    ) -> list[AnyResponse]:
        """Run the command once; raise AgentError on a non-zero exit or timeout."""
        document = {
            "agent_id": self.agent_id,
            "message": message_to_data(message),
            "history": history_to_data(history),
        }
        stdout = await self._run(json.dumps(document).encode(), tool_environment(tools))
        return self._responses(stdout.decode("utf-8", errors="replace"))

    async def _run(self, stdin: bytes, extra_environment: dict[str, str]) -> bytes:
        settings: CommandSettings = self.settings
        try:
            process = await asyncio.create_subprocess_exec(
                *settings.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=settings.cwd,
                env=_environment(extra_environment),
                # Its own session: Ctrl-C in the terminal stops spacebot, which lets
                # the program finish the message in hand, instead of killing it.
                start_new_session=True,
            )
        except OSError as error:
            raise AgentError(f"cannot run {settings.command[0]!r}: {error.strerror}") from None
        try:
            stdout, stderr = await asyncio.wait_for(
                process.communicate(stdin), settings.timeout_secs
            )
        except asyncio.CancelledError:
            process.kill()
            raise
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AgentError(
                f"{settings.command[0]!r} did not answer within {settings.timeout_secs:g} s"
            ) from None
        if process.returncode != 0:
            tail = stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:]
            raise AgentError(
                f"{settings.command[0]!r} exited with status {process.returncode}: {tail}"
            )
        return stdout

    def _responses(self, stdout: str) -> list[AnyResponse]:
        if not stdout.strip():
            return []
        if self.settings.output == "text":
            return [OutboundResponse.Text(stdout.rstrip("\n"))]
        try:
            data = json.loads(stdout)
            items = data if isinstance(data, list) else [data]
            return [response_from_data(item) for item in items]
        except (json.JSONDecodeError, UnknownTypeError, ValueError, TypeError) as error:
            raise AgentError(
                f"{self.settings.command[0]!r} printed no valid JSON list of responses, "
                f"which output = 'json' expects: {error}"
            ) from None


def _environment(extra: dict[str, str]) -> dict[str, str]:
    """Ours, with ``extra``; an inherited instance or search command is left out, so that
    the program never searches another instance than the one its message came from."""
    inherited = {
        name: value for name, value in os.environ.items() if name not in INSTANCE_VARIABLES
    }
    return {**inherited, **extra}


def tool_environment(tools: AgentTools) -> dict[str, str]:
    """``SPACEBOT_CONFIG``, ``SPACEBOT_INSTANCE`` and ``SPACEBOT_SEARCH`` for the
    program, as far as they are known (none outside the runtime)."""
    environment: dict[str, str] = {}
    if tools.config_path is not None:
        environment["SPACEBOT_CONFIG"] = str(tools.config_path)
    if tools.runtime_key is not None:
        environment["SPACEBOT_INSTANCE"] = tools.runtime_key
    search = tools.search_command()
    if search is not None:
        environment["SPACEBOT_SEARCH"] = search
    return environment
