"""Exponential backoff with jitter, capped."""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    """Delays that double after each failure, with jitter, up to ``cap`` seconds.

    Jitter (each delay drawn between half and all of its nominal value) keeps many
    instances that failed together from retrying together.
    """

    initial: float = 1.0
    cap: float = 300.0
    failures: int = 0

    def next_delay(self) -> float:
        """Count one more failure and return how long to wait before trying again."""
        # The exponent is bounded: after ~1024 failures 2**n no longer fits a float.
        nominal = min(self.cap, self.initial * 2.0 ** min(self.failures, 64))
        self.failures += 1
        return random.uniform(nominal / 2, nominal)

    def reset(self) -> None:
        """Forget past failures after a success."""
        self.failures = 0
