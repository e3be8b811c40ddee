"""Which mail the bot reads, in which folders, and which it leaves unanswered."""

from __future__ import annotations

import email
import logging
from email import policy

from email_setup import instance_keys, mail_from, not_from, run_bot_once, write_config

from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_email.adapter import EmailAdapter
from spacebot_email.folder_names import encode_folder_name
from spacebot_email.parse import parse_mail


def _subjects(messages) -> list[str]:
    return [email.message_from_bytes(m.raw, policy=policy.default)["Subject"] for m in messages]


def _config(tmp_path, dovecot, relay, bot, certs, extra: str = "") -> object:
    return write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, relay, bot, certs) + extra
    )


async def test_every_folder_is_polled_in_order_including_unusual_names(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    folders = ["INBOX", "Support Team", "Входящие"]
    for folder in folders[1:]:
        dovecot.create_folder(bot, encode_folder_name(folder))
    for folder in folders:
        _, raw = mail_from(alice, bot, f"to {folder}", "hello")
        dovecot.append(bot, encode_folder_name(folder), raw)
    config = _config(
        tmp_path,
        dovecot,
        smtp_relay,
        bot,
        certs,
        'folders = ["INBOX", "Support Team", "Входящие"]\n',
    )

    assert await run_bot_once(config) == []

    assert _subjects(dovecot.fetch_all(alice)) == [f"Re: to {folder}" for folder in folders]
    for folder in folders:
        assert all(
            m.seen for m in not_from(dovecot.fetch_all(bot, encode_folder_name(folder)), bot)
        )


async def test_missing_folder_is_reported_by_name_and_the_others_still_work(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, caplog
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    _, raw = mail_from(alice, bot, "still answered", "hello")
    dovecot.deliver(bot.address, raw)
    config = _config(
        tmp_path, dovecot, smtp_relay, bot, certs, 'folders = ["Archive 2019", "INBOX"]\n'
    )

    with caplog.at_level(logging.ERROR):
        assert await run_bot_once(config) == []

    assert "folder 'Archive 2019'" in caplog.text
    assert _subjects(dovecot.fetch_all(alice)) == ["Re: still answered"]


async def test_auto_generated_mail_is_not_answered_but_marked_seen(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    automatic = [
        {"Auto-Submitted": "auto-replied"},
        {"Precedence": "auto_reply"},
        {"Precedence": "bulk"},
        {"X-Autoreply": "yes"},
    ]
    for headers in automatic:
        _, raw = mail_from(alice, bot, "Out of office", "I am away.", headers=headers)
        dovecot.deliver(bot.address, raw)
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs)

    assert await run_bot_once(config) == []

    assert smtp_relay.received == []
    assert [m.seen for m in dovecot.fetch_all(bot)] == [True] * len(automatic)


async def test_bounce_from_mailer_daemon_is_not_answered(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    _, raw = mail_from(
        "MAILER-DAEMON@mx.example.net", bot, "Undelivered Mail Returned to Sender", "gone"
    )
    dovecot.deliver(bot.address, raw, sender="")
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs)

    assert await run_bot_once(config) == []

    assert smtp_relay.received == []
    assert dovecot.fetch_all(bot)[0].seen


async def test_only_allowed_senders_are_answered(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    stranger = dovecot.new_account("stranger", domain="elsewhere.org")
    for sender in (alice, stranger):
        _, raw = mail_from(sender, bot, f"from {sender.address}", "hi")
        dovecot.deliver(bot.address, raw)
    config = _config(
        tmp_path,
        dovecot,
        smtp_relay,
        bot,
        certs,
        # Dovecot's LMTP adds no Authentication-Results: see test_security_sender_auth.
        'allowed_senders = ["example.com"]\nsender_auth = "off"\n',
    )

    assert await run_bot_once(config) == []

    assert _subjects(dovecot.fetch_all(alice)) == [f"Re: from {alice.address}"]
    assert dovecot.fetch_all(stranger) == []
    assert all(m.seen for m in not_from(dovecot.fetch_all(bot), bot))


async def test_mail_from_the_bots_own_address_is_not_answered(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    _, raw = mail_from(bot, bot, "note to self", "hi")
    dovecot.deliver(bot.address, raw)
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs)

    assert await run_bot_once(config) == []

    assert smtp_relay.received == []
    assert dovecot.fetch_all(bot)[0].seen


async def test_ignored_mail_is_not_fetched_again(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    _, raw = mail_from(alice, bot, "Newsletter", "news", headers={"Precedence": "list"})
    dovecot.deliver(bot.address, raw)
    config_path = _config(tmp_path, dovecot, smtp_relay, bot, certs)
    assert await run_bot_once(config_path) == []
    _, raw = mail_from(alice, bot, "A question", "real mail")
    dovecot.deliver(bot.address, raw)

    host = load_plugins()
    config = load_config(config_path, host.adapter_classes(), host.agent_classes())
    adapter = EmailAdapter("email", config.instances[0].settings)
    try:
        polled = await adapter.spacebot_poll()
    finally:
        await adapter.spacebot_stop()

    assert [parse_mail(item.raw).subject for item in polled] == ["A question"]
