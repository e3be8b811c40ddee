"""``spacebot search``: the ``search_mailbox`` tool of agents, on the command line.

It builds the one instance it searches and calls ``spacebot_search`` on it, without
starting it and without the state store, so it works beside a running
``spacebot run`` (a ``command`` agent's program runs it as ``$SPACEBOT_SEARCH``).
Bad input (a limit of 0 or 51, an unknown instance, a channel that cannot search)
is one line and exit status 2; a server that cannot be reached or refuses the login,
the same line as ``spacebot check`` gives and status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Callable

from spacebot_core.config import Config, InstanceConfig
from spacebot_core.convert import search_hits_to_data
from spacebot_core.errors import ConfigError, SearchError
from spacebot_core.instance_hooks import InstanceHooks
from spacebot_core.runtime import build_adapter
from spacebot_core.tools import AgentTools
from spacebot_core.types import MAX_SEARCH_LIMIT, SearchHit, SearchQuery

EXIT_OK, EXIT_BAD_INPUT = 0, 2
FROM_WIDTH, SUBJECT_WIDTH = 32, 50
#: Control characters (C0, DEL, C1) that a hostile subject could use to drive a terminal.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def add_search_command(
    add_command: Callable[[str, str], argparse.ArgumentParser],
    load: Callable[[argparse.Namespace], tuple],
) -> None:
    """Register ``search`` with the CLI's subcommands."""
    search = add_command("search", "search an instance's mail as an agent's tool does")
    search.add_argument(
        "text", metavar="TEXT", nargs="*", help="words to find anywhere in the mail"
    )
    search.add_argument(
        "--instance", metavar="KEY", help="runtime_key to search (default: the first one)"
    )
    search.add_argument("--from", dest="sender", metavar="ADDR", help="text in the sender")
    search.add_argument("--subject", metavar="S", help="text in the subject")
    search.add_argument("--unread", action="store_true", help="only mail not yet read")
    search.add_argument(
        "--since-days", type=int, metavar="N", help="only mail received in the last N days"
    )
    search.add_argument(
        "--folder",
        action="append",
        metavar="F",
        help="a folder to search (repeat for more; default: the configured folders)",
    )
    search.add_argument(
        "--limit", type=int, default=10, help=f"the most hits, 1 to {MAX_SEARCH_LIMIT} (10)"
    )
    search.add_argument("--json", action="store_true", help="one JSON object per hit and line")
    search.set_defaults(handler=lambda arguments: command_search(arguments, load))


def command_search(arguments: argparse.Namespace, load: Callable) -> int:
    """``spacebot search [--instance KEY] [--from ADDR] ... [TEXT]``."""
    try:
        query = SearchQuery(
            text=" ".join(arguments.text) or None,
            sender=arguments.sender,
            subject=arguments.subject,
            unread_only=arguments.unread,
            since_days=arguments.since_days,
            folders=tuple(arguments.folder or ()),
            limit=arguments.limit,
        )
    except SearchError as error:
        return _bad_input(error)
    host, config = load(arguments)
    instance = _instance(config, arguments.instance)
    adapter = build_adapter(instance, host, config)
    host.register_instance(adapter)
    host.check_hooks()
    hooks = InstanceHooks(adapter, host.manager, config_path=config.path.resolve())
    tools = AgentTools.for_instance(hooks, instance.channel)
    try:
        hits = asyncio.run(tools.search_mailbox(query))
    except SearchError as error:
        return _bad_input(error)
    if arguments.json:
        for data in search_hits_to_data(hits):
            print(json.dumps(data, ensure_ascii=False))
    else:
        print(format_table(hits))
    return EXIT_OK


def _bad_input(error: Exception) -> int:
    print(f"spacebot: error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _instance(config: Config, runtime_key: str | None) -> InstanceConfig:
    if runtime_key is not None:
        return config.instance(runtime_key)
    if not config.instances:
        raise ConfigError(f"{config.path}: no enabled instance to search")
    return config.instances[0]


def format_table(hits: list[SearchHit]) -> str:
    """Hits as aligned columns for a terminal: date, from, subject, folder."""
    if not hits:
        return "no mail found"
    rows = [("DATE", "FROM", "SUBJECT", "FOLDER")]
    for hit in hits:
        date = hit.date.astimezone().strftime("%Y-%m-%d %H:%M") if hit.date else "-"
        rows.append(
            (
                date,
                _cell(hit.sender, FROM_WIDTH),
                _cell(hit.subject, SUBJECT_WIDTH),
                _cell(hit.folder, 0),
            )
        )
    return "\n".join(
        f"{date:<16}  {sender:<{FROM_WIDTH}}  {subject:<{SUBJECT_WIDTH}}  {folder}".rstrip()
        for date, sender, subject, folder in rows
    )


def _cell(text: str, width: int) -> str:
    """``text`` safe for a terminal, cut to ``width`` characters (0: not cut)."""
    text = _CONTROL.sub(" ", text)
    if width and len(text) > width:
        return text[: width - 1] + "…"
    return text
