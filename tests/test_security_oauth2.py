"""XOAUTH2: the bot logs in to IMAP and SMTP with OAuth2 access tokens.

Against real servers: Dovecot's ``oauth2`` passdb and an aiosmtpd relay that accepts
XOAUTH2, both checking tokens with a token service on loopback, which is also the
token endpoint the bot refreshes its access token at.
"""

from __future__ import annotations

import json
import sys
import time

import pytest
from email_setup import mail_from, run_bot_once, write_config

from spacebot_core.config import load_config
from spacebot_core.errors import ChannelError, ConfigError
from spacebot_core.plugins import load_plugins
from spacebot_email.adapter import EmailAdapter
from spacebot_email.oauth2 import OAuth2Error, RefreshTokenFlow, TokenCommand
from tests.oauth_setup import CLIENT_ID, CLIENT_SECRET, command_keys, oauth_keys, refresh_keys

pytest_plugins = ["tests.oauth_setup"]


def adapter_for(config_path) -> EmailAdapter:
    host = load_plugins()
    config = load_config(config_path, host.adapter_classes(), host.agent_classes())
    return EmailAdapter("email", config.instances[0].settings)


# -- end to end ------------------------------------------------------------------------


async def test_whole_exchange_logs_in_with_one_refreshed_token_on_imap_and_smtp(
    tmp_path, oauth_dovecot, accounts, oauth_relay, token_service, certs
):
    bot, alice = accounts.bot, accounts.alice
    refresh_token = token_service.issue_refresh_token(bot.address)
    grants_before = len(token_service.grants)
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + oauth_keys(oauth_dovecot, oauth_relay, bot, certs, "")
        + refresh_keys(token_service, refresh_token),
    )
    _, raw = mail_from(alice, bot, "Token day", "Can you read this?")
    oauth_dovecot.deliver(bot.address, raw)

    assert await run_bot_once(config) == []

    [reply] = oauth_dovecot.fetch_all(alice)
    assert b"Subject: Re: Token day" in reply.raw
    grants = token_service.grants[grants_before:]
    assert [(g.ok, g.client_id) for g in grants] == [(True, CLIENT_ID)]  # one for both
    assert {relayed.login for relayed in oauth_relay.received} == {bot.address}
    assert "method=XOAUTH2" in oauth_dovecot.log_path.read_text()


async def test_token_command_gives_the_token_and_check_reports_xoauth2(
    tmp_path, oauth_dovecot, accounts, oauth_relay, token_service, certs
):
    bot = accounts.bot
    token = token_service.issue_access_token(bot.address)
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + oauth_keys(oauth_dovecot, oauth_relay, bot, certs, command_keys(token)),
    )

    results = await adapter_for(config).spacebot_check()

    assert all(result.ok for result in results), [result.line() for result in results]
    assert any("XOAUTH2" in result.step for result in results)


async def test_refused_token_is_authentication_failed_at_once_not_a_hang(
    tmp_path, oauth_dovecot, accounts, oauth_relay, certs
):
    bot = accounts.bot
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + oauth_keys(oauth_dovecot, oauth_relay, bot, certs, command_keys("at-not-a-real-token")),
    )
    adapter = adapter_for(config)
    started = time.monotonic()

    with pytest.raises(ChannelError, match="Authentication failed") as refused:
        await adapter.imap_session()
    with pytest.raises(ChannelError, match="SMTP authentication failed") as smtp_refused:
        async with adapter.smtp_sender().session():
            pass

    # timeout_secs is 10: a client that waited for the server would take that long.
    assert time.monotonic() - started < 5
    for error in (refused.value, smtp_refused.value):
        assert "OAuth2 token" in (error.hint or "")
        assert "at-not-a-real-token" not in str(error) + repr(error)


