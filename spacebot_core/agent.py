"""The base class of agents: what answers a message."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs

from spacebot_core.tools import NO_TOOLS, AgentTools
from spacebot_core.types import AnyResponse, HistoryEntry, InboundMessage


@attrs.frozen
class NoSettings:
    """Settings of an agent kind that takes none."""


@attrs.define(eq=False)
class Agent:
    """One configured agent (an ``[[agents]]`` table, or the implicit ``echo``).

    A kind subclasses this, sets :attr:`settings_type` to an attrs class of its
    kind-specific keys, and implements :meth:`respond`.
    """

    settings_type: ClassVar[type] = NoSettings

    agent_id: str
    settings: Any = attrs.field(factory=NoSettings)

    async def respond(
        self, message: InboundMessage, history: list[HistoryEntry], tools: AgentTools = NO_TOOLS
    ) -> list[AnyResponse]:
        """Answer ``message``; ``history`` is the conversation so far, oldest first.

        ``tools`` are the tools of the instance the message came from (a search of its
        messages, see :mod:`spacebot_core.tools`); called outside the runtime, an agent
        gets tools of no channel. Return no responses to stay silent. Raise
        :class:`spacebot_core.errors.AgentError` when the message could not be answered
        now; the runtime retries it later.
        """
        raise NotImplementedError
