"""Shared fixtures: a migrated CRM store on SQLite and on PostgreSQL (its own schema, dropped after)."""

from __future__ import annotations

import os
import uuid

import pytest
import sqlalchemy as sa

from crm.store import Store

PG_ADMIN_URL = os.environ.get("CRM_DEDUP_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        eng = sa.create_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not available"
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}"


_PG_PROBLEM = _pg_available()


def require_pg() -> None:
    """Skip locally without PostgreSQL; under CI a missing server is a failure, never a skip."""
    if _PG_PROBLEM:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(_PG_PROBLEM)
        pytest.skip(_PG_PROBLEM)


def pg_schema_url() -> tuple[str, str]:
    """Create a fresh schema in the test database; returns (url using it, schema name)."""
    require_pg()
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    admin.dispose()
    return f"{PG_ADMIN_URL}?options=-csearch_path%3D{name}", name


def drop_pg_schema(name: str) -> None:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request, tmp_path):
    """An empty database URL on each backend (not migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crm.db"
        return
    url, name = pg_schema_url()
    yield url
    drop_pg_schema(name)


@pytest.fixture
def store(db_url):
    """A migrated, empty CRM store on each backend."""
    s = Store(db_url)
    s.migrate()
    yield s
    s.dispose()
