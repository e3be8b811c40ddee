"""Nothing lost, nothing answered twice: poison mail, retry, a crash while sending."""

from __future__ import annotations

import email
import subprocess
import sys
from email import policy
from pathlib import Path

from email_setup import instance_keys, mail_from, not_from, run_bot_once, write_config

from spacebot_core.store import StateStore

SPACEBOT = str(Path(sys.executable).with_name("spacebot"))

POISON_AGENT = """
import json, sys
request = json.load(sys.stdin)
text = request["message"]["content"]["text"]
if "POISON" in text and not __import__("os").path.exists(sys.argv[1]):
    sys.exit("cannot digest this one")
print("Answer: " + text.strip())
"""


def _in_reply_to(raw: bytes) -> str:
    return str(email.message_from_bytes(raw, policy=policy.default)["In-Reply-To"]).strip()


def _poison_config(tmp_path: Path, dovecot, relay, bot, certs) -> tuple[Path, Path]:
    script = tmp_path / "agent.py"
    script.write_text(POISON_AGENT)
    cured = tmp_path / "cured"
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, relay, bot, certs)
        + f'\n[[agents]]\nid = "main"\nkind = "command"\n'
        f'command = ["{sys.executable}", "{script}", "{cured}"]\n',
    )
    config.write_text(
        config.read_text().replace(
            "[runtime]\n", "[runtime]\nmax_attempts = 2\nretry_backoff_secs = 0\n"
        )
    )
    return config, cured


async def test_hook_spacebot_requeue(tmp_path, dovecot, mail_accounts, smtp_relay, certs):
    """A poison mail is flagged and left unread; ``spacebot retry`` brings it back."""
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config, cured = _poison_config(tmp_path, dovecot, smtp_relay, bot, certs)
    ids = {}
    for subject in ("first", "POISON pill", "third"):
        ids[subject], raw = mail_from(alice, bot, subject, f"{subject} body")
        dovecot.deliver(bot.address, raw)

    for _ in range(3):
        await run_bot_once(config)

    answered = [_in_reply_to(m.raw) for m in dovecot.fetch_all(alice)]
    assert sorted(answered) == sorted([ids["first"], ids["third"]])
    [poison] = [m for m in not_from(dovecot.fetch_all(bot), bot) if b"POISON" in m.raw]
    assert "$SpacebotFailed" in poison.flags and not poison.seen
    status = subprocess.run(
        [SPACEBOT, "--config", str(config), "status"], capture_output=True, text=True, timeout=60
    )
    assert "failed                1" in status.stdout

    cured.touch()
    retry = subprocess.run(
        [SPACEBOT, "--config", str(config), "retry"], capture_output=True, text=True, timeout=60
    )
    assert retry.returncode == 0, retry.stdout + retry.stderr
    assert "re-queued 1 of 1" in retry.stdout
    await run_bot_once(config)

    answered = [_in_reply_to(m.raw) for m in dovecot.fetch_all(alice)]
    assert sorted(answered) == sorted(ids.values())
    [poison] = [m for m in not_from(dovecot.fetch_all(bot), bot) if b"POISON" in m.raw]
    assert poison.seen and "$SpacebotFailed" not in poison.flags


async def test_hook_spacebot_confirm_sent(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    """A crash after the server took a reply but before the store noted it: no second reply."""
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    original_id, raw = mail_from(alice, bot, "Once only", "Answer me exactly once.")
    dovecot.deliver(bot.address, raw)

    def crash(store, reply):
        raise RuntimeError("the process died right after the SMTP server said 250")

    with monkeypatch.context() as patch:
        patch.setattr(StateStore, "mark_sent", crash)
        [(_, error)] = await run_bot_once(config)
    assert "the process died" in str(error)
    assert len(dovecot.fetch_all(alice)) == 1
    assert not not_from(dovecot.fetch_all(bot), bot)[0].seen

    assert await run_bot_once(config) == []

    replies = dovecot.fetch_all(alice)
    assert [_in_reply_to(m.raw) for m in replies] == [original_id]
    assert not_from(dovecot.fetch_all(bot), bot)[0].seen


async def test_without_the_bots_own_copy_an_unconfirmed_reply_is_sent_again(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs, monkeypatch
):
    """self_copy = false trades the confirmation for at-least-once: never lost."""
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + "self_copy = false\n",
    )
    original_id, raw = mail_from(alice, bot, "At least once", "hi")
    dovecot.deliver(bot.address, raw)

    with monkeypatch.context() as patch:
        patch.setattr(StateStore, "mark_sent", lambda store, reply: 1 / 0)
        await run_bot_once(config)
    assert await run_bot_once(config) == []

    assert [_in_reply_to(m.raw) for m in dovecot.fetch_all(alice)] == [original_id] * 2
    assert not_from(dovecot.fetch_all(bot), bot)[0].seen


async def test_history_and_status_after_an_exchange(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    bot, alice = mail_accounts.bot, mail_accounts.alice
    config = write_config(
        tmp_path, "[messaging.email]\n" + instance_keys(dovecot, smtp_relay, bot, certs)
    )
    _, raw = mail_from(alice, bot, "History", "Remember me.")
    dovecot.deliver(bot.address, raw)
    assert await run_bot_once(config) == []
    store = StateStore.open(tmp_path / "state", exclusive=False)
    [(conversation,)] = store.connection.execute(
        "SELECT DISTINCT conversation_id FROM messages WHERE sender_id = ?", (alice.address,)
    ).fetchall()
    store.close()

    history = subprocess.run(
        [SPACEBOT, "--config", str(config), "history", conversation],
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = subprocess.run(
        [SPACEBOT, "--config", str(config), "status"], capture_output=True, text=True, timeout=60
    )

    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert lines[0].endswith(alice.address) and lines[1] == "Remember me."
    assert any(line.endswith("bot") for line in lines[2:])
    assert "> Remember me." in history.stdout
    assert "answered              1" in status.stdout
    assert "outbox                0" in status.stdout


async def test_uidvalidity_change_causes_no_second_answer(
    tmp_path, dovecot, mail_accounts, smtp_relay, certs
):
    """A server that renumbers a folder shows old mail under new UIDs, unseen again."""
    bot, alice = mail_accounts.bot, mail_accounts.alice
    dovecot.create_folder(bot, "Support")
    original_id, raw = mail_from(alice, bot, "Renumbered", "Answer me once.")
    dovecot.append(bot, "Support", raw)
    config = write_config(
        tmp_path,
        "[messaging.email]\n"
        + instance_keys(dovecot, smtp_relay, bot, certs)
        + 'folders = ["Support"]\n',
    )
    assert await run_bot_once(config) == []
    with dovecot.imap_session(bot) as imap:  # the folder is recreated: a new UIDVALIDITY
        imap.delete('"Support"')
        imap.create('"Support"')
    dovecot.append(bot, "Support", raw)

    assert await run_bot_once(config) == []

    assert [_in_reply_to(m.raw) for m in dovecot.fetch_all(alice)] == [original_id]
    [again] = dovecot.fetch_all(bot, "Support")
    assert again.seen
