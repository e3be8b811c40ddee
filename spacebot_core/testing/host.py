"""A temporary spacebot for one test: plugins, a config file, a state directory.

:class:`SpacebotHost` registers plugins for the test only (in-process, by name, or as
an installed distribution whose entry point spacebot finds as pip would leave it),
writes config files, and runs the real runtime on them: a whole ``run --once``, or one
cycle of one instance with a step between its start and its poll (to make a message
arrive on a channel that only listens once started, such as a webhook).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs

from spacebot_core.adapter import Adapter
from spacebot_core.config import Config, load_config
from spacebot_core.plugins import PluginHost, load_plugins
from spacebot_core.runtime import Runtime
from spacebot_core.store import StateStore

AfterStart = Callable[[Adapter], Awaitable[None]]


def toml_value(value: Any) -> str:
    """A str, bool, int, float or list of them as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string (the same escapes, \\uXXXX too).
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def toml_table(header: str, values: Mapping[str, Any]) -> str:
    """``[header]`` and one ``key = value`` line per item."""
    lines = [header, *(f"{key} = {toml_value(value)}" for key, value in values.items())]
    return "\n".join(lines) + "\n"


def write_distribution(
    root: Path,
    name: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
    version: str = "1.0",
) -> Path:
    """Lay out distribution ``name`` in ``root`` as pip leaves it in site-packages.

    :param modules: module name to source, each written as ``<module>.py``.
    :param entry_points: entry point name to ``module`` (group ``spacebot``).
    :return: ``root``, to put on ``sys.path`` or ``PYTHONPATH``.
    """
    dist_info = root / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[spacebot]", *(f"{key} = {target}" for key, target in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    files = [f"{module}.py" for module in modules]
    files += [f"{dist_info.name}/{part}" for part in ("METADATA", "entry_points.txt", "RECORD")]
    (dist_info / "RECORD").write_text("".join(f"{file},,\n" for file in files), encoding="utf-8")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source, encoding="utf-8")
    return root


@attrs.define(eq=False)
class SpacebotHost:
    """Plugins, config files and runs of the real runtime, for one test.

    Call :meth:`close` at the end (the ``spacebot_host`` fixture does), which forgets
    the distributions installed with :meth:`install`.
    """

    root: Path
    plugins: dict[str, Any] = attrs.field(factory=dict)
    _sites: list[Path] = attrs.field(factory=list)
    _modules_before: set[str] = attrs.field(factory=set)

    @property
    def state_dir(self) -> Path:
        """The state directory of every config written by :meth:`write_config`."""
        return self.root / "state"

    def register(self, name: str, plugin: Any) -> None:
        """Register ``plugin`` (a module or an object) as if entry point ``name`` named it."""
        self.plugins[name] = plugin

    def install(
        self,
        name: str,
        modules: Mapping[str, str],
        entry_points: Mapping[str, str],
        version: str = "1.0",
    ) -> Path:
        """Install a distribution for this test: spacebot finds it by its entry points."""
        if not self._sites:
            self._modules_before = set(sys.modules)
        site = write_distribution(
            self.root / f"site-{len(self._sites)}", name, modules, entry_points, version
        )
        self._sites.append(site)
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
        return site

    def close(self) -> None:
        """Forget what :meth:`install` installed: its sys.path entries and modules."""
        for site in self._sites:
            if str(site) in sys.path:
                sys.path.remove(str(site))
            for name in set(sys.modules) - self._modules_before:
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if origin.startswith(str(site)):
                    del sys.modules[name]
        self._sites.clear()
        importlib.invalidate_caches()

    def load(self, plugins: Mapping[str, Any] | None = None) -> PluginHost:
        """Every installed plugin, the registered ones, and ``plugins`` for this call."""
        return load_plugins({**self.plugins, **(plugins or {})})

    def write_config(self, text: str, name: str = "config.toml") -> Path:
        """Write a config file; without a ``[runtime]`` table, one naming :attr:`state_dir`."""
        if "[runtime]" not in text:
            text = toml_table("[runtime]", {"state_dir": str(self.state_dir)}) + "\n" + text
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def load_config(self, path: Path, plugins: Mapping[str, Any] | None = None) -> Config:
        """The config at ``path``, read against the plugins of :meth:`load`."""
        host = self.load(plugins)
        return load_config(path, host.adapter_classes(), host.agent_classes())

    @asynccontextmanager
    async def runtime(
        self, config_path: Path, plugins: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Runtime]:
        """A runtime on ``config_path`` with its state store open; closed afterwards."""
        host = self.load(plugins)
        config = load_config(config_path, host.adapter_classes(), host.agent_classes())
        store = StateStore.open(config.state_dir)
        try:
            yield Runtime.create(config, host, store)
        finally:
            store.close()

    async def run_once(
        self, config_path: Path, plugins: Mapping[str, Any] | None = None
    ) -> list[tuple[str, Exception]]:
        """What ``spacebot run --once`` does; returns each failing instance and its error."""
        async with self.runtime(config_path, plugins) as runtime:
            return await runtime.run_once()

    async def run_cycle(
        self,
        config_path: Path,
        runtime_key: str,
        *,
        after_start: AfterStart | None = None,
        plugins: Mapping[str, Any] | None = None,
    ) -> int:
        """One cycle of one instance: start, ``after_start``, poll and handle, stop.

        :return: how many items the poll returned and were handled.
        :raises Exception: whatever a hook raised; the instance is stopped all the same.
        """
        async with self.runtime(config_path, plugins) as runtime:
            runner = runtime.runner(runtime_key)
            try:
                await runner.start()
                if after_start is not None:
                    await after_start(runner.hooks.adapter)
                return await runner.run_cycle()
            finally:
                await runner.stop()
