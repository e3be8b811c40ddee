"""The exceptions of the framework. Each message tells the user what to do."""

from __future__ import annotations


class SpacebotError(Exception):
    """Base of every error raised on purpose by spacebot."""


class ConfigError(SpacebotError):
    """The configuration is wrong; the message names the file, the table and the key.

    The CLI prints it as one line and exits with status 2, before anything connects.
    """


class PluginError(SpacebotError):
    """A plugin could not be loaded or registered something twice."""


class ChannelError(SpacebotError):
    """A channel could not do its job (connect, log in, send).

    ``hint`` says what the user can do about it; the CLI prints both on one line.
    ``permanent`` marks a failure that belongs to one message and will not go away by
    trying again (a recipient the server refuses): the runtime counts it against that
    message, as an agent's failure, instead of stopping the whole instance.
    """

    def __init__(self, message: str, hint: str | None = None, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.hint = hint
        self.permanent = permanent

    def __str__(self) -> str:
        message = super().__str__()
        return f"{message}. {self.hint}" if self.hint else message


class AgentError(SpacebotError):
    """An agent failed on one message; the message is retried later, not dropped."""


class SearchError(SpacebotError):
    """A search cannot be done as asked: a value out of range (a limit over 50), a
    folder that does not exist, or a channel that cannot search."""
