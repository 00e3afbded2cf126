"""Quality against known truth: pairwise precision/recall/F1 and B-cubed, overall and per threshold."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scoring.cluster import components
from scoring.find import HELD_AT


def _pairs_within(labels: pd.Series) -> int:
    sizes = labels.value_counts().to_numpy()
    return int((sizes * (sizes - 1) // 2).sum())


def evaluate_groups(groups: pd.Series, truth: pd.Series) -> dict[str, float]:
    """``groups`` and ``truth`` map record id -> group label / real-entity label (same ids, once each)."""
    for name, labels in (("truth", truth), ("groups", groups)):
        repeated = labels.index[labels.index.duplicated()].unique()
        if len(repeated):
            raise ValueError(
                f"{name} names {len(repeated):,} record id(s) more than once (e.g. {_examples(repeated)}): one row "
                "per record is needed." + (" A truth of several entity types (the demo_truth table: contact, company "
                                           "and lead ids overlap) must be cut to the entity type of the groups."
                                           if name == "truth" else ""))
    common = groups.index.intersection(truth.index)
    if len(common) != len(groups) or len(common) != len(truth):
        # (in the order given: the first ids named are the first listed)
        only_truth = truth.index[~truth.index.isin(common)]
        only_groups = groups.index[~groups.index.isin(common)]
        if len(only_truth) or len(only_groups):
            raise ValueError(
                "groups and truth disagree on the records: "
                f"{len(only_groups):,} ids only in groups{_examples(only_groups, ' (e.g. {})')}, "
                f"{len(only_truth):,} only in truth{_examples(only_truth, ' (e.g. {})')}")
    # labels as integer codes (of their text, as before): a cell is a (group, entity) pair
    g, _ = pd.factorize(groups.loc[common].astype(str).to_numpy())
    t, t_uniques = pd.factorize(truth.loc[common].astype(str).to_numpy())
    both = g.astype(np.int64) * max(len(t_uniques), 1) + t
    gsize, tsize, cell = _sizes(g), _sizes(t), _sizes(both)
    tp = int((cell.per_label * (cell.per_label - 1) // 2).sum())
    predicted = int((gsize.per_label * (gsize.per_label - 1) // 2).sum())
    actual = int((tsize.per_label * (tsize.per_label - 1) // 2).sum())
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # B-cubed: per record, overlap of its predicted group with its true entity
    bp = float(np.mean(cell.per_record / gsize.per_record)) if len(both) else float("nan")
    br = float(np.mean(cell.per_record / tsize.per_record)) if len(both) else float("nan")
    return {"records": int(len(common)), "true_pairs": actual, "predicted_pairs": predicted, "true_positives": tp,
            "precision": precision, "recall": recall, "f1": f1,
            "bcubed_precision": bp, "bcubed_recall": br,
            "bcubed_f1": 2 * bp * br / (bp + br) if bp + br else 0.0}


def _examples(ids: pd.Index, form: str = "{}", n: int = 3) -> str:
    """A few ids, in their order, to name in an error ("" when there are none)."""
    if not len(ids):
        return ""
    shown = ", ".join(map(str, ids[:n])) + (", ..." if len(ids) > n else "")
    return form.format(shown)


class _Sizes:
    """How many records share each label (per distinct label, and per record)."""

    def __init__(self, codes: np.ndarray):
        values = np.sort(codes)
        starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]]) if len(values) else np.zeros(0, np.int64)
        self.per_label = np.diff(np.r_[starts, len(values)]).astype(np.int64)
        where = np.searchsorted(values[starts], codes) if len(values) else np.zeros(0, np.int64)
        self.per_record = self.per_label[where] if len(values) else np.zeros(0, np.int64)


def _sizes(codes: np.ndarray) -> _Sizes:
    return _Sizes(np.asarray(codes, dtype=np.int64))


def evaluate_pairs(pairs: pd.DataFrame, truth: pd.Series) -> dict[str, float]:
    """Pairwise figures of the pairs themselves (``id_a``, ``id_b``), without grouping."""
    t = truth
    same = t.reindex(pairs["id_a"]).to_numpy() == t.reindex(pairs["id_b"]).to_numpy()
    tp = int(same.sum())
    actual = _pairs_within(t.astype(str))
    precision = tp / len(pairs) if len(pairs) else 1.0
    recall = tp / actual if actual else 1.0
    return {"pairs": int(len(pairs)), "true_positives": tp, "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0}


def held_mask(pairs: pd.DataFrame) -> np.ndarray:
    """Pairs a hold rule kept at "possible" (namesakes whose only likeness is their names...): a ``held``
    column where the pairs have one, else the explanation's "Held at possible: <why>". Their stored
    probability is a cap the rule set (between possible and probable), not the model's score."""
    if "held" in pairs.columns:
        return pairs["held"].fillna(False).astype(bool).to_numpy()
    if "explanation" not in pairs.columns:
        return np.zeros(len(pairs), dtype=bool)
    return pairs["explanation"].fillna("").astype(str).str.contains(HELD_AT, regex=False).to_numpy()


QUANTILE_STEPS = 10  # deciles of the pairs' probabilities, beside the settings' thresholds
# rows the spreading of collapsed deciles fills the grid up to: the report's chart (one tick per row, 8
# inches wide, with margins) has room for twelve labels like 0.999852 side by side, not thirteen
SPREAD_ROWS = 12


