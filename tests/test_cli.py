"""The ``spacebot`` command: help, adapters, send, check, logging and error detail."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from spacebot_core.cli import build_parser, main
from tests.core_fixtures import (
    SPACEBOT,
    Folder,
    error_lines,
    make_folder,
    run_cli,
    single_folder_config,
    write_config,
)

pytest_plugins = ["tests.core_fixtures"]

SUBCOMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def two_instance_config(tmp_path: Path) -> tuple[Folder, Folder]:
    primary, named = make_folder(tmp_path, "folder"), make_folder(tmp_path, "folder-b")
    text = single_folder_config(primary)
    text += f'[[messaging.folder.instances]]\nruntime_key = "folder-b"\n{named.toml()}'
    write_config(tmp_path, text)
    return primary, named


@pytest.fixture
def in_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run ``cli.main`` in-process from ``tmp_path``, where config.toml is."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPACEBOT_CONFIG", raising=False)
    return tmp_path


def test_every_subcommand_is_there() -> None:
    assert {"run", "check", "adapters", "send"} <= set(SUBCOMMANDS)


@pytest.mark.parametrize("args", [[], *([name] for name in SUBCOMMANDS)], ids=str)
def test_help_of_every_subcommand_exits_0(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])

    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: spacebot")


def test_the_spacebot_command_is_installed() -> None:
    result = subprocess.run([SPACEBOT, "--help"], capture_output=True, text=True, timeout=30)

    assert result.returncode == 0
    for option in ("--config", "--log-level", "-v"):
        assert option in result.stdout


def test_adapters_lists_types_with_distribution_and_version_and_the_instances(
    tmp_path: Path, folder_site: Path
) -> None:
    two_instance_config(tmp_path)

    result = run_cli(["adapters"], tmp_path, [folder_site])

    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert ["folder", "spacebot_folder_channel", "1.0"] in lines
    assert any(line[:2] == ["echo", "spacebot-email"] for line in lines)
    assert ["folder", "channel", "folder"] in lines
    assert ["folder-b", "channel", "folder"] in lines


def test_send_writes_to_the_outbox(tmp_path: Path, folder_site: Path) -> None:
    primary, _ = two_instance_config(tmp_path)

    result = run_cli(["send", "folder:bob", "hello"], tmp_path, [folder_site])

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sent to bob through folder"
    (sent,) = primary.replies()
    assert sent["to"] == "bob"
    assert sent["response"] == {"type": "text", "text": "hello"}


def test_hook_spacebot_broadcast(
    in_config_dir: Path, folder_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, named = two_instance_config(in_config_dir)
    attachment = in_config_dir / "report.pdf"
    attachment.write_bytes(b"%PDF-1.4\x00\xff")

    status = main(
        [
            "send",
            "--adapter",
            "folder-b",
            "folder:carol",
            "see attached",
            "--attach",
            str(attachment),
        ]
    )

    assert status == 0, capsys.readouterr().err
    assert primary.replies() == []
    (sent,) = named.replies()
    assert (sent["to"], sent["runtime_key"]) == ("carol", "folder-b")
    response = sent["response"]
    assert (response["type"], response["filename"], response["caption"]) == (
        "file",
        "report.pdf",
        "see attached",
    )
    assert response["mime_type"] == "application/pdf"
    assert base64.b64decode(response["data"]) == b"%PDF-1.4\x00\xff"


@pytest.mark.parametrize(
    ("args", "status", "expected"),
    [
        (["send", "bob", "hello"], 2, "target 'bob' must be channel:address"),
        (["send", "telegram:bob", "hello"], 2, "no enabled [messaging.telegram] instance"),
        (["send", "--adapter", "nope", "folder:bob", "hi"], 1, "no instance 'nope'"),
        (["send", "folder:bob", "hi", "--attach", "missing.bin"], 1, "cannot read missing.bin"),
    ],
    ids=["no channel", "unconfigured channel", "unknown instance", "missing attachment"],
)
def test_send_mistakes_are_one_line(
    in_config_dir: Path,
    folder_plugin: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    status: int,
    expected: str,
) -> None:
    two_instance_config(in_config_dir)

    assert main(args) == status
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("spacebot: error: ")
    assert expected in line


def test_hook_spacebot_check(
    in_config_dir: Path, folder_plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, named = two_instance_config(in_config_dir)

    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "folder:\n  [ok  ] read the inbox" in out
    assert "folder-b:\n  [ok  ] read the inbox" in out
    assert out.strip().endswith("everything works")

    named.inbox.rmdir()
    assert main(["check"]) == 1
    out = capsys.readouterr().out
    assert f"[FAIL] read the inbox: {named.inbox} -> create the inbox folder" in out
    assert out.strip().endswith("some checks failed: see the fixes above")
    assert primary.pending() == []


def test_verbose_adds_detail_to_an_error(tmp_path: Path, folder_site: Path) -> None:
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder, fail_start=True))

    quiet = run_cli(["run", "--once"], tmp_path, [folder_site])
    verbose = run_cli(["-v", "run", "--once"], tmp_path, [folder_site])

    assert quiet.returncode == verbose.returncode == 1
    assert "Traceback" not in quiet.stderr
    assert "DEBUG" not in quiet.stderr
    assert "[folder] error detail" in verbose.stderr
    assert "Traceback" in verbose.stderr and "ChannelError" in verbose.stderr
    assert error_lines(quiet.stderr)[-1] == error_lines(verbose.stderr)[-1]


def test_verbose_adds_detail_to_a_config_error(tmp_path: Path, folder_site: Path) -> None:
    write_config(tmp_path, single_folder_config(make_folder(tmp_path), imap_prot=1))

    quiet = run_cli(["check"], tmp_path, [folder_site])
    verbose = run_cli(["--verbose", "check"], tmp_path, [folder_site])

    assert quiet.returncode == verbose.returncode == 2
    (line,) = error_lines(quiet.stderr)
    assert line.endswith("[messaging.folder] unknown key 'imap_prot'")
    assert "detail of the error below" in verbose.stderr
    assert error_lines(verbose.stderr)[-1] == line


def test_log_level_sets_how_much_is_logged(tmp_path: Path, folder_site: Path) -> None:
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder))
    folder.drop("m1", "hello")
    folder.drop("m2", "hello again")

    info = run_cli(["run", "--once"], tmp_path, [folder_site])
    folder.drop("m3", "and again")
    warning = run_cli(["--log-level", "WARNING", "run", "--once"], tmp_path, [folder_site])

    assert info.returncode == warning.returncode == 0
    assert "INFO spacebot_core.instance_runner: [folder] answered m1 from alice" in info.stderr
    assert error_lines(warning.stderr) == []
    assert len(folder.replies()) == 3


def test_options_work_before_and_after_the_subcommand(tmp_path, capsys):
    for place, argv in (
        ("before", ["--config", "{}", "check"]),
        ("after", ["check", "--config", "{}"]),
    ):
        missing = tmp_path / f"{place}.toml"
        status = main([arg.format(missing) for arg in argv])
        assert status == 2
        assert f"{missing}: config file not found" in capsys.readouterr().err
