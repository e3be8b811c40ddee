"""No value from outside can add or split a header in what the bot sends.

End to end: hostile values arrive in real inbound mail (subject, display names,
Message-ID, References, Reply-To), in the agent's output (text, file names, MIME types,
captions) and in ``spacebot send`` arguments (address, text, attached file's name).
Every mail the bot sends is read back from the recipient's Dovecot mailbox and must
have exactly the intended header set, no control character in any header, and no
copy anywhere else (a victim's mailbox stays empty; the relay saw only the intended
envelope recipients).
"""

from __future__ import annotations

import base64
import email
import os
import re
import subprocess
import sys
from email import policy
from email.message import EmailMessage

from email_setup import instance_keys, run_bot_once, write_config

# Added by Dovecot's LMTP when it stores a delivered mail.
DELIVERY_HEADERS = {"Return-Path", "Delivered-To", "Received"}
TEXT_REPLY = [
    "From", "To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
    "MIME-Version", "Auto-Submitted", "X-Loop", "Content-Type", "Content-Transfer-Encoding",
]  # fmt: skip
ATTACHMENT_PART = ["Content-Type", "Content-Transfer-Encoding", "Content-Disposition"]
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
INJECTED = "\r\nBcc: victim@example.com\r\n"


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def q_word(text: str) -> str:
    quoted = "".join(c if c.isalnum() else f"={ord(c):02X}" for c in text.encode().decode())
    return f"=?utf-8?q?{quoted}?="


def hostile_mail(sender: str, bot: str, victim: str, *, message_id: str) -> bytes:
    """A mail whose every header a reply could echo tries to smuggle a Bcc."""
    inject = f"\r\nBcc: {victim}\r\n"
    long_word = "A" * 3000
    lines = [
        f"From: {b_word('Alice' + inject + 'X-Evil: 1')} <{sender}>",
        f"Reply-To: {q_word('Desk' + inject)} <{sender}>",
        f"To: {bot}",
        f"Subject: {q_word('Invoice' + inject)} {b_word(chr(0) + 'NUL' + inject)} {long_word}",
        f"Message-ID: {message_id}",
        f"References: <root@example.com> <bad{q_word(inject)}@x.org> <{'r' * 400}@example.com>",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Please answer this one.",
    ]
    return "\r\n".join(lines).encode()


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def header_names(part: EmailMessage) -> list[str]:
    return [name for name in part if name not in DELIVERY_HEADERS]


def assert_clean_headers(message: EmailMessage) -> None:
    """No header of any part holds a control character, raw or once decoded."""
    for part in message.walk():
        for name, value in part.items():
            assert "bcc" not in name.lower()
            assert not CONTROL.search(str(value)), (name, str(value)[:120])
    raw_head = message.as_bytes().split(b"\n\n", 1)[0]
    assert b"\nBcc:" not in raw_head and b"\nX-Evil:" not in raw_head


def json_agent(tmp_path, victim: str) -> str:
    """A command agent whose answer is hostile: the inbound subject echoed in its text,
    an SMTP-smuggling attempt, and a file whose name and type try to inject headers."""
    smuggle = f"\r\n.\r\nMAIL FROM:<x@x.org>\r\nRCPT TO:<{victim}>\r\nDATA\r\nSubject: sm\r\n"
    script = tmp_path / "agent.py"
    script.write_text(
        "import base64, json, sys\n"
        "message = json.load(sys.stdin)['message']\n"
        "subject = message['metadata']['subject']\n"
        "print(json.dumps([\n"
        f"  {{'type': 'text', 'text': 'You wrote: ' + subject + {smuggle!r}}},\n"
        "  {'type': 'file', 'data': base64.b64encode(b'data').decode(),\n"
        f"   'filename': 'evil\\r\\nBcc: {victim}\\r\\n.txt',\n"
        "   'mime_type': 'text/plain\\r\\nX-Evil: 1',\n"
        "   'caption': 'Subject: ' + subject},\n"
        "]))\n"
    )
    return (
        f'\n[[agents]]\nid = "main"\nkind = "command"\n'
        f'command = ["{sys.executable}", "{script}"]\noutput = "json"\n'
    )


