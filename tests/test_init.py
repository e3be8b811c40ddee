"""``spacebot init``: a commented starter config for a provider, with no secret in it."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from spacebot_core.cli import main
from spacebot_core.config import load_config
from spacebot_core.init_config import ENV_NAMES, PROVIDER_CHOICES, render_starter_config
from spacebot_core.plugins import load_plugins
from spacebot_email.settings import PROVIDERS
from tests.core_fixtures import run_cli

ADDRESS = "bot@example.com"
PASSWORD = "app-password-not-in-any-file"


@pytest.fixture
def login(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the starter config reads its login from."""
    monkeypatch.setenv("EMAIL_USERNAME", ADDRESS)
    monkeypatch.setenv("EMAIL_PASSWORD", PASSWORD)
    monkeypatch.setenv("EMAIL_FROM_ADDRESS", ADDRESS)


def init(tmp_path: Path, *args: str) -> tuple[int, Path]:
    path = tmp_path / "config.toml"
    return main(["--config", str(path), "init", *args]), path


def words(text: str) -> str:
    """The comment text of ``text`` as one line: comment marks and line breaks gone."""
    return " ".join(line.lstrip("# ").strip() for line in text.splitlines())


@pytest.mark.parametrize("provider", ["gmail", "outlook", "fastmail"])
def test_the_starter_config_has_the_providers_servers_and_loads(
    tmp_path: Path, provider: str, login: None
) -> None:
    status, path = init(tmp_path, "--provider", provider)

    assert status == 0
    host = load_plugins()
    config = load_config(path, host.adapter_classes(), host.agent_classes())
    [instance] = config.instances
    settings = instance.settings
    assert settings.imap_host == PROVIDERS[provider]["imap_host"]
    assert settings.smtp_host == PROVIDERS[provider]["smtp_host"]
    assert (settings.imap_port, settings.imap_use_tls) == (993, True)
    assert (settings.smtp_port, settings.smtp_use_starttls) == (587, True)
    assert (settings.imap_username, settings.imap_password) == (ADDRESS, PASSWORD)
    assert settings.from_address == ADDRESS
    assert [binding.channel for binding in config.bindings] == ["email"]
    assert config.default_agent.kind == "echo"


def test_the_custom_starter_config_has_servers_to_fill_in(tmp_path: Path, login: None) -> None:
    status, path = init(tmp_path)  # custom is the default

    assert status == 0
    text = path.read_text()
    assert 'imap_host = "imap.example.com"' in text
    assert "your provider's IMAP server" in text
    host = load_plugins()
    load_config(path, host.adapter_classes(), host.agent_classes())


@pytest.mark.parametrize("provider", PROVIDER_CHOICES)
def test_secrets_are_env_references_and_every_table_is_commented(provider: str) -> None:
    text = render_starter_config(provider)
    document = tomllib.loads(text)

    email = document["messaging"]["email"]
    for key in ("imap_username", "imap_password", "smtp_username", "smtp_password"):
        assert email[key].startswith("env:")
    assert email["from_address"] == "env:EMAIL_FROM_ADDRESS"
    assert all(f"env:{name}" in text for name in ENV_NAMES)
    comments = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert len(comments.splitlines()) >= 20
    # What a newcomer changes next is there, commented out, ready to use.
    assert '# allowed_senders = ["alice@example.com", "@company.com"]' in comments
    assert '#   kind = "openai"' in comments


def test_gmail_gets_the_app_password_hint_of_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hint = (
        "Gmail requires an App Password if you have 2FA enabled. "
        "Generate one at myaccount.google.com/apppasswords."
    )

    _, path = init(tmp_path, "--provider", "gmail")

    assert hint in words(path.read_text())
    assert hint in words(capsys.readouterr().out)


def test_the_output_says_what_to_set_and_what_to_run_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    init(tmp_path, "--provider", "fastmail")

    out = capsys.readouterr().out
    assert out.startswith(f"wrote {tmp_path / 'config.toml'} for Fastmail")
    for name in ENV_NAMES:
        assert f"export {name}=" in out
    assert "spacebot check" in out and "spacebot run" in out


def test_an_existing_config_is_not_overwritten_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# mine\n")

    status, _ = init(tmp_path, "--provider", "gmail")

    assert status == 1
    assert path.read_text() == "# mine\n"
    assert "already exists; pass --force" in capsys.readouterr().err
    assert init(tmp_path, "--provider", "gmail", "--force")[0] == 0
    assert "imap.gmail.com" in path.read_text()


def test_spacebot_init_then_check_names_the_missing_variable(tmp_path: Path) -> None:
    init_run = run_cli(["init", "--provider", "outlook"], tmp_path, [])
    check = run_cli(["check"], tmp_path, [])

    assert init_run.returncode == 0, init_run.stderr
    assert (tmp_path / "config.toml").exists()
    assert check.returncode == 2
    assert re.search(r"environment variable EMAIL_\w+ is not set", check.stderr)
