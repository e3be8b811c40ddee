"""Fixtures for the tests of a spacebot plugin; load with ``pytest_plugins``.

In a plugin's ``conftest.py``::

    pytest_plugins = ["spacebot_core.testing.pytest_plugin"]

* ``spacebot_host``: a :class:`~spacebot_core.testing.SpacebotHost` in the test's
  temporary directory, to register plugins for the test, write config files, and run
  the real runtime on them (``await spacebot_host.run_once(config)``).

The conformance checks themselves come with
:class:`~spacebot_core.testing.AdapterConformance`, which needs no plugin.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spacebot_core.testing.host import SpacebotHost


@pytest.fixture
def spacebot_host(tmp_path: Path) -> Iterator[SpacebotHost]:
    """A temporary spacebot for one test; what it installed is forgotten afterwards."""
    host = SpacebotHost(tmp_path)
    try:
        yield host
    finally:
        host.close()
