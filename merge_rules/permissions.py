"""Who may merge what: an admin anything; a manager only records they are responsible for (the ones
they may edit and delete). Checked by the engine itself, whatever page or command calls it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from crm import schema
from merge_rules.errors import PermissionDenied

# user_id None: the pipeline acting on its own (scheduled runs, the CLI without --user)
SYSTEM = {"id": None, "name": "system", "role": "admin"}


def load_user(conn: Connection, user_id: int | None) -> dict[str, Any]:
    if user_id is None:
        return dict(SYSTEM)
    u = schema.users
    row = conn.execute(sa.select(u.c.id, u.c.name, u.c.role).where(u.c.id == user_id)).mappings().first()
    if row is None:
        raise PermissionDenied(f"There is no user #{user_id}; merges and undos need an existing user "
                               "(or none, for the pipeline itself).")
    return dict(row)


def user_label(user: Mapping[str, Any]) -> str:
    return user["name"] if user.get("id") is None else f"{user['name']} (#{user['id']})"


def denied_records(user: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records ``user`` may not merge (none for an admin)."""
    if user["role"] == "admin":
        return []
    return [r for r in records if r.get("responsible_id") != user["id"]]


def may_mark_pair(user: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether ``user`` may mark two records "not duplicates" (or withdraw the mark): an admin any
    pair, a manager one where a record is theirs. (A record not found is nobody's: {}.)"""
    return len(denied_records(user, records)) < 2


def check_merge(user: Mapping[str, Any], entity_type: str, records: Iterable[Mapping[str, Any]],
                owners: Mapping[int, Mapping[str, Any]] | None = None) -> None:
    """Raise PermissionDenied unless ``user`` may edit and delete every record of the group."""
    others = denied_records(user, records)
    if not others:
        return
    owners = owners or {}

    def owner(r):
        rid = r.get("responsible_id")
        return "nobody" if rid is None else owners.get(rid, {}).get("name", f"user #{rid}")

    listed = ", ".join(f"#{r['id']} ({owner(r)})" for r in others)
    raise PermissionDenied(
        f"{user_label(user)} is a manager and may merge only {entity_type} records they are responsible "
        f"for; not {listed}. Ask an admin, or the responsible manager, to merge this group.")


def check_undo(user: Mapping[str, Any], merge: Mapping[str, Any]) -> None:
    """An admin may undo any merge; a manager only one they made themselves."""
    if user["role"] == "admin" or (merge.get("user_id") is not None and merge["user_id"] == user["id"]):
        return
    raise PermissionDenied(f"{user_label(user)} is a manager and may undo only merges they made; merge "
                           f"#{merge['id']} was made by someone else. Ask an admin to undo it.")
