"""The runtime: routing by bindings, backoff, the poll loop, clean shutdown, one run per state."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spacebot_core import Agent
from spacebot_core.backoff import Backoff
from spacebot_core.config import BindingConfig
from spacebot_core.routing import Router
from tests.core_fixtures import (
    SPACEBOT,
    adapter_of,
    error_lines,
    make_folder,
    open_runtime,
    run_cli,
    run_once,
    single_folder_config,
    write_config,
)
from tests.distribution import subprocess_env

pytest_plugins = ["tests.core_fixtures"]

STOP_WITHIN_SECS = 5.0


def wait_for(condition, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# Routing ---------------------------------------------------------------------------


def _router(*bindings: BindingConfig) -> Router:
    agents = {name: Agent(name) for name in ("support", "sales", "fallback", "other")}
    return Router(bindings, agents, "fallback")


def test_the_first_matching_binding_wins() -> None:
    router = _router(
        BindingConfig("support", "email"),
        BindingConfig("other", "email"),
    )
    assert router.agent_for("email", "email").agent_id == "support"


def test_an_adapter_binding_routes_only_its_named_instance() -> None:
    router = _router(
        BindingConfig("support", "email"),
        BindingConfig("sales", "email", adapter="sales-email"),
    )
    assert router.agent_for("email", "email").agent_id == "support"
    assert router.agent_for("email", "sales-email").agent_id == "sales"


def test_no_matching_binding_goes_to_the_default_agent() -> None:
    router = _router(BindingConfig("sales", "email", adapter="sales-email"))
    assert router.agent_for("email", "email").agent_id == "fallback"
    assert router.agent_for("email", "other-email").agent_id == "fallback"
    assert router.agent_for("telegram", "telegram").agent_id == "fallback"


@pytest.mark.usefixtures("folder_plugin")
async def test_messages_are_answered_by_the_bound_agents(tmp_path: Path) -> None:
    folders = {key: make_folder(tmp_path, key) for key in ("folder", "sales", "spare")}
    text = single_folder_config(folders["folder"])
    for key in ("sales", "spare"):
        text += f'[[messaging.folder.instances]]\nruntime_key = "{key}"\n{folders[key].toml()}\n'
    for agent_id, greeting, default in [
        ("support", "Support here.", False),
        ("sales", "Sales here.", False),
        ("fallback", "Fallback here.", True),
    ]:
        text += f'[[agents]]\nid = "{agent_id}"\ngreeting = "{greeting}"\n'
        text += f"default = {json.dumps(default)}\n\n"
    text += '[[bindings]]\nagent_id = "support"\nchannel = "folder"\n\n'
    text += '[[bindings]]\nagent_id = "sales"\nchannel = "folder"\nadapter = "sales"\n'
    config = write_config(tmp_path, text)
    for key, folder in folders.items():
        folder.drop("m1", f"hello {key}")

    await run_once(config)

    greetings = {key: folder.reply_texts()[0].split("\n")[0] for key, folder in folders.items()}
    assert greetings == {
        "folder": "Support here.",
        "sales": "Sales here.",
        "spare": "Fallback here.",
    }


# Backoff ---------------------------------------------------------------------------


def test_backoff_doubles_with_jitter_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    backoff = Backoff()
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    assert [backoff.next_delay() for _ in range(11)] == [
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        300,
        300,
    ]
    monkeypatch.setattr("random.uniform", lambda low, high: low)
    assert backoff.next_delay() == 150


def test_backoff_delays_are_jittered_and_never_above_300_seconds() -> None:
    backoff = Backoff(failures=20)
    delays = [backoff.next_delay() for _ in range(200)]

    assert all(150 <= delay <= 300 for delay in delays)
    assert len(set(delays)) > 100


def test_backoff_after_a_very_long_outage_is_still_capped() -> None:
    backoff = Backoff(failures=5000)
    assert 150 <= backoff.next_delay() <= 300


def test_backoff_starts_over_after_a_success() -> None:
    backoff = Backoff()
    for _ in range(6):
        backoff.next_delay()

    backoff.reset()

    assert backoff.next_delay() <= 1


# The loop, in-process --------------------------------------------------------------


@pytest.mark.usefixtures("folder_plugin")
async def test_hook_spacebot_wait(tmp_path: Path) -> None:
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, single_folder_config(folder, poll_interval_secs=0.05))
    stopping = asyncio.Event()

    async with open_runtime(config) as runtime:
        runner = runtime.runner("folder")
        task = asyncio.create_task(runner.run_forever(stopping))
        await asyncio.sleep(0.2)
        folder.drop("m1", "arrived while waiting")
        for _ in range(200):
            if folder.replies():
                break
            await asyncio.sleep(0.02)
        stopping.set()
        await asyncio.wait_for(task, 2)
        polls = [event for event in adapter_of(runtime, "folder").events if event[0] == "poll"]

    assert folder.done("answered") == ["m1.json"]
    assert len(polls) >= 3  # it waited poll_interval_secs between polls, and polled again


@pytest.mark.usefixtures("folder_plugin")
async def test_errors_back_off_and_are_logged_with_the_runtime_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    primary, folder = make_folder(tmp_path, "folder"), make_folder(tmp_path, "flaky")
    text = single_folder_config(primary)
    text += f'[[messaging.folder.instances]]\nruntime_key = "flaky"\n{folder.toml(fail_start=True)}'
    config = write_config(tmp_path, text)
    stopping = asyncio.Event()

    async with open_runtime(config) as runtime:
        runner = runtime.runner("flaky")
        runner.backoff = Backoff(initial=0.01, cap=0.04)
        adapter = adapter_of(runtime, "flaky")
        with caplog.at_level(logging.ERROR):
            task = asyncio.create_task(runner.run_forever(stopping))
            # Three failed starts take ~0.1 s of backoff; a loaded machine may need more.
            for _ in range(1000):
                if adapter.events.count(("start", None)) >= 3:
                    break
                await asyncio.sleep(0.01)
            stopping.set()
            await asyncio.wait_for(task, 2)
        starts = adapter.events.count(("start", None))

    assert starts >= 3
    assert runner.backoff.failures == starts
    messages = [record.getMessage() for record in caplog.records if "retrying" in record.message]
    assert len(messages) == starts
    assert all(m.startswith("[flaky] cannot reach the folder server") for m in messages)


# The command, as a user runs it ----------------------------------------------------

SLOW_AGENT = """\
import pathlib, sys, time
sys.stdin.read()
pathlib.Path(sys.argv[1]).write_text("started")
time.sleep(1.0)
print("slow answer")
"""


@pytest.mark.parametrize(
    "how",
    ["SIGTERM to the process", "SIGINT to the process group (Ctrl-C)"],
)
def test_run_stops_on_a_signal_and_finishes_the_message_in_hand(
    tmp_path: Path, folder_site: Path, how: str
) -> None:
    folder = make_folder(tmp_path)
    script, started = tmp_path / "slow.py", tmp_path / "started"
    script.write_text(SLOW_AGENT)
    command = json.dumps([sys.executable, str(script), str(started)])
    agent = f'[[agents]]\nid = "main"\nkind = "command"\ncommand = {command}\n'
    write_config(tmp_path, single_folder_config(folder, agent, poll_interval_secs=0.2))
    folder.drop("m1", "take your time")
    process = subprocess.Popen(
        [SPACEBOT, "run"],
        cwd=tmp_path,
        env=subprocess_env(folder_site),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(started.exists, what="the agent to start")
        signalled = time.monotonic()
        if how.startswith("SIGTERM"):
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=STOP_WITHIN_SECS)
        took = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert process.returncode == 0, stderr
    assert took < STOP_WITHIN_SECS
    assert "Traceback" not in stderr
    assert folder.reply_texts() == ["slow answer"]
    assert folder.done("answered") == ["m1.json"]


def test_run_once_fails_with_one_line_when_an_instance_cannot_connect(
    tmp_path: Path, folder_site: Path
) -> None:
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder, fail_start=True))
    folder.drop("m1", "anyone?")

    result = run_cli(["run", "--once"], tmp_path, [folder_site])

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    summary = [line for line in error_lines(result.stderr) if line.startswith("spacebot:")]
    assert summary == [
        "spacebot: folder: cannot reach the folder server for folder. "
        "check that the server is up, then run 'spacebot check'"
    ]
    assert folder.pending() == ["m1.json"]


def test_run_once_handles_everything_found_and_exits_zero(
    tmp_path: Path, folder_site: Path
) -> None:
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder))
    for number in range(3):
        folder.drop(f"m{number}", f"message {number}")

    result = run_cli(["run", "--once"], tmp_path, [folder_site])

    assert result.returncode == 0, result.stderr
    assert len(folder.replies()) == 3
    assert folder.pending() == []


def test_a_second_run_on_the_same_state_directory_is_refused(
    tmp_path: Path, folder_site: Path
) -> None:
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder, poll_interval_secs=0.2))
    lock = tmp_path / "state" / "spacebot.lock"
    first = subprocess.Popen(
        [SPACEBOT, "run"],
        cwd=tmp_path,
        env=subprocess_env(folder_site),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: lock.exists() and "process" in lock.read_text(), what="the lock")

        second = run_cli(["run", "--once"], tmp_path, [folder_site])
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=STOP_WITHIN_SECS)

    assert second.returncode == 1
    assert error_lines(second.stderr) == [
        f"spacebot: error: the state directory {tmp_path / 'state'} is in use by process "
        f"{first.pid}; stop that spacebot first, or give this one its own [runtime] state_dir"
    ]
    assert first.returncode == 0
