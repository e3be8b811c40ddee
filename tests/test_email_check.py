"""``spacebot check`` says what works and, for what does not, the spec's fix."""

from __future__ import annotations

import subprocess
import sys

from email_setup import instance_keys, write_config


def _check(config) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spacebot_core.cli", "--config", str(config), "check"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_passes_every_step_of_a_working_setup(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    dovecot.create_folder(bot, "Support")
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs, imap="tls")
        + 'folders = ["INBOX", "Support"]\n',
    )

    result = _check(config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "[ok  ] IMAP login" in result.stdout
    assert "[ok  ] folder 'INBOX'" in result.stdout
    assert "[ok  ] folder 'Support'" in result.stdout
    assert "FAIL" not in result.stdout
    assert "everything works" in result.stdout


def test_wrong_imap_password_is_authentication_failed(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    keys = instance_keys(dovecot, smtp_relay, bot, certs)
    keys = keys.replace(f'imap_password = "{bot.password}"', 'imap_password = "wrong-pw-123"')
    keys += f'smtp_password = "{bot.password}"\n'
    config = write_config(tmp_path, "[messaging.email]\n" + keys)

    result = _check(config)

    assert result.returncode == 1
    assert "Authentication failed" in result.stdout
    assert "Verify username and password" in result.stdout
    assert "wrong-pw-123" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_untrusted_certificate_is_tls_handshake_failed(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, untrusted_certs
):
    bot = mail_accounts.bot
    keys = instance_keys(dovecot, smtp_relay, bot, certs, imap="tls")
    config = write_config(
        tmp_path, "[messaging.email]\n" + keys.replace(str(certs.ca), str(untrusted_certs.ca))
    )

    result = _check(config)

    assert result.returncode == 1
    assert "TLS handshake failed" in result.stdout
    assert "imap_use_tls = true" in result.stdout


def test_missing_folder_is_named_with_the_folders_that_exist(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    dovecot.create_folder(bot, "Support")
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + 'folders = ["INBOX", "Suport"]\n',
    )

    result = _check(config)

    assert result.returncode == 1
    assert "[FAIL] folder 'Suport': does not exist" in result.stdout
    assert "INBOX, Support" in result.stdout
    assert "[ok  ] folder 'INBOX'" in result.stdout


def test_wrong_smtp_password_is_smtp_auth_failed(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + 'smtp_password = "not-the-smtp-pw"\n',
    )

    result = _check(config)

    assert result.returncode == 1
    assert "[ok  ] IMAP login" in result.stdout
    assert "SMTP authentication failed" in result.stdout
    assert "app password" in result.stdout
    assert "not-the-smtp-pw" not in result.stdout + result.stderr


def test_folder_where_flags_cannot_be_set_is_an_imap_permissions_failure(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot = mail_accounts.bot
    dovecot.create_folder(bot, "ReadOnly")  # the test server's ACL: lookup and read only
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + 'folders = ["INBOX", "ReadOnly"]\n',
    )

    result = _check(config)

    assert result.returncode == 1
    assert "[FAIL] folder 'ReadOnly': read-only: emails cannot be marked as seen" in result.stdout
    assert "Ensure the account has write permissions on the mailbox" in result.stdout
    assert "[ok  ] folder 'INBOX'" in result.stdout
