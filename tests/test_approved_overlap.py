"""A group a person approved goes first: a run finding its records again in a group under another id
(a new duplicate joined it, or a record was added to it with `include`) holds that group back
instead of proposing the same records twice; the run after the merge proposes what is left. On
SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import re
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from typer.testing import CliRunner

from crm import proposals, schema
from crm.demo import DemoSizes, generate_demo
from crm.store import Store
from merge_rules.grouping import include_record
from pipelines import steps
from pipelines.apply import apply_approved
from pipelines.cli import app as cli_app

WHEN = dt.datetime(2023, 3, 1, 9, 0)
PHONE, EMAIL = "+7 916 404-40-40", "gleb.orlov.1980@mail.ru"


def _settings(tmp_path: Path) -> str:
    path = tmp_path / "settings.yaml"
    path.write_text(yaml.safe_dump({"match": {"random_pairs": 100_000, "workers": 1},
                                    "merge": {"conflict_policy": "keep_primary"},
                                    "pipeline": {"runs_dir": str(tmp_path / "runs")}}))
    return str(path)


def _add_orlov(store: Store, n: int = 1) -> list[int]:
    """``n`` new contacts, each the same person (name, phone, e-mail): duplicates of one another."""
    c, comm = schema.contacts, schema.communications
    with store.engine.begin() as conn:
        top = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one()
        ids = [top + k for k in range(1, n + 1)]
        conn.execute(c.insert(), [dict(id=i, last_name="Орлов", first_name="Глеб", middle_name="Игоревич",
                                       created_at=WHEN, modified_at=WHEN) for i in ids])
        conn.execute(comm.insert(), [dict(entity_type="contact", entity_id=i, type=t, kind="work", value=v)
                                     for i in ids for t, v in (("phone", PHONE), ("email", EMAIL))])
    store.fix_sequences()
    return ids


@pytest.fixture
def crm(store):
    """A demo CRM plus #A and #B, one person twice (and in no demo group: a name and phone of their own)."""
    generate_demo(store, DemoSizes(contacts=600, companies=20, leads=20, managers=3), seed=7)
    return _add_orlov(store, 2)


def _holding(store: Store, records, status: str | None = None) -> pd.DataFrame:
    """The stored contact groups (of ``status``) holding any of ``records``."""
    groups = proposals.read_groups(store, entity_type="contact", status=status)
    return groups[groups["member_ids"].map(lambda ms: bool(set(map(int, ms)) & set(records)))]


def _found(folder: Path, record: int) -> pd.Series:
    """The group a run found ``record`` in, from the run's own group table (stored or not)."""
    gt = pd.read_parquet(folder / "contact" / "group_table.parquet")
    return gt[gt["member_ids"].map(lambda ms: record in set(map(int, ms)))].iloc[0]


def _plans_of(store: Store, group_id: str) -> list:
    p = schema.dedup_plans
    with store.engine.connect() as conn:
        return conn.execute(sa.select(p.c.run_id).where(p.c.group_id == group_id)).scalars().all()


def _approve_the_pair(store: Store, pair: list[int]) -> pd.Series:
    (group,) = [g for _, g in _holding(store, pair).iterrows()]
    assert set(map(int, group["member_ids"])) == set(pair) and group["status"] == "pending"
    assert proposals.set_status(store, [group["id"]], "approved", None) == 1
    return group


def _merge(store: Store, tmp_path: Path, group_id: str) -> int:
    """The hourly apply merging the approved group; returns its primary."""
    (result,) = [r for r in apply_approved(store.url, "b1", None, _settings(tmp_path)) if r["group_id"] == group_id]
    assert result["status"] == "applied", result
    return int(proposals.read_groups(store).set_index("id").loc[group_id, "primary_id"])


