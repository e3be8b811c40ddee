"""Real mail servers on loopback, for tests and the demo.

- `make_certs` / `CertFiles`: throw-away TLS certificates (trustme) as PEM files.
- `DovecotServer`: a private Dovecot 2.3 with IMAP, IMAPS and LMTP on free ports, users
  added at runtime, and helpers to deliver, append and read mail.
- `SmtpRelay`: an aiosmtpd server with STARTTLS or implicit TLS and AUTH that records
  what it receives and delivers it on (into Dovecot, by default in the fixtures); with a
  token checker it takes XOAUTH2 logins too.
- `TokenService`: an OAuth2 token and introspection endpoint on loopback, for XOAUTH2
  logins to `DovecotServer(oauth2_introspection_url=...)` and `SmtpRelay`.

The pytest fixtures wiring these together live in the project's root ``conftest.py``.
"""

from spacebot_email.testing.certs import CertFiles, make_certs, make_untrusted_certs
from spacebot_email.testing.dovecot import (
    MISSING_HINT,
    Account,
    DovecotError,
    DovecotInstall,
    DovecotNotInstalled,
    DovecotServer,
    MailAccounts,
    StoredMessage,
    free_port,
    locate_dovecot,
)
from spacebot_email.testing.smtp_relay import Deliver, RelayedMessage, SmtpRelay, TlsMode
from spacebot_email.testing.token_service import TokenService

__all__ = [
    "MISSING_HINT",
    "Account",
    "CertFiles",
    "Deliver",
    "DovecotError",
    "DovecotInstall",
    "DovecotNotInstalled",
    "DovecotServer",
    "MailAccounts",
    "RelayedMessage",
    "SmtpRelay",
    "StoredMessage",
    "TlsMode",
    "TokenService",
    "free_port",
    "locate_dovecot",
    "make_certs",
    "make_untrusted_certs",
]
