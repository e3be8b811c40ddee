"""``spacebot check`` for an email instance: each step, and the fix in the user's words.

The failures map to the spec's troubleshooting table: authentication failed, TLS
handshake failed, a folder that does not exist, no permission to set flags, SMTP
authentication failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spacebot_core.checks import CheckResult
from spacebot_core.errors import ChannelError
from spacebot_email.imap import FolderMissingError, ImapSession

if TYPE_CHECKING:
    from spacebot_email.adapter import EmailAdapter

SECURITY_WORDS = {"tls": "TLS", "starttls": "STARTTLS", "plain": "no encryption (loopback)"}
FLAGS_FIX = "Ensure the account has write permissions on the mailbox"


async def check_instance(adapter: EmailAdapter) -> list[CheckResult]:
    """Every step of the instance's setup, stopping the IMAP part at a failed login."""
    settings = adapter.settings
    step = (
        f"IMAP login as {settings.imap_username} at {settings.imap_host}:{settings.imap_port} "
        f"({SECURITY_WORDS[settings.imap_security]})"
    )
    results: list[CheckResult] = []
    try:
        session = await adapter.imap_session()
    except ChannelError as error:
        results.append(CheckResult(step, False, str(error.args[0]), error.hint))
    else:
        results.append(CheckResult(step, True))
        results.extend(await _check_folders(session, settings.folders))
    finally:
        await adapter.spacebot_stop()
    try:
        results.extend(await adapter.smtp_sender().check())
    except ChannelError as error:
        results.append(CheckResult("SMTP", False, str(error.args[0]), error.hint))
    return results


async def _check_folders(session: ImapSession, folders: list[str]) -> list[CheckResult]:
    results = []
    existing: list[str] | None = None
    for folder in folders:
        step = f"folder '{folder}'"
        try:
            state = await session.select(folder)
        except FolderMissingError:
            existing = existing if existing is not None else await session.list_folders()
            results.append(
                CheckResult(
                    step,
                    False,
                    "does not exist",
                    f"fix folders = [...]; the account has: {', '.join(sorted(existing))}",
                )
            )
            continue
        if state.writable:
            results.append(CheckResult(step, True, f"{state.exists} message(s), flags can be set"))
        else:
            results.append(
                CheckResult(step, False, "read-only: emails cannot be marked as seen", FLAGS_FIX)
            )
    return results
