"""Apply approved groups (plain function; the apply flow and `crm-dedup merge` call it)."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from crm import proposals, schema
from crm.store import Store
from pipelines.settings import Settings

log = logging.getLogger(__name__)


def new_batch_id() -> str:
    """The id of a new batch of merges (what `crm-dedup undo --all` takes)."""
    import uuid

    return "batch-" + uuid.uuid4().hex[:10]


def only_links_moved(approved, fresh) -> bool:
    """Whether ``fresh`` (planned again now) merges what ``approved`` did: the same records, field values,
    conflicts and phones/e-mails, no problem, and only rows of the link tables differ (another
    group's merge moved a contact-company link, a deal...). Such a plan needs no person again."""
    own = {schema.ENTITY_TABLES[approved.entity_type].name, schema.communications.name}
    changed = {k for k in approved.fingerprints.keys() | fresh.fingerprints.keys()
               if approved.fingerprints.get(k) != fresh.fingerprints.get(k)}
    return not fresh.problems and not any(k.split(":", 1)[0] in own for k in changed) and _merges_alike(approved, fresh)


def _conflicts_settled(store, plans: list, settings: Settings) -> list:
    """The plans, those with conflicts left open (planned with conflict_policy 'ask') planned again
    with the merge's own conflict policy (and the values a person chose): what a person approved
    with open conflicts cannot merge otherwise. Only where the records are as they were planned (the
    same fingerprints) and the rest of the plan stays as approved; any other stays as it is (and is
    reported as having conflicts)."""
    from merge_rules.plan import plan_groups

    if settings.merge.conflict_policy == "ask":
        return plans
    out = list(plans)
    for entity in sorted({plan.entity_type for _gid, plan in plans}):
        open_ = [i for i, (_gid, plan) in enumerate(plans) if plan.entity_type == entity and plan.unresolved]
        groups = [(plans[i][1].primary_id, plans[i][1].member_ids) for i in open_]
        choices = {plans[i][1].primary_id: _choices(plans[i][1]) for i in open_}
        for i, fresh in zip(open_, plan_groups(store, entity, groups, settings.merge, choices=choices) if groups else []):
            approved = plans[i][1]
            # only the open conflicts may change: the merge's settings may name other rules or a hard delete
            if (fresh.fingerprints == approved.fingerprints and not fresh.problems and not fresh.unresolved
                    and _merges_alike(approved, fresh, {c.field for c in approved.unresolved})):
                fresh.group_id = approved.group_id
                out[i] = (plans[i][0], fresh)
    return out


def _choices(plan) -> dict[str, int]:
    """The values a person chose in ``plan`` (field -> record), to keep in a plan made again."""
    return {f: d.source_id for f, d in plan.fields.items() if d.rule == "choice"}


def _merges_alike(approved, fresh, open_fields=frozenset()) -> bool:
    """Whether ``fresh`` merges what ``approved`` does (the same records, field values but those of
    ``open_fields``, phones/e-mails, access warnings and way of deleting)."""
    def decisions(plan):
        return ({k: (d.value, d.source_id, d.conflict, d.resolved_by) for k, d in plan.fields.items()
                 if k not in open_fields},
                [(c.id, c.action, c.repeat_of) for c in plan.communications],
                [(w.user_id, w.record_ids) for w in plan.access_warnings],
                plan.primary_id, plan.duplicate_ids, plan.delete_mode)
    return decisions(approved) == decisions(fresh)


def apply_approved(db: str | None, batch_id: str, user_id: int | None, settings_path: str | None = None,
                   group_ids: list[str] | None = None) -> list[dict]:
    """Merge every approved group (or the given ones, if approved), each in its own transaction.
    A stale plan (records edited since) is re-planned and sent back to pending with a note."""
    from merge_rules.apply import apply_batch
    from merge_rules.plan import MergePlan, plan_groups

    settings = Settings.load(settings_path)
    store = Store(db, must_exist=True)
    store.check_schema()
    groups = proposals.read_groups(store, status="approved")
    if group_ids is not None:
        groups = groups[groups["id"].isin(group_ids)]
    # a batch re-run after a crash: its applied groups are already 'applied' and are not read again
    plans, unreadable = [], []
    for row in groups.itertuples(index=False):
        if not row.plan:
            plan = plan_groups(store, row.entity_type, [(row.primary_id, list(row.member_ids))], settings.merge)[0]
        else:
            try:
                plan = MergePlan.from_dict(row.plan)
            except (KeyError, ValueError, TypeError, AttributeError) as exc:  # the rest of the batch goes on
                unreadable.append((row, exc))
                continue
        plans.append((row.id, plan))
    plans = _conflicts_settled(store, plans, settings)
    results = apply_batch(store, [p for _, p in plans], user_id, batch_id, group_ids=[g for g, _ in plans])
    out = []
    g = schema.dedup_groups
    for row, exc in unreadable:
        # not guessed at: planned again from the records as they are now, back to a person to approve
        fresh = plan_groups(store, row.entity_type, [(row.primary_id, list(row.member_ids))], settings.merge)[0]
        with store.engine.begin() as conn:
            conn.execute(g.update().where(g.c.id == row.id).values(status="pending", updated_at=proposals.now()))
            proposals.set_plan(conn, row.id, fresh.to_dict())
        log.warning("group %s: its stored plan could not be read (%s: %s)", row.id, type(exc).__name__, exc)
        out.append({"group_id": row.id, "status": "unreadable", "merge_id": None,
                    "message": f"The stored plan of group {row.id} could not be read ({type(exc).__name__}: "
                               f"{exc}); nothing was merged. Planned again; the group is pending again for a "
                               "person to approve."})
    for (gid, plan), res in zip(plans, results):
        status = res.status
        message = res.message
        if status == "stale":
            # planned again as approved: its choices, conflict policy and way of deleting
            fresh = plan_groups(store, plan.entity_type, [(plan.primary_id, [plan.primary_id, *plan.duplicate_ids])],
                                settings.merge.model_copy(update={"delete_mode": plan.delete_mode,
                                                                  "conflict_policy": plan.conflict_policy}),
                                choices={plan.primary_id: _choices(plan)})[0]
            again = apply_batch(store, [fresh], user_id, batch_id, group_ids=[gid])[0] \
                if only_links_moved(plan, fresh) else None
            if again is not None and again.status == "applied":
                status, res = "applied", again
                message = (f"{again.message} (re-planned first: only links of its records had moved since the "
                           "plan was made, e.g. by the merges of other groups; what it merges is as approved)")
            else:
                note = " (re-planned: records changed)"
                with store.engine.begin() as conn:
                    conn.execute(g.update().where(g.c.id == gid).values(
                        status="pending", updated_at=proposals.now(),
                        primary_reason=sa.case((g.c.primary_reason.endswith(note), g.c.primary_reason),
                                               else_=sa.func.coalesce(g.c.primary_reason, "") + note)))
                    proposals.set_plan(conn, gid, fresh.to_dict())
                message = f"{message} Re-planned; the group is pending again for a person to approve."
        elif status in ("conflicts", "denied", "not_duplicates"):
            # not for a scheduler to retry every hour: back to a person
            proposals.set_status(store, [gid], "pending", from_statuses=("approved",))
            message = f"{message} The group is pending again."
        out.append({"group_id": gid, "status": status, "merge_id": getattr(res, "merge_id", None),
                    "message": message})
    return out
