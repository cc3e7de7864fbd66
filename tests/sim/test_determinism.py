"""A simulation run is a pure function of its seed (and the code)."""

from __future__ import annotations

import pytest

from herald.sim.options import draw_options
from herald.sim.runner import run_seed


def trace(seed: int) -> list[str]:
    lines: list[str] = []
    run_seed(seed, tracer=lines.append)
    return lines


@pytest.mark.parametrize("seed", [3, 17])
def test_same_seed_same_trace(seed: int) -> None:
    first = trace(seed)
    assert len(first) > 100
    assert first == trace(seed)


def test_different_seeds_differ() -> None:
    assert trace(3) != trace(4)


def test_options_are_drawn_from_the_seed() -> None:
    assert draw_options(11) == draw_options(11)
    assert draw_options(11) != draw_options(12)
    described = draw_options(11).describe()
    assert described.startswith("SEED=11 ")
    for field in ("nodes=", "loss=", "faults=", "liveness_bound="):
        assert field in described


def test_fault_restriction_is_honoured() -> None:
    for seed in range(30):
        options = draw_options(seed, faults=("pause", "clock"))
        assert options.faults
        assert set(options.faults) <= {"pause", "clock"}


def test_no_faults_means_a_quiet_run() -> None:
    options = draw_options(5, faults=())
    result = run_seed(5, options=options)
    assert result.verdict == "ok"
    assert result.stats["crashes"] == 0
    assert result.stats["leaders"] == 1
    assert result.stats["acked"] == result.stats["proposed"]
