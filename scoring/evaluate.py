"""Quality against known truth: pairwise precision/recall/F1 and B-cubed, overall and per threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scoring.cluster import components


def _pairs_within(labels: pd.Series) -> int:
    sizes = labels.value_counts().to_numpy()
    return int((sizes * (sizes - 1) // 2).sum())


def evaluate_groups(groups: pd.Series, truth: pd.Series) -> dict[str, float]:
    """``groups`` and ``truth`` map record id -> group label / real-entity label (same ids)."""
    common = groups.index.intersection(truth.index)
    if len(common) != len(groups) or len(common) != len(truth):
        missing = len(truth) - len(common)
        extra = len(groups) - len(common)
        if missing or extra:
            raise ValueError(f"groups and truth disagree on the records: {extra} ids only in groups, "
                             f"{missing} only in truth")
    g = groups.loc[common].astype(str)
    t = truth.loc[common].astype(str)
    both = pd.Series(list(zip(g, t)))
    tp = _pairs_within(both)
    predicted, actual = _pairs_within(g), _pairs_within(t)
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    # B-cubed: per record, overlap of its predicted group with its true entity
    cell = both.map(both.value_counts())
    gsize = g.map(g.value_counts()).to_numpy()
    tsize = t.map(t.value_counts()).to_numpy()
    bp = float(np.mean(cell.to_numpy() / gsize))
    br = float(np.mean(cell.to_numpy() / tsize))
    return {"records": int(len(common)), "true_pairs": actual, "predicted_pairs": predicted, "true_positives": tp,
            "precision": precision, "recall": recall, "f1": f1,
            "bcubed_precision": bp, "bcubed_recall": br,
            "bcubed_f1": 2 * bp * br / (bp + br) if bp + br else 0.0}


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


def threshold_table(pairs: pd.DataFrame, ids: pd.Index, truth: pd.Series,
                    thresholds=(0.5, 0.7, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999)) -> pd.DataFrame:
    """Group-level figures if the groups were the connected components of pairs >= each threshold."""
    pos = pd.Series(np.arange(len(ids)), index=ids)
    a = pos.reindex(pairs["id_a"]).to_numpy()
    b = pos.reindex(pairs["id_b"]).to_numpy()
    prob = pairs["probability"].to_numpy()
    rows = []
    for th in thresholds:
        keep = prob >= th
        labels = pd.Series(components(len(ids), a[keep], b[keep]), index=ids)
        rows.append({"threshold": th, **evaluate_groups(labels, truth.reindex(ids))})
    return pd.DataFrame(rows)
