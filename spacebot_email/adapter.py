"""The email adapter: one configured mailbox, answering mail in the same thread.

IMAP in (one long-lived connection per instance), SMTP out. A message is marked
``\\Seen`` only when the runtime acknowledges it, after its replies were accepted.

Mail is fetched in batches, the next while the runtime handles the current one, and
acknowledged in one ``UID STORE`` per batch (:mod:`.intake`); between rounds the
instance waits in IMAP IDLE where the server offers it. Replies go out over a small
pool of SMTP connections, each conversation's in order (:class:`.smtp_pool.SmtpPool`).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import attrs

from spacebot_core.adapter import Adapter
from spacebot_core.checks import CheckResult
from spacebot_core.errors import ChannelError
from spacebot_core.hookspecs import hookimpl
from spacebot_core.types import (
    TEXT_RESPONSES,
    AnyResponse,
    HistoryEntry,
    InboundMessage,
    OutboundResponse,
    SearchHit,
    SearchQuery,
)
from spacebot_email import compose, oauth2, search, sender_auth
from spacebot_email import settings as email_settings
from spacebot_email.diagnosis import check_instance
from spacebot_email.filters import is_own_address, sender_allowed
from spacebot_email.imap import FolderMissingError, ImapSession
from spacebot_email.imap_idle import IDLE_RENEW_SECS, idle_until_new_mail
from spacebot_email.imap_responses import FetchedMail
from spacebot_email.intake import Intake, Limits, parse_fetched
from spacebot_email.normalize import to_inbound
from spacebot_email.smtp import SmtpSender
from spacebot_email.smtp_pool import SmtpPool
from spacebot_email.thread_history import ThreadHistory

FAILED_KEYWORD = "$SpacebotFailed"
HELD_KEYWORD = "$SpacebotHeld"
SEEN = "\\Seen"
#: What each acknowledgement sets: handled mail is seen; mail the agent gave up on or a
#: reply cap held back stays unread for a person, marked with a keyword polls skip.
OUTCOME_FLAGS = {
    "answered": SEEN,
    "ignored": SEEN,
    "failed": FAILED_KEYWORD,
    "held": HELD_KEYWORD,
}


@attrs.define(eq=False)
class EmailAdapter(Adapter):
    """One email account: polls its folders over IMAP and replies over SMTP."""

    settings_type = email_settings.EmailSettings
    personal_keys = email_settings.PERSONAL_KEYS

    imap: ImapSession | None = attrs.field(default=None, init=False)
    smtp: SmtpSender | None = attrs.field(default=None, init=False)
    more_pending: bool = attrs.field(default=False, init=False)
    _intake: Intake = attrs.field(init=False, repr=False)
    _pool: SmtpPool | None = attrs.field(default=None, init=False, repr=False)
    #: When every folder is due to be searched again (time.monotonic()).
    _next_full_poll: float = attrs.field(default=0.0, init=False)
    #: Whether the last wait ended with new mail announced in the folder idled on.
    _push_only: bool = attrs.field(default=False, init=False)
    _wait_mode_logged: bool = attrs.field(default=False, init=False)
    _tls_context: ssl.SSLContext | None = attrs.field(default=None, init=False, repr=False)
    _token_source: oauth2.TokenSource | None = attrs.field(default=None, init=False, repr=False)
    _noted_rejections: set[str] = attrs.field(factory=set, init=False)
    _thread_history: ThreadHistory | None = attrs.field(default=None, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        settings = self.settings
        self._intake = Intake(
            connect=self.imap_session,
            limits=Limits(
                batch_size=settings.fetch_batch_size,
                max_body_bytes=settings.max_body_bytes,
                max_attachment_bytes=settings.max_attachment_bytes,
            ),
            skip_keywords=(FAILED_KEYWORD, HELD_KEYWORD),
            log=self.log,
        )

    @classmethod
    def finalize_settings(cls, settings: Any, runtime_key: str) -> Any:
        """Presets, derived defaults and safety checks (see :mod:`.settings`)."""
        return email_settings.finalize(settings, runtime_key)

    @property
    def poll_interval(self) -> float:
        """Seconds between polls."""
        return float(self.settings.poll_interval_secs)

    def tls_context(self) -> ssl.SSLContext:
        """The context that verifies servers: the system's CAs, or ``tls_ca_file``."""
        if self._tls_context is None:
            try:
                self._tls_context = ssl.create_default_context(cafile=self.settings.tls_ca_file)
            except (OSError, ssl.SSLError) as error:
                raise ChannelError(
                    f"cannot load tls_ca_file {self.settings.tls_ca_file!r} ({error})",
                    "set tls_ca_file to a PEM file holding the CA certificate",
                ) from None
        return self._tls_context

    def token_source(self) -> oauth2.TokenSource:
        """Where XOAUTH2 logins get their access token; one for IMAP and SMTP together."""
        if self._token_source is None:
            settings = self.settings
            url = settings.oauth2_token_url or ""
            self._token_source = oauth2.token_source(
                token_command=settings.oauth2_token_command,
                token_url=settings.oauth2_token_url,
                client_id=settings.oauth2_client_id,
                client_secret=settings.oauth2_client_secret,
                refresh_token=settings.oauth2_refresh_token,
                scope=settings.oauth2_scope,
                ssl_context=self.tls_context() if url.startswith("https:") else None,
                timeout=settings.timeout_secs,
            )
        return self._token_source

    async def imap_session(self) -> ImapSession:
        """The instance's IMAP connection, logged in; opened on first use."""
        if self.imap is None:
            self.imap = await self.open_imap_session()
        return self.imap

    async def open_imap_session(self) -> ImapSession:
        """A new IMAP connection to the instance's account, logged in; the caller closes
        it (the instance's own is :meth:`imap_session`)."""
        settings = self.settings
        return await ImapSession.open(
            host=settings.imap_host,
            port=settings.imap_port,
            security=settings.imap_security,
            username=settings.imap_username,
            password=settings.imap_password,
            ssl_context=self.tls_context() if settings.imap_security != "plain" else None,
            timeout=settings.timeout_secs,
            token_source=self.token_source() if settings.imap_auth == "xoauth2" else None,
        )

    def smtp_sender(self) -> SmtpSender:
        """The instance's SMTP settings, ready to send."""
        if self.smtp is None:
            settings = self.settings
            self.smtp = SmtpSender(
                host=settings.smtp_host,
                port=settings.smtp_port,
                security=settings.smtp_security,
                username=settings.smtp_username,
                password=settings.smtp_password,
                tls_context=self.tls_context() if settings.smtp_security != "plain" else None,
                timeout=settings.timeout_secs,
                token_source=self.token_source() if settings.smtp_auth == "xoauth2" else None,
            )
        return self.smtp

    def smtp_pool(self) -> SmtpPool:
        """The SMTP connections replies go out on, kept open between replies."""
        if self._pool is None:
            self._pool = SmtpPool(self.smtp_sender(), size=self.settings.smtp_pool_size)
        return self._pool

    @hookimpl
    async def spacebot_start(self) -> None:
        """Log in to IMAP; SMTP connects when there is something to send."""
        await self.imap_session()
        self.log.info(
            "[%s] connected to %s as %s",
            self.runtime_key,
            self.settings.imap_host,
            self.settings.imap_username,
        )

    @hookimpl
    async def spacebot_stop(self) -> None:
        """Store the acknowledgements still buffered, log out of IMAP, close SMTP."""
        await self._intake.settle()
        if self.imap is not None and not self.imap.lost:
            try:
                await self._intake.flush()
            except ChannelError as error:
                # Kept for the next start; until then that mail is found and recognised.
                self.log.warning("[%s] could not mark handled mail: %s", self.runtime_key, error)
        self._intake.reset()
        if self.imap is not None:
            imap, self.imap = self.imap, None
            await imap.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @hookimpl
    async def spacebot_wait(self) -> None:
        """Poll again at once while a backlog is being worked through; else store the
        acknowledgements, then wait in IDLE for new mail where the server offers it,
        or sleep one poll interval."""
        if self.more_pending:
            return
        session = await self.imap_session()
        await self._intake.flush()
        if self.settings.idle and session.has_capability("IDLE"):
            await self._idle(session)
        else:
            self._log_wait_mode("polling every %d s", self.settings.poll_interval_secs)
            await asyncio.sleep(self.poll_interval)

    async def _idle(self, session: ImapSession) -> None:
        """IDLE on the first folder until new mail comes, the other folders are due, or
        IDLE must be renewed (see :data:`.imap_idle.IDLE_RENEW_SECS`)."""
        folders = self.settings.folders
        period = float(IDLE_RENEW_SECS)
        if len(folders) > 1:
            period = min(period, self._next_full_poll - time.monotonic())
        if period <= 0:
            return
        self._log_wait_mode("waiting in IDLE on %s for new mail", folders[0])
        try:
            async with session.using(folders[0]):
                self._push_only = await idle_until_new_mail(session, period)
        except FolderMissingError as error:
            self.log.error("[%s] %s", self.runtime_key, error)
            await asyncio.sleep(min(period, self.poll_interval))

    def _log_wait_mode(self, text: str, detail: object) -> None:
        if not self._wait_mode_logged:
            self._wait_mode_logged = True
            self.log.info("[%s] " + text, self.runtime_key, detail)

    @hookimpl
    async def spacebot_poll(self) -> list[FetchedMail]:
        """The next batch of unseen mail: at most ``fetch_batch_size`` mails, from every
        folder in order (after a push in IDLE, from the folder idled on), fetched in the
        background while the runtime handled the batch before."""
        folders = () if self._intake.more_pending else self._due_folders()
        batch = await self._intake.poll(folders)
        self.more_pending = self._intake.more_pending
        return batch

    def _due_folders(self) -> list[str]:
        """Every folder once the poll interval is up; after a push, the folder idled on."""
        now = time.monotonic()
        folders = list(self.settings.folders)
        push_only, self._push_only = self._push_only, False
        if push_only and now < self._next_full_poll:
            return folders[:1]
        self._next_full_poll = now + self.poll_interval
        return folders

    @hookimpl
    def spacebot_normalize_inbound(self, raw: FetchedMail) -> InboundMessage:
        """Parse the raw mail (never raises) into an InboundMessage."""
        mail = parse_fetched(
            raw,
            max_body_bytes=self.settings.max_body_bytes,
            max_attachment_bytes=self.settings.max_attachment_bytes,
        )
        message = to_inbound(
            mail,
            runtime_key=self.runtime_key,
            folder=raw.folder,
            uid=raw.uid,
            received_at=datetime.now(UTC),
            strip_quoted=self.settings.strip_quoted,
        )
        verdict = sender_auth.verify(
            raw.raw, message.sender_id, self.settings.trusted_authserv_id
        ).as_metadata()
        return attrs.evolve(
            message,
            metadata={
                **message.metadata,
                "uidvalidity": raw.uidvalidity,
                "sender_auth": verdict,
                **({"partial_download": True, "size": raw.size} if raw.partial else {}),
            },
        )

    @hookimpl
    def spacebot_filter_inbound(self, message: InboundMessage) -> str | None:
        """Auto-generated mail, our own mail, and senders not allowed are not answered.

        With ``allowed_senders`` (or ``sender_auth = "on"``), an allowed sender must also
        be vouched for by the receiving server (:mod:`.sender_auth`): a From header
        alone is what any forger writes.
        """
        metadata = message.metadata
        sender = message.sender_id
        if not sender:
            return "no sender address"
        if is_own_address(sender, self.settings.own_addresses):
            return "sent by this bot's own address"
        if any(
            is_own_address(loop, self.settings.own_addresses) for loop in metadata.get("x_loop", [])
        ):
            return "carries this bot's X-Loop header"
        if self.settings.filter_auto_generated and metadata.get("auto_generated"):
            return str(metadata["auto_generated"])
        if not sender_allowed(sender, self.settings.allowed_senders):
            return "sender is not in allowed_senders"
        verdict = metadata.get("sender_auth") or {}
        if self.settings.sender_auth_required and not verdict.get("authenticated"):
            return f"sender not authenticated: {verdict.get('reason', 'no verdict')}"
        return _reply_problem(message)

    @hookimpl
    async def spacebot_send(
        self, message: InboundMessage, response: AnyResponse, delivery_id: str
    ) -> None:
        """Send one response as a reply threaded under ``message``; others are no-ops."""
        content = self._reply_content(message, response)
        if content is None:
            return
        text, files = content
        metadata = message.metadata
        recipient = metadata.get("reply_to") or metadata.get("from") or message.sender_id
        mail = compose.compose_reply(
            from_address=self.settings.from_address,
            from_name=self.settings.from_name,
            to=recipient,
            to_name=metadata.get("from_name") if recipient == metadata.get("from") else None,
            original_subject=metadata.get("subject", ""),
            original_message_id=message.id,
            original_references=metadata.get("references", []),
            text=text,
            attachments=files,
            message_id=compose.reply_message_id(
                delivery_id, self.settings.from_address, message.conversation_id
            ),
        )
        # The bot's own address as a second envelope recipient (no header names it):
        # the copy it receives proves, after a crash, that this reply went out.
        copy = [self.settings.from_address] if self.settings.self_copy else []
        await self._deliver(mail, [recipient, *copy], conversation_id=message.conversation_id)
        self.log.info(
            "[%s] replied to %s (%s) as %s",
            self.runtime_key,
            recipient,
            message.id,
            mail["Message-ID"],
        )

    @hookimpl
    async def spacebot_broadcast(self, target: str, response: AnyResponse) -> None:
        """Send a fresh mail to ``target`` (``spacebot send email:alice@example.com``)."""
        content = self._outgoing(response)
        if content is None:
            raise ChannelError(f"email cannot send a {type(response).__name__} on its own")
        text, files = content
        mail = compose.compose_message(
            from_address=self.settings.from_address,
            from_name=self.settings.from_name,
            to=target,
            subject=None,
            text=text,
            attachments=files,
            message_id=compose.new_message_id(self.settings.from_address),
        )
        await self._deliver(mail, [target])

    async def _deliver(
        self, mail: EmailMessage, recipients: list[str], *, conversation_id: str | None = None
    ) -> None:
        """Send ``mail``: a reply (``conversation_id`` given) over the pool, after the
        conversation's earlier replies; a broadcast over a connection of its own."""
        sender = self.smtp_sender()
        sender.ensure_transport_allowed()
        if conversation_id is None:
            await sender.send(mail, sender=self.settings.from_address, recipients=recipients)
            return
        await self.smtp_pool().send(
            mail,
            sender=self.settings.from_address,
            recipients=recipients,
            order_key=conversation_id,
        )

    @hookimpl
    async def spacebot_thread_history(
        self, message: InboundMessage, known: Sequence[HistoryEntry]
    ) -> list[HistoryEntry]:
        """The thread's earlier mails the bot never saw, from the configured folders and
        the Sent folder, oldest first (``thread_history_max``; see :mod:`.thread_history`)."""
        if self._thread_history is None:
            self._thread_history = ThreadHistory(self.imap_session, self.settings, self.runtime_key)
        return await self._thread_history.earlier(message, known)

    @hookimpl
    async def spacebot_search(self, query: SearchQuery) -> list[SearchHit]:
        """The mail matching ``query`` in its folders (default: the configured ones),
        newest first, on a short-lived connection of its own (see :mod:`.search`)."""
        return await search.search_mailbox(self, query)

    @hookimpl
    async def spacebot_confirm_sent(self, message: InboundMessage, delivery_id: str) -> bool:
        """Whether the bot's own copy of this reply arrived: then the reply went out."""
        if not self.settings.self_copy:
            return False
        reply_id = compose.reply_message_id(
            delivery_id, self.settings.from_address, message.conversation_id
        )
        session = await self.imap_session()
        # using(): a background fetch must not run in INBOX's place (see .intake).
        async with session.using("INBOX"):
            found = await session.search_header("Message-ID", reply_id)
        return bool(found)

    @hookimpl
    async def spacebot_requeue(self, message_id: str, metadata: dict[str, Any]) -> None:
        """Take the failed and held keywords off a message so that polls find it again."""
        session = await self.imap_session()
        async with session.using(metadata["folder"]) as state:
            if state.uidvalidity != metadata.get("uidvalidity"):
                self.log.warning(
                    "[%s] %s changed UIDVALIDITY; %s is found by a new poll anyway",
                    self.runtime_key,
                    metadata["folder"],
                    message_id,
                )
                return
            await session.remove_flags([metadata["uid"]], f"{FAILED_KEYWORD} {HELD_KEYWORD}")

    def _reply_content(
        self, message: InboundMessage, response: AnyResponse
    ) -> tuple[str, list[compose.OutgoingFile]] | None:
        content = self._outgoing(response)
        rejected = message.metadata.get("rejected_attachments") or []
        if content is None or not rejected or message.id in self._noted_rejections:
            return content
        self._noted_rejections.add(message.id)
        text, files = content
        notes = [f"- {item['filename']}: {item['reason']}" for item in rejected]
        note = "\n".join(["", "", "Attachments I could not accept:", *notes])
        return text + note, files

    def _outgoing(self, response: AnyResponse) -> tuple[str, list[compose.OutgoingFile]] | None:
        """The text and files of a response; None for what email cannot show."""
        if isinstance(response, TEXT_RESPONSES):
            return response.text, []
        if not isinstance(response, OutboundResponse.File):
            return None
        caption = response.caption or ""
        limit = self.settings.max_attachment_bytes
        if len(response.data) > limit:
            self.log.error(
                "[%s] attachment %s not sent: %d bytes is over max_attachment_bytes = %d; reduce "
                "the file size or increase max_attachment_bytes",
                self.runtime_key,
                response.filename,
                len(response.data),
                limit,
            )
            note = (
                f"[The attachment {response.filename} ({len(response.data)} bytes) was not sent: "
                f"it is over the {limit}-byte limit.]"
            )
            return (f"{caption}\n\n{note}" if caption else note), []
        attachment = compose.OutgoingFile(response.filename, response.data, response.mime_type)
        return caption, [attachment]

    @hookimpl
    async def spacebot_ack(self, message: InboundMessage, outcome: str) -> None:
        """Mark handled mail ``\\Seen`` (mail left for a person: a keyword instead).

        Buffered, and stored for the whole batch in one command before the next fetch,
        before waiting and at stop (see :mod:`.intake`): called after the message's
        replies were accepted, so no mail is marked before its own replies went out.
        """
        metadata = message.metadata
        self._intake.ack(
            metadata["folder"],
            metadata.get("uidvalidity", 0),
            metadata["uid"],
            OUTCOME_FLAGS[outcome],
        )

    @hookimpl
    async def spacebot_check(self) -> list[CheckResult]:
        """Log in, open each folder, check flags can be set, and try SMTP."""
        return await check_instance(self)


def _reply_problem(message: InboundMessage) -> str | None:
    """Why no reply to ``message`` could ever be built, or None.

    A mail whose reply address compose refuses (``"a b"@example.com``) or whose subject
    never settles (encoded words nested a dozen deep) would fail at every send, and
    the runtime would retry it before the mail behind it at every poll. Such a mail is
    ignored instead, with the reason. The check uses the values
    :meth:`EmailAdapter.spacebot_send` uses, and compose remembers them for it.
    """
    metadata = message.metadata
    recipient = metadata.get("reply_to") or metadata.get("from") or message.sender_id
    try:
        compose.check_reply(
            to=recipient,
            to_name=metadata.get("from_name") if recipient == metadata.get("from") else None,
            original_subject=metadata.get("subject", ""),
        )
    except ChannelError as error:
        reason = " ".join(str(error.args[0]).split())
        return f"no reply can be built for it: {reason[:200]}"
    return None
