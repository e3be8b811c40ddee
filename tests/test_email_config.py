"""The email channel's config keys, exactly as the spec writes them, and their defaults."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from spacebot_core.config import load_config
from spacebot_core.errors import ConfigError
from spacebot_core.plugins import load_plugins


def _load(tmp_path: Path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text)
    host = load_plugins()
    return load_config(path, host.adapter_classes(), host.agent_classes())


SPEC_EXAMPLE = """
[messaging.email]
enabled = true

# IMAP settings
imap_host = "imap.gmail.com"
imap_port = 993
imap_username = "bot@example.com"
imap_password = "your-app-password"
imap_use_tls = true

# SMTP settings
smtp_host = "smtp.gmail.com"
smtp_port = 587
smtp_username = "bot@example.com"
smtp_password = "your-app-password"
smtp_use_starttls = true

# From address
from_address = "bot@example.com"
from_name = "Spacebot"

[[bindings]]
agent_id = "main"
channel = "email"
"""


def test_spec_example_loads_with_spec_defaults(tmp_path):
    config = _load(tmp_path, SPEC_EXAMPLE)
    [instance] = config.instances
    settings = instance.settings
    assert instance.runtime_key == "email"
    assert (settings.imap_security, settings.imap_port) == ("tls", 993)
    assert (settings.smtp_security, settings.smtp_port) == ("starttls", 587)
    assert settings.folders == ["INBOX"]
    assert settings.poll_interval_secs == 60
    assert settings.max_body_bytes == 102400
    assert settings.max_attachment_bytes == 10485760
    assert settings.allowed_senders == []
    assert config.default_agent.kind == "echo"


def test_defaults_when_only_hosts_and_login_are_given(tmp_path):
    config = _load(
        tmp_path,
        """
[messaging.email]
imap_host = "imap.example.com"
smtp_host = "smtp.example.com"
imap_username = "bot@example.com"
imap_password = "secret"
""",
    )
    settings = config.instances[0].settings
    assert (settings.imap_port, settings.imap_use_tls) == (993, True)
    assert (settings.smtp_port, settings.smtp_use_starttls) == (587, True)
    assert settings.smtp_username == "bot@example.com"
    assert settings.smtp_password == "secret"
    assert settings.from_address == "bot@example.com"


def test_env_values_resolve(tmp_path, monkeypatch):
    monkeypatch.setenv("EMAIL_USERNAME", "bot@example.com")
    monkeypatch.setenv("EMAIL_PASSWORD", "pw-from-env")
    monkeypatch.setenv("EMAIL_FROM_ADDRESS", "support@example.com")
    config = _load(
        tmp_path,
        """
[messaging.email]
enabled = true
provider = "fastmail"
imap_username = "env:EMAIL_USERNAME"
imap_password = "env:EMAIL_PASSWORD"
smtp_username = "env:EMAIL_USERNAME"
smtp_password = "env:EMAIL_PASSWORD"
from_address = "env:EMAIL_FROM_ADDRESS"
""",
    )
    settings = config.instances[0].settings
    assert settings.imap_password == "pw-from-env"
    assert settings.from_address == "support@example.com"
    assert "pw-from-env" not in repr(settings)


@pytest.mark.parametrize(
    ("provider", "imap_host", "smtp_host"),
    [
        ("gmail", "imap.gmail.com", "smtp.gmail.com"),
        ("outlook", "outlook.office365.com", "smtp.office365.com"),
        ("fastmail", "imap.fastmail.com", "smtp.fastmail.com"),
    ],
)
def test_provider_fills_hosts_ports_and_tls(tmp_path, provider, imap_host, smtp_host):
    config = _load(
        tmp_path,
        f"""
[messaging.email]
provider = "{provider}"
imap_username = "bot@example.com"
imap_password = "pw"
""",
    )
    settings = config.instances[0].settings
    assert (settings.imap_host, settings.imap_port, settings.imap_security) == (
        imap_host,
        993,
        "tls",
    )
    assert (settings.smtp_host, settings.smtp_port, settings.smtp_security) == (
        smtp_host,
        587,
        "starttls",
    )


def test_provider_does_not_override_what_the_user_wrote(tmp_path):
    config = _load(
        tmp_path,
        """
[messaging.email]
provider = "gmail"
smtp_port = 465
smtp_use_tls = true
smtp_use_starttls = false
imap_username = "bot@example.com"
imap_password = "pw"
""",
    )
    settings = config.instances[0].settings
    assert (settings.smtp_port, settings.smtp_security) == (465, "tls")


def test_poll_interval_below_five_is_raised_to_five_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        config = _load(
            tmp_path,
            """
[messaging.email]
provider = "gmail"
imap_username = "bot@example.com"
imap_password = "pw"
poll_interval_secs = 1
""",
        )
    assert config.instances[0].settings.poll_interval_secs == 5
    assert "poll_interval_secs" in caplog.text


def test_folders_senders_and_limits_are_read(tmp_path):
    config = _load(
        tmp_path,
        """
