"""Groups from scored pairs: connected components without constraints, and the chaining guard."""

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from matchers.compare import comparisons_for
from matchers.prepare import prepare
from matchers.table import RoleTable
from scoring.cluster import components, constrained_clusters, group_pairs_to_check
from scoring.evaluate import evaluate_groups
from scoring.find import _cluster, find_duplicates, tier_of
from scoring.model import LogisticModel
from scoring.primary import rank_groups
from scoring.settings import MatchSettings


def _partition(labels):
    groups = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, set()).add(i)
    return sorted(map(sorted, groups.values()))


edges = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=60)))


@settings(max_examples=150, deadline=None)
@given(edges, st.randoms(use_true_random=False))
def test_without_cannot_links_groups_are_networkx_connected_components(graph, rnd):
    n, pairs = graph
    pairs = [(a, b) for a, b in pairs if a != b]
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    strength = np.array([rnd.random() for _ in pairs])
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(pairs)
    expected = sorted(sorted(c) for c in nx.connected_components(g))
    assert _partition(components(n, a, b)) == expected
    labels, _ = constrained_clusters(n, a, b, strength)
    assert _partition(labels) == expected


@settings(max_examples=100, deadline=None)
@given(edges, st.randoms(use_true_random=False))
def test_cannot_link_pairs_never_share_a_group(graph, rnd):
    n, pairs = graph
    pairs = [(a, b) for a, b in pairs if a != b]
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    strength = np.array([rnd.random() for _ in pairs])
    cannot = [(rnd.randrange(n), rnd.randrange(n)) for _ in range(3)]
    cannot = [(x, y) for x, y in cannot if x != y]
    labels, _ = constrained_clusters(n, a, b, strength, cannot)
    for x, y in cannot:
        assert labels[x] != labels[y]
    # every group is still connected by the kept edges
    for members in _partition(labels):
        if len(members) > 1:
            sub = nx.Graph()
            sub.add_nodes_from(members)
            sub.add_edges_from((x, y) for x, y in pairs if x in members and y in members)
            assert nx.is_connected(sub)


def test_chain_through_a_shared_phone_is_cut_at_the_weakest_link():
    # A~B strongly (same person), B~C weakly (shares an office phone), A and C must stay apart
    a, b = np.array([0, 1]), np.array([1, 2])
    labels, weakest = constrained_clusters(3, a, b, np.array([0.99, 0.92]), [(0, 2)])
    assert labels[0] == labels[1] != labels[2]
    assert weakest[0] == 0.99 and np.isnan(weakest[2])


def test_pairs_to_check_cover_every_pair_of_mid_sized_components():
    labels = np.array([0, 0, 0, 3, 3, 5, 5, 5, 5])
    a, b = group_pairs_to_check(labels, max_group=4)
    got = set(zip(a.tolist(), b.tolist()))
    assert got == {(0, 1), (0, 2), (1, 2), (5, 6), (5, 7), (5, 8), (6, 7), (6, 8), (7, 8)}
    a, b = group_pairs_to_check(labels, max_group=3)
    assert set(zip(a.tolist(), b.tolist())) == {(0, 1), (0, 2), (1, 2)}


def test_evaluation_counts_pairs_and_bcubed():
    truth = pd.Series(["x", "x", "x", "y", "z"], index=[1, 2, 3, 4, 5])
    groups = pd.Series(["g1", "g1", "g2", "g2", "g3"], index=[1, 2, 3, 4, 5])
    r = evaluate_groups(groups, truth)
    assert (r["true_pairs"], r["predicted_pairs"], r["true_positives"]) == (3, 2, 1)
    assert r["precision"] == 0.5 and r["recall"] == 1 / 3
    assert abs(r["bcubed_precision"] - (1 + 1 + 1 / 2 + 1 / 2 + 1) / 5) < 1e-12
    assert abs(r["bcubed_recall"] - (2 / 3 + 2 / 3 + 1 / 3 + 1 + 1) / 5) < 1e-12
    perfect = evaluate_groups(truth, truth)
    assert perfect["f1"] == 1.0 and perfect["bcubed_f1"] == 1.0


def test_rank_groups_orders_every_group_best_first():
    members = pd.DataFrame({"id": [5, 3, 9, 7, 1, 2], "group": [2, 2, 0, 0, 0, 1],
                            "completeness": [0.5, 0.9, 0.1, 0.1, 0.8, 0.3]})
    ranked = rank_groups(members, "most_complete")
    assert ranked["group"].tolist() == [0, 1, 2]
    assert ranked["ordered_ids"].tolist() == [[1, 7, 9], [2], [3, 5]]
    assert ranked["primary_id"].tolist() == [1, 2, 3]
    assert ranked["reason"].tolist()[1] == "only record"


