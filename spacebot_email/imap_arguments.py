"""Writing the arguments of IMAP commands: UID sets and quoted search strings.

Pure functions, no I/O: what they return is sent as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: A UID set longer than this is sent over several commands: servers limit the length
#: of a command line (Dovecot: 64 KB; some, 8 KB).
MAX_UID_SET_CHARS = 4000


def uid_sets(uids: Iterable[int], max_chars: int = MAX_UID_SET_CHARS) -> Iterator[str]:
    """UIDs as IMAP sequence sets of at most about ``max_chars`` characters each."""
    runs = uid_set(uids).split(",") if uids else []
    part: list[str] = []
    length = 0
    for run in runs:
        if part and length + len(run) + 1 > max_chars:
            yield ",".join(part)
            part, length = [], 0
        part.append(run)
        length += len(run) + 1
    if part:
        yield ",".join(part)


def uid_set(uids: Iterable[int]) -> str:
    """UIDs as an IMAP sequence set, runs collapsed: ``1:3,7,9:10``."""
    ordered = sorted(set(uids))
    runs: list[str] = []
    start = previous = None
    for uid in ordered:
        if start is None:
            start = previous = uid
        elif uid == previous + 1:
            previous = uid
        else:
            runs.append(f"{start}:{previous}" if start != previous else str(start))
            start = previous = uid
    if start is not None:
        runs.append(f"{start}:{previous}" if start != previous else str(start))
    return ",".join(runs)


def quote_search(value: str) -> str:
    """A search string as an IMAP quoted string; values with line breaks cannot be sent."""
    if any(char in value for char in "\r\n\0"):
        raise ValueError("an IMAP search value cannot hold a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
