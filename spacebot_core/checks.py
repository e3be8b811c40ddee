"""The result of one step of ``spacebot check``."""

from __future__ import annotations

import attrs


@attrs.frozen
class CheckResult:
    """One step of checking an instance: what was tried, whether it worked, the fix.

    ``fix`` is in the user's words and says what to change when ``ok`` is false.
    """

    step: str
    ok: bool
    detail: str = ""
    fix: str | None = None

    def line(self) -> str:
        """The result as one line for the terminal."""
        mark = "ok  " if self.ok else "FAIL"
        text = f"[{mark}] {self.step}"
        if self.detail:
            text += f": {self.detail}"
        if not self.ok and self.fix:
            text += f" -> {self.fix}"
        return text
