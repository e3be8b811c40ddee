"""Two bots that answer mail do not answer each other for ever.

Every reply carries ``Auto-Submitted: auto-replied`` (RFC 3834) and ``X-Loop`` naming
the bot; mail carrying our own X-Loop is never answered. Two opponents, each run for
several rounds against real mailboxes, and the mails counted:

- a second spacebot (its own account, the echo agent, default settings), and
- a responder that answers everything, ignores Auto-Submitted and drops it from what
  it sends, but keeps the other headers of the mail it answers, as list servers and
  forwarders do; only X-Loop can stop that one, so our bot runs with
  ``filter_auto_generated = false``.
"""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

from email_setup import instance_keys, mail_from, run_bot_once, write_config

ROUNDS = 4
# What a forwarder does not copy: the envelope's traces, its own identity fields, and
# the RFC 3834 marker that a naive responder strips.
NOT_COPIED = {
    "return-path", "delivered-to", "received", "from", "to", "subject", "message-id",
    "date", "auto-submitted", "precedence", "in-reply-to", "references",
}  # fmt: skip


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def from_address(raw: bytes) -> str:
    return parse(raw)["From"].addresses[0].addr_spec


async def test_two_spacebots_exchange_one_reply_and_stop(tmp_path, dovecot, make_smtp_relay, certs):
    first, second = dovecot.new_account("bot-a"), dovecot.new_account("bot-b")
    relay = make_smtp_relay(
        tls="starttls", credentials={a.address: a.password for a in (first, second)}
    )
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, first, certs)
        + '\n[[messaging.email.instances]]\nruntime_key = "bot-b"\n'
        + instance_keys(dovecot, relay, second, certs)
        + '\n[[bindings]]\nagent_id = "main"\nchannel = "email"\n',
    )
    # The second bot's owner writes to the first bot from the second bot's address.
    _, raw = mail_from(second, first, "Hello bot", "Are you a bot too?")
    dovecot.deliver(first.address, raw)

    for _ in range(ROUNDS):
        assert await run_bot_once(config) == []

    sent = [(m.mail_from, m.rcpt_tos) for m in relay.received]
    assert sent == [(first.address, (second.address, first.address))]  # reply + own copy
    [reply] = [m for m in dovecot.fetch_all(second) if from_address(m.raw) == first.address]
    assert parse(reply.raw)["Auto-Submitted"] == "auto-replied"
    assert parse(reply.raw)["X-Loop"] == first.address
    assert all(m.seen for m in dovecot.fetch_all(second))  # read, and not answered


async def test_a_responder_that_answers_everything_is_stopped_by_x_loop(
    tmp_path, dovecot, make_smtp_relay, certs
):
    bot, responder = dovecot.new_account("bot"), dovecot.new_account("autoresponder")
    relay = make_smtp_relay(tls="starttls", credentials={bot.address: bot.password})
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + "filter_auto_generated = false\n",
    )
    _, raw = mail_from(responder, bot, "Subscribe", "Please add me.")
    dovecot.deliver(bot.address, raw)
    answered: set[int] = set()
    reflections = 0

    for _ in range(ROUNDS):
        assert await run_bot_once(config) == []
        for stored in dovecot.fetch_all(responder):
            if stored.uid not in answered:
                answered.add(stored.uid)
                dovecot.deliver(bot.address, reflect(stored.raw, responder.address))
                reflections += 1

    bot_replies = [m for m in relay.received if m.mail_from == bot.address]
    assert len(bot_replies) == 1
    assert reflections == 1
    inbox = dovecot.fetch_all(bot)
    reflected = [m for m in inbox if from_address(m.raw) == responder.address][1:]
    assert len(reflected) == 1 and reflected[0].seen  # read, ignored for its X-Loop


def reflect(raw: bytes, responder: str) -> bytes:
    """The naive responder's answer: to the sender, with the headers it does not know."""
    incoming = parse(raw)
    answer = EmailMessage()
    answer["From"] = responder
    answer["To"] = incoming["From"].addresses[0].addr_spec
    answer["Subject"] = "Re: " + str(incoming["Subject"])
    answer["Message-ID"] = make_msgid(domain="example.com")
    for name, value in incoming.items():
        if name.lower() not in NOT_COPIED and not name.lower().startswith("content-"):
            answer[name] = value
    answer.set_content("Thank you for your mail! We answer every mail at once.")
    return answer.as_bytes()
