"""Connected components over an edge list, vectorised: union-find for millions of pairs."""

from __future__ import annotations

import numpy as np


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Label of each of n nodes: the smallest node index of its component."""
    labels = np.arange(n, dtype=np.int64)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.size == 0:
        return labels
    while True:
        # Hook each edge's larger root onto the smaller one, then compress paths fully.
        la, lb = labels[a], labels[b]
        low = np.minimum(la, lb)
        np.minimum.at(labels, la, low)
        np.minimum.at(labels, lb, low)
        while True:
            nxt = labels[labels]
            if np.array_equal(nxt, labels):
                break
            labels = nxt
        if np.array_equal(labels[a], labels[b]):
            return labels


def keep_nearest_centroid(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Mask of the one member per group nearest its group's mean embedding (ties: lowest index)."""
    n = len(labels)
    keep = np.ones(n, dtype=bool)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    multi = np.flatnonzero(counts[inverse] > 1)
    if multi.size == 0:
        return keep
    keep[multi] = False
    order = multi[np.argsort(inverse[multi], kind="stable")]
    groups = inverse[order]
    new_group = np.r_[True, groups[1:] != groups[:-1]]
    members = x[order].astype(np.float32)
    sums = np.add.reduceat(members, np.flatnonzero(new_group), axis=0)
    # Dot with the group sum ranks members like cosine to the centroid (members are unit vectors).
    score = np.einsum("ij,ij->i", members, sums[np.cumsum(new_group) - 1])
    best = np.lexsort((order, -score, groups))  # per group: highest score, then lowest index
    first = best[np.r_[True, groups[best][1:] != groups[best][:-1]]]
    keep[order[first]] = True
    return keep