@pytest.fixture(scope="module")
def prefect_server():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.mark.slow
def test_a_new_duplicate_of_an_approved_group_waits_for_its_merge(store, crm, tmp_path, prefect_server):
    from pipelines.flows import dedup_flow
    from pipelines.run import print_summary

    settings = _settings(tmp_path)
    dedup_flow(db=store.url, entity_types=["contact"], settings_path=settings)
    approved = _approve_the_pair(store, crm)
    (new,) = _add_orlov(store)  # the same person once more, entered after the approval

    second = dedup_flow(db=store.url, entity_types=["contact"], settings_path=settings)
    found = _found(Path(second["folder"]), new)  # the run does find the three together...
    assert set(map(int, found["member_ids"])) == {*crm, new} and found["group_id"] != approved["id"]
    # ... and proposes none of them again while the approved group waits for its merge
    assert _holding(store, [*crm, new], "pending").empty
    stored = proposals.read_groups(store).set_index("id")
    assert found["group_id"] not in stored.index and _plans_of(store, found["group_id"]) == []  # (nor its staged plan)
    assert stored.loc[approved["id"], "status"] == "approved"
    assert stored.loc[approved["id"], "run_id"] != second["run_id"]
    assert second["proposals"]["waiting"] == 1 and second["proposals"]["kept"] == 0
    printed = io.StringIO()  # (not capsys: Prefect's log handler keeps the stream it first saw)
    with contextlib.redirect_stdout(printed):
        print_summary(second)
    line = next(t for t in printed.getvalue().splitlines() if t.startswith("Proposals stored"))
    assert "0 already decided, 1 held back: their records are in approved groups not merged yet" in line, line
    # `crm-dedup groups` lists the approved group once, and no pending group of these records
    listed = CliRunner().invoke(cli_app, ["groups", "--status", "all", "--entity", "contact", "--limit", "1000",
                                          "--db", store.url])
    assert listed.exit_code == 0, listed.output
    heads = [t for t in listed.output.splitlines() if t.startswith("contact-")]  # (a group's first line)
    mine = [t.split()[:2] for t in heads if {int(i) for i in re.findall(r"#(\d+)", t)} & {*crm, new}]
    assert mine == [[approved["id"], "approved"]], listed.output

    primary = _merge(store, tmp_path, approved["id"])
    third = dedup_flow(db=store.url, entity_types=["contact"], settings_path=settings)
    (now,) = [g for _, g in _holding(store, [*crm, new]).iterrows() if g["status"] == "pending"]
    assert set(map(int, now["member_ids"])) == {primary, new} and now["run_id"] == third["run_id"]
    assert third["proposals"]["waiting"] == 0 and now["plan"] is not None


def _run(store: Store, tmp_path: Path, incremental: bool = False) -> tuple[Path, dict]:
    """A dedup run of the contacts as the flow makes it (as tests/test_together.py runs it)."""
    settings = _settings(tmp_path)
    run_id, folder = steps.new_run(store.url, ["contact"], str(tmp_path / "runs"))
    out = Path(steps.find_step(store.url, "contact", folder, settings, incremental=incremental))
    counts = steps.propose_step(store.url, run_id, folder, ["contact"], settings)
    proposals.finish_run(store, run_id, "completed", {"proposals": counts})
    return out.parent, counts


def test_a_record_added_to_a_group_approved_again_is_not_proposed_twice_by_an_incremental_run(store, crm, tmp_path):
    """`include` adds a record to the group (same id, approval withdrawn); approved again, an incremental
    run finds the same records under a new id (the "together" mark keeps them in one group): held back."""
    c = schema.contacts
    with store.engine.begin() as conn:  # another person (nothing in common with the pair): in no group
        stranger = conn.execute(sa.select(sa.func.max(c.c.id))).scalar_one() + 1
        conn.execute(c.insert().values(id=stranger, last_name="Незнакомцева", first_name="Вера", created_at=WHEN,
                                       modified_at=WHEN))
    store.fix_sequences()
    _run(store, tmp_path)
    assert _holding(store, [stranger]).empty
    group = _approve_the_pair(store, crm)
    assert "approve it again" in include_record(store, group["id"], stranger, None)  # (approval withdrawn)
    assert proposals.set_status(store, [group["id"]], "approved", None) == 1  # approved with the record

    folder, counts = _run(store, tmp_path, incremental=True)
    found = _found(folder, stranger)
    assert set(map(int, found["member_ids"])) == {*crm, stranger} and found["group_id"] != group["id"]
    assert counts["waiting"] == 1 and counts["kept"] == 0
    assert _holding(store, [*crm, stranger], "pending").empty and _plans_of(store, found["group_id"]) == []
    assert list(_holding(store, [*crm, stranger])["id"]) == [group["id"]]

    primary = _merge(store, tmp_path, group["id"])
    folder, counts = _run(store, tmp_path, incremental=True)
    assert counts["waiting"] == 0
    assert _holding(store, [primary, *crm, stranger], "pending").empty  # all merged: nothing is left to propose