[messaging.email]
provider = "gmail"
imap_username = "bot@example.com"
imap_password = "pw"
poll_interval_secs = 30
folders = ["INBOX", "Support", "Urgent"]
allowed_senders = ["ceo@company.com", "@company.com", "company.com"]
max_body_bytes = 2048
max_attachment_bytes = 4096
""",
    )
    settings = config.instances[0].settings
    assert settings.poll_interval_secs == 30
    assert settings.folders == ["INBOX", "Support", "Urgent"]
    assert settings.allowed_senders == ["ceo@company.com", "@company.com", "company.com"]
    assert (settings.max_body_bytes, settings.max_attachment_bytes) == (2048, 4096)


MULTI_ACCOUNT = """
[messaging.email]
imap_host = "imap.gmail.com"
smtp_host = "smtp.gmail.com"
imap_username = "support@example.com"
imap_password = "env:SUPPORT_EMAIL_PASSWORD"
from_address = "support@example.com"
folders = ["INBOX", "Support"]
poll_interval_secs = 30
max_body_bytes = 5000

[[messaging.email.instances]]
runtime_key = "sales-email"
imap_host = "imap.gmail.com"
imap_username = "sales@example.com"
imap_password = "env:SALES_EMAIL_PASSWORD"
from_address = "sales@example.com"

[[agents]]
id = "support-bot"
kind = "echo"

[[agents]]
id = "sales-bot"
kind = "echo"

[[bindings]]
agent_id = "support-bot"
channel = "email"

[[bindings]]
agent_id = "sales-bot"
channel = "email"
adapter = "sales-email"
"""


def test_named_instance_inherits_settings_but_not_credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPPORT_EMAIL_PASSWORD", "support-pw")
    monkeypatch.setenv("SALES_EMAIL_PASSWORD", "sales-pw")
    config = _load(tmp_path, MULTI_ACCOUNT)
    support, sales = (instance.settings for instance in config.instances)
    assert [i.runtime_key for i in config.instances] == ["email", "sales-email"]
    assert sales.smtp_host == "smtp.gmail.com"
    assert sales.folders == ["INBOX", "Support"]
    assert (sales.poll_interval_secs, sales.max_body_bytes) == (30, 5000)
    assert (sales.smtp_username, sales.smtp_password) == ("sales@example.com", "sales-pw")
    assert sales.from_address == "sales@example.com"
    assert (support.smtp_username, support.smtp_password) == ("support@example.com", "support-pw")


def test_named_instance_from_address_defaults_to_its_own_smtp_username(tmp_path, monkeypatch):
    monkeypatch.setenv("SUPPORT_EMAIL_PASSWORD", "a")
    monkeypatch.setenv("SALES_EMAIL_PASSWORD", "b")
    config = _load(tmp_path, MULTI_ACCOUNT.replace('from_address = "sales@example.com"\n', ""))
    assert config.instances[1].settings.from_address == "sales@example.com"


@pytest.mark.parametrize(
    ("keys", "fix"),
    [
        (
            'imap_host = "imap.example.com"\nimap_use_tls = false\nsmtp_host = "127.0.0.1"',
            "imap_use_tls = true",
        ),
        (
            'imap_host = "127.0.0.1"\nimap_use_tls = false\nsmtp_host = "smtp.example.com"\n'
            "smtp_use_starttls = false",
            "smtp_use_starttls = true",
        ),
    ],
)
def test_plaintext_to_a_remote_host_is_refused_with_the_fix(tmp_path, keys, fix):
    with pytest.raises(ConfigError) as error:
        _load(
            tmp_path,
            f"""
[messaging.email]
{keys}
imap_username = "bot@example.com"
imap_password = "pw"
""",
        )
    assert fix in str(error.value)
    assert "[messaging.email]" in str(error.value)


def test_plaintext_to_loopback_is_allowed(tmp_path):
    config = _load(
        tmp_path,
        """
[messaging.email]
imap_host = "127.0.0.1"
imap_use_tls = false
smtp_host = "localhost"
smtp_use_starttls = false
imap_username = "bot@example.com"
imap_password = "pw"
""",
    )
    settings = config.instances[0].settings
    assert (settings.imap_security, settings.smtp_security) == ("plain", "plain")


def test_missing_host_names_the_key_and_the_provider_option(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, '[messaging.email]\nimap_username = "a@b.c"\nimap_password = "x"\n')
    assert "imap_host" in str(error.value)
    assert "provider" in str(error.value)


def test_misspelt_key_is_named(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, '[messaging.email]\nprovider = "gmail"\nimap_prot = 993\n')
    assert "unknown key 'imap_prot'" in str(error.value)
    assert "[messaging.email]" in str(error.value)
