"""The long fuzz run: hostile mail through normalization, the filter and a reply.

    python tests/fuzz_mail.py --examples 100000 [--seed N] [--time-limit SECONDS]

Hypothesis generates mails three ways (hostile MIME trees with injection attempts in
every header, the parser's own MIME generator, random bytes), damages some of them at
random, and runs each through :func:`hostile_mime.check_normalized_and_replied`: the
adapter's ``spacebot_normalize_inbound`` (never raises, JSON-safe metadata), its
``spacebot_filter_inbound``, and for mail let through, the reply the adapter would
compose, read back for exactly our headers and the one intended recipient. Each mail
must take under :data:`SLOW_SECONDS`.

It prints how many mails ran, how long it took, the slowest mail, and the first
failure (hypothesis shrinks it to a minimal mail) or "no findings". Not collected by
pytest (the name does not start with ``test_``); CI runs the short version of the same
property in ``tests/test_security_hostile_mail.py``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile_mime import check_normalized_and_replied, hostile_mails, normalizing_adapter
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from test_parse_properties import mails as parser_mails

SLOW_SECONDS = 2.0


@st.composite
def damaged(draw: st.DrawFn, mail: st.SearchStrategy[bytes]) -> bytes:
    """A generated mail with up to three random cuts, insertions or deletions."""
    raw = draw(mail)
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(max_size=8)) + raw[at + draw(st.integers(0, 8)) :]
    return raw


MAILS = st.one_of(
    damaged(hostile_mails()),
    damaged(parser_mails()),
    st.binary(max_size=4000),
)


def run(examples: int, random_seed: int, time_limit: float | None) -> int:
    """Run the fuzz loop; returns the exit status (0: no findings)."""
    adapter = normalizing_adapter()
    count = 0
    slowest = (0.0, b"")
    deadline = time.monotonic() + time_limit if time_limit else None

    @seed(random_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(MAILS)
    def fuzz(raw: bytes) -> None:
        nonlocal count, slowest
        if deadline is not None and time.monotonic() > deadline:
            return
        count += 1
        started = time.monotonic()
        check_normalized_and_replied(adapter, raw)
        elapsed = time.monotonic() - started
        if elapsed > slowest[0]:
            slowest = (elapsed, raw)
        assert elapsed < SLOW_SECONDS, f"{elapsed:.2f} s for a {len(raw)}-byte mail"

    started = time.monotonic()
    status = 0
    try:
        fuzz()
        finding = "no findings"
    except Exception as error:  # the finding, already shrunk and printed by hypothesis
        finding = f"FINDING: {type(error).__name__}: {error}"
        status = 1
    total = time.monotonic() - started
    print(f"mails run:     {count}")
    print(f"time:          {total:.1f} s ({count / max(total, 1e-9):.0f} mails/s)")
    print(f"slowest mail:  {slowest[0] * 1000:.1f} ms ({len(slowest[1])} bytes)")
    print(f"seed:          {random_seed}")
    print(finding)
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="mails to generate")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (repeatable runs)")
    parser.add_argument("--time-limit", type=float, help="stop generating after SECONDS")
    arguments = parser.parse_args()
    return run(arguments.examples, arguments.seed, arguments.time_limit)


if __name__ == "__main__":
    sys.exit(main())
