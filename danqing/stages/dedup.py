"""Drop duplicate images across a crawl, cheapest test first, keeping one image per group.

The rules are danqing.dedup.rules; the pairs they read are found in partitions
(danqing.dedup.partitions) so no task holds the whole crawl. The steps, each a task of the DAG
(`run` calls them in a row): plan (cells and groups) -> partition (per source: a run of score
shards, or slices of earlier releases) -> find_pairs (per group) -> merge (checks candidates,
applies the rules, writes decisions) -> process (per shard, through the ordinary runner: stats,
lineage, skip-if-done).
`decide` applies the same rules to rows in memory, with the pairs found over all of them at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from danqing import io, lineage, paths
from danqing.config import DedupConfig, PipelineConfig
from danqing.dedup import partitions, rules
from danqing.dedup.partitions import for_model
from danqing.dedup.rules import (  # noqa: F401  (re-exported: the drop reasons)
    DUPLICATE_CROSS_BATCH,
    DUPLICATE_EMBEDDING,
    DUPLICATE_EXACT,
    DUPLICATE_PHASH,
    DUPLICATE_RELEASED,
)
from danqing.embed import index as emb_index
from danqing.shard import ShardJob, kept_rows, run_shard, with_reasons
from danqing.stats import StageStats


@dataclass
class Candidates:
    """Rows in memory, in order; batch (non-decreasing) is each row's in-batch group."""

    ids: list[str]
    sha256: list[str]
    phash: list[str]
    emb: np.ndarray  # (n, d) float32, unit rows
    batch: np.ndarray


@dataclass
class Decisions:
    reasons: np.ndarray  # "" = kept
    duplicate_of: list[str]  # id of the image kept in its place ("" = kept)


def decide(c: Candidates, cfg: DedupConfig, released: Iterable[emb_index.Released] = ()) -> Decisions:
    """The reason each row is a duplicate, and of what: the rules over pairs found in one process."""
    n = len(c.ids)
    batch = np.asarray(c.batch, np.int64)
    assert n == 0 or np.all(np.diff(batch) >= 0), "rows must come in batch order"
    g = rules.gid(batch, np.arange(n))  # batch as the "shard", batch_shards 1 below
    first: dict[str, int] = {}
    for i, h in enumerate(c.sha256):
        if h:
            first.setdefault(h, i)
    later = np.array([i for i, h in enumerate(c.sha256) if h and first[h] != i], np.int64)
    exact = (g[[first[c.sha256[i]] for i in later]] if len(later) else g[:0], g[later])
    hashes, has = emb_index.parse_phash(c.phash)
    reps = np.array([i for i in np.flatnonzero(has) if not c.sha256[i] or first[c.sha256[i]] == i], np.int64)
    a, b = emb_index.phash_pairs(hashes[reps], cfg.max_phash_distance)
    phash = (g[reps[a]], g[reps[b]])
    a, b = emb_index.close_pairs(c.emb, cfg)
    emb_a, emb_b = [g[a]], [g[b]]
    rel_a, rel_b, names, offset, index = [], [], {}, 0, None
    for chunk in released if n else ():
        for j, h in enumerate(chunk.sha256):
            if h in first:
                rel_a.append(g[first[h]])
                rel_b.append(rules.RELEASED + offset + j)
                names[rel_b[-1]] = chunk.ids[j]
        if index is None:
            index = emb_index.search_index(c.emb, cfg)
        match = emb_index.released_matches(index, chunk.emb, n, cfg)
        hit = np.flatnonzero(match >= 0)
        emb_a.append(g[hit])
        emb_b.append(rules.RELEASED + offset + match[hit])
        names.update({int(rules.RELEASED + offset + m): chunk.ids[m] for m in match[hit].tolist()})
        offset += len(chunk.ids)
    pairs = rules.Pairs(exact, phash, (np.array(rel_a, np.int64), np.array(rel_b, np.int64)),
                        (np.concatenate(emb_a), np.concatenate(emb_b)))
    drops = rules.resolve(pairs, 1, len(np.unique(batch)) > 1, lambda gs: c.emb[rules.split(gs)[1]])
    reasons = np.full(n, "", dtype=object)
    dup_of = [""] * n
    rows = rules.split(drops.gid)[1]
    reasons[rows] = drops.reason
    for row, keeper in zip(rows.tolist(), drops.keeper.tolist(), strict=True):
        dup_of[row] = names[keeper] if keeper >= rules.RELEASED else c.ids[int(rules.split(keeper)[1])]
    return Decisions(reasons, dup_of)


