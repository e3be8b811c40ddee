"""aioimaplib's protocol, reading what the server sends in one pass.

aioimaplib 2.0 hands each line of a read to a recursive call, passing it the rest of
the read as a new copy. A read of n lines therefore costs n copies of the buffer and n
stack frames: a large FETCH spends more time copying than parsing, and a read holding
more than about a thousand lines (a mass ``EXPUNGE`` announced during IDLE, the FETCH
of many small mails) raises ``RecursionError``, on which asyncio drops the connection.
It also formats every read into a debug message, whether debug logging is on or not.

:class:`LineProtocol` reads the same lines with the same state (the command waiting for
more, the partial line kept for the next read) in a loop over positions in the read.
"""

from __future__ import annotations

import logging

import aioimaplib
from aioimaplib.aioimaplib import CRLF, Command, literal_data_re

#: aioimaplib's own logger, so that ``--trace`` shows what arrives as before.
log = logging.getLogger("aioimaplib.aioimaplib")


class LineProtocol(aioimaplib.IMAP4ClientProtocol):
    """aioimaplib's client protocol with a read loop that neither copies nor recurses."""

    def data_received(self, d: bytes) -> None:
        """Hand every complete line (and literal) of ``d`` to aioimaplib's handlers.

        What cannot be handled yet stays for the next read, as aioimaplib keeps it: the
        command still receiving a literal or a continued response
        (``current_command``), and an unfinished line (``incomplete_line``).
        """
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Received : %s", d)
        data = self.incomplete_line + d if self.incomplete_line else d
        view = memoryview(data)
        command = self.current_command
        position = 0
        while position < len(data):
            if command is not None and command.wait_literal_data():
                rest = command.append_literal_data(view[position:])
                position = len(data) - len(rest)
                if command.wait_literal_data():
                    self._keep(command, b"")
                    return
            line_end = data.find(CRLF, position)
            if line_end < 0:
                self._keep(command, data[position:])
                return
            line = data[position:line_end]
            position = line_end + len(CRLF)
            command = self._next_command(line, self._handle_line(line, command))
        # Like aioimaplib: an IDLE hands on what it gathered once a read ends on a line.
        if self.pending_sync_command is not None:
            self.pending_sync_command.flush()
        self._keep(command if command is not None and command.wait_data() else None, b"")

    @staticmethod
    def _next_command(line: bytes, handled: Command | None) -> Command | None:
        """The command that the next bytes belong to, after ``line``.

        A line ending in ``{size}`` announces a literal of that many bytes (for the
        command that took the line, or for none); a command whose response continues
        keeps the next line too.
        """
        # The regular expression scans the whole line: ask it only of a line that can
        # announce a literal.
        literal = literal_data_re.match(line) if line.endswith(b"}") else None
        if literal:
            if handled is None:
                handled = Command("NIL", "unused")
            handled.begin_literal_data(int(literal.group("size")))
            return handled
        if handled is not None and handled.wait_data():
            return handled
        return None

    def _keep(self, command: Command | None, incomplete_line: bytes) -> None:
        """Remember what the next read continues."""
        self.current_command = command
        self.incomplete_line = incomplete_line
