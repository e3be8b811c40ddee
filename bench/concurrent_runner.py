"""The runtime change the bench recommends, as a prototype: several messages of a batch
in hand at once, each conversation's in order.

:class:`spacebot_core.instance_runner.InstanceRunner` takes a batch's messages one by
one: each waits for the one before it to be answered, so one reply's SMTP round trips
(four, about 40 ms at 10 ms RTT) bound the rate, whatever the adapter does. This
subclass starts a task per message, at most ``in_flight`` of them at once, and chains
the messages of one conversation so that its history and replies stay in order.
Every message is still acknowledged only after its own replies were accepted, and
the store is used from the one event loop thread (its calls do not await), so the
exactly-once guarantee holds as before.

The bench runs both; the change belongs in ``InstanceRunner.run_cycle`` (see the
report in ``bench/RESULTS.md``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import attrs

from spacebot_core.instance_runner import InstanceRunner
from spacebot_core.types import InboundMessage


@attrs.frozen
class _Normalized:
    """A raw item already normalized (to learn its conversation before handling it)."""

    message: InboundMessage


@attrs.define(eq=False)
class ConcurrentRunner(InstanceRunner):
    """:class:`InstanceRunner` with up to ``in_flight`` messages handled at once."""

    in_flight: int = 16

    @classmethod
    def replacing(cls, runner: InstanceRunner, in_flight: int) -> ConcurrentRunner:
        """A concurrent runner for the same instance, store and agents as ``runner``."""
        return cls(
            runner.hooks,
            runner.channel,
            runner.router,
            runner.store,
            runner.settings,
            in_flight=in_flight,
        )

    async def run_cycle(self, stopping: asyncio.Event | None = None) -> int:
        """Poll once and handle the batch concurrently; returns how many were handled."""
        if not self.started:
            await self.start()
        handled = 0
        for batch in await self.hooks.call_async("spacebot_poll"):
            handled += await self._handle_batch(batch, stopping)
        return handled

    async def _handle_batch(self, batch: list[Any], stopping: asyncio.Event | None) -> int:
        slots = asyncio.Semaphore(self.in_flight)
        last_of: dict[str, asyncio.Task[None]] = {}
        tasks: list[asyncio.Task[None]] = []
        for raw in batch:
            if stopping is not None and stopping.is_set():
                break
            message = super()._normalize(raw)
            if message is None:
                continue
            before = last_of.get(message.conversation_id)
            task = asyncio.create_task(self._handle_after(message, before, slots))
            last_of[message.conversation_id] = task
            tasks.append(task)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [result for result in results if isinstance(result, BaseException)]
        if errors:
            raise errors[0]
        return len(tasks)

    async def _handle_after(
        self, message: InboundMessage, before: asyncio.Task[None] | None, slots: asyncio.Semaphore
    ) -> None:
        if before is not None:
            await asyncio.wait({before})  # its failure is reported by its own task
        async with slots:
            await self.handle(_Normalized(message))

    def _normalize(self, raw: Any) -> InboundMessage | None:
        if isinstance(raw, _Normalized):
            return raw.message
        return super()._normalize(raw)