def merge(cfg: PipelineConfig, plan: dict, pair_uris: list[str]) -> str:
    """Check the candidates, apply the rules and write the decisions (one row group per shard);
    returns their URI, named by their content so a changed decision reruns the shard writes."""
    d = for_model(cfg.dedup, plan["model"])
    so = cfg.storage_options
    t = pa.concat_tables([io.read_parquet(u, storage_options=so) for u in pair_uris])
    kind, a, b = (t[c].to_numpy() for c in ("kind", "a", "b"))

    cand, emb = kind == partitions.CANDIDATE, kind == partitions.EMBEDDING
    # One read of every embedding the merge needs: the candidates' ends (checked here) hold every
    # member of a join-mode group, the flat-mode pairs' ends every member of the others.
    need = np.unique(np.r_[a[cand], b[cand], a[emb], b[emb]])
    x = partitions.embeddings_of(cfg, plan, need)

    def rows_of(gids: np.ndarray) -> np.ndarray:
        return x[np.searchsorted(need, gids)]

    ca, cb = emb_index.checked_pairs(a[cand], b[cand], rows_of, d)
    pairs = rules.Pairs(*[(a[kind == k], b[kind == k]) for k in (partitions.EXACT, partitions.PHASH,
                                                                  partitions.RELEASED_EXACT)],
                        embedding=(np.r_[a[emb], ca], np.r_[b[emb], cb]))
    drops = rules.resolve(pairs, d.batch_shards, plan["cross_batch"], rows_of)
    keepers, where = np.unique(drops.keeper, return_inverse=True)
    names = partitions.names_of(cfg, plan, keepers)
    shard, row = rules.split(drops.gid)
    table = pa.table({"group": shard.astype(np.int32), "row": row,
                      "reason": pa.array(drops.reason.tolist(), pa.string()),
                      "duplicate_of": pa.array([names[i] for i in where.tolist()], pa.string())})
    digest = hashlib.sha256()
    for column in table.columns:
        digest.update(repr(column.to_pylist()).encode())
    uri = f"{partitions.work_dir_of(plan)}/decisions-{digest.hexdigest()[:16]}.parquet"
    partitions.write_groups([table], uri, so)
    for part in ("emb", "hash"):  # only the pair-finding tasks read these
        io.remove(f"{partitions.work_dir_of(plan)}/{part}", so)
    return uri


def process(job: ShardJob, stats: StageStats) -> pa.Table:
    """Write one shard's rows with the merge's decisions: inputs are its score output and the decisions."""
    score_uri, decisions_uri = job.inputs
    table = kept_rows(score_uri, job.cfg)
    mine = partitions.read_group(decisions_uri, job.shard, job.cfg.storage_options)
    reasons, dup_of = [""] * table.num_rows, [""] * table.num_rows
    for row, reason, keeper in zip(mine["row"].to_pylist(), mine["reason"].to_pylist(),
                                   mine["duplicate_of"].to_pylist(), strict=True):
        reasons[row], dup_of[row] = reason, keeper
    return with_reasons(table.append_column("duplicate_of", pa.array(dup_of, pa.string())), reasons)


def run(cfg: PipelineConfig, crawl: str, score_uris: list[str],
        attempt: lineage.Attempt | None = None) -> list[dict]:
    """Every step in this process, as the DAG's tasks run them; returns per-shard summaries."""
    attempt = attempt or lineage.Attempt()
    plan = partitions.plan(cfg, crawl, score_uris)
    for source in plan["sources"]:
        partitions.partition(cfg, plan, source)
    decisions = merge(cfg, plan, [partitions.find_pairs(cfg, plan, g) for g in range(plan["groups"])])
    return [run_shard("dedup", crawl, u["ordinal"], [u["uri"], decisions], cfg, attempt)
            for u in partitions.units(plan, "shard")]


def add_release(cfg: PipelineConfig, crawl: str, uris: list[str]) -> dict:
    """Record a crawl's released images in {root}/released-index/ so later crawls skip them.

    uris: the crawl's released shard parquets (e.g. assemble outputs, named by shard); their
    embeddings are looked up by id in the same crawl's score outputs. Rewrites the crawl's entry.
    """
    ids, shas, models, embs = [], [], [], []
    for uri in sorted(uris, key=paths.shard_of):
        so = cfg.storage_options
        rows = kept_rows(uri, cfg) if _has_reasons(uri, cfg) else io.read_parquet(uri, storage_options=so)
        score_uri = paths.shard_uri(cfg.root, crawl, "score", paths.shard_of(uri))
        scored = io.read_parquet(score_uri, ["id", "emb_row", "model"], cfg.storage_options)
        emb_row = dict(zip(scored["id"].to_pylist(), scored["emb_row"].to_pylist(), strict=True))
        emb = partitions.npy(partitions.score_npy(score_uri), cfg.storage_options).astype(np.float32)
        ids += rows["id"].to_pylist()
        shas += partitions.column(rows, "sha256")
        models += scored["model"].to_pylist()[:1] * rows.num_rows
        embs.append(emb[[emb_row[i] for i in rows["id"].to_pylist()]])
    table = pa.table({"id": pa.array(ids, pa.string()), "sha256": pa.array(shas, pa.string()),
                      "model": pa.array(models, pa.string())})
    emb = np.concatenate(embs) if embs else np.zeros((0, 1), np.float32)
    folder = emb_index.save_released(cfg, crawl, table, emb)
    return {"crawl": crawl, "released_index": folder, "images": len(ids)}


def _has_reasons(uri: str, cfg: PipelineConfig) -> bool:
    import pyarrow.parquet as pq

    with io.open_uri(uri, "rb", cfg.storage_options) as f:
        return "drop_reason" in pq.read_schema(f).names
