"""Every hook is a documented contract (docs/plugins.md) with a test of its own."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from spacebot_core import hookspecs
from tests.core_fixtures import make_folder, run_once, write_config
from tests.distribution import installed, write_distribution

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"

HOOKSPECS = {
    name: function
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
    if hasattr(function, "spacebot_spec")
}


def written_signature(name: str) -> str:
    """``def name(param: annotation, ...) -> return``, the annotations as written."""
    signature = inspect.signature(HOOKSPECS[name])
    params = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"def {name}({params}) -> {signature.return_annotation}"


def docs_text() -> str:
    return DOCS.read_text(encoding="utf-8")


def test_there_are_hookspecs() -> None:
    assert {"spacebot_poll", "spacebot_normalize_inbound", "spacebot_send"} <= set(HOOKSPECS)
    assert {"spacebot_register_adapters", "spacebot_register_agents"} <= set(HOOKSPECS)


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_is_in_the_docs_with_its_exact_signature(name: str) -> None:
    assert written_signature(name) in docs_text()


def test_the_docs_name_no_hook_that_does_not_exist() -> None:
    documented = set(re.findall(r"\bdef (spacebot_\w+)\(", docs_text()))
    assert documented - set(HOOKSPECS) == set()


def _test_function_names() -> set[str]:
    names: set[str] = set()
    for path in TESTS.rglob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names |= {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        }
    return names


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_has_a_test_of_its_own(name: str) -> None:
    assert f"test_hook_{name}" in _test_function_names()


@pytest.mark.parametrize("name", sorted(HOOKSPECS))
def test_every_hookspec_is_typed_and_documents_its_parameters(name: str) -> None:
    function = HOOKSPECS[name]
    signature = inspect.signature(function)
    doc = inspect.getdoc(function) or ""

    assert signature.return_annotation is not inspect.Signature.empty
    for parameter in signature.parameters.values():
        assert parameter.annotation is not inspect.Parameter.empty
        assert f":param {parameter.name}:" in doc


def _example(marker: str, language: str) -> str:
    """The fenced block of ``language`` in the docs whose first line is ``marker``."""
    for block in re.findall(rf"```{language}\n(.*?)```", docs_text(), flags=re.DOTALL):
        if block.startswith(marker):
            return block
    raise AssertionError(f"no {language} block starting with {marker!r} in {DOCS}")


async def test_the_complete_minimal_example_in_the_docs_works(tmp_path: Path) -> None:
    source = _example("# spacebot_spool.py", "python")
    pyproject = _example("[project]", "toml")
    config_text = _example("[messaging.spool]\ninbox", "toml")
    assert '[project.entry-points.spacebot]\nspool = "spacebot_spool"' in pyproject
    site = write_distribution(
        tmp_path / "site",
        "spacebot-spool",
        {"spacebot_spool": source},
        {"spool": "spacebot_spool"},
    )
    spool = make_folder(tmp_path, "spool")
    config = write_config(
        tmp_path,
        config_text.replace("/srv/bot/in", str(spool.inbox)).replace(
            "/srv/bot/out", str(spool.outbox)
        ),
    )
    (spool.inbox / "alice-1.txt").write_text("hello there")

    with installed(site):
        failures = await run_once(config)

    assert failures == []
    assert list(spool.inbox.glob("*.txt")) == []
    (reply,) = spool.outbox.glob("*.txt")
    assert reply.name == "spool_alice-1_0.txt"
    assert reply.read_text() == "To: alice\n\nHELLO THERE!!"
