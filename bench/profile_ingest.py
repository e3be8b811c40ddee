"""Where the CPU of ingest goes, without servers: ``python -m bench.profile_ingest``.

Generates the bench's backlog mix (:func:`bench.mailgen.mails`, the same seed: the
same mails) in memory and times, per kind of mail, what the adapter does with each
fetched mail (``EmailAdapter.spacebot_normalize_inbound``: parse, HTML to text,
quote splitting, attachments, ``to_inbound``, the sender-authentication verdict),
and ``parse_mail`` alone. With ``--profile``, a cProfile of the whole mix, sorted by
own time. With ``--fetch``, the whole ingest instead, against the test Dovecot (as
``python -m bench --only ingest`` runs it, in this process): the time spent waiting in
``spacebot_poll`` (fetching, aioimaplib, the intake) apart from normalizing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.mailgen import generate, mails
from bench.servers import new_mailbox
from spacebot_email.adapter import EmailAdapter
from spacebot_email.imap_responses import FetchedMail
from spacebot_email.parse import parse_mail
from spacebot_email.settings import EmailSettings, finalize
from spacebot_email.testing import Account, DovecotServer

#: How often each timing is repeated; the best run counts (the least disturbed).
REPEATS = 5


def _adapter(port: int = 143, user: str = "bot@example.com", password: str = "x") -> EmailAdapter:
    """An adapter set up as the bench's worker sets it up (plain IMAP on loopback)."""
    settings = EmailSettings(
        imap_host="127.0.0.1",
        imap_port=port,
        imap_username=user,
        imap_password=password,
        imap_use_tls=False,
        smtp_host="127.0.0.1",
        smtp_use_starttls=False,
        from_address=user,
        self_copy=False,
    )
    return EmailAdapter("email", finalize(settings, "email"))


async def _ingest(adapter: EmailAdapter, limit: int) -> tuple[int, float, float]:
    """Fetch and normalize up to ``limit`` mails: how many, seconds polling, normalizing."""
    handled, polling, normalizing = 0, 0.0, 0.0
    try:
        while handled < limit:
            started = time.perf_counter()
            batch = await adapter.spacebot_poll()
            polled = time.perf_counter()
            for raw in batch:
                adapter.spacebot_normalize_inbound(raw)
            polling += polled - started
            normalizing += time.perf_counter() - polled
            handled += len(batch)
            if not batch and not adapter.more_pending:
                break
    finally:
        await adapter.spacebot_stop()
    return handled, polling, normalizing


def fetch_side(count: int, runs: int, profile: bool, top: int) -> None:
    """Time the ingest against the test Dovecot; each run on a fresh copy of the mailbox."""
    cache = Path(tempfile.gettempdir()) / "spacebot-bench-cache" / str(count)
    backlog = generate(cache, count, "bot@example.com")
    with DovecotServer() as dovecot:
        for run in range(runs):
            account: Account = new_mailbox(dovecot, backlog, count)
            adapter = _adapter(dovecot.imap_port, account.address, account.password)
            profiler = cProfile.Profile() if profile and run == runs - 1 else None
            started = time.perf_counter()
            if profiler is not None:
                profiler.enable()
            handled, polling, normalizing = asyncio.run(_ingest(adapter, count))
            if profiler is not None:
                profiler.disable()
            total = time.perf_counter() - started
            print(
                f"run {run + 1}: {handled} mails in {total:.2f} s ({handled / total:.0f}/s); "
                f"per mail: polling {polling / handled * 1000:.3f} ms, "
                f"normalizing {normalizing / handled * 1000:.3f} ms"
            )
            if profiler is not None:
                pstats.Stats(profiler).strip_dirs().sort_stats("tottime").print_stats(top)


def _best_per_mail(work: Callable[[], object], count: int) -> float:
    """The best of :data:`REPEATS` runs of ``work``, in ms per mail."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times) / max(count, 1) * 1000


def main() -> None:
    """Print ms per mail by kind (normalize, and parse alone); optionally profile."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile_ingest")
    parser.add_argument("--mails", type=int, default=2000, help="mails of the mix")
    parser.add_argument("--profile", action="store_true", help="cProfile the whole mix")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile")
    parser.add_argument("--fetch", action="store_true", help="ingest from the test Dovecot")
    parser.add_argument("--runs", type=int, default=3, help="ingest runs with --fetch")
    arguments = parser.parse_args()
    if arguments.fetch:
        fetch_side(arguments.mails, arguments.runs, arguments.profile, arguments.top)
        return
    adapter = _adapter()
    by_kind: dict[str, list[FetchedMail]] = {}
    for uid, (kind, raw) in enumerate(mails(arguments.mails, "bot@example.com"), start=1):
        fetched = FetchedMail("INBOX", 1, uid, (), raw, size=len(raw))
        by_kind.setdefault(kind, []).append(fetched)
    everything = [mail for batch in by_kind.values() for mail in batch]

    def normalize(batch: list[FetchedMail]) -> Callable[[], object]:
        return lambda: [adapter.spacebot_normalize_inbound(mail) for mail in batch]

    def parse(batch: list[FetchedMail]) -> Callable[[], object]:
        return lambda: [parse_mail(mail.raw) for mail in batch]

    print(f"{'kind':<12}{'mails':>7}{'KB avg':>9}{'normalize ms':>15}{'parse ms':>11}")
    for kind, batch in [*sorted(by_kind.items()), ("all", everything)]:
        size = statistics.mean(len(mail.raw) for mail in batch) / 1024
        whole = _best_per_mail(normalize(batch), len(batch))
        alone = _best_per_mail(parse(batch), len(batch))
        print(f"{kind:<12}{len(batch):>7}{size:>9.1f}{whole:>15.3f}{alone:>11.3f}")
    if arguments.profile:
        profiler = cProfile.Profile()
        profiler.runcall(normalize(everything))
        stats = pstats.Stats(profiler).strip_dirs().sort_stats("tottime")
        stats.print_stats(arguments.top)


if __name__ == "__main__":
    main()