async def test_server_without_xoauth2_is_named_as_such(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    config = write_config(
        tmp_path,
        "[messaging.email]\n" + oauth_keys(dovecot, smtp_relay, bot, certs, command_keys("tok")),
    )

    with pytest.raises(ChannelError, match="does not offer XOAUTH2"):
        await adapter_for(config).imap_session()


# -- the refresh flow against the token endpoint ----------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_access_token_is_refreshed_before_it_expires(token_service):
    token_service.access_token_lifetime = 600
    try:
        clock = FakeClock()
        flow = RefreshTokenFlow(
            token_service.token_url,
            CLIENT_ID,
            token_service.issue_refresh_token("bot@example.com"),
            client_secret=CLIENT_SECRET,
            clock=clock,
        )
        first = await flow.token()
        clock.now += 200
        assert await flow.token() == first  # cached: no request
        clock.now += 150  # 350 s of 600: inside the refresh margin
        second = await flow.token()
    finally:
        token_service.access_token_lifetime = 3600

    assert second != first
    # The old token had not expired yet when it was replaced: refreshed *before* expiry.
    assert token_service.is_valid("bot@example.com", first)
    assert token_service.is_valid("bot@example.com", second)


async def test_invalidated_token_is_refreshed_on_the_next_login(token_service):
    flow = RefreshTokenFlow(
        token_service.token_url,
        CLIENT_ID,
        token_service.issue_refresh_token("bot@example.com"),
        client_secret=CLIENT_SECRET,
    )
    first = await flow.token()
    flow.invalidate()
    assert await flow.token() != first


@pytest.mark.parametrize(
    ("client_secret", "refresh_token", "code"),
    [
        (CLIENT_SECRET, "rt-revoked-Refresh-Token-77", "invalid_grant"),
        ("cs-wrong-Secret-0000", None, "invalid_client"),
    ],
)
async def test_refused_refresh_says_why_and_shows_no_secret(
    token_service, client_secret, refresh_token, code
):
    refresh_token = refresh_token or token_service.issue_refresh_token("bot@example.com")
    flow = RefreshTokenFlow(
        token_service.token_url, CLIENT_ID, refresh_token, client_secret=client_secret
    )

    with pytest.raises(OAuth2Error, match=code) as refused:
        await flow.token()

    shown = str(refused.value) + repr(refused.value) + repr(flow) + (refused.value.hint or "")
    assert refresh_token not in shown and client_secret not in shown


async def test_unreachable_token_endpoint_is_an_error_in_bounded_time():
    flow = RefreshTokenFlow("http://127.0.0.1:9/token", CLIENT_ID, "rt-x", timeout=2)
    with pytest.raises(OAuth2Error, match="cannot reach OAuth2 token endpoint"):
        await flow.token()


# -- the token command ------------------------------------------------------------------


def _command(*lines: str, exit_status: int = 0, stderr: str = "", sleep: float = 0) -> list[str]:
    script = f"import sys, time\ntime.sleep({sleep})\n"
    script += "".join(f"print({line!r})\n" for line in lines)
    script += f"sys.stderr.write({stderr!r})\nsys.exit({exit_status})\n"
    return [sys.executable, "-c", script]


async def test_bare_token_is_used_once_and_json_token_is_cached():
    bare = TokenCommand(_command("at-bare-1"))
    assert await bare.token() == "at-bare-1"
    assert bare._cached is None  # run again at the next login

    cached = TokenCommand(_command(json.dumps({"access_token": "at-json-1", "expires_in": 3600})))
    assert await cached.token() == "at-json-1"
    cached.argv = _command("at-should-not-run")
    assert await cached.token() == "at-json-1"


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (_command(exit_status=3, stderr="refresh token expired\n"), "exit status 3: refresh"),
        (_command(), "did not print a token"),
        (_command("two words"), "did not print a token"),
        (_command("at-x", sleep=5), "printed no token within 1 s"),
        (["/nonexistent/oama"], "cannot run oauth2_token_command"),
    ],
)
async def test_token_command_failures_are_clear(command, message):
    with pytest.raises(OAuth2Error, match=message):
        await TokenCommand(command, timeout=1).token()


# -- config ----------------------------------------------------------------------------


def _config_error(tmp_path, keys: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        '[messaging.email]\nimap_host = "localhost"\nsmtp_host = "localhost"\n'
        'imap_username = "bot@x.org"\nimap_auth = "xoauth2"\n' + keys
    )
    host = load_plugins()
    with pytest.raises(ConfigError) as error:
        load_config(path, host.adapter_classes(), host.agent_classes())
    return str(error.value)


def test_xoauth2_without_a_token_source_names_what_is_missing(tmp_path):
    assert "oauth2_token_url: is required" in _config_error(tmp_path, "")


def test_refresh_token_over_plain_http_to_a_remote_host_is_refused(tmp_path):
    message = _config_error(
        tmp_path,
        'oauth2_token_url = "http://auth.example.com/token"\noauth2_client_id = "c"\n'
        'oauth2_refresh_token = "rt-Secret-In-Config-99"\n',
    )
    assert "plaintext http to auth.example.com is refused" in message
    assert "rt-Secret-In-Config-99" not in message


def test_command_and_refresh_token_together_are_refused(tmp_path):
    message = _config_error(
        tmp_path, 'oauth2_token_command = ["oama"]\noauth2_refresh_token = "rt-1"\n'
    )
    assert "choose it or oauth2_refresh_token" in message


def test_gmail_preset_fills_the_token_endpoint_and_secrets_stay_out_of_repr(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        '[messaging.email]\nprovider = "gmail"\nimap_username = "bot@gmail.com"\n'
        'imap_auth = "xoauth2"\noauth2_client_id = "c"\n'
        'oauth2_client_secret = "cs-Gmail-Secret-5"\noauth2_refresh_token = "rt-Gmail-6"\n'
    )
    host = load_plugins()
    settings = load_config(path, host.adapter_classes(), host.agent_classes()).instances[0]
    assert settings.settings.oauth2_token_url == "https://oauth2.googleapis.com/token"
    assert settings.settings.smtp_auth == "xoauth2"
    shown = repr(settings) + repr(EmailAdapter("email", settings.settings))
    assert "cs-Gmail-Secret-5" not in shown and "rt-Gmail-6" not in shown
