"""Reading unseen mail in bounded batches over the instance's one IMAP connection.

A *round* searches each due folder once for unseen mail (leaving out the keywords of
mail kept for a person) and hands the UIDs out in batches of at most
``fetch_batch_size`` mails and :data:`BATCH_BYTES` bytes, one ``UID FETCH`` each.
Sizes are asked first (``RFC822.SIZE``, a window of UIDs per command), so a mail over
the size limit (:func:`message_limit`) is fetched as its first bytes only and never
pulled whole into memory, and memory stays flat however long the backlog is.

While the runtime handles (and normalizes) one batch, the next ones are fetched in the
background, up to :data:`PREFETCH_DEPTH` batches ahead. The runtime's acknowledgements
are buffered and stored as one ``UID STORE`` per folder and flag: before the next
fetch, before waiting, and at stop. A mail is acknowledged only after its replies were
accepted; a crash before the store leaves it unseen, to be found again and recognised
by the state store by its Message-ID.
"""

from __future__ import annotations

import asyncio
import logging
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import attrs

from spacebot_core.types import Attachment
from spacebot_email.imap import FolderMissingError, ImapSession
from spacebot_email.imap_responses import FetchedMail
from spacebot_email.parse import HTML_INPUT_FACTOR, ParsedMail, parse_mail

log = logging.getLogger(__name__)

#: The most bytes of mail one batch holds (a single larger mail is a batch of its own).
BATCH_BYTES = 4 * 1024 * 1024
#: How many UIDs one size query covers.
SIZE_WINDOW = 200
#: Room for headers and MIME structure around the body and attachment limits.
HEADER_ROOM = 64 * 1024
#: How many fetched batches may wait, beyond the one the runtime is handling.
PREFETCH_DEPTH = 2


def message_limit(max_body_bytes: int, max_attachment_bytes: int) -> int:
    """The largest mail downloaded whole: a body and an attachment at their limits,
    base64-encoded (4/3), with room for headers."""
    return (max_body_bytes + max_attachment_bytes) * 4 // 3 + HEADER_ROOM


def partial_bytes(max_body_bytes: int) -> int:
    """How much of a mail over the limit is read: headers and the start of the body,
    enough for the longest text (or HTML) the parser would keep."""
    return max_body_bytes * HTML_INPUT_FACTOR + HEADER_ROOM


@attrs.frozen
class Limits:
    """How much one batch may hold, and where a mail is too large to download."""

    batch_size: int
    max_body_bytes: int
    max_attachment_bytes: int
    batch_bytes: int = BATCH_BYTES

    @property
    def max_message_bytes(self) -> int:
        """The largest mail downloaded whole."""
        return message_limit(self.max_body_bytes, self.max_attachment_bytes)

    @property
    def partial_bytes(self) -> int:
        """How much of a larger mail is read."""
        return partial_bytes(self.max_body_bytes)


class UidQueue:
    """The UIDs of one folder still to fetch: 4 bytes each, so that a backlog of a
    million mails costs 4 MB, and a read position instead of removals."""

    def __init__(self, uids: array[int] | None = None) -> None:
        self._uids = uids if uids is not None else array("I")
        self._head = 0

    def __bool__(self) -> bool:
        return self._head < len(self._uids)

    def __len__(self) -> int:
        return len(self._uids) - self._head

    def peek(self) -> int:
        """The next UID."""
        return self._uids[self._head]

    def pop(self) -> int:
        """The next UID, taken off."""
        uid = self._uids[self._head]
        self._head += 1
        return uid

    def head(self, count: int) -> array[int]:
        """The next ``count`` UIDs (or fewer), left in place."""
        return self._uids[self._head : self._head + count]

    def clear(self) -> None:
        """Forget every UID."""
        self._uids = array("I")
        self._head = 0


