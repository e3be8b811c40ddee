"""Loading plugins by entry point and collecting the adapter types and agent kinds.

Built-in channels and agents are entry points of this distribution in group
``spacebot``, loaded exactly like a third party's. A plugin that fails to import is
reported by name and the others still load.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import attrs
import pluggy
from importlib_metadata import EntryPoint, entry_points

from spacebot_core import hookspecs
from spacebot_core.adapter import Adapter
from spacebot_core.agent import Agent
from spacebot_core.errors import PluginError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "spacebot"
#: Plugin names are one namespace in pluggy; these prefixes keep a distribution's
#: plugin ``email`` apart from the instance whose runtime_key is ``email``.
PLUGIN_PREFIX = "plugin:"
INSTANCE_PREFIX = "instance:"


@attrs.frozen
class Registration:
    """One adapter type or agent kind, and the distribution that declared it."""

    name: str
    cls: type
    plugin_name: str
    distribution: str
    version: str


@attrs.frozen
class PluginFailure:
    """A plugin that could not be loaded, and why."""

    plugin_name: str
    error: str


@attrs.define(eq=False)
class PluginHost:
    """The plugin manager, the plugins it loaded, and what they registered."""

    manager: pluggy.PluginManager = attrs.field(factory=lambda: _new_manager())
    adapter_types: dict[str, Registration] = attrs.field(factory=dict)
    agent_kinds: dict[str, Registration] = attrs.field(factory=dict)
    failures: list[PluginFailure] = attrs.field(factory=list)
    _distributions: dict[str, tuple[str, str]] = attrs.field(factory=dict)

    def load_entry_points(self) -> None:
        """Import and register every plugin of group ``spacebot``; collect failures."""
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            self._load_one(entry_point)

    def _load_one(self, entry_point: EntryPoint) -> None:
        name = PLUGIN_PREFIX + entry_point.name
        if self.manager.has_plugin(name):
            owner = self._distributions.get(name, ("?", "?"))[0]
            if entry_point.dist is not None and entry_point.dist.name != owner:
                self.failures.append(
                    PluginFailure(
                        entry_point.name,
                        f"the name is already taken by {owner}; "
                        f"{entry_point.dist.name} must rename its entry point",
                    )
                )
            return
        try:
            plugin = entry_point.load()
        except Exception as error:  # any import-time error of a third party's code
            log.error(
                "plugin %r failed to load: %s: %s", entry_point.name, type(error).__name__, error
            )
            self.failures.append(
                PluginFailure(entry_point.name, f"{type(error).__name__}: {error}")
            )
            return
        dist = entry_point.dist
        self.add_plugin(
            plugin, entry_point.name, dist.name if dist else "?", dist.version if dist else "?"
        )

    def add_plugin(
        self, plugin: ModuleType | object, name: str, distribution: str = "?", version: str = "?"
    ) -> None:
        """Register a plugin module or object by name, as an entry point would."""
        self._register(plugin, PLUGIN_PREFIX + name)
        self._distributions[PLUGIN_PREFIX + name] = (distribution, version)

    def _register(self, plugin: object, name: str) -> None:
        """Register with pluggy; a hook implemented with the wrong signature is our error."""
        try:
            self.manager.register(plugin, name=name)
        except pluggy.PluginValidationError as error:
            raise PluginError(" ".join(str(error).split())) from None

    def collect_registrations(self) -> None:
        """Ask every plugin for its adapter types and agent kinds, then check the hooks.

        :raises PluginError: when two plugins register the same name, a class has the
            wrong base, or a plugin implements a hook that does not exist.
        """
        self._collect("spacebot_register_adapters", self.adapter_types, Adapter, "adapter type")
        self._collect("spacebot_register_agents", self.agent_kinds, Agent, "agent kind")
        self.check_hooks()

    def check_hooks(self) -> None:
        """``check_pending``: a hook implemented by a plugin but not specified is an error.

        The message names the plugin by its registered name, never by its repr, which
        for an adapter instance would show its settings (and its credentials).

        :raises PluginError: naming the plugin and the misspelt hook.
        """
        try:
            self.manager.check_pending()
        except pluggy.PluginValidationError as error:
            name = self.manager.get_name(error.plugin) or type(error.plugin).__name__
            unknown = sorted(
                hook_name
                for hook_name, caller in vars(self.manager.hook).items()
                if not caller.has_spec()
                and any(impl.plugin is error.plugin for impl in caller.get_hookimpls())
            )
            raise PluginError(
                f"plugin {name} implements {', '.join(unknown)}, which is no spacebot hook; "
                "check its spelling against the hooks in docs/plugins.md"
            ) from None

    def _collect(
        self, hook_name: str, table: dict[str, Registration], base: type, what: str
    ) -> None:
        hook_caller = getattr(self.manager.hook, hook_name)
        for implementation in hook_caller.get_hookimpls():
            plugin_name = implementation.plugin_name
            distribution, version = self._distributions.get(plugin_name, ("?", "?"))
            register = self._registrar(table, base, what, plugin_name, distribution, version)
            implementation.function(register=register)

    def _registrar(
        self,
        table: dict[str, Registration],
        base: type,
        what: str,
        plugin_name: str,
        distribution: str,
        version: str,
    ) -> Callable[[str, type], None]:
        def register(name: str, cls: type) -> None:
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"{plugin_name} registered {what} '{name}' that is not a {base.__name__}"
                )
            if name in table:
                other = table[name].plugin_name
                raise PluginError(
                    f"{what} '{name}' is registered by both {other} and {plugin_name}"
                )
            table[name] = Registration(name, cls, plugin_name, distribution, version)

        return register

    def register_instance(self, adapter: Adapter) -> None:
        """Register one adapter instance under its namespaced runtime_key."""
        self._register(adapter, INSTANCE_PREFIX + adapter.runtime_key)

    def unregister_instance(self, adapter: Adapter) -> None:
        """Take an adapter instance out of the plugin manager."""
        self.manager.unregister(adapter)

    def adapter_classes(self) -> dict[str, type]:
        """Adapter classes by channel name."""
        return {name: registration.cls for name, registration in self.adapter_types.items()}

    def agent_classes(self) -> dict[str, type]:
        """Agent classes by kind."""
        return {name: registration.cls for name, registration in self.agent_kinds.items()}


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    return manager


def load_plugins(extra: dict[str, Any] | None = None) -> PluginHost:
    """A plugin host with every entry point loaded, plus ``extra`` plugins by name.

    :param extra: plugins registered as if they were entry points (tests, embedding).
    """
    host = PluginHost()
    host.load_entry_points()
    for name, plugin in (extra or {}).items():
        host.add_plugin(plugin, name)
    host.collect_registrations()
    return host
