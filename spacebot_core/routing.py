"""Which agent answers a message: bindings first, then the default agent."""

from __future__ import annotations

import attrs

from spacebot_core.agent import Agent
from spacebot_core.config import BindingConfig


@attrs.frozen
class Router:
    """Routes (channel, runtime_key) to an agent by the config's ``[[bindings]]``.

    A binding without ``adapter`` is for the channel's primary instance, whose
    runtime_key is the channel's name; a binding with ``adapter`` is for that named
    instance. The first binding that matches wins; no match goes to the default agent.
    """

    bindings: tuple[BindingConfig, ...]
    agents: dict[str, Agent]
    default_agent_id: str

    def agent_for(self, channel: str, runtime_key: str) -> Agent:
        """The agent that answers messages arriving on this instance."""
        for binding in self.bindings:
            if binding.channel == channel and (binding.adapter or channel) == runtime_key:
                return self.agents[binding.agent_id]
        return self.agents[self.default_agent_id]