async def test_hostile_inbound_values_and_agent_output_cannot_add_a_header(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    victim = dovecot.new_account("victim")
    for message_id in ("<ok-1@example.com>", f"<id{q_word(INJECTED)}@example.com>"):
        raw = hostile_mail(alice.address, bot.address, victim.address, message_id=message_id)
        dovecot.deliver(bot.address, raw)
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + json_agent(tmp_path, victim.address),
    )

    assert await run_bot_once(config) == []

    replies = [parse(stored.raw) for stored in dovecot.fetch_all(alice)]
    assert len(replies) == 4  # a text and a file reply to each mail
    for reply in replies:
        assert_clean_headers(reply)
        assert reply["To"].addresses[0].addr_spec == alice.address
        assert reply["Subject"].startswith("Re: Invoice")
        expected = list(TEXT_REPLY)
        if reply["In-Reply-To"] is None:  # the mail whose own Message-ID was hostile
            expected.remove("In-Reply-To")
        if reply.is_multipart():
            expected.remove("Content-Transfer-Encoding")
            [attachment] = list(reply.iter_attachments())
            assert header_names(attachment) == ATTACHMENT_PART
            assert attachment.get_content_type() == "application/octet-stream"
            assert not CONTROL.search(attachment.get_filename())
        assert header_names(reply) == expected
        assert reply["References"].split()[0] == "<root@example.com>"
    texts = [r.get_body(("plain",)).get_content() for r in replies if not r.is_multipart()]
    assert all("MAIL FROM:<x@x.org>" in text for text in texts)  # still only body text
    assert dovecot.fetch_all(victim) == []
    envelopes = {tuple(sorted(m.rcpt_tos)) for m in smtp_relay.received}
    assert envelopes == {tuple(sorted((alice.address, bot.address)))}
    assert len(smtp_relay.received) == 4
    originals = dovecot.fetch_all(bot)[:2]  # delivered before the bot's own copies
    assert all(stored.seen for stored in originals)


def _send(config, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spacebot_core.cli", "--config", str(config), "send", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )


def test_spacebot_send_arguments_cannot_add_a_header_or_a_recipient(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    victim = dovecot.new_account("victim")
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    attachment = tmp_path / f"report\r\nBcc: {victim.address}\r\n.txt"
    attachment.write_bytes(b"figures")
    bad_targets = [
        f"email:{alice.address}\r\nBcc: {victim.address}",
        f"email:{alice.address},{victim.address}",
        f"email:{alice.address} {victim.address}",  # (argv cannot hold a NUL)
        f"email:{q_word(alice.address + ' ' + victim.address)}@x.org",
    ]

    refused = [_send(config, target, "hi") for target in bad_targets]
    sent = _send(
        config,
        f"email:{alice.address}",
        f"Hello\r\nBcc: {victim.address}\r\n\r\nbody",
        "--attach",
        str(attachment),
    )

    assert all(result.returncode != 0 for result in refused), [r.stderr for r in refused]
    assert sent.returncode == 0, sent.stderr
    [mail] = [parse(stored.raw) for stored in dovecot.fetch_all(alice)]
    assert_clean_headers(mail)
    assert header_names(mail) == [
        "From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Auto-Submitted",
        "X-Loop", "Content-Type",
    ]  # fmt: skip
    [part] = list(mail.iter_attachments())
    assert header_names(part) == ATTACHMENT_PART
    assert part.get_filename() == f"report Bcc: {victim.address} .txt"
    assert dovecot.fetch_all(victim) == []
    assert [m.rcpt_tos for m in smtp_relay.received] == [(alice.address,)]
