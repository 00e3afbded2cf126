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
                              na_position="last", kind="stable", ignore_index=True)
    group = frame["group"].to_numpy()
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(frame) else np.zeros(0, np.int64)
    sizes = np.diff(np.r_[starts, len(frame)])
    best = frame.iloc[starts].reset_index(drop=True)
    has_runner = sizes > 1
    runner = frame.iloc[np.where(has_runner, starts + 1, starts)].reset_index(drop=True)
    # each group's ids as a slice of one list: a numpy array per group would cost ~0.3 s at 100,000 groups
    ids = frame["id"].to_numpy().tolist()
    ordered = [ids[s:e] for s, e in zip(starts.tolist(), starts[1:].tolist() + [len(ids)])]
    reason, tie = _reasons(best, runner, has_runner, criteria)
    if tie_policy == "id":
        reason = np.where(tie, reason + "; tie broken by the lowest id (" + best["id"].map(str).to_numpy(dtype=object)
                          + ")", reason)
    out = pd.DataFrame({"group": best["group"].to_numpy(), "primary_id": best["id"].to_numpy(), "reason": reason,
                        "tie": tie})
    out["ordered_ids"] = pd.Series(ordered, dtype=object)
    return out


def _reasons(best: pd.DataFrame, runner: pd.DataFrame, has_runner: np.ndarray, criteria) -> tuple[np.ndarray, np.ndarray]:
    """Per group, why the best record beat the runner-up: the first criterion that tells them apart,
    in words ("modified most recently (2024-05-01 10:00 vs 2023-01-02 09:00 for #17)")."""
    n = len(best)
    reason = np.full(n, "all criteria equal", dtype=object)
    decided = ~has_runner
    reason[decided] = "only record"
    runner_id = _formatted(runner["id"], "")
    for col, _, words in criteria:
        b, r = best[f"_k_{col}"], runner[f"_k_{col}"]
        bn, rn = b.isna().to_numpy(), r.isna().to_numpy()
        differ = ~(bn & rn) & (rn | (~bn & (b != r).to_numpy()))
        now = differ & ~decided
        if now.any():
            idx = np.flatnonzero(now)
            reason[idx] = (words + " (" + _formatted(b.iloc[idx], col) + " vs " + _formatted(r.iloc[idx], col)
                           + " for #" + runner_id[idx] + ")")
            decided |= now
    return reason, ~decided


def _formatted(values: pd.Series, col: str) -> np.ndarray:
    """_fmt of every value, once per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if values.dtype.kind in "iu" and col != "editable":  # ids, counts: str() of each, as _fmt does
        texts = np.append(np.asarray(uniques).astype(str).astype(object), _fmt(np.nan, col))
    elif pd.api.types.is_datetime64_any_dtype(values.dtype) and col != "editable":
        # as _fmt does for each Timestamp, for all at once
        minutes = np.asarray(pd.DatetimeIndex(uniques).tz_localize(None), dtype="datetime64[m]")
        texts = np.append(np.char.replace(np.datetime_as_string(minutes, unit="m"), "T", " ").astype(object),
                          _fmt(pd.NaT, col))
    else:
        texts = np.array([_fmt(u, col) for u in uniques] + [_fmt(np.nan, col)], dtype=object)
    return texts[codes]


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
    score = np.zeros(len(records), dtype=float)
    for col in single:
        score += _filled(records[col])
    score = pd.Series(score, index=records.index)
    multi = [r for r in roles if r not in records.columns]
    if multi and len(values):
        v = values[values["role"].isin(multi)]
        v = v[v["id"].isin(records.index)]
        has = v.drop_duplicates(["id", "role"])["id"].value_counts()
        score = score.add(has.reindex(records.index).fillna(0), fill_value=0)
    total = max(len(single) + len(multi), 1)
    return (score / total).rename("completeness")


def _filled(column: pd.Series) -> np.ndarray:
    """Whether each cell holds something: not missing and not blank once written as text."""
    if column.dtype != object and not pd.api.types.is_string_dtype(column.dtype):
        return column.notna().to_numpy()  # dates and numbers are never blank text
    codes, uniques = pd.factorize(column.to_numpy(), use_na_sentinel=True)
    filled = np.array([str(u).strip() != "" for u in uniques] + [False], dtype=bool)
    return filled[codes]
