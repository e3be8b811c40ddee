"""config.toml: the spec's shape works, and every mistake stops spacebot before it connects.

A mistake is one line on stderr naming the file, the table and the key (and for
``env:`` values, the variable), never a secret's value, and exit status 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from spacebot_core.cli import main
from tests.core_fixtures import (
    Folder,
    error_lines,
    make_folder,
    run_cli,
    run_once,
    single_folder_config,
    write_config,
)

pytest_plugins = ["tests.core_fixtures"]

SECRET = "hunter2-do-not-print"
CONFIG_ERROR = 2


def _named(folder: Folder, runtime_key: str, **settings: object) -> str:
    return (
        f'[[messaging.folder.instances]]\nruntime_key = "{runtime_key}"\n{folder.toml(**settings)}'
    )


# (case, config text, table named in the error, key named in the error)
CASES: list[tuple[str, Callable[[Folder], str], str, str]] = [
    (
        "unknown key in a channel table",
        lambda f: single_folder_config(f, inbx="typo"),
        "[messaging.folder]",
        "'inbx'",
    ),
    (
        "unknown key in a named instance",
        lambda f: single_folder_config(f) + _named(f, "b", outbx="typo"),
        '[[messaging.folder.instances]] #1 (runtime_key "b")',
        "'outbx'",
    ),
    (
        "unknown key in [[bindings]]",
        lambda f: single_folder_config(f, '[[bindings]]\nagent_id = "main"\nchanel = "folder"\n'),
        "[[bindings]] #1",
        "'chanel'",
    ),
    (
        "unknown kind-specific key in [[agents]]",
        lambda f: single_folder_config(
            f, '[[agents]]\nid = "main"\nkind = "echo"\ngreting = "x"\n'
        ),
        '[[agents]] #1 (id "main")',
        "'greting'",
    ),
    (
        "unknown key in [runtime]",
        lambda f: single_folder_config(f).replace(
            "[messaging.folder]", "[runtime]\nstate_dri = 'x'\n[messaging.folder]", 1
        ),
        "[runtime]",
        "'state_dri'",
    ),
    (
        "wrong type",
        lambda f: single_folder_config(f, poll_interval_secs="30"),
        "[messaging.folder]",
        "poll_interval_secs: expected a number, got a string",
    ),
    (
        "wrong type in a named instance",
        lambda f: single_folder_config(f) + _named(f, "b", fail_start="yes"),
        '[[messaging.folder.instances]] #1 (runtime_key "b")',
        "fail_start: expected true or false",
    ),
    (
        "missing required key",
        lambda f: single_folder_config(f, '[[agents]]\nid = "main"\nkind = "command"\n'),
        '[[agents]] #1 (id "main")',
        "command: is required",
    ),
    (
        "missing env var",
        lambda f: single_folder_config(f, outbox="env:SPACEBOT_TEST_NO_SUCH_VAR"),
        "[messaging.folder]",
        "outbox: environment variable SPACEBOT_TEST_NO_SUCH_VAR is not set",
    ),
    (
        "binding to an adapter that does not exist",
        lambda f: single_folder_config(
            f, '[[bindings]]\nagent_id = "main"\nchannel = "folder"\nadapter = "sales"\n'
        ),
        "[[bindings]] #1",
        "adapter: no folder instance has runtime_key 'sales'",
    ),
    (
        "binding to an agent that does not exist",
        lambda f: single_folder_config(
            f, '[[agents]]\nid = "main"\n\n[[bindings]]\nagent_id = "support"\nchannel = "folder"\n'
        ),
        "[[bindings]] #1",
        "agent_id: no agent 'support'",
    ),
    (
        "binding to a channel that is not configured",
        lambda f: single_folder_config(
            f, '[[bindings]]\nagent_id = "main"\nchannel = "telegram"\n'
        ),
        "[[bindings]] #1",
        "channel: no enabled [messaging.telegram] instance",
    ),
    (
        "duplicate runtime_key",
        lambda f: single_folder_config(f) + _named(f, "b") + "\n" + _named(f, "b"),
        '[[messaging.folder.instances]] #2 (runtime_key "b")',
        "runtime_key 'b' is already used",
    ),
    (
        "runtime_key of the primary instance used again",
        lambda f: single_folder_config(f) + _named(f, "folder"),
        '[[messaging.folder.instances]] #1 (runtime_key "folder")',
        "runtime_key 'folder' is already used by [messaging.folder]",
    ),
    (
        "channel that no plugin provides",
        lambda f: single_folder_config(f) + '\n[messaging.telegrm]\ntoken = "x"\n',
        "[messaging.telegrm]",
        "names no installed channel",
    ),
    (
        "unknown top-level table",
        lambda f: "[[bindngs]]\nagent_id = 'main'\n\n" + single_folder_config(f),
        "the top level",
        "'bindngs'",
    ),
]


@pytest.mark.usefixtures("folder_plugin")
@pytest.mark.parametrize(("case", "text", "table", "key"), CASES, ids=[c[0] for c in CASES])
def test_a_config_mistake_is_one_line_naming_file_table_and_key(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: str,
    text: Callable,
    table: str,
    key: str,
) -> None:
    """In-process through ``cli.main``, for speed; the subprocess tests below prove the rest."""
    folder = make_folder(tmp_path)
    folder.drop("m1", "must not be touched")
    (tmp_path / "config.toml").write_text(text(folder))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SPACEBOT_CONFIG", raising=False)

    status = main(["run", "--once"])

    assert status == CONFIG_ERROR
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"spacebot: error: config.toml: {table} ")
    assert key in line
    # stopped before it connected anywhere: nothing read, written or stored
    assert folder.pending() == ["m1.json"]
    assert folder.replies() == []
    assert not (tmp_path / "spacebot-state").exists()


@pytest.mark.parametrize(
    ("case", "text", "table", "key"),
    [case for case in CASES if case[0] in ("missing env var", "duplicate runtime_key")],
    ids=["missing env var", "duplicate runtime_key"],
)
def test_the_command_exits_with_status_2_and_one_line(
    tmp_path: Path, folder_site: Path, case: str, text: Callable, table: str, key: str
) -> None:
    folder = make_folder(tmp_path)
    folder.drop("m1", "must not be touched")
    config = tmp_path / "elsewhere.toml"
    config.write_text(text(folder))

    result = run_cli(["--config", str(config), "run", "--once"], tmp_path, [folder_site])

    assert result.returncode == CONFIG_ERROR, result.stderr
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"spacebot: error: {config}: {table} ")
    assert key in line
    assert folder.pending() == ["m1.json"]


def test_a_toml_syntax_error_is_one_line(tmp_path: Path, folder_site: Path) -> None:
    (tmp_path / "config.toml").write_text('[messaging.folder]\ninbox = "unterminated\n')

    result = run_cli(["check"], tmp_path, [folder_site])

    assert result.returncode == CONFIG_ERROR
    (line,) = error_lines(result.stderr)
    assert line.startswith("spacebot: error: config.toml: not valid TOML")


@pytest.mark.parametrize("verbose", [[], ["-v"]], ids=["quiet", "verbose"])
@pytest.mark.parametrize(
    "where",
    [{"poll_interval_secs": "env:FOLDER_SECRET"}, {"pasword": "env:FOLDER_SECRET"}],
    ids=["secret in a wrongly typed key", "secret under an unknown key"],
)
def test_a_secret_from_the_environment_is_never_printed(
    tmp_path: Path, folder_site: Path, verbose: list[str], where: dict[str, str]
) -> None:
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder) + _named(folder, "b", **where))

    result = run_cli([*verbose, "run", "--once"], tmp_path, [folder_site], FOLDER_SECRET=SECRET)

    assert result.returncode == CONFIG_ERROR
    assert SECRET not in result.stderr + result.stdout
    (line,) = [line for line in error_lines(result.stderr) if line.startswith("spacebot:")]
    assert '[[messaging.folder.instances]] #1 (runtime_key "b")' in line
    assert next(iter(where)) in line


def test_env_values_resolve_from_the_environment(tmp_path: Path, folder_site: Path) -> None:
    folder = make_folder(tmp_path)
    write_config(
        tmp_path,
        "[messaging.folder]\n"
        'inbox = "env:FOLDER_INBOX"\n'
        'outbox = "env:FOLDER_OUTBOX"\n'
        'poll_interval_secs = "env:FOLDER_POLL"\n',
    )
    folder.drop("m1", "via env")

    result = run_cli(
        ["run", "--once"],
        tmp_path,
        [folder_site],
        FOLDER_INBOX=str(folder.inbox),
        FOLDER_OUTBOX=str(folder.outbox),
        FOLDER_POLL="7.5",
    )

    assert result.returncode == 0, result.stderr
    assert len(folder.replies()) == 1


def test_the_spec_example_with_agent_main_and_no_agents_table_works(
    tmp_path: Path, folder_site: Path
) -> None:
    folder = make_folder(tmp_path)
    (tmp_path / "config.toml").write_text(
        "[messaging.folder]\n"
        "enabled = true\n"
        "\n"
        "# folder settings\n"
        f"{folder.toml()}"
        "\n"
        "[[bindings]]\n"
        'agent_id = "main"\n'
        'channel = "folder"\n'
    )
    folder.drop("m1", "Hello from the spec")

    result = run_cli(["run", "--once"], tmp_path, [folder_site])

    assert result.returncode == 0, result.stderr
    (text,) = folder.reply_texts()
    assert text.endswith("> Hello from the spec")
    assert (tmp_path / "spacebot-state").is_dir()  # the default state_dir, beside the file


@pytest.mark.usefixtures("folder_plugin")
async def test_the_spec_multi_account_example_works(tmp_path: Path) -> None:
    support, sales = make_folder(tmp_path, "folder"), make_folder(tmp_path, "sales-folder")
    config = write_config(
        tmp_path,
        f"[messaging.folder]\n{support.toml()}\n"
        f'[[messaging.folder.instances]]\nruntime_key = "sales-folder"\n{sales.toml()}\n'
        '[[bindings]]\nagent_id = "support-bot"\nchannel = "folder"  # Primary instance\n\n'
        '[[bindings]]\nagent_id = "sales-bot"\nchannel = "folder"\n'
        'adapter = "sales-folder"  # Named instance\n',
    )
    support.drop("s1", "support question")
    sales.drop("t1", "sales question")

    assert await run_once(config) == []

    assert "> support question" in support.reply_texts()[0]
    assert "> sales question" in sales.reply_texts()[0]


def test_config_is_found_by_option_then_environment_then_current_directory(
    tmp_path: Path, folder_site: Path
) -> None:
    folder = make_folder(tmp_path)
    paths = {}
    for name in ("option", "environment", "cwd"):
        directory = tmp_path / name
        directory.mkdir()
        paths[name] = write_config(directory, single_folder_config(folder))
    cwd = paths["cwd"].parent

    def chosen(args: list[str], **env: str) -> str:
        result = run_cli([*args, "adapters"], cwd, [folder_site], **env)
        assert result.returncode == 0, result.stderr
        (line,) = [line for line in result.stdout.splitlines() if "configured instances" in line]
        return line

    via_env = {"SPACEBOT_CONFIG": str(paths["environment"])}
    assert str(paths["option"]) in chosen(["--config", str(paths["option"])], **via_env)
    assert str(paths["environment"]) in chosen([], **via_env)
    assert "(config.toml)" in chosen([])


def test_a_missing_config_file_says_how_to_give_one(tmp_path: Path, folder_site: Path) -> None:
    result = run_cli(["run", "--once"], tmp_path, [folder_site])

    assert result.returncode == CONFIG_ERROR
    (line,) = error_lines(result.stderr)
    assert "config.toml: config file not found" in line
    assert "--config PATH" in line and "$SPACEBOT_CONFIG" in line
