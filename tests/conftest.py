"""Settings for the whole test suite.

Hypothesis times every example on the wall clock (a 200 ms deadline, and a
health check that fails when generating data is "too slow"). On a machine
whose CPUs are busy with other work both fail tests that are correct, so they
are off for every test: tests assert behaviour, never speed.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile("herald", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("herald")
