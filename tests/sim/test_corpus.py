"""Every seed that once found a bug must pass now."""

from __future__ import annotations

import pytest

from herald.sim.runner import run_seed

from .corpus import CORPUS, QUEUE_CORPUS


@pytest.mark.parametrize(("seed", "faults", "note"), CORPUS, ids=[str(c[0]) for c in CORPUS])
def test_corpus_seed_passes(seed: int, faults: tuple[str, ...] | None, note: str) -> None:
    result = run_seed(seed, faults=faults)
    assert not result.failed, f"{note}\n{result.verdict}: {result.detail}"


@pytest.mark.parametrize(("seed", "note"), QUEUE_CORPUS, ids=[str(c[0]) for c in QUEUE_CORPUS])
def test_queue_corpus_seed_passes(seed: int, note: str) -> None:
    result = run_seed(seed, workload="queue")
    assert not result.failed, f"{note}\n{result.verdict}: {result.detail}"
