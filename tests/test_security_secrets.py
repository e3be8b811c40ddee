"""Passwords and tokens appear nowhere they do not belong.

Each test runs the real ``spacebot`` command at DEBUG level with the protocol trace
on (``-v --trace``: a whole exchange, a failed login, a config error, ``spacebot
check``), then searches everything it wrote (standard output and error, and every
file of the state directory) for every form a secret can take on the way: as written,
escaped as an IMAP quoted string, as Python shows bytes, base64-encoded in an AUTH
PLAIN or XOAUTH2 message, URL-encoded in a form, and any
12-character piece of it.
"""

from __future__ import annotations

import base64
import logging
import os
import secrets
import subprocess
import sys
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from email_setup import instance_keys, mail_from, write_config

from spacebot_core import cli
from spacebot_core.config import load_config
from spacebot_core.plugins import load_plugins
from spacebot_email.adapter import EmailAdapter
from spacebot_email.imap_auth import CredentialFilter
from tests.oauth_setup import CLIENT_ID, oauth_keys

pytest_plugins = ["tests.oauth_setup"]

TIMEOUT = 60


def tricky_secret(prefix: str) -> str:
    """A secret with the characters that escaping changes: quote, backslash, space."""
    return f'{prefix}"{secrets.token_hex(8)}\\{secrets.token_hex(8)} {secrets.token_hex(4)}'


def forms(secret: str, login: str) -> set[str]:
    """Every way ``secret`` could show up in text we wrote."""
    quoted = secret.replace("\\", "\\\\").replace('"', '\\"')
    found = {
        secret,
        quoted,
        repr(secret)[1:-1],
        repr(quoted.encode())[2:-1],
        urllib.parse.quote_plus(secret),
        urllib.parse.quote(secret),
        base64.b64encode(f"\0{login}\0{secret}".encode()).decode(),
        base64.b64encode(f"user={login}\x01auth=Bearer {secret}\x01\x01".encode()).decode(),
    }
    # Any 12 characters in a row: a secret cut short or escaped differently still shows.
    found |= {secret[i : i + 12] for i in range(len(secret) - 11)}
    return {form for form in found if len(form) >= 12}


def written_by(result: subprocess.CompletedProcess[str], state_dir: Path) -> str:
    """What a run wrote: its output and every file of its state directory, as text."""
    parts = [result.stdout, result.stderr]
    for path in sorted(state_dir.rglob("*")) if state_dir.exists() else []:
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


def assert_no_secret(text: str, secrets_and_logins: Iterable[tuple[str, str]]) -> None:
    for secret, login in secrets_and_logins:
        leaked = sorted(form for form in forms(secret, login) if form in text)
        assert not leaked, f"secret leaked as {leaked[:3]}"


def spacebot(
    config: Path, *command: str, env: dict[str, str], trace: bool = True
) -> subprocess.CompletedProcess[str]:
    options = ["-v", "--trace"] if trace else ["-v"]
    return subprocess.run(
        [sys.executable, "-m", "spacebot_core.cli", "--config", str(config), *options, *command],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, **env},
    )


def env_keys(keys: str, password: str) -> str:
    """The keys with the password read from $BOT_PASSWORD, as the README advises."""
    return keys.replace(f'imap_password = "{password}"', 'imap_password = "env:BOT_PASSWORD"')


async def test_password_never_shows_in_a_debug_exchange_a_failed_login_or_check(
    tmp_path, dovecot, make_smtp_relay, certs
):
    password = tricky_secret("Pw")
    bot = dovecot.add_user(f"bot-{secrets.token_hex(3)}@example.com", password)
    alice = dovecot.new_account("alice")
    relay = make_smtp_relay(tls="starttls", credentials={bot.address: password})
    keys = env_keys(instance_keys(dovecot, relay, bot, certs), password)
    config = write_config(tmp_path, "[messaging.email]\n" + keys)
    _, raw = mail_from(alice, bot, "Secrets?", "Tell me everything.")
    dovecot.deliver(bot.address, raw)
    wrong = tricky_secret("Wrong")

    exchange = spacebot(config, "run", "--once", env={"BOT_PASSWORD": password})
    check = spacebot(config, "check", env={"BOT_PASSWORD": password})
    failed_run = spacebot(config, "run", "--once", env={"BOT_PASSWORD": wrong})
    failed_check = spacebot(config, "check", env={"BOT_PASSWORD": wrong})

    assert exchange.returncode == 0, exchange.stderr[-2000:]
    assert " LOGIN [credentials not logged]" in exchange.stderr  # DEBUG really was on
    assert len(dovecot.fetch_all(alice)) == 1
    assert "everything works" in check.stdout, check.stdout
    assert "Authentication failed" in failed_run.stderr
    assert "Authentication failed" in failed_check.stdout
    state = tmp_path / "state"
    for result in (exchange, check, failed_run, failed_check):
        assert_no_secret(written_by(result, state), [(password, bot.address)])
    assert_no_secret(failed_run.stderr + failed_check.stdout, [(wrong, bot.address)])


