"""New mail is answered as soon as the server announces it (IMAP IDLE), with polling
where IDLE is off or missing, and the other folders still polled on their interval.

Every test gives the bot a poll interval long enough (60 s) that only a push can
explain an answer within the test's bounds, unless the test is about polling.
"""

from __future__ import annotations

import asyncio

import pytest
from email_setup import instance_keys, mail_from, write_config
from running_bot import EVENT_TIMEOUT, bot_from, record_imap, running

from spacebot_email import adapter as adapter_module
from spacebot_email.imap import ImapSession


def _config(tmp_path, dovecot, relay, bot, certs, extra: str = ""):
    return write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + 'sender_auth = "off"\nself_copy = false\n'
        + extra,
    )


async def _deliver(dovecot, alice, bot, subject: str) -> None:
    _, raw = mail_from(alice, bot, subject, "hello")
    await asyncio.to_thread(dovecot.deliver, bot.address, raw)


async def test_new_mail_is_answered_while_idling(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    transcript = record_imap(monkeypatch)
    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs)) as spacebot:
        spacebot.tune(poll_interval_secs=60)
        async with running(spacebot):
            await transcript.wait_for("IDLE")
            await _deliver(dovecot, alice, bot, "pushed")
            [reply] = await dovecot.wait_for_messages(alice, timeout=EVENT_TIMEOUT)

    assert b"Subject: Re: pushed" in reply.raw
    assert all(message.seen for message in dovecot.fetch_all(bot))
    # Every IDLE was ended with DONE before anything else was sent.
    for index, command in enumerate(transcript.commands):
        if command == "IDLE":
            assert transcript.commands[index + 1 : index + 2] == ["DONE"], "\n".join(
                transcript.commands
            )
    assert transcript.commands[-1] == "LOGOUT"


async def test_idle_is_renewed_before_the_servers_limit(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    monkeypatch.setattr(adapter_module, "IDLE_RENEW_SECS", 0.2)
    transcript = record_imap(monkeypatch)
    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs)) as spacebot:
        spacebot.tune(poll_interval_secs=60)
        async with running(spacebot):
            await transcript.wait_for("IDLE", count=3)
            await _deliver(dovecot, alice, bot, "after renewals")
            await dovecot.wait_for_messages(alice, timeout=EVENT_TIMEOUT)

    idles = transcript.named("IDLE")
    assert len(idles) >= 3
    # Each IDLE was ended with DONE before the next command.
    assert len(transcript.named("DONE")) == len(idles)


@pytest.mark.parametrize("why", ["idle = false", "server without IDLE"])
async def test_polls_when_idle_is_off_or_missing(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch, why
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    extra = "idle = false\n" if why == "idle = false" else ""
    if why == "server without IDLE":
        has = ImapSession.has_capability
        monkeypatch.setattr(
            ImapSession, "has_capability", lambda self, name: name != "IDLE" and has(self, name)
        )
    transcript = record_imap(monkeypatch)
    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs, extra)) as spacebot:
        spacebot.tune(poll_interval_secs=1)
        async with running(spacebot):
            await transcript.wait_for("UID SEARCH")
            await _deliver(dovecot, alice, bot, "polled")
            await dovecot.wait_for_messages(alice, timeout=EVENT_TIMEOUT)

    assert transcript.named("IDLE") == []
    assert len(transcript.named("UID SEARCH UNSEEN")) >= 2


async def test_other_folders_are_polled_while_idling_on_the_first(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    dovecot.create_folder(bot, "Support")
    transcript = record_imap(monkeypatch)
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs, 'folders = ["INBOX", "Support"]\n')
    with bot_from(config) as spacebot:
        spacebot.tune(poll_interval_secs=1)
        async with running(spacebot):
            await transcript.wait_for("IDLE")
            _, raw = mail_from(alice, bot, "to support", "hello")
            await asyncio.to_thread(dovecot.append, bot, "Support", raw)
            await dovecot.wait_for_messages(alice, timeout=EVENT_TIMEOUT)

    assert dovecot.fetch_all(bot, "Support")[0].seen
    assert transcript.named("SELECT") and transcript.named("IDLE")


async def test_mail_announced_before_idle_began_is_not_left_waiting(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    """aioimaplib drops an EXISTS that comes with a FETCH's answer, and the server does not
    repeat it in IDLE: the bot must notice it anyway."""
    bot, alice = mail_accounts.bot, mail_accounts.alice
    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs)) as spacebot:
        spacebot.tune(poll_interval_secs=60)
        adapter = spacebot.adapter
        try:
            assert await adapter.spacebot_poll() == []
            await _deliver(dovecot, alice, bot, "between")
            session = await adapter.imap_session()
            async with session.using("INBOX"):
                await session.fetch_sizes([1])  # the server announces the mail here
            async with asyncio.timeout(EVENT_TIMEOUT):
                await adapter.spacebot_wait()
            polled = await adapter.spacebot_poll()
        finally:
            await adapter.spacebot_stop()

    assert len(polled) == 1


async def test_stop_while_idling_ends_idle_and_logs_out(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    bot = mail_accounts.bot
    transcript = record_imap(monkeypatch)
    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs)) as spacebot:
        spacebot.tune(poll_interval_secs=60)
        async with running(spacebot) as stop:
            await transcript.wait_for("IDLE")
            stop()

    assert transcript.commands[-2:] == ["DONE", "LOGOUT"]


async def test_a_mass_expunge_announced_while_idling_keeps_the_connection(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    """Another client deleting 1,500 mails makes the server send 1,500 lines at once;
    the bot reads them all on the connection it has (aioimaplib's own reader recursed
    once per line and lost the connection), and goes on answering."""
    bot, alice = mail_accounts.bot, mail_accounts.alice
    with dovecot.imap_session(bot) as imap:
        for number in range(1500):
            imap.append("INBOX", r"(\Seen)", None, b"Subject: old %d\r\n\r\nread\r\n" % number)
    transcript = record_imap(monkeypatch)
    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs)) as spacebot:
        spacebot.tune(poll_interval_secs=60)
        async with running(spacebot):
            await transcript.wait_for("IDLE")
            with dovecot.imap_session(bot) as imap:
                imap.select("INBOX")
                imap.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                imap.expunge()
            await _deliver(dovecot, alice, bot, "after the clean-up")
            [reply] = await dovecot.wait_for_messages(alice, timeout=EVENT_TIMEOUT)

    assert b"Subject: Re: after the clean-up" in reply.raw
    assert transcript.named("SELECT") == ['SELECT "INBOX"'], "\n".join(transcript.commands)
