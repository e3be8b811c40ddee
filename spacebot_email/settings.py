"""The settings of one email instance: every key of the spec, with its default.

Keys left out are ``None`` until :func:`finalize` fills them, so that a provider
preset (``provider = "gmail"``) fills only what the user did not write, and so that
derived defaults (SMTP credentials from IMAP ones, ``from_address`` from the SMTP
username) come from the same instance, never from another.
"""

from __future__ import annotations

import logging
import urllib.parse
from typing import Literal

import attrs

from spacebot_core.errors import ConfigError
from spacebot_email.smtp import is_loopback_host

log = logging.getLogger(__name__)

MIN_POLL_INTERVAL_SECS = 5

#: The spec's table of common providers: hosts, ports and TLS flags.
PROVIDERS: dict[str, dict[str, object]] = {
    "gmail": {
        "imap_host": "imap.gmail.com",
        "smtp_host": "smtp.gmail.com",
    },
    "outlook": {
        "imap_host": "outlook.office365.com",
        "smtp_host": "smtp.office365.com",
    },
    "fastmail": {
        "imap_host": "imap.fastmail.com",
        "smtp_host": "smtp.fastmail.com",
    },
}
PROVIDER_TRANSPORT = {
    "imap_port": 993,
    "imap_use_tls": True,
    "smtp_port": 587,
    "smtp_use_starttls": True,
}
#: What is known of each provider's sender authentication and OAuth2 endpoints. Gmail
#: writes "Authentication-Results: mx.google.com;"; Fastmail names the receiving host
#: (mx1.messagingengine.com ...), matched as a subdomain; Microsoft writes no
#: authserv-id at all, so Outlook has no pin.
PROVIDER_SECURITY: dict[str, dict[str, object]] = {
    "gmail": {
        "trusted_authserv_id": "mx.google.com",
        "oauth2_token_url": "https://oauth2.googleapis.com/token",
    },
    "outlook": {
        "oauth2_token_url": "https://login.microsoftonline.com/common/oauth2/v2.0/token",
        "oauth2_scope": "https://outlook.office.com/IMAP.AccessAsUser.All "
        "https://outlook.office.com/SMTP.Send offline_access",
    },
    "fastmail": {
        "trusted_authserv_id": "messagingengine.com",
    },
}

#: Keys that belong to one account: a named instance never inherits them.
PERSONAL_KEYS = frozenset(
    {
        "imap_username",
        "imap_password",
        "smtp_username",
        "smtp_password",
        "from_address",
        "oauth2_refresh_token",
        "oauth2_token_command",
    }
)

Security = Literal["tls", "starttls", "plain"]


