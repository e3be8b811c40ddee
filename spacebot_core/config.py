"""Reading ``config.toml``: the spec's shape, checked in full before anything connects.

The file has four kinds of tables::

    [messaging.<channel>]                 one channel's settings; its own instance
    [[messaging.<channel>.instances]]     named instances, keyed by runtime_key
    [[bindings]]                          agent_id, channel, optional adapter
    [[agents]]                            id, kind, default, kind-specific keys
    [runtime]                             state_dir and the runtime's own settings

Every mistake is one :class:`ConfigError` line naming the file, the table and the key
(and for ``env:`` values, the variable), and never the value, which may be a secret.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from spacebot_core.config_structure import (
    EnvValue,
    StructureFailure,
    structure_strictly,
)
from spacebot_core.errors import ConfigError

CONFIG_ENV_VAR = "SPACEBOT_CONFIG"
DEFAULT_CONFIG_NAME = "config.toml"
ENV_PREFIX = "env:"
TOP_LEVEL_KEYS = ("messaging", "bindings", "agents", "runtime")
DEFAULT_AGENT_ID = "main"
DEFAULT_AGENT_KIND = "echo"


def _at_least_one(_instance: object, attribute: attrs.Attribute, value: int) -> None:
    """An attrs validator: counts such as ``max_in_flight`` cannot be below 1."""
    if value < 1:
        raise ValueError(f"{attribute.name} must be 1 or more (it is {value})")


@attrs.frozen
class RuntimeSettings:
    """The ``[runtime]`` table."""

    state_dir: str = "spacebot-state"
    agent_timeout_secs: float = 120.0
    max_backoff_secs: float = 300.0
    max_attempts: int = 5
    retry_backoff_secs: float = 30.0
    shutdown_grace_secs: float = 10.0
    max_replies_per_sender_per_hour: int = 20
    max_replies_per_thread_per_hour: int = 10
    #: How many messages of one instance are handled at once (1: one after the other).
    max_in_flight: int = attrs.field(default=16, validator=_at_least_one)


@attrs.frozen
class BindingConfig:
    """One ``[[bindings]]`` table: messages from (channel, adapter) go to agent_id."""

    agent_id: str
    channel: str
    adapter: str | None = None


@attrs.frozen
class AgentConfig:
    """One agent: its id, kind, whether it is the default, and its kind's settings."""

    id: str
    kind: str
    default: bool
    settings: Any


@attrs.frozen
class InstanceConfig:
    """One configured instance of a channel, keyed by runtime_key."""

    channel: str
    runtime_key: str
    settings: Any
    where: str


@attrs.frozen
class Config:
    """The whole configuration, checked and with every ``env:`` value resolved."""

    path: Path
    instances: tuple[InstanceConfig, ...]
    bindings: tuple[BindingConfig, ...]
    agents: tuple[AgentConfig, ...]
    runtime: RuntimeSettings

    @property
    def state_dir(self) -> Path:
        """The state directory; a relative path is taken from the config file's folder."""
        return (self.path.parent / os.path.expanduser(self.runtime.state_dir)).resolve()

    @property
    def default_agent(self) -> AgentConfig:
        """The agent that answers messages no binding matches."""
        for agent in self.agents:
            if agent.default:
                return agent
        return self.agents[0]

    def instance(self, runtime_key: str) -> InstanceConfig:
        """The instance with this runtime_key; raises ConfigError if there is none."""
        for instance in self.instances:
            if instance.runtime_key == runtime_key:
                return instance
        known = ", ".join(i.runtime_key for i in self.instances) or "none"
        raise ConfigError(f"{self.path}: no instance '{runtime_key}' (configured: {known})")


def find_config_path(explicit: str | None) -> Path:
    """``--config PATH``, else ``$SPACEBOT_CONFIG``, else ``./config.toml``."""
    if explicit:
        return Path(explicit)
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        return Path(from_env)
    return Path(DEFAULT_CONFIG_NAME)


