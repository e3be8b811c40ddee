"""The hook specifications of spacebot: the contract between the runtime and plugins.

Two kinds of plugin implement them:

* **Distribution plugins** (a module named by an entry point in group ``spacebot``)
  implement the registration hooks and declare adapter types and agent kinds.
* **Adapter instances** (one object per configured ``runtime_key``) implement the
  channel hooks. The runtime calls one instance at a time through a subset hook caller
  that leaves the other instances out, so cross-cutting plugins that implement a
  channel hook as a wrapper still wrap every call.

Every channel hook takes ``runtime_key`` so that a cross-cutting plugin knows which
instance a call is for; an adapter's own implementation may leave it out of its
signature. Hooks marked *async* return an awaitable, which the runtime awaits; pluggy
never does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from spacebot_core.checks import CheckResult
    from spacebot_core.types import (
        AnyResponse,
        HistoryEntry,
        InboundMessage,
        SearchHit,
        SearchQuery,
    )

PROJECT_NAME = "spacebot"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def spacebot_register_adapters(register: Callable[[str, type], None]) -> None:
    """Declare the adapter types (channels) a distribution provides.

    :param register: call ``register("email", EmailAdapter)`` once per type; the name
        is the channel, as in ``[messaging.email]``. The class must subclass
        :class:`spacebot_core.adapter.Adapter`. Registering a name twice is an error.
    """


@hookspec
def spacebot_register_agents(register: Callable[[str, type], None]) -> None:
    """Declare the agent kinds a distribution provides.

    :param register: call ``register("echo", EchoAgent)`` once per kind; the name is
        the ``kind`` of an ``[[agents]]`` table. The class must subclass
        :class:`spacebot_core.agent.Agent`.
    """


@hookspec
def spacebot_start(runtime_key: str) -> Awaitable[None]:
    """*Async.* Open the instance's connections before its first poll.

    :param runtime_key: the instance being started.
    :return: an awaitable that raises :class:`spacebot_core.errors.ChannelError` when
        the channel cannot be reached or refuses the credentials.
    """


@hookspec
def spacebot_stop(runtime_key: str) -> Awaitable[None]:
    """*Async.* Close the instance's connections; called once, also after errors.

    :param runtime_key: the instance being stopped.
    """


@hookspec
def spacebot_check(runtime_key: str) -> Awaitable[list[CheckResult]]:
    """*Async.* Try every part of the instance's setup and say what works.

    :param runtime_key: the instance being checked.
    :return: an awaitable of check results, one per step (log in, open a folder, ...),
        each failure with the fix in the user's words.
    """


@hookspec
def spacebot_poll(runtime_key: str) -> Awaitable[Sequence[Any]]:
    """*Async.* Fetch what arrived since the last poll, without acknowledging it.

    :param runtime_key: the instance being polled.
    :return: an awaitable of raw items, each passed to
        :func:`spacebot_normalize_inbound`. An item stays pending on the channel until
        :func:`spacebot_ack` is called for it.
    """


@hookspec
def spacebot_wait(runtime_key: str) -> Awaitable[None]:
    """*Async.* Wait until it is time to poll again (a poll interval, or a push).

    :param runtime_key: the instance that is waiting.
    """


@hookspec
def spacebot_normalize_inbound(runtime_key: str, raw: Any) -> InboundMessage | None:
    """Turn one raw item from :func:`spacebot_poll` into an :class:`InboundMessage`.

    Pure: no I/O. Must not raise on malformed input.

    :param runtime_key: the instance the item came from.
    :param raw: one item as the instance's poll returned it.
    :return: the normalized message.
    """


@hookspec
def spacebot_filter_inbound(runtime_key: str, message: InboundMessage) -> str | None:
    """Say why a message must not be answered, or ``None`` to let it through.

    Every implementation is asked, the instance's own and any cross-cutting plugin's
    (an allow-list, a rate limit); one reason is enough to ignore the message. An
    ignored message is acknowledged, not answered.

    :param runtime_key: the instance the message came from.
    :param message: the normalized message.
    :return: a short reason such as ``"auto-generated (Auto-Submitted: auto-replied)"``.
    """


@hookspec
def spacebot_thread_history(
    runtime_key: str, message: InboundMessage, known: Sequence[HistoryEntry]
) -> Awaitable[list[HistoryEntry]]:
    """*Async.* Earlier messages of ``message``'s conversation that the channel finds
    itself and that are not in ``known``, oldest first.

    The runtime keeps each conversation's messages from the moment it answers them;
    a conversation that began before (in a mail thread: before the bot ran, or in
    another folder) has earlier messages only the channel can find. The runtime asks
    this hook before the agent answers, and gives the agent these messages and its
    own history together, oldest first. A failure here costs the agent this context
    only: the runtime logs it and answers with its own history. A channel that cannot
    look back returns nothing. Bound every network wait: the message waits for it.

    :param runtime_key: the instance the message came from.
    :param message: the message about to be answered.
    :param known: the conversation's history as the runtime holds it, oldest first;
        each entry's ``message_id`` is the inbound message's id (``user``) or the
        reply's delivery id (``assistant``), or None when the store did not record it.
    :return: an awaitable of history entries, each with ``role`` ``user`` or
        ``assistant`` (what the bot's own account sent), oldest first.
    """


@hookspec
def spacebot_search(runtime_key: str, query: SearchQuery) -> Awaitable[list[SearchHit]]:
    """*Async.* Search the instance's messages for an agent, or for ``spacebot search``.

    Agents reach it through the ``search_mailbox`` tool
    (:class:`spacebot_core.tools.AgentTools`). It may be called while the instance runs
    (from an agent, during a cycle) and when it was never started (``spacebot search``,
    another process): open what it needs and leave the instance's own work undisturbed.
    Never change what it finds (email: nothing is marked read). Bound every network wait.

    :param runtime_key: the instance whose messages are searched.
    :param query: the criteria, already checked (the limit is 1 to 50); empty
        ``folders`` means the instance's configured folders.
    :return: an awaitable of at most ``query.limit`` hits, newest first. Raise
        :class:`spacebot_core.errors.SearchError` for a search that cannot be done as
        asked (a folder that does not exist), ``ChannelError`` when the channel cannot be
        reached.
    """


@hookspec
def spacebot_send(
    runtime_key: str, message: InboundMessage, response: AnyResponse, delivery_id: str
) -> Awaitable[None]:
    """*Async.* Send one response as a reply to ``message``.

    :param runtime_key: the instance the message came from, which answers it.
    :param message: the message being answered.
    :param response: one of the agent's responses; a channel that cannot show a kind
        (a reaction on email) does nothing for it.
    :param delivery_id: stable for this response of this message across restarts; a
        channel that can, uses it to make a repeated send harmless (email: the reply's
        Message-ID).
    :return: an awaitable that completes once the channel accepted the response.
    """


@hookspec
def spacebot_broadcast(runtime_key: str, target: str, response: AnyResponse) -> Awaitable[None]:
    """*Async.* Send a message that answers nothing (``spacebot send``).

    :param runtime_key: the instance to send through.
    :param target: the channel's address of the recipient (for email, an address).
    :param response: what to send.
    """


@hookspec
def spacebot_ack(runtime_key: str, message: InboundMessage, outcome: str) -> Awaitable[None]:
    """*Async.* Acknowledge a handled message so that no poll returns it again.

    :param runtime_key: the instance the message came from.
    :param message: the handled message.
    :param outcome: ``"answered"`` or ``"ignored"``; or ``"failed"`` when the agent gave
        up on it, or ``"held"`` when it was over a reply cap: then a channel that can
        marks it for a human and leaves it unread (email: the ``$SpacebotFailed`` or
        ``$SpacebotHeld`` keyword, no ``\\Seen``).
    """


@hookspec
def spacebot_confirm_sent(
    runtime_key: str, message: InboundMessage, delivery_id: str
) -> Awaitable[bool]:
    """*Async.* After a crash, say whether a reply that was being sent went out.

    The runtime records a reply as *sending* before :func:`spacebot_send` and as *sent*
    after it. A reply found still *sending* at the next start may or may not have been
    accepted by the channel; the runtime asks this hook before sending it again. A
    channel that cannot tell returns nothing, and the reply is sent again.

    :param runtime_key: the instance the message came from.
    :param message: the message the reply answers.
    :param delivery_id: the reply's stable id (see :func:`spacebot_send`).
    :return: an awaitable of True when the channel has the reply.
    """


@hookspec
def spacebot_requeue(
    runtime_key: str, message_id: str, metadata: dict[str, Any]
) -> Awaitable[None]:
    """*Async.* Undo a ``failed`` or ``held`` acknowledgement (``spacebot retry``).

    The message is then returned by polls again and handled as new.

    :param runtime_key: the instance the message came from.
    :param message_id: the message's id.
    :param metadata: the message's metadata as it was normalized (for email: the
        folder, UIDVALIDITY and UID).
    """
