"""threshold_grid, the rows of the per-threshold table (`crm-dedup evaluate`, Run.precision_recall): the
deciles come from the pairs no hold rule kept at possible (a held pair's probability is a cap, 0.7 with
default settings, not a score), and the rows deciles lose by collapsing on one value (most demo pairs score
exactly 1) go to the distinct scores above the certain threshold, where recall falls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scoring.evaluate import SPREAD_ROWS, threshold_grid, threshold_table
from scoring.find import HELD_AT

SETTINGS = (0.5, 0.9, 0.995)  # possible, probable, certain (the defaults)
CAP = 0.7  # where a hold rule keeps a pair: between possible and probable

# twenty scored pairs, twelve of them at exactly 1, and ten held at the cap
SCORED = [0.6, 0.8, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999] + [1.0] * 12
HELD = [CAP] * 10


def test_held_pairs_give_no_decile_and_collapsed_deciles_go_above_certain():
    probs = SCORED + HELD
    held = [False] * len(SCORED) + [True] * len(HELD)
    # deciles of the twenty scores (the lower one): 0.6, 0.8, 0.997, 0.999, 0.9999 and seven times 1.0;
    # the five rows lost to 1.0 take the three scores above 0.995 no row has yet
    assert threshold_grid(probs, SETTINGS, held=held) == [
        0.5, 0.6, 0.8, 0.9, 0.995, 0.996, 0.997, 0.998, 0.999, 0.9995, 0.9999, 1.0]
    # the order of the pairs does not matter
    order = np.random.default_rng(0).permutation(len(probs))
    assert threshold_grid(np.array(probs)[order], SETTINGS, held=np.array(held)[order]) == threshold_grid(
        probs, SETTINGS, held=held)
    # without the mask the cap is a score: three deciles fall on it and it gets a row
    assert CAP in threshold_grid(probs, SETTINGS)
    assert CAP not in threshold_grid(probs, SETTINGS, held=held)


def test_a_cluster_near_one_gets_the_rows_spread_over_its_distinct_scores():
    cluster = [round(0.996 + k * 0.0001, 4) for k in range(20)]  # 0.996 .. 0.9979, once each
    probs = [0.6] + cluster + [1.0] * 79
    # deciles: 0.6, 0.9968, 0.9978 and eight times 1.0, so seven rows are free, five of them within the
    # twelve rows the chart has room for; each goes to the middle of the longest run of scores between
    # two rows (the lower run on a tie): 0.9973, 0.9963, 0.9965, 0.997, 0.9975
    grid = threshold_grid(probs, SETTINGS)
    assert grid == [0.5, 0.6, 0.9, 0.995, 0.9963, 0.9965, 0.9968, 0.997, 0.9973, 0.9975, 0.9978, 1.0]
    assert len(grid) == SPREAD_ROWS
    # the held mass changes nothing of that: its pairs are left out
    assert threshold_grid(probs + HELD, SETTINGS, held=[False] * len(probs) + [True] * len(HELD)) == grid


def test_deciles_that_do_not_collapse_are_the_rows():
    many = [i / 1000 for i in range(500, 1001)]
    assert threshold_grid(many, SETTINGS) == [
        0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.995, 1.0]
    # no decile collapsed, so no row is free for the other scores above certain
    assert 0.999 not in threshold_grid(many, SETTINGS)


def test_without_settings_the_free_rows_spread_over_every_score():
    assert threshold_grid([0.2, 0.4, 0.6] + [1.0] * 17) == [0.2, 0.4, 0.6, 1.0]


def test_the_settings_stay_when_every_pair_is_held_or_missing():
    assert threshold_grid(HELD, SETTINGS, held=[True] * len(HELD)) == [0.5, 0.9, 0.995]
    assert threshold_grid([], SETTINGS, held=[]) == [0.5, 0.9, 0.995]
    assert threshold_grid([np.nan, 1.0, np.nan], SETTINGS) == [0.5, 0.9, 0.995, 1.0]


def test_a_mask_of_other_pairs_is_refused():
    with pytest.raises(ValueError, match="3 held flags for 2 probabilities"):
        threshold_grid([0.9, 1.0], SETTINGS, held=[False, True, False])


def test_the_default_table_leaves_the_cap_out_of_its_rows():
    """threshold_table without thresholds reads the held pairs from their explanation, as a run's pairs
    have it: no 0.7 row, and the held pairs are left out above possible."""
    ids = pd.Index([str(i) for i in range(1, 9)])
    truth = pd.Series(["A", "A", "A", "B", "B", "C", "C", "D"], index=ids)
    pairs = pd.DataFrame(
        [("1", "2", 1.0, "name, phone"), ("2", "3", 1.0, "name, e-mail"), ("4", "5", 0.999, "name"),
         ("6", "7", CAP, f"name. {HELD_AT}different first names"),
         ("7", "8", CAP, f"name. {HELD_AT}different first names")],
        columns=["id_a", "id_b", "probability", "explanation"])
    table = threshold_table(pairs, ids, truth, possible=0.5)
    # deciles of 0.999, 1.0, 1.0: the eleven collapse on two; nothing above 0.5 is left to spread
    assert table["threshold"].tolist() == [0.5, 0.999, 1.0]
    assert table["pairs"].tolist() == [5, 3, 2]
