"""Plugins are found by entry point in group ``spacebot``, exactly as pip installs them.

The folder channel of ``tests/folder_channel`` is installed as the distribution
``spacebot_folder_channel`` 1.0 (a dist-info directory and the module, on ``sys.path``
or ``PYTHONPATH``); spacebot picks it up with no change to its own code.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from spacebot_core.errors import PluginError
from spacebot_core.plugins import ENTRY_POINT_GROUP, load_plugins
from tests.core_fixtures import (
    error_lines,
    make_folder,
    open_runtime,
    run_cli,
    single_folder_config,
    write_config,
)
from tests.distribution import FOLDER_DISTRIBUTION, installed, write_distribution

pytest_plugins = ["tests.core_fixtures"]

BROKEN_SOURCE = 'raise RuntimeError("this plugin is broken on purpose")\n'

TWIN_SOURCE = """\
from spacebot_core import hookimpl
from spacebot_folder_channel import FolderAdapter


@hookimpl
def spacebot_register_adapters(register):
    register("folder", FolderAdapter)
"""

MISSPELT_SOURCE = """\
from spacebot_core import hookimpl


@hookimpl
def spacebot_register_adapter(register):
    pass
"""

WRONG_SIGNATURE_SOURCE = """\
from spacebot_core import hookimpl


@hookimpl
def spacebot_register_agents(register, options):
    pass
"""

MISSPELT_ADAPTER_SOURCE = """\
from spacebot_core import hookimpl
from spacebot_folder_channel import FolderAdapter


class TypoAdapter(FolderAdapter):
    @hookimpl
    async def spacebot_pol(self):
        return []


@hookimpl
def spacebot_register_adapters(register):
    register("typo", TypoAdapter)
