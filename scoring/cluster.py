"""Duplicate groups from scored pairs.

Pairs at or above the threshold are joined strongest first (union-find). Two records that must
stay apart (a "cannot link": a pair a person skipped, or, with the chaining guard on, a pair
whose own evidence says they are different) are never put in one group: an edge that would join
their groups is left out. Without cannot-links this is exactly connected components.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


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
    position's group, NaN for records alone)."""
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
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    a_parts, b_parts = [], []
    for s, size in zip(starts[(sizes >= 3) & (sizes <= max_group)], sizes[(sizes >= 3) & (sizes <= max_group)]):
        pos = np.sort(order[s:s + size])
        i, j = np.triu_indices(size, k=1)
        a_parts.append(pos[i])
        b_parts.append(pos[j])
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)
