"""The test kit for spacebot plugins: a temporary host and the adapter conformance suite.

* :class:`SpacebotHost` (fixture ``spacebot_host`` in
  :mod:`spacebot_core.testing.pytest_plugin`): register a plugin for one test, write a
  config, run the real runtime once, or one cycle of one instance.
* :class:`AdapterConformance`: the checks every channel must pass; subclass it with the
  channel's name and a ``driver`` fixture returning your :class:`ChannelDriver`.
* :class:`ConformanceHarness`: the same runs, for function-based tests.

See docs/tutorial-channel.md for a complete channel tested this way.
"""

from spacebot_core.testing.conformance import (
    AdapterConformance,
    AgentRecorder,
    ChannelDriver,
    ConformanceHarness,
    Delivered,
    Injected,
    SimulatedCrash,
    recording_agent_plugin,
    run_check,
)
from spacebot_core.testing.host import SpacebotHost, toml_table, toml_value, write_distribution

__all__ = [
    "AdapterConformance",
    "AgentRecorder",
    "ChannelDriver",
    "ConformanceHarness",
    "Delivered",
    "Injected",
    "SimulatedCrash",
    "SpacebotHost",
    "recording_agent_plugin",
    "run_check",
    "toml_table",
    "toml_value",
    "write_distribution",
]
