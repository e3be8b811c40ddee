"""spacebot: connect agents to chat channels through pluggy plugins.

A plugin writes ``from spacebot_core import hookimpl`` and implements the hooks of
:mod:`spacebot_core.hookspecs`.
"""

from spacebot_core.adapter import Adapter
from spacebot_core.agent import Agent
from spacebot_core.checks import CheckResult
from spacebot_core.errors import AgentError, ChannelError, ConfigError, SpacebotError
from spacebot_core.hookspecs import hookimpl, hookspec
from spacebot_core.types import (
    AnyContent,
    AnyResponse,
    Attachment,
    HistoryEntry,
    InboundMessage,
    MessageContent,
    OutboundResponse,
)

__all__ = [
    "Adapter",
    "Agent",
    "AgentError",
    "AnyContent",
    "AnyResponse",
    "Attachment",
    "ChannelError",
    "CheckResult",
    "ConfigError",
    "HistoryEntry",
    "InboundMessage",
    "MessageContent",
    "OutboundResponse",
    "SpacebotError",
    "hookimpl",
    "hookspec",
]
