"""A parsed mail becomes the InboundMessage the runtime routes to an agent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.message import EmailMessage

from spacebot_core.types import MessageContent
from spacebot_email.normalize import to_inbound
from spacebot_email.parse import parse_mail
from spacebot_email.threads import conversation_id

RECEIVED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _mail() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice Example <Alice@Example.com>"
    msg["To"] = "bot@example.com, Other <other@example.com>"
    msg["Cc"] = "cc@example.com"
    msg["Reply-To"] = "replies@example.com"
    msg["Subject"] = "Re: Question"
    msg["Message-ID"] = "<m2@example.com>"
    msg["In-Reply-To"] = "<m1@example.com>"
    msg["References"] = "<m1@example.com>"
    msg["Date"] = "Mon, 01 Nov 2020 14:49:07 +0000"
    msg["X-Loop"] = "bot@example.com"
    msg.set_content("Hello bot.")
    return msg


def test_plain_mail_becomes_a_text_message() -> None:
    mail = parse_mail(_mail().as_bytes())
    message = to_inbound(
        mail,
        runtime_key="sales-email",
        folder="INBOX",
        uid=42,
        received_at=RECEIVED,
    )
    assert message.id == "<m2@example.com>"
    assert (message.source, message.adapter) == ("email", "sales-email")
    assert message.conversation_id == conversation_id("sales-email", mail)
    assert message.metadata["thread_key"] == "<m1@example.com>"
    assert message.sender_id == "alice@example.com"
    assert message.content == MessageContent.Text(text="Hello bot.")
    assert message.timestamp == datetime(2020, 11, 1, 14, 49, 7, tzinfo=UTC)
    assert message.formatted_author == "Alice Example <Alice@Example.com>"


def test_metadata_holds_the_mail_facts_as_json() -> None:
    metadata = to_inbound(
        parse_mail(_mail().as_bytes()),
        runtime_key="email",
        folder="Support",
        uid=7,
        received_at=RECEIVED,
    ).metadata
    assert json.loads(json.dumps(metadata)) == metadata
    assert metadata == {
        "from": "Alice@Example.com",
        "from_name": "Alice Example",
        "reply_to": "replies@example.com",
        "to": ["bot@example.com", "other@example.com"],
        "cc": ["cc@example.com"],
        "subject": "Re: Question",
        "message_id": "<m2@example.com>",
        "in_reply_to": "<m1@example.com>",
        "references": ["<m1@example.com>"],
        "folder": "Support",
        "uid": 7,
        "thread_key": "<m1@example.com>",
        "date": "2020-11-01T14:49:07+00:00",
        "auto_generated": None,
        "x_loop": ["bot@example.com"],
        "body_truncated": False,
        "rejected_attachments": [],
    }


def test_mail_with_attachments_becomes_media_listing_rejected_files() -> None:
    msg = _mail()
    msg.add_attachment(b"small", maintype="text", subtype="plain", filename="a.txt")
    msg.add_attachment(bytes(50), maintype="application", subtype="zip", filename="b.zip")
    mail = parse_mail(msg.as_bytes(), max_attachment_bytes=10)
    message = to_inbound(mail, runtime_key="email", folder="INBOX", uid=1, received_at=RECEIVED)
    assert isinstance(message.content, MessageContent.Media)
    assert message.content.text == "Hello bot."
    assert [a.filename for a in message.content.attachments] == ["a.txt", "b.zip"]
    assert message.metadata["rejected_attachments"] == [
        {"filename": "b.zip", "size": 50, "reason": "over the 10-byte attachment limit (50 bytes)"}
    ]


def test_mail_without_date_or_sender_still_becomes_a_message() -> None:
    mail = parse_mail(b"Subject: anonymous\r\n\r\nWho am I?")
    message = to_inbound(mail, runtime_key="email", folder="INBOX", uid=3, received_at=RECEIVED)
    assert message.timestamp == RECEIVED
    assert (message.sender_id, message.formatted_author) == ("", None)
    assert message.metadata["from"] is None and message.metadata["date"] is None
    assert message.metadata["thread_key"].startswith("subject:")
    assert message.conversation_id.startswith("email:email:")
