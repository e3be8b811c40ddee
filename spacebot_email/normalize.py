"""A :class:`ParsedMail` as the runtime's :class:`InboundMessage`.

Everything channel-specific goes into ``metadata``, as JSON-safe values only (str,
int, bool, None, lists and dicts of them), because the state store keeps it as JSON.
The agent reads only what the sender wrote now (``ParsedMail.new_text``); when quoted
history or a signature was split off, the full text, the quote and the signature stay
in ``metadata`` as ``full_text``, ``quoted_text`` and ``signature``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from spacebot_core.types import InboundMessage, MessageContent
from spacebot_email.parse import Address, ParsedMail
from spacebot_email.threads import conversation_id, thread_key

__all__ = ["to_inbound"]


def to_inbound(
    mail: ParsedMail,
    *,
    runtime_key: str,
    folder: str,
    uid: int,
    received_at: datetime,
    strip_quoted: bool = True,
) -> InboundMessage:
    """Turn a parsed mail into the message the runtime routes to an agent.

    :param mail: the parsed mail.
    :param runtime_key: the instance it came from (``email``, ``sales-email``).
    :param folder: the IMAP folder it was fetched from.
    :param uid: its IMAP UID in that folder.
    :param received_at: when it was fetched; the timestamp when the mail has no Date.
    :param strip_quoted: give the agent the new text only (the setting of the same
        name); when false, the full text, and no reply parts in the metadata.
    :return: the inbound message. ``sender_id`` is the lowercased From address (empty
        when there is none); ``content`` is ``MessageContent.Media`` when the mail has
        attachments (rejected ones included), else ``MessageContent.Text``; its text
        is the mail's new text, without quoted history or signature.
    """
    if not strip_quoted:
        mail = attrs.evolve(mail, new_text=mail.text, quoted_text="", signature="")
    content: MessageContent.Text | MessageContent.Media
    if mail.attachments:
        content = MessageContent.Media(text=mail.new_text, attachments=mail.attachments)
    else:
        content = MessageContent.Text(text=mail.new_text)
    return InboundMessage(
        id=mail.message_id,
        source="email",
        adapter=runtime_key,
        conversation_id=conversation_id(runtime_key, mail),
        sender_id=mail.sender.address.lower() if mail.sender else "",
        content=content,
        timestamp=mail.date or received_at,
        metadata=_metadata(mail, folder=folder, uid=uid),
        formatted_author=str(mail.sender) if mail.sender else None,
    )


def _metadata(mail: ParsedMail, *, folder: str, uid: int) -> dict[str, Any]:
    """The email-specific facts an agent or the reply path may need, JSON-safe."""
    return {
        "from": mail.sender.address if mail.sender else None,
        "from_name": mail.sender.name if mail.sender else None,
        "reply_to": mail.reply_to.address if mail.reply_to else None,
        "to": _addresses(mail.to),
        "cc": _addresses(mail.cc),
        "subject": mail.subject,
        "message_id": mail.message_id,
        "in_reply_to": mail.in_reply_to,
        "references": list(mail.references),
        "folder": folder,
        "uid": uid,
        "thread_key": thread_key(mail),
        "date": mail.date.isoformat() if mail.date else None,
        "auto_generated": mail.auto_generated,
        "x_loop": list(mail.x_loop),
        "body_truncated": mail.body_truncated,
        "rejected_attachments": [
            {"filename": a.filename, "size": a.size, "reason": a.rejected_reason}
            for a in mail.attachments
            if a.rejected_reason is not None
        ],
        **_reply_parts(mail),
    }


def _reply_parts(mail: ParsedMail) -> dict[str, str]:
    """What was split off the text the agent reads; nothing when nothing was.

    Left out when the text is whole, so that the common mail does not store its body
    twice.
    """
    if not (mail.quoted_text or mail.signature):
        return {}
    return {"full_text": mail.text, "quoted_text": mail.quoted_text, "signature": mail.signature}


def _addresses(addresses: tuple[Address, ...]) -> list[str]:
    """The bare addresses, in order."""
    return [address.address for address in addresses]
