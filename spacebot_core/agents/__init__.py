"""The built-in agent kinds, registered through the same hook a third party uses."""

from __future__ import annotations

from collections.abc import Callable

from spacebot_core.agents.command import CommandAgent
from spacebot_core.agents.echo import EchoAgent
from spacebot_core.hookspecs import hookimpl


@hookimpl
def spacebot_register_agents(register: Callable[[str, type], None]) -> None:
    """Register ``echo`` and ``command``."""
    register("echo", EchoAgent)
    register("command", CommandAgent)
