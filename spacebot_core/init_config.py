"""``spacebot init``: a commented starter ``config.toml`` for a mail provider.

The file is in the spec's shape (``[messaging.email]`` with the IMAP and SMTP keys,
``[[bindings]]``), with ``env:`` references where the secrets go, so that it can be
kept in version control and no password is ever typed into it. The hosts and ports of
the named providers come from the email channel's own presets, so the two never
disagree.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from spacebot_core.errors import SpacebotError
from spacebot_email.settings import PROVIDER_TRANSPORT, PROVIDERS

CUSTOM = "custom"
PROVIDER_CHOICES = (*PROVIDERS, CUSTOM)

#: The environment variables the starter config reads, as in the spec's example.
ENV_USERNAME = "EMAIL_USERNAME"
ENV_PASSWORD = "EMAIL_PASSWORD"
ENV_FROM_ADDRESS = "EMAIL_FROM_ADDRESS"
ENV_NAMES = (ENV_USERNAME, ENV_PASSWORD, ENV_FROM_ADDRESS)

PROVIDER_NAMES = {
    "gmail": "Gmail",
    "outlook": "Outlook / Microsoft 365",
    "fastmail": "Fastmail",
    CUSTOM: "your mail provider",
}

#: What to know about the password, per provider (Gmail's is the spec's own words).
PASSWORD_HINTS = {
    "gmail": (
        "Gmail requires an App Password if you have 2FA",
        "enabled. Generate one at",
        "myaccount.google.com/apppasswords.",
    ),
    "outlook": (
        "With two-step verification, use an app password.",
        "Microsoft is retiring password sign-in for IMAP",
        "and SMTP on many accounts: `spacebot check` tells",
        "whether yours still allows it.",
    ),
    "fastmail": (
        "Fastmail requires an app password for IMAP and",
        "SMTP: create one in Fastmail's settings, under",
        "Privacy & Security.",
    ),
    CUSTOM: (
        "Many providers require an app password when",
        "two-factor authentication is on.",
    ),
}

#: Example addresses, so that the comments show the shape of each value.
EXAMPLE_ADDRESSES = {
    "gmail": "bot@gmail.com",
    "outlook": "bot@outlook.com",
    "fastmail": "bot@fastmail.com",
    CUSTOM: "bot@example.com",
}


class ConfigExistsError(SpacebotError):
    """``spacebot init`` would overwrite a file the user has."""


@attrs.frozen
class InitResult:
    """What ``spacebot init`` wrote, and what the user does next."""

    path: Path
    provider: str

    def next_steps(self) -> str:
        """The lines printed after writing the file."""
        example = EXAMPLE_ADDRESSES[self.provider]
        hint = "\n".join(f"     {line}" for line in PASSWORD_HINTS[self.provider])
        return "\n".join(
            [
                f"wrote {self.path} for {PROVIDER_NAMES[self.provider]}",
                "next:",
                "  1. put the account's login in the environment (the file reads it from there):",
                f'     export {ENV_USERNAME}="{example}"',
                f'     export {ENV_PASSWORD}="..."',
                f'     export {ENV_FROM_ADDRESS}="{example}"',
                hint,
                f"  2. in {self.path.name}, choose who may write (allowed_senders) and the agent",
                "  3. spacebot check      logs in and says what to fix",
                "  4. spacebot run        answers mail until Ctrl-C",
            ]
        )


def write_starter_config(path: Path, provider: str, force: bool = False) -> InitResult:
    """Write the starter config for ``provider`` to ``path``.

    :param force: overwrite an existing file.
    :raises ConfigExistsError: when ``path`` exists and ``force`` is false.
    :raises SpacebotError: for an unknown provider or a file that cannot be written.
    """
    if provider not in PROVIDER_CHOICES:
        raise SpacebotError(
            f"unknown provider {provider!r}; choose one of {', '.join(PROVIDER_CHOICES)}"
        )
    text = render_starter_config(provider)
    try:
        # "x" refuses an existing file atomically: no check-then-write race.
        with path.open("w" if force else "x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise ConfigExistsError(
            f"{path} already exists; pass --force to overwrite it, or --config OTHER.toml"
        ) from None
    except OSError as error:
        raise SpacebotError(f"cannot write {path}: {error.strerror}") from None
    return InitResult(path, provider)


def render_starter_config(provider: str) -> str:
    """The text of the starter config for ``provider``; pure."""
    return "\n".join(
        [
            *_header(provider),
            *_email_table(provider),
            *_agents_and_bindings(),
            *_runtime_table(),
        ]
    )


def _header(provider: str) -> list[str]:
    hint = [f"#{' ' * 24}{line}" for line in PASSWORD_HINTS[provider]]
    return [
        f"# spacebot: answer the mail of an account at {PROVIDER_NAMES[provider]}.",
        f"# Written by `spacebot init --provider {provider}`. The setup guide with every key,",
        "# default and limit is docs/email-channel.md.",
        "#",
        '# No password is written here: a value "env:NAME" is read from the environment',
        "# variable NAME when spacebot starts. Set these before `spacebot check`:",
        f"#   {ENV_USERNAME}       the login, usually the address ({EXAMPLE_ADDRESSES[provider]})",
        f"#   {ENV_PASSWORD}       the password",
        *hint,
        f"#   {ENV_FROM_ADDRESS}   the address replies come from",
        "",
    ]


def _email_table(provider: str) -> list[str]:
    return [
        "[messaging.email]",
        "enabled = true",
        "",
        *_server_lines(provider),
        "",
        "# From address",
        f'from_address = "env:{ENV_FROM_ADDRESS}"',
        'from_name = "Spacebot"',
        "",
        "# Poll the folders every 60 seconds (at least 5; lower may hit the provider's",
        "# rate limits). Each folder is polled in turn; mail is marked seen once answered.",
        "poll_interval_secs = 60",
        'folders = ["INBOX"]',
        "",
        '# Who may write to the bot: addresses, or domains such as "@company.com".',
        "# Left out, every sender is answered; others are silently ignored.",
        '# allowed_senders = ["alice@example.com", "@company.com"]',
        "",
        "# Bounces, out-of-office replies and bulk mail are never answered (no loops).",
        "filter_auto_generated = true",
        "",
    ]


def _server_lines(provider: str) -> list[str]:
    if provider == CUSTOM:
        imap_host, smtp_host = "imap.example.com", "smtp.example.com"
        imap_note = "  # your provider's IMAP server"
        smtp_note = "  # your provider's SMTP server"
    else:
        imap_host = str(PROVIDERS[provider]["imap_host"])
        smtp_host = str(PROVIDERS[provider]["smtp_host"])
        imap_note = smtp_note = ""
    transport = PROVIDER_TRANSPORT
    return [
        "# IMAP settings: where mail is read",
        f'imap_host = "{imap_host}"{imap_note}',
        f"imap_port = {transport['imap_port']}  # 993 with imap_use_tls; 143 with STARTTLS",
        f'imap_username = "env:{ENV_USERNAME}"',
        f'imap_password = "env:{ENV_PASSWORD}"',
        f"imap_use_tls = {_toml_bool(transport['imap_use_tls'])}",
        "",
        "# SMTP settings: where replies are sent (same login as IMAP)",
        f'smtp_host = "{smtp_host}"{smtp_note}',
        f"smtp_port = {transport['smtp_port']}  # 587 with STARTTLS; 465 with smtp_use_tls",
        f'smtp_username = "env:{ENV_USERNAME}"',
        f'smtp_password = "env:{ENV_PASSWORD}"',
        f"smtp_use_starttls = {_toml_bool(transport['smtp_use_starttls'])}",
    ]


def _agents_and_bindings() -> list[str]:
    return [
        "# The agent that answers. `echo` quotes each mail back: the way to see that",
        "# everything works. For an LLM behind any OpenAI-compatible server (a local model",
        '# server too), write these keys instead of kind = "echo" (see the README):',
        '#   kind = "openai"',
        '#   base_url = "http://127.0.0.1:8080/v1"',
        '#   model = "local-model"',
        '#   api_key = "env:OPENAI_API_KEY"',
        '#   system = "You answer email briefly and politely."',
        "[[agents]]",
        'id = "main"',
        'kind = "echo"',
        "",
        '# Mail arriving on the email channel goes to the agent "main".',
        "[[bindings]]",
        'agent_id = "main"',
        'channel = "email"',
        "",
    ]


def _runtime_table() -> list[str]:
    return [
        "[runtime]",
        "# What was received and answered, so that nothing is answered twice across",
        "# restarts; relative to this file. Keep it.",
        'state_dir = "spacebot-state"',
        "",
    ]


def _toml_bool(value: object) -> str:
    return "true" if value else "false"
