"""Duplicate groups from scored pairs.

Pairs at or above the threshold are joined strongest first (union-find). Two records that must
stay apart (a "cannot link": a pair a person skipped, or, with the chaining guard on, a pair
whose own evidence says they are different) are never put in one group: an edge that would join
their groups is left out. Without cannot-links this is exactly connected components.
A record such a cut leaves alone, though probable with a group's member, is reported (cut_off).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

from matchers.blocking import unique_sorted


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label per position (labels are the smallest position in the component)."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    smallest = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, labels, np.arange(n))
    return smallest[labels]


def constrained_clusters(n: int, a: np.ndarray, b: np.ndarray, strength: np.ndarray,
                         cannot_link: Iterable[tuple[int, int]] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Join edges strongest first unless that would put a cannot-link pair in one group.

    Returns (label per position = smallest position of its group, weakest joining strength per
    position's group, NaN for records alone).

    Only the connected components that hold both ends of a cannot-link need the edge-by-edge
    union-find; every other component is joined whole, and its weakest joining edge (strongest
    first, that is a maximum spanning forest) is the smallest edge of a maximum spanning tree."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    strength = np.asarray(strength, dtype=np.float64)
    pairs = np.asarray(list(cannot_link), dtype=np.int64).reshape(-1, 2)
    comp = components(n, a, b)
    labels = comp.copy()
    weakest = np.full(n, np.nan)
    if n == 0:
        return labels, weakest
    conflicted = np.zeros(n, dtype=bool)  # per component label
    inside = pairs[comp[pairs[:, 0]] == comp[pairs[:, 1]]] if len(pairs) else pairs
    conflicted[comp[inside[:, 0]]] = True
    hard = conflicted[comp[a]] if len(a) else np.zeros(0, bool)
    # components joined whole
    easy = ~hard & (a != b)
    if easy.any():
        weakest_easy = _bottleneck(n, a[easy], b[easy], strength[easy], comp)
        has = ~np.isnan(weakest_easy)
        weakest[has] = weakest_easy[has]
    # components with a conflict: edge by edge
    if hard.any():
        nodes = np.flatnonzero(conflicted[comp])
        local = np.full(n, -1, dtype=np.int64)
        local[nodes] = np.arange(len(nodes))
        keep = local[inside[:, 0]] >= 0
        lab, weak = _union_find(len(nodes), local[a[hard]], local[b[hard]], strength[hard],
                                zip(local[inside[keep, 0]].tolist(), local[inside[keep, 1]].tolist()))
        labels[nodes] = nodes[lab]
        weakest[nodes] = weak
    return labels, weakest


def _bottleneck(n: int, a: np.ndarray, b: np.ndarray, strength: np.ndarray, comp: np.ndarray) -> np.ndarray:
    """Per position, the smallest edge of a maximum spanning tree of its component (NaN alone)."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # one edge per pair of records, the strongest (a sparse matrix would add duplicates up)
    order = np.lexsort((-strength, hi, lo))
    lo, hi, strength = lo[order], hi[order], strength[order]
    first = np.r_[True, (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])]
    lo, hi, strength = lo[first], hi[first], strength[first]
    # Spanning trees minimise, so each edge weighs its rank, strongest first (1, 2, ...; positive:
    # a zero would be no edge), and a tree edge's strength is read back by its rank. Arithmetic on
    # the strengths themselves (top - (top - s)) rounds: a pair at exactly 0.9 came back as
    # 0.8999999999999999 and its group fell from "probable" to "possible".
    rank = np.empty(len(strength), dtype=np.float64)
    by_strength = np.argsort(-strength, kind="stable")
    rank[by_strength] = np.arange(1, len(strength) + 1)  # integers: exact in float64
    tree = minimum_spanning_tree(coo_matrix((rank, (lo, hi)), shape=(n, n))).tocoo()
    out = np.full(n, np.inf)
    np.minimum.at(out, comp[tree.row], strength[by_strength[tree.data.astype(np.int64) - 1]])
    out = out[comp]
    out[np.isinf(out)] = np.nan
    return out


