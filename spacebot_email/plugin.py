"""The email channel's plugin module, named by this distribution's entry point."""

from __future__ import annotations

from collections.abc import Callable

from spacebot_core.hookspecs import hookimpl
from spacebot_email.adapter import EmailAdapter


@hookimpl
def spacebot_register_adapters(register: Callable[[str, type], None]) -> None:
    """Register the ``email`` adapter type."""
    register("email", EmailAdapter)
