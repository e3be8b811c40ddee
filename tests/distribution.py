"""Installing test plugins as real distributions, the way pip leaves them.

pip puts a ``<name>-<version>.dist-info/`` directory (``METADATA``, ``entry_points.txt``)
and the module side by side in site-packages. Writing the same into a directory and
putting that directory on ``sys.path`` (in-process) or ``PYTHONPATH`` (a subprocess)
makes the plugin's entry point visible to ``importlib.metadata`` exactly as if it had
been installed, with no change to spacebot.
"""

from __future__ import annotations

import importlib
import os
import sys
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

FOLDER_PROJECT = Path(__file__).with_name("folder_channel")
_FOLDER_METADATA = tomllib.loads((FOLDER_PROJECT / "pyproject.toml").read_text())["project"]
FOLDER_DISTRIBUTION: str = _FOLDER_METADATA["name"]
FOLDER_VERSION: str = _FOLDER_METADATA["version"]
FOLDER_ENTRY_POINTS: dict[str, str] = _FOLDER_METADATA["entry-points"]["spacebot"]
FOLDER_MODULE = "spacebot_folder_channel"


def write_distribution(
    root: Path,
    name: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
    version: str = "1.0",
) -> Path:
    """Write distribution ``name`` with ``modules`` (name to source) into ``root``.

    :param entry_points: entry point name to ``module`` or ``module:attribute``, all in
        group ``spacebot``.
    :return: ``root``, to put on ``sys.path`` or ``PYTHONPATH``.
    """
    dist_info = root / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[spacebot]", *(f"{key} = {target}" for key, target in entry_points.items())]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    files = [f"{module}.py" for module in modules]
    files += [f"{dist_info.name}/{part}" for part in ("METADATA", "entry_points.txt", "RECORD")]
    (dist_info / "RECORD").write_text("".join(f"{file},,\n" for file in files), encoding="utf-8")
    for module, source in modules.items():
        (root / f"{module}.py").write_text(source, encoding="utf-8")
    return root


def write_folder_channel(root: Path) -> Path:
    """Install the folder channel as its pyproject.toml declares it into ``root``.

    That is distribution ``spacebot_folder_channel`` 1.0 with the entry point
    ``folder = spacebot_folder_channel`` in group ``spacebot``.
    """
    source = (FOLDER_PROJECT / f"{FOLDER_MODULE}.py").read_text(encoding="utf-8")
    return write_distribution(
        root,
        FOLDER_DISTRIBUTION,
        {FOLDER_MODULE: source},
        FOLDER_ENTRY_POINTS,
        FOLDER_VERSION,
    )


@contextmanager
def installed(*roots: Path) -> Iterator[None]:
    """Make the distributions in ``roots`` visible to this process, then forget them."""
    before = set(sys.modules)
    sys.path[:0] = [str(root) for root in roots]
    importlib.invalidate_caches()
    try:
        yield
    finally:
        for root in roots:
            sys.path.remove(str(root))
        for name in set(sys.modules) - before:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if any(origin.startswith(str(root)) for root in roots):
                del sys.modules[name]
        importlib.invalidate_caches()


def subprocess_env(*roots: Path, **variables: str) -> dict[str, str]:
    """The environment for a ``spacebot`` subprocess that sees the distributions in ``roots``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPACEBOT_")}
    env["PYTHONPATH"] = os.pathsep.join(str(root) for root in roots)
    env.update(variables)
    return env
