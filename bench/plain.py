"""The baseline: the plain way to answer a mailbox, as most adapters do it.

Each poll opens a new IMAP connection and searches for unseen mail; then, one message
after the other: one ``UID FETCH`` round trip, parse, ask the agent, send the reply
over SMTP (one send after another on one connection), one ``UID STORE \\Seen`` round
trip. The parser, the filters for mail not to answer, the echo agent and the reply
composition are spacebot's own, so the bench compares ways of talking to the servers,
not parsers.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from spacebot_core.agents.echo import EchoAgent, EchoSettings
from spacebot_core.types import OutboundResponse
from spacebot_email import compose
from spacebot_email.filters import is_own_address
from spacebot_email.imap import ImapSession
from spacebot_email.normalize import to_inbound
from spacebot_email.parse import parse_mail
from spacebot_email.smtp import SmtpSender, SmtpSession


async def answer_plainly(settings: Any, limit: int, deadline: float) -> int:
    """Answer unseen mail the plain way until ``limit`` mails are handled, none is left,
    or ``deadline`` (``time.monotonic()``) passed.

    :param settings: the instance's finalized ``EmailSettings``.
    :return: how many mails were handled (answered or skipped as auto-generated).
    """
    sender = SmtpSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security="plain",
        username=settings.smtp_username,
        password=settings.smtp_password,
        timeout=settings.timeout_secs,
    )
    agent = EchoAgent("echo", EchoSettings())
    handled = 0
    async with sender.session() as smtp:
        while handled < limit:
            imap = await _connect(settings)
            try:
                await imap.select("INBOX")
                uids = await imap.search_unseen()
                if not uids:
                    break
                for uid in uids[: limit - handled]:
                    if time.monotonic() > deadline:
                        return handled
                    await _answer_one(imap, smtp, agent, settings, uid)
                    handled += 1
            finally:
                await imap.close()
    return handled


async def _connect(settings: Any) -> ImapSession:
    return await ImapSession.open(
        host=settings.imap_host,
        port=settings.imap_port,
        security="plain",
        username=settings.imap_username,
        password=settings.imap_password,
        ssl_context=None,
        timeout=settings.timeout_secs,
    )


async def _answer_one(
    imap: ImapSession, smtp: SmtpSession, agent: EchoAgent, settings: Any, uid: int
) -> None:
    [fetched] = await imap.fetch([uid])
    mail = parse_mail(
        fetched.raw,
        max_body_bytes=settings.max_body_bytes,
        max_attachment_bytes=settings.max_attachment_bytes,
    )
    message = to_inbound(
        mail, runtime_key="plain", folder="INBOX", uid=uid, received_at=datetime.now(UTC)
    )
    own = is_own_address(message.sender_id, settings.own_addresses)
    if message.sender_id and not own and not mail.auto_generated:
        for response in await agent.respond(message, []):
            assert isinstance(response, OutboundResponse.Text)
            reply = compose.compose_reply(
                from_address=settings.from_address,
                from_name=settings.from_name,
                to=message.sender_id,
                original_subject=mail.subject,
                original_message_id=message.id,
                original_references=list(mail.references),
                text=response.text,
                message_id=compose.new_message_id(settings.from_address),
            )
            await smtp.send(reply, sender=settings.from_address, recipients=[message.sender_id])
    await imap.add_flags([uid], "\\Seen")
