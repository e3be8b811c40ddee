"""The base class of adapter instances: one configured account on one channel."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import attrs

from spacebot_core.hookspecs import hookimpl


@attrs.define(eq=False)
class Adapter:
    """One instance of a channel, keyed by its ``runtime_key``.

    A channel subclasses this, sets :attr:`settings_type` to an attrs class holding one
    instance's settings, and implements the channel hooks of
    :mod:`spacebot_core.hookspecs` as methods marked with ``@hookimpl``. The runtime
    builds one object per configured instance and registers it with the plugin manager.

    Objects compare and hash by identity (``eq=False``): pluggy keeps plugins in
    dictionaries, and two instances with equal settings are still two plugins.
    """

    #: The attrs class one instance's settings are structured into.
    settings_type: ClassVar[type] = dict
    #: Keys a named instance never inherits from the channel's table (credentials).
    personal_keys: ClassVar[frozenset[str]] = frozenset()

    runtime_key: str
    settings: Any
    state_dir: str | None = None
    log: logging.LoggerAdapter = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.log = logging.LoggerAdapter(
            logging.getLogger(type(self).__module__), {"runtime_key": self.runtime_key}
        )

    @classmethod
    def finalize_settings(cls, settings: Any, runtime_key: str) -> Any:
        """Fill defaults that depend on other settings; returns the settings to use.

        Called once per instance after structuring; may raise
        :class:`spacebot_core.errors.ConfigError`.
        """
        return settings

    @property
    def poll_interval(self) -> float:
        """Seconds between polls; channels with a ``poll_interval_secs`` setting use it."""
        return float(getattr(self.settings, "poll_interval_secs", 60))

    @hookimpl
    async def spacebot_wait(self) -> None:
        """Sleep one poll interval; channels that get pushes override this."""
        await asyncio.sleep(self.poll_interval)
