"""The commands that read or repair the state store: status, history and retry.

They work beside a running ``spacebot run``: SQLite lets them read (and, for retry,
write briefly) while the runner holds the state directory's lock.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from spacebot_core.config import Config
from spacebot_core.runtime import Runtime, describe_error
from spacebot_core.store import ANSWERED, FAILED, HELD, IGNORED, InstanceStatus, StateStore

EXIT_OK, EXIT_FAILURE = 0, 1


def add_state_commands(
    add_command: Callable[[str, str], argparse.ArgumentParser],
    load: Callable[[argparse.Namespace], tuple],
    with_runtime: Callable[..., int],
) -> None:
    """Register ``status``, ``history`` and ``retry`` with the CLI's subcommands."""
    status = add_command("status", "per instance: last poll, pending, answered, failed, outbox")
    status.set_defaults(handler=lambda arguments: command_status(arguments, load))

    history = add_command("history", "print a conversation, both sides, oldest first")
    history.add_argument("conversation_id", metavar="CONVERSATION_ID")
    history.add_argument("--limit", type=int, default=100, help="at most this many messages")
    history.set_defaults(handler=lambda arguments: command_history(arguments, load))

    retry = add_command("retry", "re-queue messages the agent failed on or a cap held back")
    retry.add_argument("--adapter", metavar="KEY", help="only this instance's messages")
    retry.set_defaults(handler=lambda arguments: command_retry(arguments, with_runtime))


def _open_store(config: Config) -> StateStore:
    return StateStore.open(config.state_dir, exclusive=False)


def command_status(arguments: argparse.Namespace, load: Callable) -> int:
    """``spacebot status``: each instance's health from the state store."""
    _, config = load(arguments)
    store = _open_store(config)
    try:
        for instance in config.instances:
            print(format_status(store.status(instance.runtime_key)))
    finally:
        store.close()
    return EXIT_OK


def format_status(status: InstanceStatus) -> str:
    """One instance's status as a few aligned lines."""
    counts = status.counts
    lines = [
        f"{status.runtime_key}:",
        f"  last successful poll  {status.last_poll_at or 'never'}",
        f"  pending               {status.pending}",
        f"  answered              {counts.get(ANSWERED, 0)}",
        f"  ignored               {counts.get(IGNORED, 0)}",
        f"  failed                {counts.get(FAILED, 0)}",
        f"  held (reply caps)     {counts.get(HELD, 0)}",
        f"  outbox                {status.outbox}",
    ]
    error = f"{status.last_error} (at {status.last_error_at})" if status.last_error else "none"
    lines.append(f"  last error            {error}")
    return "\n".join(lines)


def command_history(arguments: argparse.Namespace, load: Callable) -> int:
    """``spacebot history CONVERSATION_ID``."""
    _, config = load(arguments)
    store = _open_store(config)
    try:
        entries = store.history(arguments.conversation_id, limit=arguments.limit)
    finally:
        store.close()
    if not entries:
        print(f"no messages in conversation {arguments.conversation_id}")
        return EXIT_FAILURE
    for entry in entries:
        who = entry.sender_id if entry.role == "user" else "bot"
        print(f"--- {entry.timestamp.isoformat(timespec='seconds')}  {who}")
        print(entry.text.rstrip("\n"))
    return EXIT_OK


def command_retry(arguments: argparse.Namespace, with_runtime: Callable[..., int]) -> int:
    """``spacebot retry [--adapter KEY]``: failed and held messages are handled anew."""

    async def work(runtime: Runtime) -> int:
        candidates = runtime.store.failed_messages(arguments.adapter)
        requeued = 0
        for runtime_key, message_id, metadata in candidates:
            try:
                await runtime.runner(runtime_key).requeue(message_id, metadata)
            except Exception as error:  # say which message, go on with the others
                print(
                    f"spacebot: {runtime_key}: cannot re-queue {message_id}: "
                    f"{describe_error(error)}"
                )
                continue
            requeued += 1
        print(
            f"re-queued {requeued} of {len(candidates)} message(s); "
            "'spacebot run' handles them at its next poll"
        )
        return EXIT_OK if requeued == len(candidates) else EXIT_FAILURE

    return with_runtime(arguments, False, work)