"""


def one_module_distribution(root: Path, name: str, entry_point: str, source: str) -> Path:
    return write_distribution(root, name, {name: source}, {entry_point: name})


def test_the_entry_point_group_is_spacebot() -> None:
    assert ENTRY_POINT_GROUP == "spacebot"


def test_a_third_party_channel_answers_a_message_end_to_end(
    tmp_path: Path, folder_site: Path
) -> None:
    folder = make_folder(tmp_path)
    write_config(
        tmp_path,
        single_folder_config(folder, '[[bindings]]\nagent_id = "main"\nchannel = "folder"\n'),
    )
    folder.drop("m1", "Hello, plugin!", sender="carol")

    result = run_cli(["run", "--once"], tmp_path, [folder_site])

    assert result.returncode == 0, result.stderr
    (reply,) = folder.replies()
    assert (reply["to"], reply["in_reply_to"], reply["runtime_key"]) == ("carol", "m1", "folder")
    assert reply["response"]["type"] == "text"
    assert reply["response"]["text"].endswith("> Hello, plugin!")
    assert folder.done("answered") == ["m1.json"]


def test_hook_spacebot_register_adapters(folder_plugin: Path) -> None:
    host = load_plugins()

    registration = host.adapter_types["folder"]
    assert registration.cls.__name__ == "FolderAdapter"
    assert registration.cls.__module__ == "spacebot_folder_channel"
    assert (registration.distribution, registration.version) == ("spacebot_folder_channel", "1.0")
    assert registration.plugin_name == "plugin:folder"


def test_built_in_agents_are_registered_by_entry_point_like_any_other() -> None:
    host = load_plugins()

    assert {"echo", "command"} <= set(host.agent_kinds)
    assert host.agent_kinds["echo"].distribution == "spacebot-email"
    assert host.agent_kinds["echo"].plugin_name.startswith("plugin:")


def test_a_broken_plugin_is_named_and_the_others_still_work(
    tmp_path: Path, folder_site: Path
) -> None:
    broken = one_module_distribution(
        tmp_path / "broken-site", "spacebot_broken_plugin", "broken", BROKEN_SOURCE
    )
    missing = write_distribution(
        tmp_path / "missing-site", "spacebot_missing_module", {}, {"ghost": "no_such_module"}
    )
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder))
    folder.drop("m1", "still works?")

    run = run_cli(["run", "--once"], tmp_path, [broken, folder_site, missing])
    listing = run_cli(["adapters"], tmp_path, [broken, folder_site, missing])

    assert run.returncode == 0, run.stderr
    assert "plugin 'broken' failed to load: RuntimeError: this plugin is broken on purpose" in (
        run.stderr
    )
    assert "plugin 'ghost' failed to load: ModuleNotFoundError" in run.stderr
    assert "Traceback" not in run.stderr
    assert len(folder.replies()) == 1
    assert listing.returncode == 0, listing.stderr
    assert "plugin 'broken' failed to load: RuntimeError" in listing.stdout
    assert f"folder       {FOLDER_DISTRIBUTION} 1.0" in listing.stdout


def test_two_plugins_registering_the_same_adapter_name_is_an_error(
    tmp_path: Path, folder_site: Path
) -> None:
    twin = one_module_distribution(tmp_path / "twin", "spacebot_folder_twin", "twin", TWIN_SOURCE)
    write_config(tmp_path, single_folder_config(make_folder(tmp_path)))

    result = run_cli(["run", "--once"], tmp_path, [folder_site, twin])

    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "adapter type 'folder' is registered by both plugin:" in line
    assert {"plugin:folder", "plugin:twin"} <= set(line.replace(",", " ").split())


def test_a_misspelt_hook_in_a_plugin_is_an_error_at_start(
    tmp_path: Path, folder_site: Path
) -> None:
    typo = one_module_distribution(
        tmp_path / "typo", "spacebot_typo_plugin", "typo", MISSPELT_SOURCE
    )
    folder = make_folder(tmp_path)
    write_config(tmp_path, single_folder_config(folder))
    folder.drop("m1", "must wait for a fixed plugin")

    result = run_cli(["run", "--once"], tmp_path, [folder_site, typo])

    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert line.startswith(
        "spacebot: error: plugin plugin:typo implements spacebot_register_adapter"
    )
    assert folder.pending() == ["m1.json"]


async def test_a_misspelt_hook_in_an_adapter_is_an_error_naming_the_instance_not_its_settings(
    tmp_path: Path, folder_plugin: Path
) -> None:
    site = one_module_distribution(
        tmp_path / "typo", "spacebot_typo_adapter", "typo", MISSPELT_ADAPTER_SOURCE
    )
    folder = make_folder(tmp_path)
    config = write_config(tmp_path, f"[messaging.typo]\n{folder.toml()}")

    with installed(site), pytest.raises(PluginError) as raised:
        async with open_runtime(config):
            pass

    message = str(raised.value)
    assert message.startswith("plugin instance:typo implements spacebot_pol, which is no")
    assert str(folder.inbox) not in message
    assert "\n" not in message


def test_a_hook_with_a_wrong_signature_is_an_error_at_start(
    tmp_path: Path, folder_site: Path
) -> None:
    wrong = one_module_distribution(
        tmp_path / "wrong", "spacebot_wrong_plugin", "wrong", WRONG_SIGNATURE_SOURCE
    )
    write_config(tmp_path, single_folder_config(make_folder(tmp_path)))

    result = run_cli(["check"], tmp_path, [folder_site, wrong])

    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert "'plugin:wrong' for hook 'spacebot_register_agents'" in line
    assert "options" in line


def test_an_entry_point_name_taken_by_another_distribution_is_reported(
    tmp_path: Path, folder_plugin: Path
) -> None:
    clash = write_distribution(
        tmp_path / "clash", "spacebot_clash", {"spacebot_clash": ""}, {"folder": "spacebot_clash"}
    )

    with installed(clash):
        host = load_plugins()

    # Which of the two loads first depends on sys.path; the other is not silently dropped.
    (failure,) = [failure for failure in host.failures if failure.plugin_name == "folder"]
    assert "already taken by" in failure.error
    assert "must rename its entry point" in failure.error
    assert FOLDER_DISTRIBUTION in failure.error
    assert "spacebot_clash" in failure.error
