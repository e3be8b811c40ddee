"""One bench scenario in a process of its own, so its time and peak memory are its own.

``python -m bench.worker '<json>'`` runs the scenario the JSON names and prints one
JSON line with what it measured: mails handled, seconds, peak RSS in MB, and for the
latency scenario the latencies. The orchestrator (``python -m bench``) prepares the
servers and mailboxes and checks the outcome from outside.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import logging
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

from bench.plain import answer_plainly
from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_core.runtime import Runtime
from spacebot_core.store import StateStore
from spacebot_email.adapter import EmailAdapter
from spacebot_email.imap import ImapSession

#: The longest a scenario may run before it is an error (bounds every loop).
SCENARIO_TIMEOUT = 1800.0
#: Seconds to wait for the last latency mail's reply.
LATENCY_DRAIN = 30.0


def write_config(spec: dict[str, Any]) -> Path:
    """The bot's ``config.toml`` for a scenario, in its state directory."""
    state = Path(spec["state_dir"])
    state.mkdir(parents=True, exist_ok=True)
    path = state / "config.toml"
    path.write_text(
        f"""
[messaging.email]
imap_host = "127.0.0.1"
imap_port = {spec["imap_port"]}
imap_username = "{spec["user"]}"
imap_password = "{spec["password"]}"
imap_use_tls = false
smtp_host = "127.0.0.1"
smtp_port = {spec["smtp_port"]}
smtp_use_starttls = false
from_address = "{spec["user"]}"
poll_interval_secs = {spec.get("poll_interval", 5)}
self_copy = false
idle = {"true" if spec.get("idle", True) else "false"}
smtp_pool_size = {spec.get("pool_size", 2)}
fetch_batch_size = {spec.get("batch_size", 50)}

[runtime]
state_dir = "{state / "store"}"
max_replies_per_sender_per_hour = 1000000
max_replies_per_thread_per_hour = 1000000
max_in_flight = {spec.get("in_flight", 16)}
"""
    )
    return path


def _runtime(spec: dict[str, Any]) -> tuple[Runtime, StateStore]:
    host = load_plugins()
    config = load_config(write_config(spec), host.adapter_classes(), host.agent_classes())
    store = StateStore.open(config.state_dir)
    return Runtime.create(config, host, store), store


async def backlog(spec: dict[str, Any]) -> dict[str, Any]:
    """Answer the backlog end to end with spacebot's runtime."""
    runtime, store = _runtime(spec)
    runner = runtime.runners[0]
    adapter = runner.hooks.adapter
    limit = spec["limit"]
    started = time.perf_counter()
    deadline = started + spec.get("seconds", SCENARIO_TIMEOUT)
    handled = 0
    try:
        while handled < limit and time.perf_counter() < deadline:
            count = await runner.run_cycle()
            handled += count
            if count == 0 and not adapter.more_pending:
                break
    finally:
        await runner.stop()
        store.close()
    return {"handled": handled, "seconds": time.perf_counter() - started}


async def plain(spec: dict[str, Any]) -> dict[str, Any]:
    """Answer the backlog the plain way (the baseline)."""
    host = load_plugins()
    config = load_config(write_config(spec), host.adapter_classes(), host.agent_classes())
    started = time.perf_counter()
    deadline = time.monotonic() + spec.get("seconds", SCENARIO_TIMEOUT)
    handled = await answer_plainly(config.instances[0].settings, spec["limit"], deadline)
    return {"handled": handled, "seconds": time.perf_counter() - started}


async def ingest(spec: dict[str, Any]) -> dict[str, Any]:
    """Fetch and normalize the backlog with spacebot's adapter: no store, no replies."""
    host = load_plugins()
    config = load_config(write_config(spec), host.adapter_classes(), host.agent_classes())
    adapter = EmailAdapter("email", config.instances[0].settings)
    handled = 0
    started = time.perf_counter()
    try:
        while handled < spec["limit"]:
            batch = await adapter.spacebot_poll()
            for raw in batch:
                adapter.spacebot_normalize_inbound(raw)
            handled += len(batch)
            if not batch and not adapter.more_pending:
                break
    finally:
        await adapter.spacebot_stop()
    return {"handled": handled, "seconds": time.perf_counter() - started}