def _row(i: int, members: list[int], entity: str = "contact") -> dict:
    return {"id": f"{entity}-{i}", "entity_type": entity, "tier": "certain", "score": 0.99, "primary_id": members[0],
            "member_ids": members, "responsible_ids": [], "primary_reason": "oldest", "criteria": "phone",
            "pairs": []}


def test_replace_pending_holds_back_a_group_sharing_a_record_with_an_approved_one(store):
    """Whole or partial overlap, a group sharing a record with an approved group of its entity type is
    not stored, nor is the plan staged for it; a run of another entity type, or after the merge (or
    the approval withdrawn), stores it."""
    proposals.start_run(store, "r1", ["contact", "lead"], "/tmp")
    proposals.replace_pending(store, "r1", ["contact", "lead"],
                              [{**_row(i, ms), "plan": {"run": 1}} for i, ms in ((1, [1, 2]), (3, [3, 4]), (5, [5, 6]))]
                              + [{**_row(1, [1, 2], "lead"), "plan": {"run": 1}}])
    proposals.set_status(store, ["contact-1", "contact-5"], "approved")
    proposals.finish_run(store, "r1", "completed")

    proposals.start_run(store, "r2", ["contact"], "/tmp")
    # contact-1 found again as it was (its id: kept); with a new record (every record of contact-1 in
    # it); #6 of contact-5 with a new record (a partial overlap); contact-3 again; a new group
    found = [_row(1, [1, 2]), {**_row(7, [1, 2, 7]), "member_ids": "[1, 2, 7]"}, _row(8, [6, 8]), _row(3, [3, 4]),
             _row(9, [9, 10])]
    assert proposals.stage_plans(store, "r2", [(g["id"], {"run": 2}) for g in found]) == 5
    counts = proposals.replace_pending(store, "r2", ["contact"], found)
    assert counts == {"removed": 1, "inserted": 2, "kept": 1, "waiting": 2, "same_as_before": 1}
    groups = proposals.read_groups(store).set_index("id")
    assert groups["status"].to_dict() == {"contact-1": "approved", "contact-5": "approved", "lead-1": "pending",
                                          "contact-3": "pending", "contact-9": "pending"}
    assert _plans_of(store, "contact-7") == _plans_of(store, "contact-8") == []
    assert groups.loc["contact-1", "plan"] == {"run": 1}
    proposals.finish_run(store, "r2", "completed")

    # a lead run: contact-1's approval holds no lead back (lead #1 and #2 are other records)
    proposals.start_run(store, "r3", ["lead"], "/tmp")
    counts = proposals.replace_pending(store, "r3", ["lead"], [{**_row(7, [1, 2, 7], "lead"), "plan": {"run": 3}}])
    assert counts == {"removed": 1, "inserted": 1, "kept": 0, "waiting": 0, "same_as_before": 0}
    proposals.finish_run(store, "r3", "completed")

    # contact-1 merged, contact-5's approval withdrawn: what was held back is proposed
    proposals.set_status(store, ["contact-1"], "applied", from_statuses=("approved",))
    assert proposals.send_back(store, "contact-5", {"run": 1}, " (sent back)")
    proposals.start_run(store, "r4", ["contact"], "/tmp")
    counts = proposals.replace_pending(store, "r4", ["contact"], [{**_row(11, [1, 7]), "plan": {"run": 4}},
                                                                  {**_row(8, [6, 8]), "plan": {"run": 4}}])
    assert counts == {"removed": 3, "inserted": 2, "kept": 0, "waiting": 0, "same_as_before": 0}
    pending = proposals.read_groups(store, status="pending", entity_type="contact")
    assert sorted(pending["id"]) == ["contact-11", "contact-8"]
