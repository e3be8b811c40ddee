"""One instance's loop: poll, normalize, route, ask the agent, send, acknowledge."""

from __future__ import annotations

import asyncio
import heapq
import inspect
import logging
from collections.abc import Awaitable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from spacebot_core.agent import Agent
from spacebot_core.backoff import Backoff
from spacebot_core.config import RuntimeSettings
from spacebot_core.errors import ChannelError
from spacebot_core.instance_hooks import InstanceHooks
from spacebot_core.routing import Router
from spacebot_core.store import (
    ANSWERED,
    FAILED,
    HELD,
    IGNORED,
    SENDING,
    SENT,
    PlannedReply,
    StateStore,
)
from spacebot_core.tools import AgentTools
from spacebot_core.types import AnyResponse, HistoryEntry, InboundMessage

log = logging.getLogger(__name__)


@attrs.define(eq=False)
class InstanceRunner:
    """Runs one adapter instance until told to stop.

    A message is acknowledged on its channel only after every reply to it was
    accepted, so a crash at any point leaves it pending, and the store keeps the
    agent's answer so that it is not asked twice.
    """

    hooks: InstanceHooks
    channel: str
    router: Router
    store: StateStore
    settings: RuntimeSettings
    backoff: Backoff = attrs.field(init=False)
    started: bool = False
    last_error: str | None = None

    def __attrs_post_init__(self) -> None:
        self.backoff = Backoff(cap=self.settings.max_backoff_secs)

    @property
    def runtime_key(self) -> str:
        """The instance's runtime_key."""
        return self.hooks.runtime_key

    async def start(self) -> None:
        """Open the instance's connections."""
        await self.hooks.call_async("spacebot_start")
        self.started = True

    async def stop(self) -> None:
        """Close the instance's connections; never raises."""
        if not self.started:
            return
        self.started = False
        try:
            await self.hooks.call_async("spacebot_stop")
        except Exception as error:
            log.warning("[%s] error while stopping: %s", self.runtime_key, error)

    async def run_cycle(self, stopping: asyncio.Event | None = None) -> int:
        """Poll once and handle everything found; returns how many items were handled."""
        if not self.started:
            await self.start()
        handled = 0
        for batch in await self.hooks.call_async("spacebot_poll"):
            handled += await self._handle_batch(batch, stopping)
        return handled

    async def _handle_batch(self, batch: Sequence[Any], stopping: asyncio.Event | None) -> int:
        """Handle up to ``max_in_flight`` items of one batch at once.

        Messages of one conversation, and of one sender, are handled one after the
        other, in the order the channel gave them, so that a conversation's history and
        replies stay in order and the reply caps count every reply before the next.
        Other messages overlap, so one slow agent or send does not hold up the rest.
        Once ``stopping`` is set no new message is started; those in hand finish.
        """
        slots = asyncio.Semaphore(self.settings.max_in_flight)
        last_task_of: dict[tuple[str, str], asyncio.Task[None]] = {}
        tasks: list[asyncio.Task[None]] = []
        for raw in batch:
            if stopping is not None and stopping.is_set():
                break
            message = self._normalize(raw)
            if message is None:
                continue
            keys = (("conversation", message.conversation_id), ("sender", message.sender_id))
            before = [last_task_of[key] for key in keys if key in last_task_of]
            task = asyncio.create_task(self._handle_after(message, before, slots, stopping))
            tasks.append(task)
            last_task_of.update(dict.fromkeys(keys, task))
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if errors:
            raise errors[0]  # the channel is down: the instance backs off
        return len(tasks)

    async def _handle_after(
        self,
        message: InboundMessage,
        before: list[asyncio.Task[None]],
        slots: asyncio.Semaphore,
        stopping: asyncio.Event | None,
    ) -> None:
        """Handle ``message`` once the tasks ``before`` it are done and a slot is free."""
        if before:
            await asyncio.wait(before)
            if any(task.cancelled() or task.exception() for task in before):
                return  # an earlier message in its conversation is still to be answered
        async with slots:
            if stopping is not None and stopping.is_set():
                return
            await self._handle_message(message)

    async def run_forever(self, stopping: asyncio.Event) -> None:
        """Cycle until ``stopping`` is set; errors back off exponentially, capped."""
        while not stopping.is_set():
            try:
                await self.run_cycle(stopping)
                self.store.record_poll(self.runtime_key)
                self.backoff.reset()
                self.last_error = None
                await _until_either(self.hooks.call_async("spacebot_wait"), stopping)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                await self._recover(error, stopping)
        await self.stop()

    async def _recover(self, error: Exception, stopping: asyncio.Event) -> None:
        delay = self.backoff.next_delay()
        self.last_error = str(error)
        self.store.record_error(self.runtime_key, self.last_error)
        log.error("[%s] %s; retrying in %.0f s", self.runtime_key, error, delay)
        log.debug("[%s] error detail", self.runtime_key, exc_info=error)
        await self.stop()
        await _until_either(asyncio.sleep(delay), stopping)

    async def _handle_message(self, message: InboundMessage) -> None:
        """Take one normalized message through to its acknowledgement."""
        record = self.store.record_received(message)
        if record.state in (ANSWERED, IGNORED, FAILED, HELD):
            # Decided before; a crash may have come between the store and the channel.
            await self._ack(message, record.state)
            return
        if self.store.retry_later(message):
            return
        reason = self._ignore_reason(message)
        if reason:
            log.info(
                "[%s] ignoring %s from %s: %s",
                self.runtime_key,
                message.id,
                message.sender_id,
                reason,
            )
            self.store.mark_ignored(message, reason)
            await self._ack(message, IGNORED)
            return
        if not self.store.has_plan(message) and (cap := self._reply_cap_reached(message)):
            log.warning(
                "[%s] not answering %s from %s: %s; left unread",
                self.runtime_key,
                message.id,
                message.sender_id,
                cap,
            )
            self.store.mark_held(message, cap)
            await self._ack(message, HELD)
            return
        replies = await self._replies_for(message)
        if replies is None:
            return
        try:
            await self._send_all(message, replies)
        except ChannelError as error:
            if not error.permanent:
                raise  # the channel is down: the instance backs off, the message waits
            await self._give_up_or_retry(message, f"cannot be answered: {error}")
            return
        self.store.mark_answered(message, replies)
        log.info(
            "[%s] answered %s from %s with %d response(s)",
            self.runtime_key,
            message.id,
            message.sender_id,
            len(replies),
        )
        await self._ack(message, ANSWERED)

    def _ignore_reason(self, message: InboundMessage) -> str | None:
        results = self.hooks.call("spacebot_filter_inbound", message=message)
        return next((reason for reason in results if reason), None)

    def _reply_cap_reached(self, message: InboundMessage) -> str | None:
        """Why answering would go over a reply cap (a loop with another robot), or None."""
        since = datetime.now(UTC) - timedelta(hours=1)
        caps = (
            ("to this sender", "max_replies_per_sender_per_hour", {"sender_id": message.sender_id}),
            (
                "in this conversation",
                "max_replies_per_thread_per_hour",
                {"conversation_id": message.conversation_id},
            ),
        )
        for where, setting, scope in caps:
            limit = getattr(self.settings, setting)
            sent = self.store.replies_sent_since(self.runtime_key, since, **scope)
            if sent >= limit:
                return f"{sent} replies {where} in the last hour ({setting} = {limit})"
        return None

    async def _send_all(self, message: InboundMessage, replies: list[PlannedReply]) -> None:
        """Send each reply not yet sent; one left *sending* by a crash is confirmed first."""
        for reply in replies:
            if reply.state == SENT:
                continue
            if reply.state == SENDING and await self._confirmed(message, reply):
                log.info(
                    "[%s] %s had gone out before the restart", self.runtime_key, reply.delivery_id
                )
                self.store.mark_sent(reply)
                continue
            self.store.mark_sending(reply)
            await self.store.sync()  # the plan and this mark outlive a power cut
            try:
                await self.hooks.call_async(
                    "spacebot_send",
                    message=message,
                    response=reply.response,
                    delivery_id=reply.delivery_id,
                )
            except ChannelError as error:
                if error.permanent:  # refused for sure: no copy of it can prove otherwise
                    self.store.mark_pending(reply)
                raise
            self.store.mark_sent(reply)

    async def _confirmed(self, message: InboundMessage, reply: PlannedReply) -> bool:
        answers = await self.hooks.call_async(
            "spacebot_confirm_sent", message=message, delivery_id=reply.delivery_id
        )
        return any(answer is True for answer in answers)

    def _normalize(self, raw: Any) -> InboundMessage | None:
        results = self.hooks.call("spacebot_normalize_inbound", raw=raw)
        message = next((result for result in results if result is not None), None)
        if message is None:
            log.error("[%s] no plugin could normalize an item; it stays pending", self.runtime_key)
        return message

    async def _replies_for(self, message: InboundMessage) -> list[PlannedReply] | None:
        """The stored plan, or the agent's answer stored as a plan; None on failure."""
        if self.store.has_plan(message):
            return self.store.planned_replies(message)
        agent = self.router.agent_for(self.channel, self.runtime_key)
        history = self.store.history(message.conversation_id)
        history = await self._with_thread_history(message, history)
        try:
            responses = await asyncio.wait_for(
                self._respond(agent, message, history),
                timeout=self.settings.agent_timeout_secs,
            )
        except Exception as error:  # an agent's failure of any kind costs one attempt
            await self._agent_failed(message, agent.agent_id, error)
            return None
        return self.store.plan_replies(message, list(responses))

    def _respond(
        self, agent: Agent, message: InboundMessage, history: list[HistoryEntry]
    ) -> Awaitable[list[AnyResponse]]:
        """The agent's answer, with the instance's tools where its respond takes them."""
        if not _takes_tools(agent):  # written before agents had tools: still answers
            return agent.respond(message, history)
        return agent.respond(
            message, history, tools=AgentTools.for_instance(self.hooks, self.channel)
        )

    async def _with_thread_history(
        self, message: InboundMessage, history: list[HistoryEntry]
    ) -> list[HistoryEntry]:
        """The store's history with the earlier messages the channel found itself
        (``spacebot_thread_history``), in one list, oldest first.

        The store's entries keep their order; the channel's are merged in by time
        (before a store entry of the same time). A failure costs the agent that
        context only: the message is answered with the store's history.
        """
        try:
            results = await self.hooks.call_async(
                "spacebot_thread_history", message=message, known=history
            )
        except Exception as error:
            log.warning(
                "[%s] earlier messages of %s's conversation could not be read (%s); "
                "answering with the stored history",
                self.runtime_key,
                message.id,
                error,
            )
            return history
        found = sorted((entry for entries in results if entries for entry in entries), key=_time_of)
        if not found:
            return history
        return list(heapq.merge(found, history, key=_time_of))

    def _retry_delay(self, message: InboundMessage) -> float:
        """Seconds before the next attempt: doubling from retry_backoff_secs, capped."""
        record = self.store.message(message.adapter, message.id)
        attempts = record.attempts if record else 0
        delay = self.settings.retry_backoff_secs * 2.0 ** min(attempts, 32)
        return min(delay, self.settings.max_backoff_secs)

    async def _agent_failed(self, message: InboundMessage, agent_id: str, error: Exception) -> None:
        reason = (
            "timed out" if isinstance(error, TimeoutError) else str(error) or type(error).__name__
        )
        await self._give_up_or_retry(message, f"agent {agent_id} failed: {reason}")

    async def _give_up_or_retry(self, message: InboundMessage, reason: str) -> None:
        """Count one failed attempt; after max_attempts the message is left for a human."""
        attempts = self.store.record_failure(message, reason, self._retry_delay(message))
        if attempts < self.settings.max_attempts:
            log.warning(
                "[%s] %s: %s (attempt %d of %d), will retry",
                self.runtime_key,
                message.id,
                reason,
                attempts,
                self.settings.max_attempts,
            )
            return
        log.error(
            "[%s] %s: %s; giving up after %d attempts, left unread for a human",
            self.runtime_key,
            message.id,
            reason,
            attempts,
        )
        self.store.mark_failed(message, reason)
        await self._ack(message, FAILED)

    async def requeue(self, message_id: str, metadata: dict[str, Any]) -> None:
        """Undo a failed or held acknowledgement on the channel, then in the store."""
        if not self.started:
            await self.start()
        try:
            await self.hooks.call_async(
                "spacebot_requeue", message_id=message_id, metadata=metadata
            )
        finally:
            await self.stop()
        self.store.requeue(self.runtime_key, message_id)

    async def _ack(self, message: InboundMessage, outcome: str) -> None:
        await self.store.sync()  # the decision is on the disk before the channel shows it
        await self.hooks.call_async("spacebot_ack", message=message, outcome=outcome)


def _time_of(entry: HistoryEntry) -> datetime:
    """An entry's time for ordering; a time without a zone is taken as UTC."""
    stamp = entry.timestamp
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _takes_tools(agent: Agent) -> bool:
    """Whether ``agent.respond`` takes the ``tools`` argument (or any keyword)."""
    parameters = inspect.signature(agent.respond).parameters.values()
    return any(p.name == "tools" or p.kind is p.VAR_KEYWORD for p in parameters)


async def _until_either(awaitable: Any, stopping: asyncio.Event) -> None:
    """Wait for ``awaitable`` or for ``stopping``, whichever comes first."""
    work = asyncio.ensure_future(awaitable)
    stop_wait = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({work, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work, stop_wait):
            task.cancel()
        # Collect what the cancelled task raised on its way out (a connection closed
        # under IDLE), so that no exception is left unretrieved.
        await asyncio.gather(work, stop_wait, return_exceptions=True)
    if not work.cancelled() and work.exception() is not None:
        raise work.exception()
