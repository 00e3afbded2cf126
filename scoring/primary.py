"""Which record of a group is the primary, and why.

Bitrix24's order: records the reviewing user may edit first; then the citation index (linked
deals, invoices, quotes, activities and tasks, weighted); then the most recently modified; then the
most complete. Other rules rank by age, completeness or a custom score. Ties are broken by the
lowest id, or left for a person.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

RULES = {
    # rule -> criteria in order: (column, higher_is_better, words)
    "bitrix": [("editable", True, "editable by you"), ("citations", True, "most linked records"),
               ("modified_at", True, "modified most recently"), ("completeness", True, "most complete")],
    "oldest": [("editable", True, "editable by you"), ("created_at", False, "created first")],
    "newest": [("editable", True, "editable by you"), ("created_at", True, "created last")],
    "most_complete": [("editable", True, "editable by you"), ("completeness", True, "most complete"),
                      ("citations", True, "most linked records")],
    "custom": [("editable", True, "editable by you"), ("custom_score", True, "highest custom score")],
}


@dataclass
class PrimaryChoice:
    primary_id: object
    ordered_ids: list  # best first
    reason: str
    tie: bool  # the top two could not be told apart by the rule


def rank_groups(members: pd.DataFrame, rule: str = "bitrix", tie_policy: str = "id") -> pd.DataFrame:
    """Rank every group at once. ``members``: one row per record with ``id``, ``group`` and whatever
    of editable, citations, modified_at, created_at, completeness, custom_score is known (missing
    criteria are skipped). Returns one row per group: group, primary_id, reason, tie, and the
    members' ids best first (``ordered_ids``)."""
    criteria = [c for c in RULES[rule] if c[0] in members.columns and members[c[0]].notna().any()]
    frame = members.copy()
    keys, ascending = [], []
    for col, higher, _ in criteria:
        values = frame[col]
        if col.endswith("_at"):
            values = pd.to_datetime(values)
        elif values.dtype == bool or col == "editable":
            values = values.astype(float)
        frame[f"_k_{col}"] = values
        keys.append(f"_k_{col}")
        ascending.append(not higher)
    frame = frame.sort_values(["group"] + keys + ["id"], ascending=[True] + ascending + [True],
                              na_position="last", kind="stable")
    rank = frame.groupby("group", sort=False).cumcount()
    best = frame[rank.to_numpy() == 0].set_index("group")
    runner = frame[rank.to_numpy() == 1].set_index("group").reindex(best.index)
    ordered = frame.groupby("group", sort=False)["id"].agg(list)
    reasons, ties = [], []
    for g in best.index:
        b, r = best.loc[g], runner.loc[g]
        reason, tie = _reason(b, None if pd.isna(r["id"]) else r, criteria)
        if tie and tie_policy == "id":
            reason += f"; tie broken by the lowest id ({b['id']})"
        reasons.append(reason)
        ties.append(tie)
    return pd.DataFrame({"group": best.index, "primary_id": best["id"].to_numpy(), "reason": reasons, "tie": ties,
                         "ordered_ids": ordered.reindex(best.index).to_numpy()})


def rank_group(members: pd.DataFrame, rule: str = "bitrix", tie_policy: str = "id") -> PrimaryChoice:
    """One group (the review page re-ranks a group for the user looking at it)."""
    row = rank_groups(members.assign(group=0), rule, tie_policy).iloc[0]
    return PrimaryChoice(row["primary_id"], list(row["ordered_ids"]), row["reason"], bool(row["tie"]))


def _reason(best, runner, criteria) -> tuple[str, bool]:
    if runner is None:
        return "only record", False
    for col, _, words in criteria:
        b, r = best[f"_k_{col}"], runner[f"_k_{col}"]
        if pd.isna(b) and pd.isna(r):
            continue
        if pd.isna(r) or (not pd.isna(b) and b != r):
            return f"{words} ({_fmt(b, col)} vs {_fmt(r, col)} for #{_fmt(runner['id'])})", False
    return "all criteria equal", True


def _fmt(v, col: str = "") -> str:
    if col == "editable" or isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, pd.Timestamp):
        return v.strftime("%Y-%m-%d %H:%M")
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".")
    return str(v)


def completeness(records: pd.DataFrame, values: pd.DataFrame, roles: list[str]) -> pd.Series:
    """Share of the table's roles each record fills (multi-value roles count once)."""
    single = [r for r in roles if r in records.columns]
    filled = records[single].notna() & records[single].astype(str).apply(lambda s: s.str.strip().ne(""))
    score = filled.sum(axis=1).astype(float)
    multi = [r for r in roles if r not in records.columns]
    if multi and len(values):
        has = values[values["role"].isin(multi)].groupby("id")["role"].nunique()
        score = score.add(has.reindex(records.index).fillna(0), fill_value=0)
    total = max(len(single) + len(multi), 1)
    return (score / total).rename("completeness")