def imap_tools_fetch(spec: dict[str, Any]) -> dict[str, Any]:
    """imap_tools' bulk fetch of the same mailbox (one UID FETCH for everything).

    ``read``: also read what an adapter needs of each mail (from, subject, date, text,
    HTML, attachments); else only build the message objects.
    """
    from imap_tools import AND, MailBoxUnencrypted

    handled = 0
    started = time.perf_counter()
    with MailBoxUnencrypted("127.0.0.1", port=spec["imap_port"]).login(
        spec["user"], spec["password"]
    ) as mailbox:
        for message in mailbox.fetch(AND(seen=False), bulk=True, mark_seen=False):
            if spec.get("read"):
                _ = (message.from_, message.subject, message.date, message.text, message.html)
                _ = [attachment.payload for attachment in message.attachments]
            handled += 1
    return {"handled": handled, "seconds": time.perf_counter() - started}


async def latency(spec: dict[str, Any]) -> dict[str, Any]:
    """APPEND mails one at a time at random intervals; the time until each reply arrives.

    The bot runs as ``spacebot run`` does (waiting in IDLE, or polling every
    ``poll_interval``). A mail is appended by another connection, like a mail server
    delivering; its reply's arrival is read from the SMTP sink's log.
    """
    runtime, store = _runtime(spec)
    runner = runtime.runners[0]
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run_forever(stopping))
    rng = random.Random(spec.get("seed", 1))
    appended: dict[str, float] = {}
    deliverer = await ImapSession.open(
        host="127.0.0.1",
        port=spec["imap_port"],
        security="plain",
        username=spec["user"],
        password=spec["password"],
        ssl_context=None,
        timeout=30,
    )
    try:
        await asyncio.sleep(1.0)  # the bot is waiting (in IDLE, or between polls)
        for number in range(spec["mails"]):
            message_id = f"<latency{number}.{rng.randrange(10**9)}@example.org>"
            await deliverer.append("INBOX", _latency_mail(number, message_id, spec["user"]))
            appended[message_id] = time.time()
            await asyncio.sleep(rng.uniform(*spec["spacing"]))
        arrivals = await _wait_for_replies(Path(spec["sink_log"]), set(appended))
    finally:
        await deliverer.close()
        stopping.set()
        await asyncio.wait_for(running, 60)
        store.close()
    latencies = sorted(arrivals[mid] - appended[mid] for mid in appended if mid in arrivals)
    return {"handled": len(latencies), "latencies": latencies, "seconds": 0.0}


def _latency_mail(number: int, message_id: str, to: str) -> bytes:
    return (
        f"From: Latency Tester <tester{number % 7}@example.org>\r\nTo: {to}\r\n"
        f"Subject: latency probe {number}\r\nMessage-ID: {message_id}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHow fast is the answer?\r\n"
    ).encode()


async def _wait_for_replies(log: Path, message_ids: set[str]) -> dict[str, float]:
    deadline = time.monotonic() + LATENCY_DRAIN
    while True:
        found: dict[str, float] = {}
        for line in log.read_text().splitlines():
            stamp, _, answered = line.partition(" ")
            if answered in message_ids:
                found.setdefault(answered, float(stamp))
        if len(found) == len(message_ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


SCENARIOS = {"backlog": backlog, "plain": plain, "ingest": ingest, "latency": latency}


def peak_rss_mb() -> float:
    """The peak resident memory of this process since it started, in MB.

    ``VmHWM``, not ``getrusage``: Linux carries ``ru_maxrss`` over ``exec``, so a
    worker would report at least the RSS its (larger) parent had when it forked.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    """``python -m bench.worker '<json spec>'``: run it, print the result as JSON."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    spec = json.loads(sys.argv[1])
    if spec["scenario"] == "imap_tools":
        result = imap_tools_fetch(spec)
    else:
        scenario = SCENARIOS[spec["scenario"]]
        profiler = cProfile.Profile() if spec.get("profile") else None
        if profiler is not None:
            profiler.enable()
        result = asyncio.run(asyncio.wait_for(scenario(spec), SCENARIO_TIMEOUT))
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(spec["profile"])
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
