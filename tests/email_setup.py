"""Helpers for end-to-end email tests: a config for the test servers, and one bot run."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_core.runtime import Runtime
from spacebot_core.store import StateStore
from spacebot_email.testing import Account, CertFiles, DovecotServer, SmtpRelay


def instance_keys(
    dovecot: DovecotServer, relay: SmtpRelay, bot: Account, certs: CertFiles, imap: str = "plain"
) -> str:
    """The TOML keys that point one instance at the test servers as ``bot``."""
    imap_port = dovecot.imaps_port if imap == "tls" else dovecot.imap_port
    smtp_security = {"starttls": "smtp_use_starttls = true", "implicit": "smtp_use_tls = true"}
    return f"""
imap_host = "127.0.0.1"
imap_port = {imap_port}
imap_username = "{bot.address}"
imap_password = "{bot.password}"
imap_use_tls = {"true" if imap == "tls" else "false"}
imap_use_starttls = {"true" if imap == "starttls" else "false"}
smtp_host = "127.0.0.1"
smtp_port = {relay.port}
{smtp_security.get(relay.tls, "smtp_use_starttls = false")}
tls_ca_file = "{certs.ca}"
from_address = "{bot.address}"
poll_interval_secs = 5
"""


def write_config(tmp_path: Path, body: str) -> Path:
    """Write ``config.toml`` into ``tmp_path`` with its own state directory."""
    path = tmp_path / "config.toml"
    path.write_text(body + '\n[runtime]\nstate_dir = "state"\n')
    return path


async def run_bot_once(config_path: Path) -> list[tuple[str, Exception]]:
    """What ``spacebot run --once`` does, in this process; returns instance failures."""
    host = load_plugins()
    config = load_config(config_path, host.adapter_classes(), host.agent_classes())
    store = StateStore.open(config.state_dir)
    try:
        return await Runtime.create(config, host, store).run_once()
    finally:
        store.close()


def mail_from(
    sender: Account | str,
    to: Account | str,
    subject: str,
    body: str,
    *,
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[str, bytes]:
    """A plain-text mail as a person's client writes it; returns (Message-ID, bytes)."""
    message = EmailMessage()
    message["From"] = sender.address if isinstance(sender, Account) else sender
    message["To"] = to.address if isinstance(to, Account) else to
    message["Subject"] = subject
    message_id = make_msgid(domain="example.com")
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = " ".join(references)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message_id, message.as_bytes()


def not_from(messages: list, account: Account) -> list:
    """The stored messages whose From is not ``account`` (leaves out the bot's copies)."""
    import email as email_module
    from email import policy

    def sender(raw: bytes) -> str:
        parsed = email_module.message_from_bytes(raw, policy=policy.default)
        return parsed["From"].addresses[0].addr_spec if parsed["From"] else ""

    return [message for message in messages if sender(message.raw) != account.address]
