"""Opening an IMAP connection: implicit TLS, STARTTLS, or plain TCP, up to the greeting.

Every client reads the server through :class:`.imap_protocol.LineProtocol`.
aioimaplib has no STARTTLS, so :class:`_StartTlsIMAP4` speaks it before handing the
upgraded connection over. Every way a connection fails becomes a
:class:`~spacebot_core.errors.ChannelError` in the words of the spec's troubleshooting
table, with a hint (a port that speaks the other kind of TLS, for instance).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Literal

import aioimaplib

from spacebot_core.errors import ChannelError
from spacebot_email.imap_protocol import LineProtocol

Security = Literal["tls", "starttls", "plain"]

TLS_FAILED_HINT = (
    "Gmail/Outlook use imap_use_tls = true on port 993; for a server with a private CA "
    "set tls_ca_file"
)
#: For a connection that broke or was closed: the adapter opens a new one.
RECONNECT_HINT = "spacebot reconnects by itself"


async def connect(
    host: str, port: int, security: Security, ssl_context: ssl.SSLContext | None, timeout: float
) -> aioimaplib.IMAP4:
    """A client connected to ``host:port``, secured as asked, that has read the greeting.

    :raises ChannelError: the server cannot be reached, the TLS handshake failed, or
        the server refused the session.
    """
    if security == "tls":
        client: aioimaplib.IMAP4 = _IMAP4(
            host, port, timeout=timeout, ssl_context=ssl_context or ssl.create_default_context()
        )
    elif security == "starttls":
        client = _StartTlsIMAP4(host, port, timeout=timeout, ssl_context=ssl_context)
    else:
        client = _IMAP4(host, port, timeout=timeout)
    try:
        await client.wait_hello_from_server()
    except ssl.SSLError as error:
        raise ChannelError(
            f"TLS handshake failed with IMAP {host}:{port} ({error.reason or error})",
            TLS_FAILED_HINT,
        ) from None
    except TimeoutError:
        raise ChannelError(
            f"cannot reach IMAP server {host}:{port}: no greeting within {timeout:g} s",
            _port_hint(security),
        ) from None
    except OSError as error:
        raise ChannelError(
            f"cannot reach IMAP server {host}:{port} ({error.strerror or error})",
            "check imap_host and imap_port, and that the server is running",
        ) from None
    except aioimaplib.AioImapException as error:
        raise ChannelError(f"IMAP server {host}:{port} refused the session: {error}") from None
    return client


def _port_hint(security: Security) -> str:
    if security == "tls":
        return "imap_use_tls = true needs an implicit-TLS port (usually 993)"
    return "check imap_host, imap_port and the TLS settings (993 is implicit TLS)"


class _IMAP4(aioimaplib.IMAP4):
    """aioimaplib's client on :class:`.imap_protocol.LineProtocol`, over TLS when given
    an SSL context."""

    def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = LineProtocol(local_loop, conn_lost_cb)
        self._client_task = local_loop.create_task(
            local_loop.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


class _StartTlsIMAP4(aioimaplib.IMAP4):
    """aioimaplib's client on a connection that was upgraded with STARTTLS first.

    aioimaplib has no STARTTLS. We speak the three lines of it ourselves (greeting,
    ``STARTTLS``, ``OK``), upgrade the socket, and hand the TLS transport to
    aioimaplib's protocol as if the server had just greeted it, which makes it ask for
    the capabilities again, as RFC 3501 requires after STARTTLS.
    """

    #: The stream the handshake ran on. Held for the connection's lifetime: a
    #: StreamWriter that is garbage-collected closes its transport, which aioimaplib
    #: now reads from.
    stream_writer: asyncio.StreamWriter | None = None

    def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:
        local_loop = loop if loop is not None else asyncio.get_running_loop()
        self.protocol = LineProtocol(local_loop, conn_lost_cb)
        context = ssl_context or ssl.create_default_context()
        self._client_task = local_loop.create_task(self._starttls_handshake(host, port, context))

    async def _starttls_handshake(self, host: str, port: int, context: ssl.SSLContext) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        self.stream_writer = writer
        greeting = await reader.readline()
        if not greeting.startswith(b"* OK"):
            writer.close()
            raise aioimaplib.Error(f"unexpected greeting {greeting[:80]!r}")
        writer.write(b"S1 STARTTLS\r\n")
        line = await reader.readline()
        while line.startswith(b"*"):
            line = await reader.readline()
        if not line.startswith(b"S1 OK"):
            writer.close()
            refusal = line.decode(errors="replace").strip()
            raise ssl.SSLError(f"the server refused STARTTLS: {refusal}")
        await writer.start_tls(context, server_hostname=host)
        transport = writer.transport
        transport.set_protocol(self.protocol)
        self.protocol.connection_made(transport)
        self.protocol.data_received(b"* OK TLS is active\r\n")
