"""A mail from a person gets an answer in the same thread, read back from their mailbox."""

from __future__ import annotations

import email
from email import policy

from email_setup import instance_keys, mail_from, not_from, run_bot_once, write_config


def _parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


async def test_reply_lands_in_senders_mailbox_threaded_and_original_is_seen(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + '\n[[bindings]]\nagent_id = "main"\nchannel = "email"\n',
    )
    original_id, raw = mail_from(alice, bot, "Where is my order?", "Order 1234 has not arrived.")
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    [reply] = dovecot.fetch_all(alice)
    reply_mail = _parse(reply.raw)
    assert reply_mail["Subject"] == "Re: Where is my order?"
    assert reply_mail["In-Reply-To"].strip() == original_id
    assert reply_mail["References"].strip() == original_id
    assert reply_mail["From"].addresses[0].addr_spec == bot.address
    assert reply_mail["From"].addresses[0].display_name == "Spacebot"
    assert reply_mail["Auto-Submitted"] == "auto-replied"
    assert reply_mail["Message-ID"] and reply_mail["Message-ID"] != original_id
    assert "> Order 1234 has not arrived." in reply_mail.get_content()
    [original] = not_from(dovecot.fetch_all(bot), bot)
    assert original.seen


async def test_seen_mail_is_never_answered(tmp_path, dovecot, mail_accounts, smtp_relay, certs):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    _, raw = mail_from(alice, bot, "old", "read long ago")
    dovecot.append(bot, "INBOX", raw, flags=["\\Seen"])

    assert await run_bot_once(config) == []

    assert dovecot.fetch_all(alice) == []
    assert smtp_relay.received == []


async def test_reply_goes_to_reply_to_when_present(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    helpdesk = dovecot.new_account("helpdesk")
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    _, raw = mail_from(alice, bot, "answer elsewhere", "hi", headers={"Reply-To": helpdesk.address})
    dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    assert dovecot.fetch_all(alice) == []
    [reply] = dovecot.fetch_all(helpdesk)
    assert _parse(reply.raw)["To"].addresses[0].addr_spec == helpdesk.address


async def test_three_message_thread_stays_one_conversation(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    first_id, raw = mail_from(alice, bot, "Refund", "I want a refund.")
    dovecot.deliver(bot.address, raw)
    assert await run_bot_once(config) == []
    [first_reply] = dovecot.fetch_all(alice)
    first_reply_id = _parse(first_reply.raw)["Message-ID"].strip()

    # The second mail answers the bot's reply as a full client does (References).
    second_id, raw = mail_from(
        alice,
        bot,
        "Re: Refund",
        "Still waiting.",
        in_reply_to=first_reply_id,
        references=[first_id, first_reply_id],
    )
    dovecot.deliver(bot.address, raw)
    assert await run_bot_once(config) == []
    second_reply = _parse(dovecot.fetch_all(alice)[1].raw)

    # The third comes from a client that keeps only In-Reply-To: it names the bot's
    # second reply, not the thread's first mail.
    _, raw = mail_from(
        alice, bot, "Re: Refund", "Hello?", in_reply_to=second_reply["Message-ID"].strip()
    )
    dovecot.deliver(bot.address, raw)
    assert await run_bot_once(config) == []
    third_reply = _parse(dovecot.fetch_all(alice)[2].raw)

    assert second_reply["References"].split() == [first_id, first_reply_id, second_id]
    assert second_reply["Subject"] == "Re: Refund"
    # The echo agent counts the messages of the conversation it was given.
    assert "(message 2 of this conversation)" in second_reply.get_content()
    assert "(message 3 of this conversation)" in third_reply.get_content()