@attrs.frozen
class EmailSettings:
    """One instance's settings, as written in ``[messaging.email]`` (see the spec)."""

    imap_username: str | None = None
    imap_password: str | None = attrs.field(default=None, repr=False)
    imap_host: str | None = None
    imap_port: int | None = None
    imap_use_tls: bool | None = None
    imap_use_starttls: bool | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_username: str | None = None
    smtp_password: str | None = attrs.field(default=None, repr=False)
    smtp_use_starttls: bool | None = None
    smtp_use_tls: bool | None = None
    from_address: str | None = None
    from_name: str = "Spacebot"
    provider: Literal["gmail", "outlook", "fastmail"] | None = None
    tls_ca_file: str | None = None
    poll_interval_secs: int = 60
    folders: list[str] = attrs.Factory(lambda: ["INBOX"])
    allowed_senders: list[str] = attrs.Factory(list)
    filter_auto_generated: bool = True
    max_body_bytes: int = 102400
    max_attachment_bytes: int = 10485760
    self_copy: bool = True
    timeout_secs: float = 30.0
    fetch_batch_size: int = 50
    strip_quoted: bool = True
    #: How many earlier mails of a thread the agent gets from the mailbox (configured
    #: folders and Sent) when the bot never saw them; 0: none.
    thread_history_max: int = 10
    #: Wait in IMAP IDLE on the first folder when the server offers it (else poll).
    idle: bool = True
    #: SMTP connections kept open and used at once for replies.
    smtp_pool_size: int = 2
    sender_auth: Literal["auto", "on", "off"] = "auto"
    trusted_authserv_id: str | None = None
    imap_auth: Literal["password", "xoauth2"] = "password"
    smtp_auth: Literal["password", "xoauth2"] | None = None
    oauth2_token_url: str | None = None
    oauth2_client_id: str | None = None
    oauth2_client_secret: str | None = attrs.field(default=None, repr=False)
    oauth2_refresh_token: str | None = attrs.field(default=None, repr=False)
    oauth2_scope: str | None = None
    oauth2_token_command: list[str] | None = attrs.field(default=None, repr=False)

    @property
    def sender_auth_required(self) -> bool:
        """Whether a mail must be vouched for by the receiving server to be answered.

        ``auto`` (the default) requires it whenever ``allowed_senders`` is set: an
        allow-list that anyone can pass by writing a From header protects nothing.
        """
        if self.sender_auth == "auto":
            return bool(self.allowed_senders)
        return self.sender_auth == "on"

    @property
    def uses_xoauth2(self) -> bool:
        """Whether IMAP or SMTP logs in with an OAuth2 token."""
        return "xoauth2" in (self.imap_auth, self.smtp_auth)

    @property
    def imap_security(self) -> Security:
        """How the IMAP connection is secured."""
        if self.imap_use_tls:
            return "tls"
        return "starttls" if self.imap_use_starttls else "plain"

    @property
    def smtp_security(self) -> Security:
        """How the SMTP connection is secured."""
        if self.smtp_use_tls:
            return "tls"
        return "starttls" if self.smtp_use_starttls else "plain"

    @property
    def own_addresses(self) -> tuple[str, ...]:
        """The bot's own addresses: mail from them is never answered."""
        found = (self.from_address, self.smtp_username, self.imap_username)
        return tuple(dict.fromkeys(a.lower() for a in found if a and "@" in a))


def finalize(settings: EmailSettings, runtime_key: str) -> EmailSettings:
    """Fill presets and derived defaults, then check what cannot work.

    :raises ConfigError: a required key is missing, the TLS flags contradict each other,
        or plaintext would go to a host that is not loopback.
    """
    settings = _apply_provider(settings)
    settings = _apply_transport_defaults(settings)
    settings = attrs.evolve(
        settings,
        smtp_username=settings.smtp_username or settings.imap_username,
        smtp_password=settings.smtp_password or settings.imap_password,
        smtp_auth=settings.smtp_auth or settings.imap_auth,
    )
    settings = attrs.evolve(settings, from_address=settings.from_address or settings.smtp_username)
    if settings.poll_interval_secs < MIN_POLL_INTERVAL_SECS:
        log.warning(
            "[%s] poll_interval_secs = %d is below the minimum; using %d s",
            runtime_key,
            settings.poll_interval_secs,
            MIN_POLL_INTERVAL_SECS,
        )
        settings = attrs.evolve(settings, poll_interval_secs=MIN_POLL_INTERVAL_SECS)
    _check_required(settings)
    _check_oauth2(settings)
    _check_plaintext(settings)
    _check_limits(settings)
    return settings


def _apply_provider(settings: EmailSettings) -> EmailSettings:
    if settings.provider is None:
        return settings
    preset = {
        **PROVIDERS[settings.provider],
        **PROVIDER_TRANSPORT,
        **PROVIDER_SECURITY.get(settings.provider, {}),
    }
    unset = {key: value for key, value in preset.items() if getattr(settings, key) is None}
    return attrs.evolve(settings, **unset)


def _apply_transport_defaults(settings: EmailSettings) -> EmailSettings:
    """IMAP: implicit TLS on 993 unless STARTTLS is asked for. SMTP: STARTTLS on 587,
    or implicit TLS when asked for or when the port is 465."""
    if settings.imap_use_tls and settings.imap_use_starttls:
        raise ConfigError(
            "imap_use_tls and imap_use_starttls: choose one (993: tls, 143: starttls)"
        )
    if settings.smtp_use_tls and settings.smtp_use_starttls:
        raise ConfigError(
            "smtp_use_tls and smtp_use_starttls: choose one (465: tls, 587: starttls)"
        )
    imap_tls = settings.imap_use_tls
    if imap_tls is None:
        imap_tls = not settings.imap_use_starttls
    smtp_tls = settings.smtp_use_tls
    if smtp_tls is None:
        smtp_tls = settings.smtp_port == 465 and settings.smtp_use_starttls is None
    smtp_starttls = settings.smtp_use_starttls
    if smtp_starttls is None:
        smtp_starttls = not smtp_tls
    settings = attrs.evolve(
        settings,
        imap_use_tls=imap_tls,
        imap_use_starttls=bool(settings.imap_use_starttls),
        smtp_use_tls=smtp_tls,
        smtp_use_starttls=smtp_starttls,
    )
    imap_port = settings.imap_port or (993 if imap_tls else 143)
    smtp_port = settings.smtp_port or {"tls": 465, "starttls": 587}.get(settings.smtp_security, 25)
    return attrs.evolve(settings, imap_port=imap_port, smtp_port=smtp_port)


