"""Throw-away TLS certificates for the loopback test servers.

`make_certs` creates a fresh certificate authority (with trustme) and a server
certificate it signed for ``localhost`` and ``127.0.0.1``, and writes them as PEM files,
because Dovecot reads its certificate from files. A client trusts the servers through
`CertFiles.client_context`; a second call to `make_certs` gives certificates from an
unrelated CA, which that client must refuse.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

import attrs

DEFAULT_IDENTITIES: tuple[str, ...] = ("localhost", "127.0.0.1")
"""The names a test server's certificate is valid for."""


@attrs.frozen
class CertFiles:
    """A server certificate, its key and the CA that signed it, as PEM files.

    :ivar cert_chain: the server certificate followed by its chain.
    :ivar key: the server's private key (unencrypted).
    :ivar ca: the CA certificate a client must trust to accept the server.
    :ivar identities: the host names and IP addresses the certificate is valid for.
    """

    cert_chain: Path
    key: Path
    ca: Path
    identities: tuple[str, ...] = DEFAULT_IDENTITIES

    def client_context(self) -> ssl.SSLContext:
        """A client context that verifies servers against this CA only (not the system's).

        Hostname checking stays on, so connect with ``server_hostname`` set to one of
        `identities` (connecting to ``127.0.0.1`` does that by itself).
        """
        return ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))

    def server_context(self) -> ssl.SSLContext:
        """A server context presenting this certificate; it asks no client certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.cert_chain), str(self.key))
        return context


def make_certs(
    directory: Path,
    *,
    name: str = "server",
    identities: Sequence[str] = DEFAULT_IDENTITIES,
) -> CertFiles:
    """Create a new CA and a server certificate it signed, written into ``directory``.

    Every call makes a new, unrelated CA, so two calls give one trusted and one
    untrusted set of certificates (see `make_untrusted_certs`).

    :param directory: where to write the files; created if missing.
    :param name: file name prefix: ``<name>-chain.pem``, ``<name>-key.pem``,
        ``<name>-ca.pem``; use different names to keep several sets in one directory.
    :param identities: host names and IP addresses the server certificate is valid for.
    :return: the paths of the files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    # Imported here: trustme is a test dependency, and `spacebot demo` imports this
    # package's relay without ever making certificates.
    import trustme

    authority = trustme.CA(organization_name=f"spacebot test CA ({name})")
    leaf = authority.issue_cert(*identities)
    files = CertFiles(
        cert_chain=directory / f"{name}-chain.pem",
        key=directory / f"{name}-key.pem",
        ca=directory / f"{name}-ca.pem",
        identities=tuple(identities),
    )
    files.cert_chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    files.key.touch(mode=0o600)
    leaf.private_key_pem.write_to_path(str(files.key))
    authority.cert_pem.write_to_path(str(files.ca))
    return files


def make_untrusted_certs(directory: Path) -> CertFiles:
    """Certificates for the same names, signed by a CA no other certificate set trusts.

    A client built with another set's `CertFiles.client_context` must refuse a
    server presenting these, and a server presenting another set must be refused by a
    client built from these.
    """
    return make_certs(directory, name="untrusted")
