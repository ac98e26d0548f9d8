"""Which image of a crawl is a duplicate of which, decided from pairs alone.

Rows are named by global ids (gid): `shard << 32 | row` for the crawl's kept rows, RELEASED plus
`crawl ordinal << 32 | row` for images already released; ids order rows as the crawl and the
releases do. Order of the rules: exact bytes (sha256), perceptual hash, images released for earlier
crawls, then embedding groups (union-find, the member nearest the group centroid kept): in-batch
within groups of shards, then across batches. Each rule sees only the rows the earlier ones kept,
and a pair relation restricted to those rows is the same relation, so the pairs can be found over
all rows at once, in any partition, and filtered here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from danqing.embed.unionfind import components, keep_nearest_centroid

DUPLICATE_EXACT = "duplicate_exact"
DUPLICATE_PHASH = "duplicate_phash"
DUPLICATE_RELEASED = "duplicate_released"
DUPLICATE_EMBEDDING = "duplicate_embedding"  # in-batch
DUPLICATE_CROSS_BATCH = "duplicate_cross_batch"

RELEASED = np.int64(1 << 62)  # gids at or past this name released images

_EMPTY = np.empty(0, np.int64)


def gid(shard: int | np.ndarray, row: int | np.ndarray) -> np.ndarray:
    return (np.asarray(shard, np.int64) << 32) | np.asarray(row, np.int64)


def released_gid(ordinal: int, row: int | np.ndarray) -> np.ndarray:
    return RELEASED | gid(ordinal, row)


def split(g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard or released crawl ordinal, row) of each gid."""
    g = np.asarray(g, np.int64) & ~RELEASED
    return g >> 32, g & 0xFFFFFFFF


@dataclass
class Pairs:
    """Duplicate relations as gid pairs (a, b). exact: a is the first row with b's bytes.
    released: a crawl row and a released image, of the same bytes (released_exact) or close embeddings."""

    exact: tuple[np.ndarray, np.ndarray] = (_EMPTY, _EMPTY)
    phash: tuple[np.ndarray, np.ndarray] = (_EMPTY, _EMPTY)
    released_exact: tuple[np.ndarray, np.ndarray] = (_EMPTY, _EMPTY)
    embedding: tuple[np.ndarray, np.ndarray] = (_EMPTY, _EMPTY)  # checked, crawl-crawl or crawl-released


@dataclass
class Drops:
    """The dropped rows: gid, reason and the gid of the image kept in each one's place."""

    gid: np.ndarray = field(default_factory=lambda: _EMPTY)
    reason: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    keeper: np.ndarray = field(default_factory=lambda: _EMPTY)


def resolve(p: Pairs, batch_shards: int, cross_batch: bool, rows_of: Callable[[np.ndarray], np.ndarray]) -> Drops:
    """Apply the rules in order; rows_of(sorted gids) gives their unit embeddings (float32)."""
    gone: dict[int, tuple[str, int]] = {}

    def alive(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        dead = np.fromiter(gone, np.int64, len(gone))
        return ~np.isin(a, dead) & ~np.isin(b, dead)

    def drop(rows, keepers, reason: str) -> None:
        for row, keeper in zip(rows.tolist(), keepers.tolist(), strict=True):
            gone.setdefault(row, (reason, keeper))

    a, b = p.exact
    drop(b, a, DUPLICATE_EXACT)
    a, b = _live(p.phash, alive)
    nodes, labels = _groups(a, b)
    later = labels != np.arange(len(nodes))  # the earliest image of a perceptual group stays
    drop(nodes[later], nodes[labels[later]], DUPLICATE_PHASH)

    # An exact copy among the releases names the earliest such copy; else the earliest close one.
    for a, b in (p.released_exact, _released(p.embedding)):
        a, b = _live((a, b), alive)
        order = np.lexsort((b, a))
        first = np.r_[True, a[order][1:] != a[order][:-1]] if len(a) else np.empty(0, bool)
        drop(a[order][first], b[order][first], DUPLICATE_RELEASED)

    a, b = p.embedding
    crawl = b < RELEASED
    a, b = a[crawl], b[crawl]
    same = (split(a)[0] // batch_shards) == (split(b)[0] // batch_shards)
    _centroid_groups(_live((a[same], b[same]), alive), rows_of, drop, DUPLICATE_EMBEDDING)
    if cross_batch:
        _centroid_groups(_live((a, b), alive), rows_of, drop, DUPLICATE_CROSS_BATCH)
    rows = np.fromiter(gone, np.int64, len(gone))
    order = np.argsort(rows)
    reasons = np.array([gone[r][0] for r in rows.tolist()], dtype=object)
    keepers = np.fromiter((gone[r][1] for r in rows.tolist()), np.int64, len(rows))
    return Drops(rows[order], reasons[order], keepers[order])


def _live(pair: tuple[np.ndarray, np.ndarray], alive) -> tuple[np.ndarray, np.ndarray]:
    a, b = (np.asarray(v, np.int64) for v in pair)
    keep = alive(a, b)
    return a[keep], b[keep]


def _released(pair: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    a, b = pair
    hit = b >= RELEASED
    return a[hit], b[hit]


def _groups(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The gids that take part in pairs (sorted) and each one's component label (smallest index)."""
    nodes, where = np.unique(np.r_[a, b], return_inverse=True)
    return nodes, components(len(nodes), where[:len(a)], where[len(a):])


def _centroid_groups(pair, rows_of, drop, reason: str) -> None:
    nodes, labels = _groups(*pair)
    if len(nodes) == 0:
        return
    keep = keep_nearest_centroid(rows_of(nodes), labels)
    keeper_of_label = np.empty(len(nodes), dtype=np.int64)
    keeper_of_label[labels[keep]] = np.flatnonzero(keep)
    gone = np.flatnonzero(~keep)
    drop(nodes[gone], nodes[keeper_of_label[labels[gone]]], reason)
