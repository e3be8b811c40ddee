"""Which conversation a mail belongs to, and the subject of a reply to it.

The spec's three rules, in order: the first Message-ID in References, else
In-Reply-To, else a hash of the subject and the sender. A thread's first mail has
neither header, so its own Message-ID stands in before the hash: the replies to it
name that id first in their References (or in In-Reply-To, for clients that write
only that), which puts the whole thread under one key.

A client that writes only In-Reply-To and answers the bot's reply (not the first
mail) names the bot's Message-ID. So that such a mail stays in its conversation, the
bot's reply ids carry the conversation's token (see :func:`own_reply_token`): the
conversation id is ``email:<runtime_key>:<token>``, where the token is taken from
the bot's own reply id when the thread's root is one, else hashed from the thread key.
"""

from __future__ import annotations

import hashlib
import re

from spacebot_email.parse import ParsedMail

__all__ = [
    "conversation_id",
    "conversation_token",
    "normalize_subject",
    "own_reply_token",
    "reply_subject",
    "thread_key",
]

#: The bot's reply Message-IDs: ``<32 hex of the delivery . 24 hex token .sb@domain>``.
OWN_REPLY_ID = re.compile(r"^<[0-9a-f]{32}\.(?P<token>[0-9a-f]{24})\.sb@[^>]+>$")
TOKEN_LENGTH = 24

# Reply and forward prefixes, in the languages mail clients write them, with an
# optional counter: "Re:", "RE[2]:", "Fwd:", "FW:", "AW:", "WG:", "SV:", "Antw:", "VS:".
_PREFIXES = re.compile(
    r"^(?:\s*(?:re|fwd?|aw|wg|sv|antw|vs|tr|rv)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a])+\s*",
    re.IGNORECASE,
)
_REPLY_PREFIXES = re.compile(
    r"^(?:\s*(?:re|aw|sv|antw|vs)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a])+\s*",
    re.IGNORECASE,
)


def thread_key(mail: ParsedMail) -> str:
    """The key that all mails of one thread share.

    The first Message-ID in References; else In-Reply-To; else the mail's own
    Message-ID (a thread's first mail), unless it is a substitute; else
    ``subject:`` and a hash of the normalized subject and the sender's address.

    :param mail: the parsed mail.
    :return: a Message-ID in angle brackets, or ``subject:<32 hex digits>``.
    """
    if mail.references:
        return mail.references[0]
    if mail.in_reply_to:
        return mail.in_reply_to
    if not mail.message_id_is_substitute:
        return mail.message_id
    sender = mail.sender.address.lower() if mail.sender else ""
    seed = f"{normalize_subject(mail.subject)}|{sender}"
    return "subject:" + hashlib.sha256(seed.encode("utf-8", "replace")).hexdigest()[:32]


def conversation_id(runtime_key: str, mail: ParsedMail) -> str:
    """The conversation id of a mail: ``email:<runtime_key>:<token>``.

    Namespaced by the instance, so two accounts never share a conversation.

    :param runtime_key: the instance's runtime_key (``email``, ``sales-email``).
    :param mail: the parsed mail.
    :return: the conversation id.
    """
    root = mail.references[0] if mail.references else mail.in_reply_to
    token = own_reply_token(root) if root else None
    if token is None:
        key = thread_key(mail).encode("utf-8", "replace")
        token = hashlib.sha256(key).hexdigest()[:TOKEN_LENGTH]
    return f"email:{runtime_key}:{token}"


def conversation_token(conversation: str) -> str:
    """The token part of a conversation id, which the bot's reply ids carry."""
    return conversation.rsplit(":", 1)[-1]


def own_reply_token(message_id: str) -> str | None:
    """The conversation token in one of the bot's own reply ids, else None."""
    match = OWN_REPLY_ID.match(message_id.strip().lower())
    return match.group("token") if match else None


def normalize_subject(subject: str) -> str:
    """A subject without reply and forward prefixes, whitespace collapsed, casefolded.

    ``"RE: Fwd: AW[2]:  Hello"`` becomes ``"hello"``.
    """
    return " ".join(_PREFIXES.sub("", subject).split()).casefold()


def reply_subject(subject: str) -> str:
    """The subject of a reply: exactly one ``Re: `` before the original subject.

    Existing reply prefixes (``Re:``, ``RE:``, ``re:``, ``Aw:``, ``SV:``, ``Re[2]:``)
    are replaced, not stacked; a forward prefix stays (``Re: Fwd: x``).

    :param subject: the subject of the mail being answered.
    :return: the reply's subject.
    """
    rest = " ".join(_REPLY_PREFIXES.sub("", subject).split())
    return f"Re: {rest}" if rest else "Re:"
