"""What an agent can do besides answering: the tools, bound to one instance.

The runtime hands every :meth:`spacebot_core.agent.Agent.respond` an :class:`AgentTools`
for the instance the message came from. Today it offers one tool, ``search_mailbox``:
a search of the instance's messages through the ``spacebot_search`` hook (text, from,
subject, unread only, since N days, folders; at most 50 hits, newest first).

An agent in Python calls :meth:`AgentTools.search_mailbox`. An LLM agent offers the
model :meth:`AgentTools.definitions` (OpenAI function-calling JSON schema) and runs
each call the model makes through :meth:`AgentTools.call`, which answers with JSON
data and never raises on a bad call: the model reads ``{"error": "..."}`` and may try
again. A ``command`` agent's program runs ``$SPACEBOT_SEARCH`` (see
:mod:`spacebot_core.agents.command`), built from :meth:`AgentTools.search_command`.

The search sees the whole mailbox, not only the sender's conversation: an agent that
quotes what it finds in a reply shows it to whoever wrote. The ``openai`` agent offers
it only with ``tools = true``; turn that on only with ``allowed_senders`` kept to
people who may see the mailbox.
"""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from spacebot_core.convert import search_hits_to_data
from spacebot_core.errors import SearchError, SpacebotError
from spacebot_core.types import MAX_SEARCH_LIMIT, SearchHit, SearchQuery

if TYPE_CHECKING:
    from spacebot_core.instance_hooks import InstanceHooks

SEARCH_TOOL = "search_mailbox"

#: The tool's arguments as the model writes them, and the SearchQuery field of each.
_ARGUMENT_FIELDS = {
    "text": "text",
    "from": "sender",
    "subject": "subject",
    "unread_only": "unread_only",
    "since_days": "since_days",
    "folders": "folders",
    "limit": "limit",
}

SEARCH_TOOL_DEFINITION: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": SEARCH_TOOL,
        "description": (
            "Search this mailbox for earlier mail, newest first. Every criterion given "
            "must match; each text criterion matches a part of the field, ignoring case. "
            "Each hit gives folder, uid, message_id, sender, subject, date, unread and "
            "the start of the text."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "text": {
                    "type": "string",
                    "description": "text to find anywhere in the mail (headers and body)",
                },
                "from": {
                    "type": "string",
                    "description": "text to find in the sender, e.g. an address or a name",
                },
                "subject": {"type": "string", "description": "text to find in the subject"},
                "unread_only": {
                    "type": "boolean",
                    "description": "only mail not yet read",
                    "default": False,
                },
                "since_days": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "only mail received in the last N days (0: today)",
                },
                "folders": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "folders to search; leave out for the usual ones",
                },
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_SEARCH_LIMIT,
                    "default": 10,
                    "description": f"the most hits to return (1 to {MAX_SEARCH_LIMIT})",
                },
            },
            "additionalProperties": False,
        },
    },
}


class ToolError(SpacebotError):
    """A tool call that cannot be made: an unknown tool or a bad argument."""


@attrs.frozen
class AgentTools:
    """The tools of one instance, for the agent answering one of its messages.

    ``hooks`` is the instance (None: no channel, every tool says so); ``channel`` its
    channel's name, for messages. The default ``AgentTools()`` is what an agent gets
    when called outside the runtime.
    """

    hooks: InstanceHooks | None = None
    channel: str | None = None

    @classmethod
    def for_instance(cls, hooks: InstanceHooks, channel: str) -> AgentTools:
        """The tools of the instance ``hooks`` calls, of channel ``channel``."""
        return cls(hooks, channel)

    @property
    def runtime_key(self) -> str | None:
        """The instance's runtime_key; None without a channel."""
        return self.hooks.runtime_key if self.hooks is not None else None

    @property
    def config_path(self) -> Path | None:
        """The config file the instance was built from, when known."""
        return self.hooks.config_path if self.hooks is not None else None

    @property
    def can_search(self) -> bool:
        """Whether the instance's channel implements ``spacebot_search``."""
        return self.hooks is not None and self.hooks.implements("spacebot_search")

    def _name(self) -> str:
        return self.channel or self.runtime_key or "(none)"

    async def search_mailbox(self, query: SearchQuery) -> list[SearchHit]:
        """The messages of the instance that match ``query``, newest first.

        :raises SearchError: no channel, a channel that cannot search, or a search the
            channel cannot do as asked.
        :raises ChannelError: the channel cannot be reached.
        """
        if self.hooks is None:
            raise SearchError("no channel to search: this agent was called outside an instance")
        if not self.can_search:
            raise SearchError(f"channel {self._name()} cannot search")
        hits: list[SearchHit] = []
        for found in await self.hooks.call_async("spacebot_search", query=query):
            hits.extend(found or ())  # a cross-cutting plugin may return nothing
        return newest_first(hits)[: query.limit]

    def definitions(self) -> list[dict[str, Any]]:
        """The tools this instance offers, as OpenAI function-calling definitions;
        none when the channel cannot search."""
        return [SEARCH_TOOL_DEFINITION] if self.can_search else []

    async def call(self, name: str, arguments: Any) -> dict[str, Any]:
        """Run one tool call a model made; JSON-safe data, never an exception for a
        bad call.

        :return: ``{"hits": [...]}`` for a search, or ``{"error": "..."}`` saying
            what was wrong (an unknown tool, an argument of the wrong type, a limit
            over 50, a channel that cannot search or cannot be reached).
        """
        try:
            if name != SEARCH_TOOL:
                raise ToolError(f"unknown tool {name!r}; the tools are: {SEARCH_TOOL}")
            hits = await self.search_mailbox(query_from_arguments(arguments))
        except SpacebotError as error:
            return {"error": str(error)}
        return {"hits": search_hits_to_data(hits)}

    def search_command(self) -> str | None:
        """A shell command line that runs ``spacebot search --json`` on this instance,
        with this same interpreter; None without a config file or a channel that can
        search. Arguments go after it: ``$SPACEBOT_SEARCH --from alice@example.com``.
        """
        if self.config_path is None or self.runtime_key is None or not self.can_search:
            return None
        return shlex.join(
            [
                sys.executable,
                "-m",
                "spacebot_core.cli",
                "search",
                "--config",
                str(self.config_path),
                "--instance",
                self.runtime_key,
                "--json",
            ]
        )


#: The tools of no channel: what an agent gets when called outside the runtime.
NO_TOOLS = AgentTools()


def newest_first(hits: list[SearchHit]) -> list[SearchHit]:
    """Hits sorted by date, newest first; hits without a date last."""
    dated = sorted((hit for hit in hits if hit.date is not None), key=_date, reverse=True)
    return dated + [hit for hit in hits if hit.date is None]


def _date(hit: SearchHit) -> datetime:
    date = hit.date
    assert date is not None
    # A channel's date without a zone is taken as UTC, as the email parser does.
    return date if date.tzinfo is not None else date.replace(tzinfo=UTC)


def query_from_arguments(arguments: Any) -> SearchQuery:
    """The ``search_mailbox`` arguments a model wrote, checked, as a query.

    :raises ToolError: not an object, an unknown argument, or one of the wrong type.
    :raises SearchError: a value out of range.
    """
    if not isinstance(arguments, dict):
        raise ToolError(f"the arguments of {SEARCH_TOOL} must be a JSON object")
    unknown = sorted(set(arguments) - set(_ARGUMENT_FIELDS))
    if unknown:
        raise ToolError(
            f"unknown argument(s) {', '.join(unknown)}; {SEARCH_TOOL} takes: "
            f"{', '.join(_ARGUMENT_FIELDS)}"
        )
    values: dict[str, Any] = {}
    for argument, value in arguments.items():
        if value is None:
            continue  # a model's way of leaving an argument out
        _check_type(argument, value)
        values[_ARGUMENT_FIELDS[argument]] = tuple(value) if argument == "folders" else value
    return SearchQuery(**values)


def _check_type(argument: str, value: Any) -> None:
    if argument in ("text", "from", "subject"):
        ok, wanted = isinstance(value, str), "a string"
    elif argument == "unread_only":
        ok, wanted = isinstance(value, bool), "true or false"
    elif argument in ("since_days", "limit"):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    else:
        ok = isinstance(value, list) and all(isinstance(item, str) for item in value)
        wanted = "a list of strings"
    if not ok:
        raise ToolError(f"argument {argument!r} must be {wanted}, not {value!r:.100}")
