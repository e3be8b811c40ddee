"""Replies in one thread map to one conversation; replies get one "Re:"."""

from __future__ import annotations

import pytest

from spacebot_email.compose import reply_message_id
from spacebot_email.parse import ParsedMail, parse_mail
from spacebot_email.threads import conversation_id, reply_subject, thread_key


def _mail(*headers: str, sender: str = "alice@example.com") -> ParsedMail:
    lines = [f"From: Alice <{sender}>", *headers, "", "Body."]
    return parse_mail("\r\n".join(lines).encode())


def test_three_message_chain_keeps_one_conversation_id() -> None:
    first = _mail("Message-ID: <m1@example.com>", "Subject: Question")
    second = _mail(
        "Message-ID: <m2@example.com>",
        "Subject: Re: Question",
        "In-Reply-To: <bot1@bot.example>",
        "References: <m1@example.com> <bot1@bot.example>",
    )
    third = _mail(
        "Message-ID: <m3@example.com>",
        "Subject: Re: Re: Question",
        "In-Reply-To: <bot2@bot.example>",
        "References: <m1@example.com> <bot1@bot.example> <m2@example.com> <bot2@bot.example>",
    )
    ids = {conversation_id("email", mail) for mail in (first, second, third)}
    assert len(ids) == 1
    assert thread_key(third) == "<m1@example.com>"


def test_in_reply_to_only_answer_to_the_bots_reply_stays_in_the_thread() -> None:
    first = _mail("Message-ID: <m1@example.com>", "Subject: Question")
    conversation = conversation_id("email", first)
    bot_reply_id = reply_message_id("email/<m1@example.com>/0", "bot@bot.example", conversation)
    answer = _mail("Message-ID: <m2@example.com>", f"In-Reply-To: {bot_reply_id}")
    assert conversation_id("email", answer) == conversation


def test_client_that_writes_only_in_reply_to_stays_in_the_thread() -> None:
    first = _mail("Message-ID: <m1@example.com>", "Subject: Question")
    reply = _mail("Message-ID: <m2@example.com>", "In-Reply-To: <m1@example.com>")
    assert thread_key(reply) == thread_key(first) == "<m1@example.com>"


def test_references_win_over_in_reply_to() -> None:
    mail = _mail("In-Reply-To: <parent@x>", "References: <root@x> <parent@x>")
    assert thread_key(mail) == "<root@x>"


def test_conversation_ids_are_namespaced_by_account() -> None:
    mail = _mail("Message-ID: <m1@example.com>")
    assert conversation_id("email", mail) != conversation_id("sales-email", mail)
    assert conversation_id("sales-email", mail).startswith("email:sales-email:")


def test_mail_without_message_id_is_threaded_by_subject_and_sender() -> None:
    first = _mail("Subject: Invoice 42")
    follow_up = _mail("Subject: RE: aw: Fwd[2]:  invoice   42")
    other_sender = _mail("Subject: Invoice 42", sender="bob@example.com")
    other_subject = _mail("Subject: Invoice 43")
    assert first.message_id_is_substitute
    assert thread_key(first).startswith("subject:") and len(thread_key(first)) == 40
    assert thread_key(follow_up) == thread_key(first)
    assert thread_key(other_sender) != thread_key(first)
    assert thread_key(other_subject) != thread_key(first)


def test_sender_case_does_not_split_a_subject_thread() -> None:
    assert thread_key(_mail("Subject: x", sender="Alice@Example.com")) == thread_key(
        _mail("Subject: x", sender="alice@example.com")
    )


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE: Hello", "Re: Hello"),
        ("re: re:  Hello", "Re: Hello"),
        ("Aw: Hello", "Re: Hello"),
        ("SV: Re[3]: Hello", "Re: Hello"),
        ("Fwd: Hello", "Re: Fwd: Hello"),
        ("Reply to all", "Re: Reply to all"),
        ("", "Re:"),
    ],
)
def test_reply_subject_has_exactly_one_re(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected
