"""Calling the channel hooks of one adapter instance and of no other.

Every instance is a plugin of the same manager. A subset hook caller that removes the
other instances calls exactly one of them, while plugins that are not instances (a
logging wrapper, a rate limit) still take part. This is how a call reaches one
instance without ``firstresult``: with async hooks, a ``firstresult`` dispatch that
lets each instance check the key would stop at the first instance's coroutine, which
is never None, and silently lose the message.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import attrs
import pluggy

from spacebot_core.adapter import Adapter


@attrs.define(eq=False)
class InstanceHooks:
    """The hooks of one instance, bound to its runtime_key."""

    adapter: Adapter
    manager: pluggy.PluginManager
    #: The config file the instance was built from (absolute), when there is one: an
    #: agent's program needs it to call ``spacebot search`` on this instance.
    config_path: Path | None = None
    _callers: dict[str, Any] = attrs.field(factory=dict)

    @property
    def runtime_key(self) -> str:
        """The instance's runtime_key."""
        return self.adapter.runtime_key

    def _caller(self, hook_name: str) -> Any:
        if hook_name not in self._callers:
            others = [
                plugin
                for plugin in self.manager.get_plugins()
                if isinstance(plugin, Adapter) and plugin is not self.adapter
            ]
            self._callers[hook_name] = self.manager.subset_hook_caller(hook_name, others)
        return self._callers[hook_name]

    def implements(self, hook_name: str) -> bool:
        """Whether this instance, or a cross-cutting plugin, implements the hook."""
        return bool(self._caller(hook_name).get_hookimpls())

    def call(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a synchronous hook; returns every implementation's result."""
        return self._caller(hook_name)(runtime_key=self.runtime_key, **kwargs)

    async def call_async(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a hook and await each result that is awaitable (pluggy never does)."""
        results = []
        for result in self.call(hook_name, **kwargs):
            results.append(await result if inspect.isawaitable(result) else result)
        return results
