"""The runtime: builds agents and instances from the config and runs them.

One asyncio task per enabled instance. SIGINT and SIGTERM stop every task cleanly:
the message in hand is finished (within ``[runtime] shutdown_grace_secs``), and what
was not acknowledged is simply found again at the next start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence

import attrs

from spacebot_core.adapter import Adapter
from spacebot_core.agent import Agent
from spacebot_core.checks import CheckResult
from spacebot_core.config import Config, InstanceConfig
from spacebot_core.errors import ChannelError, SpacebotError
from spacebot_core.instance_hooks import InstanceHooks
from spacebot_core.instance_runner import InstanceRunner
from spacebot_core.plugins import PluginHost
from spacebot_core.routing import Router
from spacebot_core.store import StateStore
from spacebot_core.types import AnyResponse

log = logging.getLogger(__name__)


def build_agents(config: Config, host: PluginHost) -> dict[str, Agent]:
    """One agent object per configured agent, by id."""
    kinds = host.agent_classes()
    return {agent.id: kinds[agent.kind](agent.id, agent.settings) for agent in config.agents}


def build_adapter(instance: InstanceConfig, host: PluginHost, config: Config) -> Adapter:
    """The adapter object of one configured instance (not yet registered)."""
    adapter_type = host.adapter_classes()[instance.channel]
    return adapter_type(instance.runtime_key, instance.settings, str(config.state_dir))


@attrs.define(eq=False)
class Runtime:
    """Every configured instance, registered with the plugin manager and ready to run."""

    config: Config
    host: PluginHost
    store: StateStore
    runners: list[InstanceRunner]

    @classmethod
    def create(cls, config: Config, host: PluginHost, store: StateStore) -> Runtime:
        """Build agents and instances, register the instances, and check the hooks."""
        agents = build_agents(config, host)
        router = Router(config.bindings, agents, config.default_agent.id)
        adapters = [build_adapter(instance, host, config) for instance in config.instances]
        for adapter in adapters:
            host.register_instance(adapter)
        host.check_hooks()
        runners = [
            InstanceRunner(
                InstanceHooks(adapter, host.manager, config_path=config.path.resolve()),
                instance.channel,
                router,
                store,
                config.runtime,
            )
            for adapter, instance in zip(adapters, config.instances, strict=True)
        ]
        return cls(config, host, store, runners)

    def runner(self, runtime_key: str) -> InstanceRunner:
        """The runner of one instance."""
        for runner in self.runners:
            if runner.runtime_key == runtime_key:
                return runner
        raise SpacebotError(f"no instance '{runtime_key}' is configured")

    async def run_once(self) -> list[tuple[str, Exception]]:
        """One cycle of every instance, everything found handled; returns the failures."""
        failures: list[tuple[str, Exception]] = []
        for runner in self.runners:
            try:
                count = await runner.run_cycle()
                log.info("[%s] one cycle done: %d item(s) handled", runner.runtime_key, count)
            except Exception as error:  # one instance's failure, even a plugin's bug, is reported
                failures.append((runner.runtime_key, error))
                log.debug("[%s] error detail", runner.runtime_key, exc_info=error)
            finally:
                await runner.stop()
        return failures

    async def run_forever(self) -> None:
        """Run every instance until SIGINT or SIGTERM."""
        if not self.runners:
            raise SpacebotError(
                "no channel is enabled; add a [messaging.<channel>] table to the config"
            )
        stopping = asyncio.Event()
        _stop_on_signals(stopping)
        tasks = [asyncio.create_task(runner.run_forever(stopping)) for runner in self.runners]
        await stopping.wait()
        log.info("stopping: finishing the messages in hand")
        _, unfinished = await asyncio.wait(tasks, timeout=self.config.runtime.shutdown_grace_secs)
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for runner in self.runners:
            await runner.stop()

    async def check(self) -> dict[str, list[CheckResult]]:
        """Each instance's own check results, by runtime_key."""
        results: dict[str, list[CheckResult]] = {}
        for runner in self.runners:
            found: list[CheckResult] = []
            try:
                for steps in await runner.hooks.call_async("spacebot_check"):
                    found.extend(steps)
            except Exception as error:  # a plugin's check must not hide the other instances
                log.debug("[%s] check failed", runner.runtime_key, exc_info=error)
                found.append(CheckResult("check", False, describe_error(error)))
            results[runner.runtime_key] = found
        return results

    async def broadcast(
        self, runtime_key: str, target: str, responses: Sequence[AnyResponse]
    ) -> None:
        """Send responses that answer nothing through one instance."""
        runner = self.runner(runtime_key)
        for response in responses:
            results = await runner.hooks.call_async(
                "spacebot_broadcast", target=target, response=response
            )
            if not results:
                raise ChannelError(f"the {runner.channel} channel cannot send proactive messages")


def describe_error(error: Exception) -> str:
    """Our errors as their message; anything else with its type, as it is likely a bug."""
    if isinstance(error, SpacebotError):
        return str(error)
    return f"unexpected {type(error).__name__}: {error} (run with -v for the detail)"


def _stop_on_signals(stopping: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stopping.set)
