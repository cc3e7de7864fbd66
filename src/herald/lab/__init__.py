"""The lab: Herald's argument, made runnable.

Exactly-once delivery is impossible, agreement under failure is hard, and each
protocol buys some guarantees by giving up others. Each scenario here runs a
sans-IO protocol core in the simulator (the scheduler, network and crash model
of ``herald sim``), judges the outcome with a checker, and returns a
:class:`LabResult` that the ``herald lab`` command shows as tables, a picture,
or JSON. See ``docs/lab.md``.
"""

from __future__ import annotations

from .registry import SCENARIOS, Scenario, find, run_scenario
from .result import Chart, LabResult, Series, Table, Verdict

__all__ = [
    "SCENARIOS",
    "Chart",
    "LabResult",
    "Scenario",
    "Series",
    "Table",
    "Verdict",
    "find",
    "run_scenario",
]