def threshold_grid(probabilities, fixed=(), steps: int = QUANTILE_STEPS, held=None) -> list[float]:
    """Thresholds that matter for these pairs: ``fixed`` (the settings' possible, probable, certain) and
    the pairs' probabilities at evenly spaced quantiles (0, 1/steps, ..., 1), sorted, each once. The
    quantiles are scores of real pairs (the lower one, not interpolated), so a run whose scores all sit
    above 0.999 gets rows there rather than a fixed grid with nothing between 0.999 and 1.

    ``held``: a mask of the pairs a hold rule kept at possible (held_mask); their probability is a cap,
    not a score, and threshold_table leaves them out above possible, so they give no quantile (else the
    cap, 0.7 by default, takes the rows of several deciles). When many scores are equal the quantiles
    collapse into fewer values (most demo pairs score exactly 1); the rows they free go to the distinct
    scores above max(``fixed``) (the certain threshold), each into the widest run of scores no row
    splits yet, so the table shows where recall falls there: up to SPREAD_ROWS rows in all (never more
    than len(fixed) + steps + 1, what deciles that do not collapse give)."""
    fixed = tuple(float(t) for t in fixed)
    p = np.asarray(probabilities, dtype=float)
    if held is not None:
        held = np.asarray(held, dtype=bool)
        if held.shape != p.shape:
            raise ValueError(f"threshold_grid: {held.size:,} held flags for {p.size:,} probabilities; "
                             "give one flag per pair (held_mask of the same pairs)")
        p = p[~held]
    p = p[~np.isnan(p)]
    qs = {float(q) for q in np.quantile(p, np.linspace(0, 1, steps + 1), method="lower")} if len(p) else set()
    grid = set(fixed) | qs
    free = min(steps + 1 - len(qs), SPREAD_ROWS - len(grid)) if len(p) else 0
    if free > 0:
        floor = max(fixed) if fixed else -np.inf
        distinct = np.unique(p)
        grid |= _spread(distinct[distinct > floor], grid, free)
    return sorted(grid)


def _spread(values: np.ndarray, grid: set[float], n: int) -> set[float]:
    """Up to ``n`` of the sorted distinct ``values`` that are no row of ``grid`` yet: one at a time, the
    middle value of the longest run of them between two rows (the lower run on a tie)."""
    chosen: set[float] = set()
    for _ in range(n):
        taken = np.array(sorted(grid | chosen))
        # the rows each value lies between: values sharing a slot form one run
        slot = np.searchsorted(taken, values, side="right")
        free = ~np.isin(values, taken)
        if not free.any():
            break
        runs = pd.Series(np.flatnonzero(free)).groupby(slot[free]).agg(list)
        longest = max(runs, key=len)  # (max keeps the first, the lowest, of equal lengths)
        chosen.add(float(values[longest[(len(longest) - 1) // 2]]))
    return chosen


def parse_thresholds(text: str) -> list[float]:
    """"0.5,0.8,0.95" -> [0.5, 0.8, 0.95] (sorted, each once); ValueError naming a value that is no
    probability."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not 0 <= value <= 1:  # (also nan)
            raise ValueError(f"--thresholds {text!r}: {part!r} is not a probability between 0 and 1; give "
                             "them separated by commas, e.g. 0.5,0.8,0.95")
        values.append(value)
    return sorted(set(values))


def threshold_text(value: float) -> str:
    """A threshold as the table prints it: at least four decimals, and every digit it has (0.7000,
    0.999986), so two rows never look alike."""
    return np.format_float_positional(float(value), unique=True, trim="k", min_digits=4)


SETTING_NAMES = ("possible", "probable", "certain")  # the settings' thresholds, lowest first


def threshold_settings(thresholds, settings: Mapping[str, float]) -> list[str]:
    """Which of the settings' thresholds (``settings``: name -> value, as Thresholds.model_dump() or
    Run.thresholds) each threshold of a table is: "probable", "possible, probable" where two are one
    value, "" for a row of the grid alone. The same words wherever the threshold table is shown."""
    names: dict[float, str] = {}
    for name in SETTING_NAMES:
        if name in settings:
            value = float(settings[name])
            names[value] = f"{names[value]}, {name}" if value in names else name
    return [names.get(float(t), "") for t in thresholds]


def threshold_table(pairs: pd.DataFrame, ids: pd.Index, truth: pd.Series,
                    thresholds=None, possible: float = 0.5, fixed=()) -> pd.DataFrame:
    """Group-level figures if the groups were the connected components of pairs >= each threshold
    (default: threshold_grid of the pairs with ``possible`` and ``fixed``, the settings' other
    thresholds); ``pairs``: how many pairs that joins.

    Held pairs (held_mask) stay "possible" whatever the probable threshold is (the cap moves with
    it, always below probable), so they join groups at no threshold above ``possible``; their stored
    probability is not a score to compare with the threshold. ``held_pairs`` counts those left out."""
    if thresholds is None:
        thresholds = threshold_grid(pairs["probability"], (possible, *fixed), held=held_mask(pairs))
    pos = pd.Series(np.arange(len(ids)), index=ids)
    a = pos.reindex(pairs["id_a"]).to_numpy()
    b = pos.reindex(pairs["id_b"]).to_numpy()
    prob = pairs["probability"].to_numpy()
    held = held_mask(pairs)
    rows = []
    for th in thresholds:
        keep = prob >= th
        left_out = held & keep if th > possible else np.zeros(len(prob), dtype=bool)
        keep &= ~left_out
        labels = pd.Series(components(len(ids), a[keep], b[keep]), index=ids)
        rows.append({"threshold": th, **evaluate_groups(labels, truth.reindex(ids)),
                     "held_pairs": int(left_out.sum()), "pairs": int(keep.sum())})
    return pd.DataFrame(rows)
