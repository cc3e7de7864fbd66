"""`herald demo` on a real 3-node cluster: each semantics keeps its promise under faults.

Which phenomena a short run provokes depends on timing (real processes, real
kills), so this test asserts the promises -- at-most-once never duplicates,
at-least-once never loses, effectively-once does neither -- and the report's
shape; `make demo` shows the phenomena themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from herald.cli.main import app


def test_the_demo_keeps_every_promise(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["demo", "--duration", "30", "--messages", "90", "--seed", "7", "--json",
         "--out", str(tmp_path)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    modes = summary["modes"]
    assert set(modes) == {"at_most_once", "at_least_once", "effectively_once"}
    for mode in modes.values():
        assert mode["intended"] == 90
        assert mode["unexpected"] == 0
        assert mode["drained"] is True
    assert modes["at_most_once"]["duplicated"] == 0
    assert modes["at_least_once"]["lost"] == 0
    assert modes["effectively_once"]["lost"] == 0
    assert modes["effectively_once"]["duplicated"] == 0
    assert modes["effectively_once"]["effects"] == 90
    assert summary["faults"]["leader_kills"] >= 3
    assert summary["faults"]["consumer_kills"] >= 3
    assert (tmp_path / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "report.json").read_text())["modes"] == modes
