"""What the bot sends: files, limits, every response kind, proactive mail, TLS modes."""

from __future__ import annotations

import email
import json
import subprocess
import sys
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

from email_setup import instance_keys, mail_from, run_bot_once, write_config


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def _json_agent(tmp_path, responses: list[dict]) -> str:
    """An ``[[agents]]`` table for a command agent that prints ``responses`` as JSON."""
    script = tmp_path / "agent.py"
    script.write_text(f"import sys\nsys.stdin.read()\nprint({json.dumps(json.dumps(responses))})\n")
    return (
        f'\n[[agents]]\nid = "main"\nkind = "command"\n'
        f'command = ["{sys.executable}", "{script}"]\noutput = "json"\n'
    )


async def test_file_response_arrives_as_an_attachment(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    pdf = b"%PDF-1.4 report " * 100
    agent = _json_agent(
        tmp_path,
        [
            {
                "type": "file",
                "filename": "report.pdf",
                "mime_type": "application/pdf",
                "data": __import__("base64").b64encode(pdf).decode(),
                "caption": "Here is the report.",
            }
        ],
    )
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs) + agent
    )
    _, raw = mail_from(alice, bot, "Report please", "Send me the report.")
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    message = _parse(reply.raw)
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf
    assert "Here is the report." in message.get_body(("plain",)).get_content()


async def test_file_over_the_attachment_limit_is_not_sent_and_the_reply_says_so(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    agent = _json_agent(
        tmp_path,
        [
            {
                "type": "file",
                "filename": "huge.bin",
                "data": "A" * 4000,
                "caption": "Too big.",
            }
        ],
    )
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + "max_attachment_bytes = 1000\n"
        + agent,
    )
    _, raw = mail_from(alice, bot, "Big file", "Send it.")
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    message = _parse(reply.raw)
    assert list(message.iter_attachments()) == []
    body = message.get_body(("plain",)).get_content()
    assert "huge.bin" in body
    assert "1000-byte limit" in body


async def test_inbound_attachment_over_the_limit_is_rejected_and_the_sender_told(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + "max_attachment_bytes = 2000\n",
    )
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = alice.address, bot.address, "Two files"
    mail["Message-ID"] = make_msgid(domain="example.com")
    mail.set_content("See attached.")
    mail.add_attachment(b"small" * 10, maintype="text", subtype="plain", filename="small.txt")
    mail.add_attachment(b"x" * 5000, maintype="application", subtype="zip", filename="big.zip")
    dovecot.deliver(bot.address, mail.as_bytes())

    assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    body = _parse(reply.raw).get_body(("plain",)).get_content()
    assert "small.txt" in body  # the echo agent lists what it received
    assert "big.zip" in body
    assert "could not accept" in body
    assert "2000" in body


async def test_text_kinds_are_sent_as_text_and_reactions_are_not_sent(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    agent = _json_agent(
        tmp_path,
        [
            {"type": "reaction", "emoji": "👍"},
            {"type": "status", "status": "typing"},
            {"type": "stream_start"},
            {"type": "thread_reply", "thread_name": "t", "text": "thread reply text"},
            {"type": "rich_message", "text": "rich text", "blocks": []},
            {"type": "ephemeral", "text": "ephemeral text", "user_id": None},
            {
                "type": "scheduled_message",
                "text": "scheduled text",
                "post_at": "2030-01-01T00:00:00",
            },
        ],
    )
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs) + agent
    )
    _, raw = mail_from(alice, bot, "Kinds", "hi")
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    bodies = [_parse(m.raw).get_content().strip() for m in dovecot.fetch_all(alice)]
    assert bodies == ["thread reply text", "rich text", "ephemeral text", "scheduled text"]


def test_spacebot_send_delivers_a_fresh_mail(tmp_path, dovecot, mail_accounts, smtp_relay, certs):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    attachment = tmp_path / "notes.txt"
    attachment.write_text("meeting notes")

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacebot_core.cli",
            "--config",
            str(config),
            "send",
            f"email:{alice.address}",
            "Hello from the bot",
            "--attach",
            str(attachment),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    [mail] = dovecot.fetch_all(alice)
    message = _parse(mail.raw)
    assert message["In-Reply-To"] is None
    assert message["From"].addresses[0].addr_spec == bot.address
    assert "Hello from the bot" in message.get_body(("plain",)).get_content()
    [file] = list(message.iter_attachments())
    assert file.get_filename() == "notes.txt"


async def test_imap_over_tls_and_smtp_over_implicit_tls(
    tmp_path, dovecot, mail_accounts, make_smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    relay = make_smtp_relay(tls="implicit", credentials={bot.address: bot.password})
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, relay, bot, certs, imap="tls")
    )
    _, raw = mail_from(alice, bot, "over TLS", "hi")
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    [received] = relay.received
    assert received.tls and received.login == bot.address
    assert _parse(dovecot.fetch_all(alice)[0].raw)["Subject"] == "Re: over TLS"


async def test_imap_over_starttls(tmp_path, dovecot, mail_accounts, smtp_relay, certs):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path,
        "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs, imap="starttls"),
    )
    _, raw = mail_from(alice, bot, "over STARTTLS", "hi")
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    assert smtp_relay.received[0].tls
    assert _parse(dovecot.fetch_all(alice)[0].raw)["Subject"] == "Re: over STARTTLS"


async def test_untrusted_certificate_is_refused(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, untrusted_certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    keys = instance_keys(dovecot, smtp_relay, bot, certs, imap="tls")
    keys = keys.replace(str(certs.ca), str(untrusted_certs.ca))
    config = write_config(tmp_path, "[messaging.email]\n" + keys)
    _, raw = mail_from(alice, bot, "not over a forged certificate", "hi")
    dovecot.deliver(bot.address, raw)

    [(runtime_key, error)] = await run_bot_once(config)

    assert runtime_key == "email"
    assert "TLS handshake failed" in str(error)
    assert not dovecot.fetch_all(bot)[0].seen
    assert smtp_relay.received == []


async def test_two_named_instances_route_to_two_agents(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    support, alice = mail_accounts.bot, mail_accounts.alice
    sales = dovecot.new_account("sales")
    smtp_relay.add_credentials(sales.address, sales.password)
    sales_keys = instance_keys(dovecot, smtp_relay, sales, certs)
    sales_credentials = "\n".join(
        line
        for line in sales_keys.splitlines()
        if line.startswith(("imap_username", "imap_password", "from_address"))
    )
    config = write_config(
        tmp_path,
        f"""
[messaging.email]
{instance_keys(dovecot, smtp_relay, support, certs)}

[[messaging.email.instances]]
runtime_key = "sales-email"
{sales_credentials}

[[agents]]
id = "support-bot"
kind = "echo"
greeting = "Support here."

[[agents]]
id = "sales-bot"
kind = "echo"
greeting = "Sales here."

[[bindings]]
agent_id = "support-bot"
channel = "email"

[[bindings]]
agent_id = "sales-bot"
channel = "email"
adapter = "sales-email"
""",
    )
    for account in (support, sales):
        _, raw = mail_from(alice, account, f"to {account.address}", "hi")
        dovecot.deliver(account.address, raw)

    assert await run_bot_once(config) == []

    replies = {
        _parse(m.raw)["From"].addresses[0].addr_spec: _parse(m.raw).get_content()
        for m in dovecot.fetch_all(alice)
    }
    assert replies[support.address].startswith("Support here.")
    assert replies[sales.address].startswith("Sales here.")
