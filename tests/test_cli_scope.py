"""The command line follows the review page's rules on whose records a manager may act on: `approve`
only groups whose live records are all theirs, `skip` and `unskip` only pairs where one record is
theirs; an admin (and the CLI without --user, acting as the first admin) may do everything.

The sample (review.testing): admin #1; managers Мария #2, Пётр #3, John #4. Groups: contact-10
(#10, #12 Мария's, #11 Пётр's), contact-13 and contact-16 (John's), certain; company-20 (Мария's
and Пётр's), company-23 (John's), lead-601 (Мария's), probable."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from crm import schema
from pipelines.cli import app
from review.testing import ADMIN, JOHN, MARIA, PETR, load_review_sample


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def sample(store, tmp_path):
    info = load_review_sample(store, tmp_path / "run")
    return store, info["groups"]


def _statuses(store) -> dict[str, str]:
    g = schema.dedup_groups
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(g.c.id, g.c.status)).all())


def _approvers(store) -> dict[str, int | None]:
    g = schema.dedup_groups
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(g.c.id, g.c.approved_by).where(g.c.status == "approved")).all())


def _skips(store) -> list[tuple]:
    s = schema.dedup_skips
    with store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(s.c.entity_type, s.c.id_a, s.c.id_b, s.c.user_id)
                                               .order_by(s.c.entity_type, s.c.id_a, s.c.id_b)).all()]


# -- approve ------------------------------------------------------------------------------------

def test_a_manager_cannot_approve_a_group_holding_records_of_others(sample):
    store, groups = sample
    mixed, johns = groups["contact-10"], groups["contact-13"]
    result = invoke("approve", mixed, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Approved 0 group(s) as Мария Иванова" in out
    assert f"{mixed}: holds records of other managers: contact #11 (Пётр Сидоров)" in out, out
    assert _statuses(store)[mixed] == "pending"
    # none of John's group is Мария's either
    result = invoke("approve", johns, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 1 and "contact #13 (John Smith), #14 (John Smith)" in result.output, result.output
    # a list mixing her own and others' groups approves her own only, and names the rest
    lead = groups["lead-601"]
    result = invoke("approve", lead, mixed, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 1 and "Approved 1 group(s) as Мария Иванова" in result.output, result.output
    assert mixed in result.output and _approvers(store) == {lead: 2}


def test_a_manager_approves_a_group_whose_live_records_are_all_theirs(sample):
    store, groups = sample
    mixed = groups["contact-10"]
    # Пётр's #11 is deleted: the group's live records are all Мария's, as the review page counts them
    t = schema.contacts
    with store.engine.begin() as conn:
        conn.execute(t.update().where(t.c.id == 11).values(deleted_at=sa.func.now()))
    result = invoke("approve", mixed, "--user", MARIA, "--db", store.url)
    assert result.exit_code == 0 and "Approved 1 group(s) as Мария Иванова" in result.output, result.output
    assert _approvers(store) == {mixed: 2}


def test_approve_tier_by_a_manager_approves_only_their_own_groups(sample):
    store, groups = sample
    result = invoke("approve", "--tier", "certain", "--user", JOHN, "--db", store.url)
    assert result.exit_code == 0, result.output
    assert "Approved 2 group(s) as John Smith" in result.output
    assert "1 certain group(s) left: they hold records of other managers" in result.output, result.output
    assert _approvers(store) == {groups["contact-13"]: 4, groups["contact-16"]: 4}
    result = invoke("approve", "--tier", "certain", "--user", PETR, "--db", store.url)
    assert result.exit_code == 0 and "Approved 0 group(s) as Пётр Сидоров" in result.output, result.output
    assert "1 certain group(s) left" in result.output
    assert _statuses(store)[groups["contact-10"]] == "pending"


def test_an_admin_and_the_default_user_approve_every_group(sample):
    store, groups = sample
    result = invoke("approve", groups["contact-10"], "--user", ADMIN, "--db", store.url)
    assert result.exit_code == 0 and "Approved 1 group(s) as Админ Главный" in result.output, result.output
    result = invoke("approve", "--tier", "probable", "--db", store.url)  # no --user: the first admin
    assert result.exit_code == 0 and "Approved 3 group(s) as Админ Главный" in result.output, result.output
    assert "left" not in result.output
    assert _approvers(store) == {groups[n]: 1 for n in ("contact-10", "company-20", "company-23", "lead-601")}


def test_a_group_holding_records_marked_not_duplicates_is_not_approved(sample):
    """It could never merge (the merge found it 'not duplicates' and asked a person to choose values):
    approve says so and leaves it pending (found by helper-60)."""
    store, groups = sample
    assert invoke("skip", 10, 12, "--db", store.url).exit_code == 0
    result = invoke("approve", groups["contact-10"], "--db", store.url)
    assert result.exit_code == 1, result.output
    assert "Approved 0 group(s)" in result.output and 'hold records marked "not duplicates"' in result.output
    assert f"  {groups['contact-10']}: #10 and #12" in result.output
    for tier in ("certain", "probable"):  # a tier: the others approved, this one left and said so
        tiered = invoke("approve", "--tier", tier, "--db", store.url)
        assert tiered.exit_code == 0, tiered.output
    assert groups["contact-10"] not in _approvers(store) and _statuses(store)[groups["contact-10"]] == "pending"
    assert set(_approvers(store)) == set(groups.values()) - {groups["contact-10"]}


# -- skip and unskip ----------------------------------------------------------------------------

def test_a_manager_cannot_skip_two_records_of_others(sample):
    store, _groups = sample
    result = invoke("skip", 10, 12, "--user", PETR, "--db", store.url)
    assert result.exit_code == 2, result.output
    assert "error: Пётр Сидоров (#3) is a manager" in result.output
    assert "contact #10 (Мария Иванова), #12 (Мария Иванова)" in result.output, result.output
    assert _skips(store) == []
    # one of the two is his: allowed, and stored with him as the one who skipped
    result = invoke("skip", 10, 11, "--user", PETR, "--db", store.url)
    assert result.exit_code == 0 and "contact #10 and #11 are marked as not duplicates" in result.output
    assert _skips(store) == [("contact", 10, 11, 3)]


def test_an_admin_and_the_default_user_skip_any_pair(sample):
    store, _groups = sample
    assert invoke("skip", 10, 12, "--user", ADMIN, "--db", store.url).exit_code == 0
    again = invoke("skip", 12, 10, "--db", store.url)
    assert again.exit_code == 0 and "were marked as not duplicates already; nothing changed" in again.output
    result = invoke("skip", 23, 24, "--entity", "company", "--db", store.url)
    assert result.exit_code == 0, result.output
    assert _skips(store) == [("company", 23, 24, 1), ("contact", 10, 12, 1)]


def test_unskip_removes_the_pair_and_says_it_may_come_back(sample):
    store, _groups = sample
    assert invoke("skip", 13, 14, "--user", JOHN, "--db", store.url).exit_code == 0
    assert invoke("skip", 601, 602, "--entity", "lead", "--db", store.url).exit_code == 0
    # the ids in either order
    result = invoke("unskip", 14, 13, "--entity", "contact", "--user", JOHN, "--db", store.url)
    assert result.exit_code == 0, result.output
    assert "Removed the skip of contact #13 and #14 (marked by John Smith" in result.output
    assert "the next run may propose them as duplicates again" in result.output
    assert _skips(store) == [("lead", 601, 602, 1)]
    # gone now: a clear error, nothing else touched
    result = invoke("unskip", 13, 14, "--user", JOHN, "--db", store.url)
    assert result.exit_code == 2 and "error: contact #13 and #14 are not marked as not duplicates" in result.output
    # same pair of ids, other entity type
    result = invoke("unskip", 601, 602, "--db", store.url)
    assert result.exit_code == 2 and "contact #601 and #602 are not marked" in result.output, result.output
    assert _skips(store) == [("lead", 601, 602, 1)]
    refused = invoke("unskip", 5, 5, "--db", store.url)
    assert refused.exit_code == 2 and "error: " in refused.output and "Traceback" not in refused.output


def test_unskip_follows_the_skip_rule(sample):
    store, _groups = sample
    assert invoke("skip", 10, 12, "--db", store.url).exit_code == 0
    assert invoke("skip", 13, 14, "--db", store.url).exit_code == 0
    result = invoke("unskip", 10, 12, "--user", JOHN, "--db", store.url)
    assert result.exit_code == 2, result.output
    assert "John Smith (#4) is a manager" in result.output
    assert "contact #10 (Мария Иванова), #12 (Мария Иванова)" in result.output
    assert _skips(store) == [("contact", 10, 12, 1), ("contact", 13, 14, 1)]
    # a skip made by the admin: a manager owning one of the records may withdraw it, an admin any
    assert invoke("unskip", 12, 10, "--user", MARIA, "--db", store.url).exit_code == 0
    assert invoke("unskip", 13, 14, "--user", ADMIN, "--db", store.url).exit_code == 0
    assert _skips(store) == []
