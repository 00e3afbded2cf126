"""Groups from scored pairs: connected components without constraints, and the chaining guard."""

import networkx as nx
import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring.cluster import components, constrained_clusters, group_pairs_to_check
from scoring.evaluate import evaluate_groups
from scoring.primary import rank_groups


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
