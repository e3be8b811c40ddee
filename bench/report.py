"""The bench's one table: a row per measurement, ratios against the baseline of the
same run, then notes."""

from __future__ import annotations

import math
from typing import Any

import attrs


@attrs.frozen
class Row:
    """One line of the table; empty strings where a column does not apply."""

    what: str
    mails: str = ""
    seconds: str = ""
    rate: str = ""
    ratio: str = ""
    rss: str = ""

    @classmethod
    def throughput(
        cls,
        what: str,
        result: dict[str, Any],
        base: dict[str, Any] | None,
        versus: str = "plain way",
    ) -> Row:
        """A throughput row; the ratio is against ``base`` (None: this is the base, or a
        reference when ``versus`` names something else)."""
        rate = result["handled"] / result["seconds"]
        ratio = "1.00x (base)" if versus == "plain way" else "reference"
        if base is not None:
            ratio = f"{rate / (base['handled'] / base['seconds']):.2f}x {versus}"
        return cls(
            what,
            f"{result['handled']:,} of {result['total']:,}",
            f"{result['seconds']:.1f}",
            f"{rate:,.0f}",
            ratio,
            f"{result['peak_rss_mb']:.0f}",
        )

    @classmethod
    def latency(cls, what: str, latencies: list[float]) -> Row:
        """p50 and p95 of a list of seconds."""
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        return cls(what, f"{len(latencies)}", "", f"p50 {p50:.2f} s, p95 {p95:.2f} s")

    @classmethod
    def memory(cls, what: str, result: dict[str, Any]) -> Row:
        """Peak memory of a run."""
        return cls(
            what,
            f"{result['handled']:,} of {result['total']:,}",
            f"{result['seconds']:.1f}",
            f"{result['handled'] / result['seconds']:,.0f}",
            "",
            f"{result['peak_rss_mb']:.0f}",
        )


def percentile(values: list[float], percent: float) -> float:
    """The value below which ``percent`` of ``values`` lie (nearest rank)."""
    ordered = sorted(values)
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


HEADINGS = ("measurement", "mails", "s", "mails/s (or latency)", "vs", "peak RSS MB")


def render(header: list[str], rows: list[Row], notes: list[str]) -> str:
    """The table as Markdown (readable as plain text too)."""
    cells = [HEADINGS] + [attrs.astuple(row) for row in rows]
    widths = [max(len(str(line[column])) for line in cells) for column in range(len(HEADINGS))]

    def line(values: tuple[str, ...]) -> str:
        return (
            "| " + " | ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)) + " |"
        )

    out = [*header, "", line(HEADINGS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(attrs.astuple(row)) for row in rows]
    if notes:
        out += ["", *[f"- {note}" for note in notes]]
    return "\n".join(out)
