"""docs/tutorial-channel.md works as written.

The files of the tutorial's package are taken out of the page (the fenced blocks marked
``file=PATH``), the package is installed with ``pip`` into a directory of its own, and
its tests, the adapter conformance suite, run against that installation. Then the
tutorial's ``try-it`` bot runs with the installed ``spacebot`` command.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core_fixtures import error_lines, run_cli

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial-channel.md"
PIP_TIMEOUT_SECS = 300
PYTEST_TIMEOUT_SECS = 120
BLOCK = re.compile(r"^```\w+ file=(\S+)\n(.*?)^```$", flags=re.DOTALL | re.MULTILINE)


def tutorial_files() -> dict[str, str]:
    """The files the tutorial shows, by their path."""
    return {path: text for path, text in BLOCK.findall(TUTORIAL.read_text(encoding="utf-8"))}


@pytest.fixture(scope="module")
def installed_tutorial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tutorial's files written out, and the site its package was pip-installed into."""
    root = tmp_path_factory.mktemp("tutorial")
    for name, text in tutorial_files().items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    site = root / "site"
    # A real `pip install`, into a directory of its own (--target) rather than the
    # environment running the tests, which stays as it was.
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    result = subprocess.run(
        # No build isolation: the build backend comes from the test environment, so the
        # test needs no download.
        [
            *pip,
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(root / "spacebot-jsonl"),
        ],
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT_SECS,
    )
    assert result.returncode == 0, result.stderr
    return root, site


def test_the_tutorial_shows_a_whole_package() -> None:
    assert set(tutorial_files()) == {
        "spacebot-jsonl/pyproject.toml",
        "spacebot-jsonl/spacebot_jsonl.py",
        "spacebot-jsonl/tests/test_jsonl.py",
        "try-it/config.toml",
    }


def test_pip_installs_it_with_its_entry_point(installed_tutorial: tuple[Path, Path]) -> None:
    root, site = installed_tutorial

    result = run_cli(["adapters"], root, [site])

    assert result.returncode == 0, result.stderr
    assert ["jsonl", "spacebot-jsonl", "1.0"] in [
        line.split() for line in result.stdout.splitlines()
    ]


def test_the_installed_package_passes_the_conformance_suite(
    installed_tutorial: tuple[Path, Path],
) -> None:
    root, site = installed_tutorial
    package = root / "spacebot-jsonl"

    # -P: the current directory is not put on sys.path, so the module the tests import
    # is the pip-installed one, not the file beside them.
    result = subprocess.run(
        [sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=package,
        env={**_environment(), "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=PYTEST_TIMEOUT_SECS,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"\b8 passed\b", result.stdout), result.stdout


def test_the_try_it_bot_answers_a_line_once(installed_tutorial: tuple[Path, Path]) -> None:
    root, site = installed_tutorial
    try_it = root / "try-it"
    message = {"id": "1", "from": "ada", "text": "Hello, bot!"}
    (try_it / "inbox.jsonl").write_text(json.dumps(message) + "\n", encoding="utf-8")

    first = run_cli(["run", "--once"], try_it, [site])
    second = run_cli(["run", "--once"], try_it, [site])

    assert first.returncode == 0 and second.returncode == 0, error_lines(first.stderr)
    [reply] = [json.loads(line) for line in (try_it / "outbox.jsonl").read_text().splitlines()]
    assert (reply["in_reply_to"], reply["to"]) == ("1", "ada")
    assert "> Hello, bot!" in reply["text"]


def _environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("SPACEBOT_")}
