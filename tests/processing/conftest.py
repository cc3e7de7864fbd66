"""Each test runs against SQLite and, when available, a real PostgreSQL server.

PostgreSQL comes from ``HERALD_TEST_PG_DSN`` (``.ci/run`` installs, starts and
points it at a server). With ``HERALD_REQUIRE_PG=1`` (set by CI) a missing or
unreachable server fails the run instead of skipping the PostgreSQL cases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.processing import Database, connect_postgres, connect_sqlite


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        db = connect_sqlite(str(tmp_path / "app.db"))
        yield db
        db.close()
        return
    dsn = os.environ.get("HERALD_TEST_PG_DSN")
    if not dsn:
        if os.environ.get("HERALD_REQUIRE_PG"):
            pytest.fail("HERALD_REQUIRE_PG is set but HERALD_TEST_PG_DSN is not")
        pytest.skip("no PostgreSQL: set HERALD_TEST_PG_DSN (CI does)")
    try:
        db = connect_postgres(dsn)
    except Exception as error:
        if os.environ.get("HERALD_REQUIRE_PG"):
            raise
        pytest.skip(f"PostgreSQL unreachable: {error}")
    # A schema of its own per test: tests never see each other's tables.
    schema = f"t_{uuid.uuid4().hex[:12]}"
    db.connection.execute(f"CREATE SCHEMA {schema}")
    db.connection.execute(f"SET search_path TO {schema}")
    yield db
    db.connection.execute(f"DROP SCHEMA {schema} CASCADE")
    db.close()


@pytest.fixture
def second_connection(database: Database, tmp_path: Path) -> Iterator[Database]:
    """Another connection to the same database (a second consumer process)."""
    if database.dialect == "sqlite":
        db = connect_sqlite(str(tmp_path / "app.db"))
    else:
        db = connect_postgres(os.environ["HERALD_TEST_PG_DSN"])
        schema = database.connection.execute("SHOW search_path").fetchone()[0]
        db.connection.execute(f"SET search_path TO {schema}")
    yield db
    db.close()