def load_config(
    path: Path, adapter_types: Mapping[str, type], agent_kinds: Mapping[str, type]
) -> Config:
    """Read, resolve and check the config file at ``path``.

    :param adapter_types: the registered adapter classes by channel name.
    :param agent_kinds: the registered agent classes by kind.
    :raises ConfigError: on the first mistake found, naming file, table and key.
    """
    document = _read_toml(path)
    reader = _Reader(str(path))
    reader.reject_unknown(document, TOP_LEVEL_KEYS, "the top level")
    instances = _read_messaging(reader, document.get("messaging", {}), adapter_types)
    agents = _read_agents(reader, document.get("agents"), agent_kinds, document)
    bindings = _read_bindings(reader, document.get("bindings", []), instances, agents)
    runtime = reader.structure(document.get("runtime", {}), RuntimeSettings, "[runtime]")
    return Config(path, tuple(instances), tuple(bindings), tuple(agents), runtime)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: config file not found; pass --config PATH, set ${CONFIG_ENV_VAR}, "
            "or copy the example in the README"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror}") from None


@attrs.define
class _Reader:
    """Checks tables of one file and words the errors with the file's name."""

    filename: str

    def fail(self, table: str, message: str) -> ConfigError:
        return ConfigError(f"{self.filename}: {table} {message}")

    def expect_table(self, value: Any, table: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(table, "must be a table")
        return value

    def expect_table_array(self, value: Any, table: str) -> list[dict[str, Any]]:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.fail(table, f"must be written as {table} tables")
        return value

    def reject_unknown(self, table_data: Mapping[str, Any], known: tuple[str, ...], table: str):
        for key in table_data:
            if key not in known:
                raise self.fail(table, f"has an unknown key '{key}' (known: {', '.join(known)})")

    def resolve_env(self, table_data: Mapping[str, Any], table: str) -> dict[str, Any]:
        return {key: self._resolve(value, table, key) for key, value in table_data.items()}

    def _resolve(self, value: Any, table: str, key: str) -> Any:
        if isinstance(value, str) and value.startswith(ENV_PREFIX):
            name = value[len(ENV_PREFIX) :].strip()
            if name not in os.environ:
                raise self.fail(table, f"{key}: environment variable {name} is not set")
            return EnvValue(os.environ[name])
        if isinstance(value, list):
            return [self._resolve(item, table, f"{key}[{i}]") for i, item in enumerate(value)]
        return value

    def structure(self, table_data: Mapping[str, Any], cls: type, table: str) -> Any:
        resolved = self.resolve_env(self.expect_table(table_data, table), table)
        try:
            return structure_strictly(resolved, cls)
        except StructureFailure as failure:
            raise self.fail(table, str(failure)) from None


def _read_messaging(
    reader: _Reader, messaging: Any, adapter_types: Mapping[str, type]
) -> list[InstanceConfig]:
    instances: list[InstanceConfig] = []
    seen_keys: dict[str, str] = {}
    for channel, section in reader.expect_table(messaging, "[messaging]").items():
        table = f"[messaging.{channel}]"
        section = reader.expect_table(section, table)
        if channel not in adapter_types:
            installed = ", ".join(sorted(adapter_types)) or "none"
            raise reader.fail(
                table,
                f"names no installed channel (installed: {installed}); see 'spacebot adapters'",
            )
        for instance in _channel_instances(reader, channel, section, adapter_types[channel]):
            if instance.runtime_key in seen_keys:
                raise reader.fail(
                    instance.where,
                    f"runtime_key '{instance.runtime_key}' is already used by "
                    f"{seen_keys[instance.runtime_key]}; each instance needs its own",
                )
            seen_keys[instance.runtime_key] = instance.where
            instances.append(instance)
    return instances


def _channel_instances(
    reader: _Reader, channel: str, section: dict[str, Any], adapter_type: type
) -> list[InstanceConfig]:
    """The channel's own instance (runtime_key = channel) and its named instances.

    A named instance inherits every key of the channel's table except the adapter
    type's ``personal_keys`` (credentials), which belong to one account only.
    """
    table = f"[messaging.{channel}]"
    base = dict(section)
    enabled = _pop_bool(reader, base, "enabled", table, default=True)
    named = reader.expect_table_array(
        base.pop("instances", []), f"[[messaging.{channel}.instances]]"
    )
    if not enabled:
        return []
    instances = [_build_instance(reader, channel, channel, base, adapter_type, table)]
    inherited = {k: v for k, v in base.items() if k not in adapter_type.personal_keys}
    for number, entry in enumerate(named, start=1):
        where = f"[[messaging.{channel}.instances]] #{number}"
        entry = dict(entry)
        runtime_key = entry.pop("runtime_key", None)
        if not isinstance(runtime_key, str) or not runtime_key.strip():
            raise reader.fail(where, 'needs a runtime_key, a name such as "sales-email"')
        where = f'{where} (runtime_key "{runtime_key}")'
        if _pop_bool(reader, entry, "enabled", where, default=True):
            merged = {**inherited, **entry}
            instances.append(
                _build_instance(reader, channel, runtime_key, merged, adapter_type, where)
            )
    return instances


def _pop_bool(
    reader: _Reader, table_data: dict[str, Any], key: str, table: str, default: bool
) -> bool:
    """Take a true/false key out of a table before the rest is structured."""
    value = table_data.pop(key, default)
    if not isinstance(value, bool):
        raise reader.fail(table, f"{key}: expected true or false")
    return value


def _build_instance(
    reader: _Reader,
    channel: str,
    runtime_key: str,
    table_data: dict[str, Any],
    adapter_type: type,
    where: str,
) -> InstanceConfig:
    settings = reader.structure(table_data, adapter_type.settings_type, where)
    try:
        settings = adapter_type.finalize_settings(settings, runtime_key)
    except ConfigError as error:
        raise reader.fail(where, str(error)) from None
    return InstanceConfig(channel, runtime_key, settings, where)


def _read_agents(
    reader: _Reader, agents: Any, agent_kinds: Mapping[str, type], document: dict[str, Any]
) -> list[AgentConfig]:
    if agents is None:
        return _implicit_agents(document, agent_kinds)
    result: list[AgentConfig] = []
    for number, entry in enumerate(reader.expect_table_array(agents, "[[agents]]"), start=1):
        entry = dict(entry)
        where = f"[[agents]] #{number}"
        agent_id = entry.pop("id", None)
        if not isinstance(agent_id, str) or not agent_id:
            raise reader.fail(where, 'needs an id, a name such as "main"')
        where = f'{where} (id "{agent_id}")'
        if any(agent.id == agent_id for agent in result):
            raise reader.fail(where, f"id '{agent_id}' is used by another agent")
        kind = entry.pop("kind", DEFAULT_AGENT_KIND)
        if kind not in agent_kinds:
            known = ", ".join(sorted(agent_kinds))
            raise reader.fail(
                where, f"kind: no agent kind '{kind}' is installed (installed: {known})"
            )
        default = _pop_bool(reader, entry, "default", where, default=False)
        settings = reader.structure(entry, agent_kinds[kind].settings_type, where)
        result.append(AgentConfig(agent_id, kind, default, settings))
    if not result:
        raise reader.fail("[[agents]]", "is empty; declare at least one agent or leave it out")
    if sum(agent.default for agent in result) > 1:
        raise reader.fail("[[agents]]", "default: only one agent can be the default")
    return result


def _implicit_agents(
    document: dict[str, Any], agent_kinds: Mapping[str, type]
) -> list[AgentConfig]:
    """With no ``[[agents]]``, every agent a binding names is the built-in echo."""
    echo_settings = agent_kinds[DEFAULT_AGENT_KIND].settings_type()
    ids: list[str] = []
    for binding in document.get("bindings", []):
        agent_id = binding.get("agent_id") if isinstance(binding, dict) else None
        if isinstance(agent_id, str) and agent_id not in ids:
            ids.append(agent_id)
    ids = ids or [DEFAULT_AGENT_ID]
    return [
        AgentConfig(agent_id, DEFAULT_AGENT_KIND, agent_id == ids[0], echo_settings)
        for agent_id in ids
    ]


def _read_bindings(
    reader: _Reader,
    bindings: Any,
    instances: list[InstanceConfig],
    agents: list[AgentConfig],
) -> list[BindingConfig]:
    result: list[BindingConfig] = []
    agent_ids = [agent.id for agent in agents]
    for number, entry in enumerate(reader.expect_table_array(bindings, "[[bindings]]"), start=1):
        where = f"[[bindings]] #{number}"
        binding = reader.structure(entry, BindingConfig, where)
        if binding.agent_id not in agent_ids:
            raise reader.fail(
                where,
                f"agent_id: no agent '{binding.agent_id}' is declared in [[agents]] "
                f"(declared: {', '.join(agent_ids)})",
            )
        keys = [i.runtime_key for i in instances if i.channel == binding.channel]
        if not keys:
            raise reader.fail(
                where, f"channel: no enabled [messaging.{binding.channel}] instance to bind"
            )
        if binding.adapter is not None and binding.adapter not in keys:
            raise reader.fail(
                where,
                f"adapter: no {binding.channel} instance has runtime_key '{binding.adapter}' "
                f"(configured: {', '.join(keys)})",
            )
        result.append(binding)
    return result
