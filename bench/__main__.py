"""Run the benchmark suite and print one table: ``python -m bench [--quick]``.

Everything runs on 127.0.0.1: the test Dovecot of ``spacebot_email.testing``, an SMTP
sink (:mod:`bench.smtp_sink`) and, for the rows with added round-trip time, a proxy
that delays each direction (:mod:`bench.delay_proxy`). Each measurement runs in a
process of its own (:mod:`bench.worker`), on a fresh mailbox holding the same
generated backlog (:mod:`bench.mailgen`), and is checked from outside afterwards:
every handled mail seen, one reply per answerable mail at the sink.

Rates are compared with the plain way (:mod:`bench.plain`) measured in the same run
at the same round-trip time. End-to-end runs are bounded by time (``--seconds``): the
rate is that of the first mails of the 10,000-mail backlog, all of it unseen.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs

from bench.mailgen import Backlog, generate
from bench.report import Row, percentile, render
from bench.servers import REPO, DelayProxy, SmtpSink, measure_rtt, new_mailbox, unseen_count
from spacebot_email.testing import Account, DovecotServer

#: A scenario process that runs longer than this is stuck: the bench fails.
WORKER_TIMEOUT = 1800.0
#: Runs per size of the full-pass memory measurement (peak RSS varies by a few MB).
MEMORY_RUNS = 3


@attrs.frozen
class Plan:
    """The sizes of one bench run."""

    backlog: int
    big_backlog: int
    seconds: float
    latency_mails: int
    rtts: tuple[float, ...] = (0.0, 10.0)
    #: Where each scenario's process writes its cProfile stats (``--profile``), if set.
    profile_dir: Path | None = None


FULL = Plan(backlog=10_000, big_backlog=50_000, seconds=45.0, latency_mails=50)
QUICK = Plan(backlog=2_000, big_backlog=6_000, seconds=10.0, latency_mails=10)


@attrs.define
class Bench:
    """The servers, backlogs and results of one run."""

    plan: Plan
    dovecot: DovecotServer
    work: Path
    backlogs: dict[int, Backlog] = attrs.Factory(dict)
    rows: list[Row] = attrs.Factory(list)
    notes: list[str] = attrs.Factory(list)

    def backlog(self, count: int) -> Backlog:
        """The generated backlog, cached between runs; its first ``count`` mails are the
        mailbox of a ``count``-mail run (one seed: a smaller backlog is a prefix)."""
        size = max(count, self.plan.big_backlog)
        if size not in self.backlogs:
            cache = Path(tempfile.gettempdir()) / "spacebot-bench-cache" / str(size)
            _say(f"generating a backlog of {size} mails (cached in {cache})")
            self.backlogs[size] = generate(cache, size, "bot@example.com")
        return self.backlogs[size]

    def mailbox(self, count: int) -> Account:
        """A fresh mailbox holding the first ``count`` mails of the backlog, unseen."""
        if not count:
            return self.dovecot.new_account()
        return new_mailbox(self.dovecot, self.backlog(count), count)

    def run(
        self,
        scenario: str,
        count: int,
        rtt: float = 0.0,
        account: Account | None = None,
        **spec: Any,
    ) -> dict[str, Any]:
        """Run ``scenario`` on a fresh mailbox of ``count`` mails (or on ``account``'s,
        for a scenario that changes nothing there)."""
        backlog = self.backlog(count) if count else None
        account = account or self.mailbox(count)
        name = f"{scenario}-{count}-{rtt:g}ms-{len(self.rows)}-{time.monotonic_ns()}"
        sink = SmtpSink(self.work / f"{name}.log").start()
        proxy = DelayProxy(rtt, [self.dovecot.imap_port, sink.port]).start() if rtt else None
        imap_port = proxy.ports[self.dovecot.imap_port] if proxy else self.dovecot.imap_port
        smtp_port = proxy.ports[sink.port] if proxy else sink.port
        spec = {
            "scenario": scenario,
            "imap_port": imap_port,
            "smtp_port": smtp_port,
            "user": account.address,
            "password": account.password,
            "state_dir": str(self.work / name),
            "sink_log": str(sink.log),
            "limit": count,
            **spec,
        }
        if self.plan.profile_dir is not None:
            spec["profile"] = str(self.plan.profile_dir / f"{name}.prof")
        try:
            result = _worker(spec)
            result["replies"] = sink.count()
        finally:
            sink.stop()
            if proxy is not None:
                proxy.stop()
        result["unseen_after"] = unseen_count(self.dovecot, account)
        result["answerable"] = _answerable(backlog, result["handled"]) if backlog else 0
        result["total"] = count
        return result


def _worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario in a process of its own; its last output line is the result."""
    label = f"{spec['scenario']} {spec['limit']} mails"
    _say(f"  running {label}")
    done = subprocess.run(
        [sys.executable, "-m", "bench.worker", json.dumps(spec)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WORKER_TIMEOUT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{label} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _answerable(backlog: Backlog, handled: int) -> int:
    """How many of the first ``handled`` mails of the backlog get a reply."""
    return sum(1 for name in backlog.files[:handled] if not name.endswith(".auto"))


def _check(result: dict[str, Any], what: str, *, replies: bool = True, acked: bool = True) -> None:
    """Fail loudly when a run did not do the whole job for the mails it handled."""
    if acked and result["unseen_after"] != result["total"] - result["handled"]:
        raise RuntimeError(
            f"{what}: {result['unseen_after']} unseen after the run, expected "
            f"{result['total'] - result['handled']}"
        )
    if replies and result["replies"] != result["answerable"]:
        raise RuntimeError(
            f"{what}: {result['replies']} replies for {result['answerable']} answerable mails"
        )


def backlog_rows(bench: Bench) -> None:
    """End to end: spacebot with two SMTP pool sizes and one at a time, and the plain way."""
    plan = bench.plan
    for rtt in plan.rtts:
        rtt_text = f"{rtt:g} ms"
        base = bench.run("plain", plan.backlog, rtt, seconds=plan.seconds)
        _check(base, "plain way")
        bench.rows.append(Row.throughput(f"backlog, plain way (baseline), +{rtt_text}", base, None))
        variants = [
            ("spacebot as shipped (max_in_flight 16, smtp_pool_size 2)", {"pool_size": 2}),
            ("spacebot, smtp_pool_size 8", {"pool_size": 8}),
            ("spacebot, smtp_pool_size 16, max_in_flight 32", {"pool_size": 16, "in_flight": 32}),
            ("spacebot, max_in_flight 1 (one at a time)", {"pool_size": 8, "in_flight": 1}),
        ]
        ratios = []
        for label, spec in variants:
            result = bench.run("backlog", plan.backlog, rtt, seconds=plan.seconds, **spec)
            _check(result, label)
            bench.rows.append(Row.throughput(f"backlog, {label}, +{rtt_text}", result, base))
            ratios.append(_rate(result) / _rate(base))
        if rtt == max(plan.rtts):
            bench.notes.append(
                _target(
                    f"end to end at +{rtt_text} at least 10x the plain way",
                    max(ratios[:3]) >= 10,
                    f"smtp_pool_size 2 (the default) {ratios[0]:.2f}x, 8 {ratios[1]:.2f}x, "
                    f"16 {ratios[2]:.2f}x; one message at a time {ratios[3]:.2f}x",
                )
            )


def ingest_rows(bench: Bench) -> None:
    """Fetch and normalize, no replies: spacebot beside imap_tools' bulk fetch."""
    count = bench.plan.backlog
    ours = bench.run("ingest", count)
    _check(ours, "ingest", replies=False, acked=False)
    tools_read = bench.run("imap_tools", count, read=True)
    tools_build = bench.run("imap_tools", count, read=False)
    bench.rows.append(
        Row.throughput(
            "ingest, spacebot poll + normalize (HTML to text, files)",
            ours,
            tools_read,
            versus="imap_tools read",
        )
    )
    for label, result in (
        ("reading from/subject/text/html/attachments", tools_read),
        ("message objects only", tools_build),
    ):
        bench.rows.append(
            Row.throughput(f"ingest, imap_tools bulk fetch, {label}", result, None, "imap_tools")
        )
    read, build = _rate(ours) / _rate(tools_read), _rate(ours) / _rate(tools_build)
    bench.notes.append(
        _target(
            "ingest at least as fast as imap_tools' bulk fetch",
            min(read, build) >= 1,
            f"{read:.2f}x imap_tools reading the fields, {build:.2f}x imap_tools building "
            "message objects only",
        )
    )


def latency_rows(bench: Bench) -> None:
    """APPEND to reply, with IDLE and with 5 s polling."""
    count = bench.plan.latency_mails
    for label, idle in (("IDLE", True), ("polling every 5 s", False)):
        result = bench.run(
            "latency", 0, mails=count, idle=idle, poll_interval=5, spacing=[0.3, 0.9]
        )
        if result["handled"] != count:
            raise RuntimeError(f"latency {label}: {result['handled']} of {count} replies")
        bench.rows.append(Row.latency(f"latency APPEND to reply, {label}", result["latencies"]))
        if idle:
            p50, p95 = percentile(result["latencies"], 50), percentile(result["latencies"], 95)
            bench.notes.append(
                _target(
                    "IDLE latency p50 <= 1.0 s and p95 <= 2.0 s",
                    p50 <= 1.0 and p95 <= 2.0,
                    f"p50 {p50:.2f} s, p95 {p95:.2f} s",
                )
            )


def memory_rows(bench: Bench) -> None:
    """Peak memory with 10,000 and with 50,000 unseen mails: the whole bot as shipped
    (its first ``--seconds`` of work), and a fetch of every mail (three runs, median)."""
    plan = bench.plan
    bots, ingests = {}, {}
    for count in (plan.backlog, plan.big_backlog):
        bot = bench.run("backlog", count, seconds=plan.seconds)
        _check(bot, f"memory {count}")
        bots[count] = bot
        bench.rows.append(Row.memory(f"peak RSS, bot as shipped, {count:,} unseen", bot))
        account = bench.mailbox(count)
        runs = [bench.run("ingest", count, account=account) for _ in range(MEMORY_RUNS)]
        for run in runs:
            _check(run, f"ingest {count}", replies=False, acked=False)
        peaks = sorted(run["peak_rss_mb"] for run in runs)
        ingests[count] = statistics.median(peaks)
        median_run = {**runs[0], "peak_rss_mb": ingests[count]}
        spread = ", ".join(f"{peak:.0f}" for peak in peaks)
        bench.rows.append(
            Row.memory(f"peak RSS, ingest of all {count:,} mails (median of {spread})", median_run)
        )
    small, big = plan.backlog, plan.big_backlog
    bot_growth = bots[big]["peak_rss_mb"] / bots[small]["peak_rss_mb"] - 1
    ingest_growth = ingests[big] / ingests[small] - 1
    highest = max(bots[big]["peak_rss_mb"], bots[small]["peak_rss_mb"], *ingests.values())
    bench.notes.append(
        _target(
            f"peak RSS under 150 MB and within 10% between {small:,} and {big:,} unseen",
            highest < 150 and max(abs(bot_growth), abs(ingest_growth)) <= 0.10,
            f"highest {highest:.0f} MB; {big:,} vs {small:,}: bot as shipped "
            f"{bot_growth:+.1%}, ingest of every mail {ingest_growth:+.1%}",
        )
    )


def _rate(result: dict[str, Any]) -> float:
    return result["handled"] / result["seconds"]


def _target(what: str, held: bool, detail: str) -> str:
    return f"target {'held' if held else 'MISSED'}: {what}: {detail}"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def machine() -> str:
    """Where the numbers come from."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GB RAM; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()}"
    )


def main() -> None:
    """``python -m bench [--quick] [--seconds S] [--only backlog,ingest,latency,memory]``."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for development")
    parser.add_argument("--seconds", type=float, help="time bound of each end-to-end run")
    parser.add_argument("--only", default="backlog,ingest,latency,memory")
    parser.add_argument("--results", type=Path, help="also write the table to this file")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="write each scenario's cProfile stats here"
    )
    arguments = parser.parse_args()
    plan = QUICK if arguments.quick else FULL
    if arguments.profile:
        arguments.profile.mkdir(parents=True, exist_ok=True)
        plan = attrs.evolve(plan, profile_dir=arguments.profile.resolve())
    if arguments.seconds:
        plan = attrs.evolve(plan, seconds=arguments.seconds)
    started = time.monotonic()
    parts = {
        "backlog": backlog_rows,
        "ingest": ingest_rows,
        "latency": latency_rows,
        "memory": memory_rows,
    }
    with tempfile.TemporaryDirectory(prefix="spacebot-bench-") as work, DovecotServer() as dovecot:
        bench = Bench(plan, dovecot, Path(work))
        rtt_direct = measure_rtt(dovecot.imap_port)
        proxy = DelayProxy(10.0, [dovecot.imap_port]).start()
        try:
            rtt_proxied = measure_rtt(proxy.ports[dovecot.imap_port])
        finally:
            proxy.stop()
        load = os.getloadavg()
        for name in arguments.only.split(","):
            _say(f"{name}:")
            parts[name](bench)
        minutes = (time.monotonic() - started) / 60
        header = [
            f"spacebot-email bench, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"{'quick' if arguments.quick else 'full'} run in {minutes:.1f} min",
            f"machine: {machine()}",
            f"load average at start: {load[0]:.2f}; IMAP NOOP round trip: "
            f"{rtt_direct:.2f} ms direct, {rtt_proxied:.2f} ms through the 10 ms proxy",
            f"backlog mix: {_mix(bench)}",
        ]
        table = render(header, bench.rows, bench.notes)
    print(table)
    if arguments.results:
        arguments.results.write_text(table + "\n")


def _mix(bench: Bench) -> str:
    if not bench.backlogs:
        return "-"
    backlog = bench.backlogs[max(bench.backlogs)]
    total = len(backlog.files)
    kinds = ", ".join(
        f"{kind} {count / total:.0%}" for kind, count in sorted(backlog.kinds.items())
    )
    return (
        f"{kinds} (of all {total:,}); {backlog.total_bytes / total / 1024:.1f} KB a mail on "
        "average; an N-mail mailbox holds its first N mails"
    )


if __name__ == "__main__":
    main()