async def test_mail_text_is_logged_only_with_trace(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    private = f"my account number is {secrets.token_hex(6)}"
    for subject in ("first", "second"):
        _, raw = mail_from(alice, bot, subject, private)
        dovecot.deliver(bot.address, raw)
        result = spacebot(config, "run", "--once", env={}, trace=subject == "second")
        assert result.returncode == 0, result.stderr[-2000:]
        if subject == "first":
            assert " DEBUG spacebot" in result.stderr  # -v alone: DEBUG, but no mail text
            assert private not in result.stderr
        else:
            assert private in result.stderr  # the trace holds the exchange, mail and all
    assert len(dovecot.fetch_all(alice)) == 2


async def test_tokens_never_show_in_a_debug_exchange_or_check(
    tmp_path, oauth_dovecot, accounts, oauth_relay, token_service, certs
):
    bot, alice = accounts.bot, accounts.alice
    refresh_token = token_service.issue_refresh_token(bot.address)
    keys = oauth_keys(oauth_dovecot, oauth_relay, bot, certs, "")
    keys += (
        f'oauth2_token_url = "{token_service.token_url}"\n'
        f'oauth2_client_id = "{CLIENT_ID}"\n'
        'oauth2_client_secret = "env:CLIENT_SECRET"\n'
        'oauth2_refresh_token = "env:REFRESH_TOKEN"\n'
    )
    config = write_config(tmp_path, "[messaging.email]\n" + keys)
    env = {"CLIENT_SECRET": token_service.client_secret or "", "REFRESH_TOKEN": refresh_token}
    _, raw = mail_from(alice, bot, "Tokens?", "Show me yours.")
    oauth_dovecot.deliver(bot.address, raw)

    exchange = spacebot(config, "run", "--once", env=env)
    check = spacebot(config, "check", env=env)
    revoked = spacebot(config, "check", env={**env, "REFRESH_TOKEN": "rt-" + "x" * 20})

    assert exchange.returncode == 0, exchange.stderr[-2000:]
    assert len(oauth_dovecot.fetch_all(alice)) == 1
    assert "everything works" in check.stdout, check.stdout
    assert "invalid_grant" in revoked.stdout
    issued = token_service.issued_access_tokens()
    assert len(issued) >= 2  # one per run
    everything = [(token, bot.address) for token in issued]
    everything += [(refresh_token, bot.address), (env["CLIENT_SECRET"], bot.address)]
    for result in (exchange, check, revoked):
        assert_no_secret(written_by(result, tmp_path / "state"), everything)


def test_config_errors_never_show_a_secret(tmp_path, monkeypatch, capsys, caplog):
    secret = tricky_secret("Cfg")
    base = 'imap_host = "h"\nimap_username = "u@x.org"\n'
    cases = [
        # a mistake elsewhere in a table holding a password
        f'{base}imap_password = {_toml(secret)}\nimap_port = "993"\n',
        # the secret in the wrong type, as a list
        f"{base}imap_password = [{_toml(secret)}]\n",
        # an oauth2 setting that is refused, next to the refresh token
        f'{base}imap_auth = "xoauth2"\noauth2_token_url = "http://auth.example.com/t"\n'
        f'oauth2_client_id = "c"\noauth2_refresh_token = {_toml(secret)}\n',
        # a typo in a key, the secret from the environment
        base + 'imap_password = "env:SECRET"\nimap_pasword = "x"\n',
    ]
    monkeypatch.setenv("SECRET", secret)
    for number, keys in enumerate(cases):
        config = tmp_path / f"config-{number}.toml"
        config.write_text("[messaging.email]\n" + keys)
        # In this process (a config error comes before anything connects), with -v:
        # the error line, and the traceback logged at DEBUG.
        with caplog.at_level(logging.DEBUG):
            status = cli.main(["--config", str(config), "-v", "check"])
        output = capsys.readouterr()
        assert status == 2, output.err
        assert "spacebot: error:" in output.err
        assert_no_secret(output.out + output.err + caplog.text, [(secret, "u@x.org")])
        caplog.clear()


def test_settings_adapter_and_senders_show_no_secret_in_repr(tmp_path):
    password, token = tricky_secret("Repr"), tricky_secret("Tok")
    config = tmp_path / "config.toml"
    config.write_text(
        '[messaging.email]\nimap_host = "localhost"\nsmtp_host = "localhost"\n'
        f'imap_username = "u@x.org"\nimap_password = {_toml(password)}\n'
        f'smtp_auth = "xoauth2"\noauth2_token_command = ["print-token", {_toml(token)}]\n'
    )
    host = load_plugins()
    loaded = load_config(config, host.adapter_classes(), host.agent_classes())
    adapter = EmailAdapter("email", loaded.instances[0].settings)
    shown = (
        repr(loaded) + repr(adapter) + repr(adapter.smtp_sender()) + repr(adapter.token_source())
    )
    assert_no_secret(shown, [(password, "u@x.org"), (token, "u@x.org")])


def test_aioimaplib_credential_lines_are_redacted_before_any_handler_sees_them():
    record = logging.LogRecord(
        "aioimaplib.aioimaplib", logging.DEBUG, __file__, 1,
        "Sending : %s", (b'DKAB1 LOGIN bot "p\\"ss"\r\n',), None,
    )  # fmt: skip
    CredentialFilter().filter(record)
    assert record.getMessage() == "Sending : b'DKAB1 LOGIN [credentials not logged]"
    capabilities = logging.LogRecord(
        "aioimaplib.aioimaplib", logging.DEBUG, __file__, 1,
        "Received : b'* OK [CAPABILITY IMAP4rev1 LOGIN-REFERRALS AUTH=LOGIN]'", None, None,
    )  # fmt: skip
    CredentialFilter().filter(capabilities)
    assert "LOGIN-REFERRALS AUTH=LOGIN" in capabilities.getMessage()


def _toml(value: str) -> str:
    """A TOML basic string holding ``value``."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
