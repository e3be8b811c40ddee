"""A UID FETCH response reads back as the mails the server sent, however its bytes are
split into reads: each message's bytes whole and exact, its UID, flags and size, and
unsolicited FETCH lines without a body left out. Pure: the protocol object is fed the
server's bytes directly, no server runs."""

from __future__ import annotations

import asyncio

from spacebot_email.imap_protocol import LineProtocol
from spacebot_email.imap_responses import FetchCommand, FolderState, parse_fetch

FOLDER = FolderState("INBOX", 7, 4)

MAILS = {
    11: b"Subject: one\r\n\r\nHello (with parentheses) and a {12} brace\r\n",
    12: b"",
    13: b"Subject: three\r\n\r\n" + b")\r\n* 99 FETCH (UID 99 BODY[] {3}\r\nabc\r\n" * 50,
    14: b"Subject: four\r\n\r\nlast line without an ending",
}

RESPONSE = (
    b"* 1 FETCH (UID 11 FLAGS (\\Flagged) BODY[] {%d}\r\n%s)\r\n"
    b"* 2 FETCH (FLAGS (\\Seen))\r\n"
    b"* 2 FETCH (UID 12 FLAGS () BODY[] {0}\r\n)\r\n"
    b"* 3 FETCH (UID 13 BODY[] {%d}\r\n%s FLAGS ($Junk))\r\n"
    b"* 4 EXPUNGE\r\n"
    b"* 5 FETCH (UID 14 RFC822.SIZE 90000 BODY[]<0> {%d}\r\n%s)\r\n"
    b"A1 OK Fetch completed.\r\n"
) % (
    len(MAILS[11]),
    MAILS[11],
    len(MAILS[13]),
    MAILS[13],
    len(MAILS[14]),
    MAILS[14],
)


async def _read_in_pieces(size: int) -> FetchCommand:
    """The FETCH command after the server's response arrived in reads of ``size`` bytes."""
    protocol = LineProtocol(asyncio.get_running_loop())
    protocol.state = "SELECTED"
    command = FetchCommand("A1", "11:14", "(UID FLAGS BODY.PEEK[])", prefix="UID")
    protocol.pending_async_commands[command.untagged_resp_name] = command
    for start in range(0, len(RESPONSE), size):
        protocol.data_received(RESPONSE[start : start + size])
    await asyncio.wait_for(command.wait(), 1)
    return command


async def test_fetched_mail_is_exact_whatever_the_reads():
    for size in (1, 2, 3, 7, 64, 1000, len(RESPONSE)):
        command = await _read_in_pieces(size)
        fetched = list(parse_fetch(command.response.lines, FOLDER))

        assert command.response.result == "OK"
        assert [(mail.uid, mail.raw) for mail in fetched] == list(MAILS.items()), size
        assert all(type(mail.raw) is bytes for mail in fetched)
        assert [mail.flags for mail in fetched] == [("\\Flagged",), (), ("$Junk",), ()]
        sizes = [len(MAILS[11]), 0, len(MAILS[13]), 90000]
        assert [mail.size for mail in fetched] == sizes
        assert {(mail.folder, mail.uidvalidity) for mail in fetched} == {("INBOX", 7)}
