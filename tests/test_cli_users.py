"""`crm-dedup users add`: a database made with `init` has no user, so nobody could approve or merge."""

from __future__ import annotations

import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from crm.csv_io import import_csv
from pipelines.cli import app


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def users(store) -> list[tuple]:
    u = schema.users
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(u.c.id, u.c.email, u.c.role, u.c.name).order_by(u.c.id))]


def test_an_admin_and_managers_are_added_then_approve_and_own_records(store, tmp_path):
    made = invoke("init", "--db", store.url)
    assert made.exit_code == 0 and "Next: `crm-dedup users add EMAIL --name NAME --role admin`" in made.output
    refused = invoke("approve", "some-group", "--db", store.url)
    assert refused.exit_code != 0 and "crm-dedup users add EMAIL --name NAME --role admin" in refused.output
    added = invoke("users", "add", "boss@example.com", "--name", "Главный Админ", "--role", "admin", "--db", store.url)
    assert added.exit_code == 0, added.output
    assert "Added admin #1 Главный Админ <boss@example.com>" in added.output
    # a manager with the id the CRM's records name as responsible, added before they are imported
    assert invoke("users", "add", "m5@example.com", "--name", "Пятый", "--id", 5, "--db", store.url).exit_code == 0
    f = tmp_path / "c.csv"
    f.write_text("last_name,first_name,responsible_id\nГромов,Степан,5\n", encoding="utf-8")
    import_csv(store, f, "contact")
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.contacts.c.responsible_id)).scalar_one() == 5
    # the next user without an id comes after the ids given by hand (PostgreSQL's sequence too)
    assert invoke("users", "add", "m6@example.com", "--name", "Шестой", "--db", store.url).exit_code == 0
    assert users(store) == [(1, "boss@example.com", "admin", "Главный Админ"), (5, "m5@example.com", "manager", "Пятый"),
                            (6, "m6@example.com", "manager", "Шестой")]


def test_a_user_already_there_or_a_role_unknown_is_refused(store):
    assert invoke("users", "add", "a@example.com", "--name", "A", "--db", store.url).exit_code == 0
    again = invoke("users", "add", "a@example.com", "--name", "B", "--db", store.url)
    assert again.exit_code != 0 and "user #1 (a@example.com) is already in" in again.output
    same_id = invoke("users", "add", "b@example.com", "--name", "B", "--id", 1, "--db", store.url)
    assert same_id.exit_code != 0 and "user #1 (a@example.com) is already in" in same_id.output
    boss = invoke("users", "add", "c@example.com", "--name", "C", "--role", "boss", "--db", store.url)
    assert boss.exit_code != 0 and "--role must be admin or manager (got 'boss')" in boss.output
    assert [u[1] for u in users(store)] == ["a@example.com"]
