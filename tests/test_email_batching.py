"""A backlog is fetched in batches and acknowledged in few commands over one connection,
no mail is marked seen before its own reply was accepted, and a mail over the size
limit is never downloaded whole."""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage

from email_setup import instance_keys, mail_from
from running_bot import bot_from, record_imap

_UID_SET = re.compile(r"^UID (?:FETCH|STORE) (\S+) ")


def _config(tmp_path, dovecot, relay, bot, certs, extra: str = ""):
    path = tmp_path / "config.toml"
    path.write_text(
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + 'sender_auth = "off"\nself_copy = false\n'
        + extra
        + '\n[runtime]\nstate_dir = "state"\n'
        # A backlog from one sender is answered, not held back by the reply caps.
        + "max_replies_per_sender_per_hour = 1000\nmax_replies_per_thread_per_hour = 1000\n"
    )
    return path


def _uid_count(command: str) -> int:
    """How many UIDs an IMAP sequence set such as ``1:10,12`` names."""
    total = 0
    for run in _UID_SET.match(command).group(1).split(","):
        first, _, last = run.partition(":")
        total += int(last or first) - int(first) + 1
    return total


def _subjects(messages) -> list[str]:
    return [email.message_from_bytes(m.raw, policy=policy.default)["Subject"] for m in messages]


async def test_backlog_is_fetched_in_batches_and_marked_seen_in_few_commands(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    for number in range(25):
        _, raw = mail_from(alice, bot, f"mail {number}", "hello")
        dovecot.deliver(bot.address, raw)
    transcript = record_imap(monkeypatch)
    config = _config(tmp_path, dovecot, smtp_relay, bot, certs, "fetch_batch_size = 10\n")

    with bot_from(config) as spacebot:
        assert await spacebot.cycles() == 25

    assert sorted(_subjects(dovecot.fetch_all(alice))) == sorted(
        f"Re: mail {number}" for number in range(25)
    )
    assert all(message.seen for message in dovecot.fetch_all(bot))
    fetches = [command for command in transcript.named("UID FETCH") if "BODY.PEEK[]" in command]
    assert [_uid_count(command) for command in fetches] == [10, 10, 5]
    stores = transcript.named("UID STORE")
    assert sum(_uid_count(command) for command in stores) == 25
    assert len(stores) <= 3
    # One connection for the whole backlog: a single LOGOUT, at the end.
    assert transcript.commands.count("LOGOUT") == 1 == len(transcript.named("LOGOUT"))


async def test_mail_is_not_marked_seen_before_its_reply_was_accepted(
    tmp_path, dovecot, mail_accounts, make_smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice

    def deliver(recipient: str, raw: bytes, *, sender: str) -> None:
        if b"Subject: Re: two" in raw:
            raise OSError("mailbox full")  # the relay answers 451: not accepted
        dovecot.deliver(recipient, raw, sender=sender)

    relay = make_smtp_relay(
        tls="starttls", credentials={bot.address: bot.password}, deliver=deliver
    )
    for subject in ("one", "two", "three"):
        _, raw = mail_from(alice, bot, subject, "hello")
        dovecot.deliver(bot.address, raw)

    with bot_from(_config(tmp_path, dovecot, relay, bot, certs)) as spacebot:
        await spacebot.runtime.run_once()

    assert _subjects(dovecot.fetch_all(alice)) == ["Re: one"]
    assert [message.seen for message in dovecot.fetch_all(bot)] == [True, False, False]


def _mail_with_attachment(alice, bot, subject: str, size: int) -> bytes:
    message = EmailMessage()
    message["From"] = alice.address
    message["To"] = bot.address
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    message.set_content("Here is the file.\n")
    message.add_attachment(
        bytes(range(256)) * (size // 256),
        maintype="application",
        subtype="octet-stream",
        filename="big.bin",
    )
    return message.as_bytes()


async def test_mail_over_the_size_limit_is_never_downloaded_whole(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    dovecot.deliver(bot.address, _mail_with_attachment(alice, bot, "small file", 4_000))
    dovecot.deliver(bot.address, _mail_with_attachment(alice, bot, "huge file", 400_000))
    transcript = record_imap(monkeypatch)
    # The limit for one mail: (2,000 + 20,000) * 4/3 + 64 KiB, about 95 KB.
    extra = "max_body_bytes = 2000\nmax_attachment_bytes = 20000\n"

    with bot_from(_config(tmp_path, dovecot, smtp_relay, bot, certs, extra)) as spacebot:
        assert await spacebot.cycles() == 2

    whole = [c for c in transcript.named("UID FETCH") if "BODY.PEEK[])" in c]
    partial = [c for c in transcript.named("UID FETCH") if "BODY.PEEK[]<0." in c]
    assert [_uid_count(command) for command in whole] == [1]
    assert [_uid_count(command) for command in partial] == [1]
    replies = {
        mail["Subject"]: mail.get_content()
        for mail in (
            email.message_from_bytes(m.raw, policy=policy.default) for m in dovecot.fetch_all(alice)
        )
    }
    assert "Attachments I could not accept" not in replies["Re: small file"]
    assert "big.bin: not downloaded: the mail is" in replies["Re: huge file"]
    assert all(message.seen for message in dovecot.fetch_all(bot))
