"""The email channel passes the adapter conformance suite, against Dovecot and SMTP.

The other side is a person's mail account: a message arrives in the bot's INBOX by
LMTP, as a mail server delivers it, and the bot's replies are read back from the
person's mailbox, where the test SMTP relay delivered them.
"""

from __future__ import annotations

import asyncio
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from spacebot_core.adapter import Adapter
from spacebot_core.testing import AdapterConformance, ChannelDriver, Delivered, Injected
from spacebot_email.testing import CertFiles, DovecotServer, MailAccounts, SmtpRelay


class EmailDriver(ChannelDriver):
    """alice, writing to the bot and reading its answers in her own mailbox."""

    def __init__(
        self, dovecot: DovecotServer, accounts: MailAccounts, relay: SmtpRelay, certs: CertFiles
    ) -> None:
        self.dovecot, self.accounts, self.relay, self.certs = dovecot, accounts, relay, certs

    def settings(self, runtime_key: str) -> dict[str, Any]:
        bot = self.accounts.bot
        return {
            "imap_host": "127.0.0.1",
            "imap_port": self.dovecot.imap_port,
            "imap_username": bot.address,
            "imap_password": bot.password,
            "imap_use_tls": False,
            "smtp_host": "127.0.0.1",
            "smtp_port": self.relay.port,
            "smtp_use_starttls": True,
            "tls_ca_file": str(self.certs.ca),
            "from_address": bot.address,
            "poll_interval_secs": 5,
        }

    async def inject(self, adapter: Adapter, message: Injected) -> None:
        mail = EmailMessage()
        mail["From"] = self.accounts.alice.address
        mail["To"] = self.accounts.bot.address
        mail["Subject"] = f"Conformance {message.key}"
        mail["Message-ID"] = f"<{message.key}@example.com>"
        mail.set_content(message.text)
        await asyncio.to_thread(self.dovecot.deliver, self.accounts.bot.address, mail.as_bytes())

    async def delivered(self, adapter: Adapter) -> list[Delivered]:
        stored = await asyncio.to_thread(self.dovecot.fetch_all, self.accounts.alice)
        replies = []
        for item in stored:
            mail = message_from_bytes(item.raw, policy=policy.default)
            body = mail.get_body(preferencelist=("plain",))
            text = body.get_content() if body is not None else ""
            in_reply_to = mail["In-Reply-To"]
            replies.append(Delivered(text, in_reply_to.strip() if in_reply_to else None))
        return replies


class TestEmailChannelConformance(AdapterConformance):
    channel = "email"
    distribution = "spacebot-email"

    @pytest.fixture
    def driver(
        self,
        dovecot: DovecotServer,
        mail_accounts: MailAccounts,
        smtp_relay: SmtpRelay,
        certs: CertFiles,
    ) -> EmailDriver:
        return EmailDriver(dovecot, mail_accounts, smtp_relay, certs)
