"""The ``echo`` agent: a greeting and the incoming text quoted in full. The demo default."""

from __future__ import annotations

import attrs

from spacebot_core.agent import Agent
from spacebot_core.tools import NO_TOOLS, AgentTools
from spacebot_core.types import (
    AnyResponse,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
)


@attrs.frozen
class EchoSettings:
    """Settings of the ``echo`` kind."""

    greeting: str = "Hello! This is spacebot. You wrote:"


@attrs.define(eq=False)
class EchoAgent(Agent):
    """Answers every message with a short greeting and the message quoted."""

    settings_type = EchoSettings

    async def respond(
        self, message: InboundMessage, history: list[HistoryEntry], tools: AgentTools = NO_TOOLS
    ) -> list[AnyResponse]:
        """A greeting, the text quoted line by line, and the attachments listed."""
        greeting = getattr(self.settings, "greeting", EchoSettings().greeting)
        quoted = "\n".join(f"> {line}".rstrip() for line in message.text.splitlines()) or ">"
        parts = [greeting, "", quoted]
        if isinstance(message.content, MessageContent.Media) and message.content.attachments:
            parts += ["", "Attachments:"]
            parts += [
                f"- {a.filename} ({a.mime_type}, {a.size} bytes)"
                for a in message.content.attachments
            ]
        if history:
            parts += ["", f"(message {len(history) // 2 + 1} of this conversation)"]
        return [OutboundResponse.Text("\n".join(parts))]