@settings(max_examples=100, deadline=None)
@given(edges, st.randoms(use_true_random=False))
def test_a_group_scores_exactly_its_weakest_joining_pair(graph, rnd):
    """With cannot-links (a skip anywhere), every group's score is one of its pairs' probabilities,
    bit for bit: the weakest edge of a maximum spanning tree (networkx), never a number rounded on
    the way. Cannot-links across groups leave every component whole."""
    n, pairs = graph
    pairs = list({tuple(sorted(p)) for p in pairs if p[0] != p[1]})
    # the thresholds themselves among ordinary scores
    strength = np.array([rnd.choice([0.9, 0.995, rnd.random(), 0.999995, 0.97]) for _ in pairs])
    a = np.array([p[0] for p in pairs], dtype=np.int64)
    b = np.array([p[1] for p in pairs], dtype=np.int64)
    comp = components(n, a, b)
    cannot = [(x, y) for x, y in ((rnd.randrange(n), rnd.randrange(n)) for _ in range(3)) if comp[x] != comp[y]]
    labels, weakest = constrained_clusters(n, a, b, strength, cannot)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from((x, y, s) for (x, y), s in zip(pairs, strength))
    for members in nx.connected_components(g):
        members = sorted(members)
        tree = nx.maximum_spanning_tree(g.subgraph(members))
        expected = min((d["weight"] for _, _, d in tree.edges(data=True)), default=np.nan)
        got = weakest[members]
        assert (got == expected).all() or (np.isnan(expected) and np.isnan(got).all()), (members, got, expected)


@pytest.mark.parametrize("skip_elsewhere", [False, True])
@pytest.mark.parametrize("threshold, tier", [(0.9, "probable"), (0.995, "certain")])
@pytest.mark.parametrize("stronger", [0.97, 0.99, 0.995, 0.999, 0.9999, 0.999995])
def test_a_group_whose_weakest_pair_is_at_a_threshold_gets_that_tier(threshold, tier, stronger, skip_elsewhere):
    """Pairs the same-tax-id rule lifts sit at exactly 0.9, those the phone-and-name rule lifts at
    0.995: the group they form is of that tier, with or without a skip in another group (a skip
    sends the clustering through the constrained path, which once returned 0.8999999999999999)."""
    stronger = max(stronger, threshold)
    # group 1-2-3 held by a pair at the threshold and a stronger one; 4-5 a group; 6-7 skipped
    rows = [dict(id=i, company=f"Компания {i}") for i in range(1, 8)]
    pairs = [(1, 2, threshold), (2, 3, stronger), (4, 5, 0.999), (6, 7, 0.99)]
    p = prepare(RoleTable("company", pd.DataFrame(rows).set_index("id"),
                          pd.DataFrame(columns=["id", "role", "raw"])))
    pos = {int(i): k for k, i in enumerate(p.ids)}
    a = np.array([pos[x] for x, _, _ in pairs])
    b = np.array([pos[y] for _, y, _ in pairs])
    prob = np.array([s for _, _, s in pairs])
    comps = comparisons_for(p)
    model = LogisticModel([c.name for c in comps], [list(c.levels) for c in comps],
                          [[0.0] * len(c.levels) for c in comps], 0.0)
    settings_ = MatchSettings()
    skips = {(6, 7)} if skip_elsewhere else set()
    labels, strength = _cluster(p, a, b, prob, comps, model, settings_, skips)
    assert labels[pos[1]] == labels[pos[2]] == labels[pos[3]]
    assert strength[pos[1]] == threshold  # exactly: no arithmetic on the scores
    assert tier_of(strength[[pos[1]]], settings_).tolist() == [tier]
    assert (labels[pos[6]] != labels[pos[7]]) == skip_elsewhere


def test_find_groups_lifted_by_a_rule_keep_the_rules_tier_when_a_skip_exists():
    """End to end: a sole trader's two cards with the same INN (lifted to "probable", 0.9) and a
    person's two cards with the same name and phone (lifted to "certain", 0.995), with and without
    a "not duplicates" skip between two other cards: each group's tier and score are its pair's."""
    rows = [dict(id=1, last_name="Орлов", first_name="Глеб", tax_id="500100732964"),
            dict(id=2, last_name="Орлов", first_name="Глеб", tax_id="500100732964"),
            dict(id=3, last_name="Зайцева", first_name="Нина", phone=["+7 916 555-01-02"]),
            dict(id=4, last_name="Зайцева", first_name="Нина", phone=["8 916 555 01 02"]),
            dict(id=5, last_name="Фролов", first_name="Иван", phone=["+7 916 555-07-08"]),
            dict(id=6, last_name="Фролов", first_name="Иван", phone=["+79165550708"])]
    records, values = [], []
    for row in rows:
        row = dict(row)
        values += [{"id": row["id"], "role": "phone", "raw": v} for v in row.pop("phone", [])]
        records.append(row)

    def table():
        return RoleTable("contact", pd.DataFrame(records).set_index("id"), pd.DataFrame(values, columns=["id", "role", "raw"]))

    comps = comparisons_for(prepare(table()))
    # every comparison weighs nothing: each candidate pair scores 0.8, and only the rules lift it
    model = LogisticModel([c.name for c in comps], [list(c.levels) for c in comps],
                          [[0.0] * len(c.levels) for c in comps], 2.0)
    for skips in (None, {(5, 6)}):
        r = find_duplicates(table(), MatchSettings(), model=model, skips=skips)
        pairs = r.pairs.set_index(["id_a", "id_b"])
        assert pairs.loc[(1, 2), "probability"] == 0.9 and pairs.loc[(3, 4), "probability"] == 0.995
        by_primary = r.group_table.set_index(r.group_table["member_ids"].map(min))
        assert by_primary.loc[1, "score"] == 0.9 and by_primary.loc[1, "tier"] == "probable", skips
        assert by_primary.loc[3, "score"] == 0.995 and by_primary.loc[3, "tier"] == "certain", skips
        assert (5 in by_primary.index) == (skips is None)