def _union_find(n: int, a: np.ndarray, b: np.ndarray, strength: np.ndarray,
                cannot_link: Iterable[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    forbid: dict[int, set[int]] = defaultdict(set)
    for x, y in cannot_link:
        forbid[x].add(y)
        forbid[y].add(x)
    parent = np.arange(n)
    members: dict[int, list[int]] = {}
    weakest = np.full(n, np.inf)  # per root: the weakest edge that joined its group

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    order = np.lexsort((b, a, -np.asarray(strength)))  # strongest first; ties by position: deterministic
    for i in order:
        x, y = int(a[i]), int(b[i])
        rx, ry = find(x), find(y)
        if rx == ry:
            continue
        mx, my = members.get(rx, [rx]), members.get(ry, [ry])
        if forbid and _conflict(mx, my, forbid, find, ry):
            continue
        if len(mx) < len(my):
            rx, ry, mx, my = ry, rx, my, mx
        parent[ry] = rx
        members[rx] = mx + my
        members.pop(ry, None)
        weakest[rx] = min(weakest[rx], weakest[ry], strength[i])
    roots = np.array([find(x) for x in range(n)], dtype=np.int64)
    smallest = np.full(n, n, dtype=np.int64)
    np.minimum.at(smallest, roots, np.arange(n))
    out = weakest[roots]
    out[np.isinf(out)] = np.nan
    return smallest[roots], out


def _conflict(mx: list[int], my: list[int], forbid: dict[int, set[int]], find, ry: int) -> bool:
    small, other_root = (mx, ry) if len(mx) <= len(my) else (my, find(mx[0]))
    for x in small:
        for z in forbid.get(x, ()):
            if find(z) == other_root:
                return True
    return False


def group_pairs_to_check(labels: np.ndarray, max_group: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of positions inside each component of 3..max_group records (for the chaining guard)."""
    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    ok = (sizes >= 3) & (sizes <= max_group)
    a_parts, b_parts = [], []
    for size in unique_sorted(sizes[ok]):
        first = starts[ok & (sizes == size)]
        members = np.sort(order[first[:, None] + np.arange(size)[None, :]], axis=1)
        i, j = np.triu_indices(int(size), k=1)
        a_parts.append(members[:, i].ravel())
        b_parts.append(members[:, j].ravel())
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(a_parts).astype(np.int64), np.concatenate(b_parts).astype(np.int64)


# Chaining guard rule. Inside a would-be group, a pair is kept apart only on evidence that the two
# records differ: a hold rule says so (different first names, patronymics, birthdates or tax ids),
# a person skipped it, or it scores below the guard's threshold AND its comparisons, taken together,
# weigh against a match (its score is at least GUARD_EVIDENCE_BITS below the prior, the score of a
# pair about which nothing is known). A pair that scores low only because little could be compared
# (an old record without a phone or site) stays near the prior: missing evidence is not
# disagreement, and it cuts nothing, so a record certain with one member is not cut off merely for
# lacking a strong link to another.
GUARD_EVIDENCE_BITS = 1.0


def guard_keeps_apart(prob: np.ndarray, held_apart: np.ndarray, threshold: float, prior_weight: float) -> np.ndarray:
    """Which of these pairs inside a would-be group the chaining guard keeps apart (rule above);
    ``prior_weight``: the model's prior in bits (log2 odds)."""
    prob = np.asarray(prob, dtype=np.float64)
    with np.errstate(divide="ignore"):
        weight = np.log2(prob) - np.log2(1.0 - prob)
    against = weight <= prior_weight - GUARD_EVIDENCE_BITS
    return np.asarray(held_apart, bool) | ((prob < threshold) & against)


def cut_off(labels: np.ndarray, a: np.ndarray, b: np.ndarray, strength: np.ndarray,
            min_strength: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records left alone although they score ``min_strength`` or more with a record in a group
    (a chain the guard or a skip cut there): (record, its strongest such partner, that strength).
    These must be reported, never dropped silently: the steward merging the partner's group would
    otherwise leave the duplicate behind without knowing."""
    labels = np.asarray(labels)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    strength = np.asarray(strength, dtype=np.float64)
    empty = np.empty(0, np.int64)
    if not len(labels) or not len(a):
        return empty, empty, np.empty(0)
    size = np.bincount(labels, minlength=len(labels))[labels]
    strong = (strength >= min_strength) & (labels[a] != labels[b])
    # both directions: the lone record first, its partner in a group second
    x = np.r_[a[strong], b[strong]]
    y = np.r_[b[strong], a[strong]]
    s = np.r_[strength[strong], strength[strong]]
    lone = (size[x] == 1) & (size[y] > 1)
    x, y, s = x[lone], y[lone], s[lone]
    order = np.lexsort((y, -s, x))  # per record, strongest partner first (ties: smallest position)
    x, y, s = x[order], y[order], s[order]
    first = np.r_[True, x[1:] != x[:-1]] if len(x) else np.zeros(0, bool)
    return x[first], y[first], s[first]


def force_links(labels: np.ndarray, strength: np.ndarray, must_link: Iterable[tuple[int, int]],
                cannot_link: Iterable[tuple[int, int]], floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Groups (``labels``, ``strength`` as constrained_clusters gives them) joined where a person said
    two records are the same (``must_link``, positions, newest decision first): the two groups become
    one, whatever the scores or the chaining guard said (a person looked at them), unless that would
    put a ``cannot_link`` pair (a person's "not duplicates") in one group: a person's no is never
    overruled by another's yes through a third record.

    The joined group's strength is the weakest of its parts' (a mark adds no evidence of its own);
    ``floor`` where no part has one (two records joined by a mark alone). Returns new labels (the
    smallest position of each group) and strengths; untouched groups keep theirs."""
    labels = np.asarray(labels, dtype=np.int64).copy()
    strength = np.asarray(strength, dtype=np.float64).copy()
    must = [(int(x), int(y)) for x, y in must_link if int(x) != int(y)]
    if not must:
        return labels, strength
    forbid: dict[int, set[int]] = defaultdict(set)
    for x, y in cannot_link:
        forbid[int(x)].add(int(y))
        forbid[int(y)].add(int(x))
    # the members of the groups a mark touches (the marks are few: a person made each one)
    touched = np.isin(labels, labels[np.asarray(must, dtype=np.int64).ravel()])
    members: dict[int, list[int]] = defaultdict(list)
    for pos in np.flatnonzero(touched).tolist():
        members[int(labels[pos])].append(pos)
    parent = {g: g for g in members}

    def find(g: int) -> int:
        while parent[g] != g:
            parent[g] = parent[parent[g]]
            g = parent[g]
        return g

    joined = {g: list(ms) for g, ms in members.items()}
    for x, y in must:
        gx, gy = find(int(labels[x])), find(int(labels[y]))
        if gx == gy:
            continue
        small, other = (joined[gx], gy) if len(joined[gx]) <= len(joined[gy]) else (joined[gy], gx)
        other_set = set(joined[other])
        if any(z in other_set for pos in small for z in forbid.get(pos, ())):
            continue  # a "not duplicates" pair would end up in one group
        keep, gone = min(gx, gy), max(gx, gy)
        parent[gone] = keep
        joined[keep] = joined[keep] + joined.pop(gone)
    for root, positions in joined.items():
        if len(positions) == len(members[root]):
            continue  # nothing joined to it
        at = np.asarray(positions, dtype=np.int64)
        weakest = np.nanmin(strength[at]) if not np.isnan(strength[at]).all() else floor
        labels[at] = at.min()
        strength[at] = weakest
    return labels, strength
