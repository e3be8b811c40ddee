"""Fixtures and config helpers for tests that log in with XOAUTH2.

A token service (token and introspection endpoints) and a Dovecot that checks tokens
with it, one of each per test module; a relay that takes only XOAUTH2 logins. Test
modules load the fixtures with ``pytest_plugins = ["tests.oauth_setup"]``.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator

import pytest
from email_setup import instance_keys

from spacebot_email.testing import (
    CertFiles,
    DovecotNotInstalled,
    DovecotServer,
    MailAccounts,
    SmtpRelay,
)
from spacebot_email.testing.token_service import TokenService

CLIENT_ID = "spacebot-tests"
CLIENT_SECRET = "cs-Secret-Of-The-Client-0451"


@pytest.fixture(scope="module")
def token_service() -> Iterator[TokenService]:
    """The token and introspection endpoints, for the whole module."""
    with TokenService(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as service:
        yield service


@pytest.fixture(scope="module")
def oauth_dovecot(token_service: TokenService, certs: CertFiles) -> Iterator[DovecotServer]:
    """A Dovecot that also lets users in with XOAUTH2 tokens the service vouches for."""
    try:
        server = DovecotServer(
            certs=certs, oauth2_introspection_url=token_service.introspection_url
        )
    except DovecotNotInstalled as missing:
        # As conftest's fixtures do: CI must not pass by skipping real-server tests.
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(str(missing), pytrace=False)
        pytest.skip(str(missing))
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def accounts(oauth_dovecot: DovecotServer) -> MailAccounts:
    return oauth_dovecot.new_accounts()


@pytest.fixture
def oauth_relay(make_smtp_relay, oauth_dovecot, token_service) -> SmtpRelay:
    """A submission server that takes only XOAUTH2 logins (after STARTTLS)."""
    return make_smtp_relay(
        deliver=oauth_dovecot.deliver, tls="starttls", token_checker=token_service.is_valid
    )


def oauth_keys(dovecot, relay, bot, certs, source: str) -> str:
    """The instance's keys with XOAUTH2 on both sides and no password at all."""
    keys = instance_keys(dovecot, relay, bot, certs).replace(
        f'imap_password = "{bot.password}"\n', ""
    )
    return keys + 'imap_auth = "xoauth2"\ntimeout_secs = 10\n' + source


def refresh_keys(token_service: TokenService, refresh_token: str) -> str:
    return (
        f'oauth2_token_url = "{token_service.token_url}"\n'
        f'oauth2_client_id = "{CLIENT_ID}"\n'
        f'oauth2_client_secret = "{CLIENT_SECRET}"\n'
        f'oauth2_refresh_token = "{refresh_token}"\n'
    )


def command_keys(*lines: str) -> str:
    """oauth2_token_command running Python that prints ``lines``."""
    script = "".join(f"print({line!r})\n" for line in lines)
    return f"oauth2_token_command = {json.dumps([sys.executable, '-c', script])}\n"
