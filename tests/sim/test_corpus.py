"""Every seed that once found a bug must pass now."""

from __future__ import annotations

import pytest

from herald.sim.runner import run_seed

from .corpus import CORPUS


@pytest.mark.parametrize(("seed", "faults", "note"), CORPUS, ids=[str(c[0]) for c in CORPUS])
def test_corpus_seed_passes(seed: int, faults: tuple[str, ...] | None, note: str) -> None:
    result = run_seed(seed, faults=faults)
    assert not result.failed, f"{note}\n{result.verdict}: {result.detail}"