def _check_required(settings: EmailSettings) -> None:
    for key in ("imap_host", "smtp_host"):
        if not getattr(settings, key):
            raise ConfigError(
                f'{key}: is required (or set provider = "gmail", "outlook" or "fastmail")'
            )
    if not settings.imap_username:
        raise ConfigError("imap_username: is required")
    if settings.imap_auth == "password" and not settings.imap_password:
        raise ConfigError('imap_password: is required (or set imap_auth = "xoauth2")')
    if settings.smtp_auth == "password" and settings.smtp_username and not settings.smtp_password:
        raise ConfigError('smtp_password: is required when smtp_auth = "password"')
    if not settings.from_address or "@" not in settings.from_address:
        raise ConfigError("from_address: is required (an address such as bot@example.com)")
    if not settings.folders:
        raise ConfigError('folders: needs at least one folder, such as ["INBOX"]')


def _check_oauth2(settings: EmailSettings) -> None:
    """XOAUTH2 needs exactly one token source: a command, or a complete refresh flow."""
    if not settings.uses_xoauth2:
        return
    refresh_keys = ("oauth2_token_url", "oauth2_client_id", "oauth2_refresh_token")
    if settings.oauth2_token_command is not None:
        if not settings.oauth2_token_command or not all(settings.oauth2_token_command):
            raise ConfigError(
                'oauth2_token_command: must name a program, such as ["oama", "access", '
                '"bot@example.com"]'
            )
        if settings.oauth2_refresh_token:
            raise ConfigError("oauth2_token_command: choose it or oauth2_refresh_token, not both")
        return
    for key in refresh_keys:
        if not getattr(settings, key):
            raise ConfigError(
                f'{key}: is required for imap_auth/smtp_auth = "xoauth2" (or set '
                "oauth2_token_command to a program that prints an access token)"
            )
    url = urllib.parse.urlsplit(settings.oauth2_token_url or "")
    host = url.hostname or ""
    if url.scheme not in ("https", "http") or not host:
        raise ConfigError("oauth2_token_url: must be an https:// address")
    if url.scheme == "http" and not is_loopback_host(host):
        raise ConfigError(
            f"oauth2_token_url: plaintext http to {host} is refused (it would send the "
            "refresh token in the clear); use https"
        )


def _check_plaintext(settings: EmailSettings) -> None:
    if settings.imap_security == "plain" and not is_loopback_host(settings.imap_host or ""):
        raise ConfigError(
            f"imap_use_tls: plaintext IMAP to {settings.imap_host} is refused; set "
            "imap_use_tls = true (port 993) or imap_use_starttls = true (port 143); "
            "plaintext is only allowed to a loopback host"
        )
    if settings.smtp_security == "plain" and not is_loopback_host(settings.smtp_host or ""):
        raise ConfigError(
            f"smtp_use_starttls: plaintext SMTP to {settings.smtp_host} is refused; set "
            "smtp_use_starttls = true (port 587) or smtp_use_tls = true (port 465); "
            "plaintext is only allowed to a loopback host"
        )


def _check_limits(settings: EmailSettings) -> None:
    for key in ("max_body_bytes", "max_attachment_bytes", "fetch_batch_size", "smtp_pool_size"):
        if getattr(settings, key) <= 0:
            raise ConfigError(f"{key}: must be greater than 0")
    if settings.timeout_secs <= 0:
        raise ConfigError("timeout_secs: must be greater than 0")
    if settings.thread_history_max < 0:
        raise ConfigError("thread_history_max: must be 0 (off) or more")