@attrs.define(eq=False)
class Intake:
    """The unseen mail of an instance's folders, batch by batch, and its acknowledgements.

    :param connect: returns the instance's logged-in session (opening it if needed).
    :param limits: batch and size limits.
    :param skip_keywords: mail carrying any of these keywords is not fetched.
    """

    connect: Callable[[], Awaitable[ImapSession]]
    limits: Limits
    skip_keywords: tuple[str, ...]
    log: logging.LoggerAdapter | logging.Logger = log
    _round: deque[str] = attrs.field(factory=deque, init=False)
    _folder: str | None = attrs.field(default=None, init=False)
    _uidvalidity: int = attrs.field(default=0, init=False)
    _queue: UidQueue = attrs.field(factory=lambda: UidQueue(), init=False)
    _sizes: dict[int, int] = attrs.field(factory=dict, init=False)
    _acks: dict[tuple[str, int, str], set[int]] = attrs.field(factory=dict, init=False)
    #: The background task fetching the round, and the batches it has ready (None
    #: marks the end of the round, an exception a failed fetch).
    _producer: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _ready: asyncio.Queue[list[FetchedMail] | Exception | None] | None = attrs.field(
        default=None, init=False
    )

    @property
    def more_pending(self) -> bool:
        """Whether the current round has batches left."""
        return self._producer is not None

    async def poll(self, folders: Sequence[str]) -> list[FetchedMail]:
        """The next batch of the round; a new round over ``folders`` if none is running.

        A new round starts only when the last one is finished, so no search can find
        mail whose acknowledgement is still on its way.
        """
        if self._producer is None or self._ready is None:
            self._start_round(folders)
            self._ready = asyncio.Queue(PREFETCH_DEPTH)
            self._producer = asyncio.create_task(self._produce(self._ready))
        ready = self._ready
        batch = await ready.get()
        if batch is None:
            self._producer = None
            return []
        if isinstance(batch, Exception):
            self._producer = None
            raise batch
        if self._producer.done() and ready.qsize() == 1:
            ready.get_nowait()  # the end marker: say now that nothing is left
            self._producer = None
        return batch

    def ack(self, folder: str, uidvalidity: int, uid: int, flag: str) -> None:
        """Note that a mail is to get ``flag``; stored by the next :meth:`flush`."""
        self._acks.setdefault((folder, uidvalidity, flag), set()).add(uid)

    async def flush(self) -> None:
        """Store every buffered flag: one ``UID STORE`` per folder and flag."""
        if self._acks:
            await self._flush(await self.connect())

    async def settle(self) -> None:
        """End the round: stop the background fetch and drop what it had ready (that
        mail is found again by the next round)."""
        producer = self._producer
        self._producer = self._ready = None
        if producer is not None:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)
        self._forget_round()

    def reset(self) -> None:
        """Forget the round at once (after an error); acknowledgements stay."""
        if self._producer is not None:
            self._producer.cancel()
        self._producer = self._ready = None
        self._forget_round()

    def _start_round(self, folders: Sequence[str]) -> None:
        self._forget_round()
        self._round = deque(folders)

    def _forget_round(self) -> None:
        self._round.clear()
        self._queue.clear()
        self._sizes.clear()
        self._folder = None

    async def _produce(self, ready: asyncio.Queue[list[FetchedMail] | Exception | None]) -> None:
        """Fetch the round batch by batch into ``ready``, storing acknowledgements
        between batches; waits while :data:`PREFETCH_DEPTH` batches are ready."""
        try:
            session = await self.connect()
            while True:
                if self._acks:
                    await self._flush(session)
                batch = await self._fetch_batch(session)
                if batch:
                    await ready.put(batch)
                if not (self._queue or self._round):
                    break
        except Exception as error:  # handed to poll(), which raises it to the runtime
            await ready.put(error)
        await ready.put(None)

    async def _flush(self, session: ImapSession) -> None:
        while self._acks:
            key = next(iter(self._acks))
            folder, uidvalidity, flag = key
            uids = self._acks.pop(key)
            try:
                async with session.using(folder) as state:
                    if state.uidvalidity != uidvalidity:
                        self.log.warning(
                            "%s changed UIDVALIDITY; %d handled mail(s) will be matched by "
                            "Message-ID when found again",
                            folder,
                            len(uids),
                        )
                        continue
                    await session.add_flags(sorted(uids), flag)
            except BaseException:
                # Kept for the next flush (after a reconnect, perhaps).
                self._acks.setdefault(key, set()).update(uids)
                raise

    async def _fetch_batch(self, session: ImapSession) -> list[FetchedMail]:
        """Up to one batch from the round, across folders, moving on as each runs dry."""
        batch: list[FetchedMail] = []
        room = self.limits.batch_size
        room_bytes = self.limits.batch_bytes
        while room > 0 and room_bytes > 0:
            if not self._queue:
                if not self._round:
                    break
                await self._search_next_folder(session)
                continue
            fetched = await self._fetch_some(session, room, room_bytes)
            batch.extend(fetched)
            room -= len(fetched)
            room_bytes -= sum(len(mail.raw) for mail in fetched)
        return batch

    async def _search_next_folder(self, session: ImapSession) -> None:
        folder = self._round.popleft()
        try:
            async with session.using(folder) as state:
                # NOOP first: a server may take in new mail only as a command ends (Dovecot
                # does), and a search before that would not see it until the next round.
                await session.noop()
                uids = await session.search_unseen(without_keywords=self.skip_keywords)
        except FolderMissingError as error:
            self.log.error("%s", error)
            return
        self._folder, self._uidvalidity = folder, state.uidvalidity
        self._queue = UidQueue(uids)
        self._sizes.clear()
        if uids:
            self.log.debug("%d unseen mail(s) in %s", len(uids), folder)

    async def _fetch_some(
        self, session: ImapSession, room: int, room_bytes: int
    ) -> list[FetchedMail]:
        """One chunk of the current folder: whole mails, and the start of oversized ones."""
        assert self._folder is not None
        async with session.using(self._folder) as state:
            if state.uidvalidity != self._uidvalidity:
                # The folder was recreated: its UIDs mean other mails now. Next round.
                self._queue.clear()
                return []
            await self._learn_sizes(session)
            whole, oversized = self._take(room, room_bytes)
            fetched = await session.fetch(whole)
            if oversized:
                fetched += await session.fetch_partial(oversized, self.limits.partial_bytes)
            if self._queue:
                # Now rather than before the next chunk: then that chunk's FETCH goes out
                # without waiting for an answer, before this chunk is handed over.
                await self._learn_sizes(session)
        fetched.sort(key=lambda mail: mail.uid)
        return fetched

    async def _learn_sizes(self, session: ImapSession) -> None:
        """Sizes for the UIDs at the head of the queue, a window at a time."""
        if self._queue.peek() in self._sizes:
            return
        window = list(self._queue.head(SIZE_WINDOW))
        self._sizes = await session.fetch_sizes(window)
        # A UID without a size was expunged meanwhile: nothing to fetch.
        asked = set(window)
        while self._queue and self._queue.peek() not in self._sizes and self._queue.peek() in asked:
            self._queue.pop()

    def _take(self, room: int, room_bytes: int) -> tuple[list[int], list[int]]:
        """Pop UIDs for one chunk: within ``room`` mails and ``room_bytes`` (the first
        mail always goes, so a large one makes a chunk of its own)."""
        whole: list[int] = []
        oversized: list[int] = []
        # Computed once here, not twice a mail through the properties.
        max_message_bytes = self.limits.max_message_bytes
        partial_bytes = self.limits.partial_bytes
        while self._queue and len(whole) + len(oversized) < room:
            uid = self._queue.peek()
            size = self._sizes.get(uid)
            if size is None:
                break  # outside the window sized so far: the next chunk asks
            cost = min(size, partial_bytes) if size > max_message_bytes else size
            if (whole or oversized) and cost > room_bytes:
                break
            self._queue.pop()
            del self._sizes[uid]
            room_bytes -= cost
            (oversized if size > max_message_bytes else whole).append(uid)
        return whole, oversized


def parse_fetched(
    raw: FetchedMail, *, max_body_bytes: int, max_attachment_bytes: int
) -> ParsedMail:
    """Parse a fetched mail; one fetched only in part gets its attachments rejected.

    The text of such a mail is read from its first part; its attachments were not
    downloaded, and the agent (and through the reply, the sender) is told so.
    """
    mail = parse_mail(
        raw.raw, max_body_bytes=max_body_bytes, max_attachment_bytes=max_attachment_bytes
    )
    if not raw.partial:
        return mail
    limit = message_limit(max_body_bytes, max_attachment_bytes)
    reason = (
        f"not downloaded: the mail is {raw.size} bytes, over the {limit}-byte limit for one "
        "mail (max_body_bytes + max_attachment_bytes, base64-encoded)"
    )
    rejected = [
        Attachment(item.filename, item.mime_type, 0, None, reason) for item in mail.attachments
    ]
    if not rejected:
        rejected = [Attachment("(attachments)", "application/octet-stream", 0, None, reason)]
    return attrs.evolve(mail, attachments=tuple(rejected))
