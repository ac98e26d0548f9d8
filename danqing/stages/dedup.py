"""Drop duplicate images across a crawl, cheapest test first, keeping one image per group.

Order: exact bytes (sha256), perceptual hash (phash hamming), images already released for
earlier crawls, then embedding groups (cosine distance < max_cosine_distance joined by
union-find, the member nearest the group centroid kept): in-batch within groups of shards,
then cross-batch over the whole crawl. Decisions are global, so they are made once per crawl
and then written shard by shard through the ordinary runner (stats, lineage, skip-if-done).
"""

from __future__ import annotations

import io as _io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from danqing import io, lineage, paths
from danqing.config import DedupConfig, PipelineConfig
from danqing.embed import index as emb_index
from danqing.embed.unionfind import components, keep_nearest_centroid
from danqing.shard import ShardJob, kept_rows, run_shard, with_reasons
from danqing.stats import StageStats

DUPLICATE_EXACT = "duplicate_exact"
DUPLICATE_PHASH = "duplicate_phash"
DUPLICATE_RELEASED = "duplicate_released"
DUPLICATE_EMBEDDING = "duplicate_embedding"  # in-batch
DUPLICATE_CROSS_BATCH = "duplicate_cross_batch"


@dataclass
class Candidates:
    """Every image of a crawl that scoring kept, in (shard, row) order."""

    ids: list[str]
    sha256: list[str]
    phash: list[str]
    emb: np.ndarray  # (n, d) float32, unit rows
    batch: np.ndarray  # in-batch group of each row


@dataclass
class Decisions:
    reasons: np.ndarray  # "" = kept
    duplicate_of: list[str]  # id of the image kept in its place ("" = kept)


def decide(c: Candidates, cfg: DedupConfig, released: Iterable[emb_index.Released] = ()) -> Decisions:
    """The reason each row is a duplicate, and of what."""
    n = len(c.ids)
    reasons = np.full(n, "", dtype=object)
    dup_of = [""] * n

    def drop(rows, keepers, reason: str, names=c.ids) -> None:
        for row, keeper in zip(rows, keepers, strict=True):
            reasons[row] = reason
            dup_of[row] = names[keeper]

    first: dict[str, int] = {}
    exact = [(i, first.setdefault(h, i)) for i, h in enumerate(c.sha256) if h]
    drop([i for i, j in exact if i != j], [j for i, j in exact if i != j], DUPLICATE_EXACT)

    alive = np.flatnonzero(reasons == "")
    hashes, has_hash = emb_index.parse_phash([c.phash[i] for i in alive])
    rows = alive[has_hash]
    labels = components(len(rows), *emb_index.phash_pairs(hashes[has_hash], cfg.max_phash_distance))
    later = labels != np.arange(len(rows))  # the earliest image of a perceptual group stays
    drop(rows[later], rows[labels[later]], DUPLICATE_PHASH)

    # Earlier crawls' releases, a slice at a time; the first match names the original.
    alive, index = np.flatnonzero(reasons == ""), None
    rows_of_sha: dict[str, list[int]] = {}  # built once: each chunk is then one pass over its own hashes
    for i in alive:
        if c.sha256[i]:
            rows_of_sha.setdefault(c.sha256[i], []).append(i)
    for chunk in released if len(alive) else ():
        # pop: a hash matches at its first released occurrence only
        hit = [(i, j) for j, h in enumerate(chunk.sha256) if h in rows_of_sha for i in rows_of_sha.pop(h)
               if reasons[i] == ""]
        drop([i for i, _ in hit], [j for _, j in hit], DUPLICATE_RELEASED, chunk.ids)
        if index is None:
            index = emb_index.search_index(c.emb[alive], cfg)
        match = emb_index.released_matches(index, chunk.emb, len(alive), cfg)
        new = (match >= 0) & (reasons[alive] == "")
        drop(alive[new], match[new], DUPLICATE_RELEASED, chunk.ids)

    for group in np.unique(c.batch):
        _embedding_groups(np.flatnonzero((reasons == "") & (c.batch == group)), c, cfg, drop, DUPLICATE_EMBEDDING)
    if len(np.unique(c.batch)) > 1:
        _embedding_groups(np.flatnonzero(reasons == ""), c, cfg, drop, DUPLICATE_CROSS_BATCH)
    return Decisions(reasons, dup_of)


def for_model(cfg: DedupConfig, model: str) -> DedupConfig:
    """cfg with the distance threshold of the scoring model that made the embeddings."""
    for key in (model, model.split(":", 1)[0]):
        if key in cfg.model_max_cosine_distance:
            return cfg.model_copy(update={"max_cosine_distance": cfg.model_max_cosine_distance[key]})
    return cfg


def _embedding_groups(rows: np.ndarray, c: Candidates, cfg: DedupConfig, drop, reason: str) -> None:
    x = c.emb[rows]
    labels = components(len(rows), *emb_index.close_pairs(x, cfg))
    keep = keep_nearest_centroid(x, labels)
    keeper_of_label = np.empty(len(rows), dtype=np.int64)
    keeper_of_label[labels[keep]] = np.flatnonzero(keep)
    gone = np.flatnonzero(~keep)
    drop(rows[gone], rows[keeper_of_label[labels[gone]]], reason)


def load_embeddings(uri: str, storage_options: dict | None = None) -> np.ndarray:
    with io.open_uri(uri, "rb", storage_options) as f:
        return np.load(_io.BytesIO(f.read())).astype(np.float32)


def candidates(cfg: PipelineConfig, tables: list[pa.Table], score_uris: list[str]) -> Candidates:
    """Stack the kept rows of every score shard, with their image embeddings."""
    ids, shas, phashes, embs, batches = [], [], [], [], []
    for table, uri in zip(tables, score_uris, strict=True):
        emb = load_embeddings(uri.removesuffix(".parquet") + "_img.npy", cfg.storage_options)
        ids += table["id"].to_pylist()
        shas += _column(table, "sha256")
        phashes += _column(table, "phash")
        embs.append(emb[np.asarray(table["emb_row"].to_pylist(), dtype=np.int64)])
        batches.append(np.full(table.num_rows, paths.shard_of(uri) // cfg.dedup.batch_shards))
    emb = np.concatenate(embs) if embs else np.zeros((0, 1), np.float32)
    return Candidates(ids, shas, phashes, emb, np.concatenate(batches) if batches else np.zeros(0, np.int64))


def _column(table: pa.Table, name: str) -> list[str]:
    return table[name].to_pylist() if name in table.column_names else [""] * table.num_rows


def run(cfg: PipelineConfig, crawl: str, score_uris: list[str],
        attempt: lineage.Attempt | None = None) -> list[dict]:
    """Decide duplicates over the whole crawl once, then write each shard; returns per-shard summaries."""
    attempt = attempt or lineage.Attempt()
    uris = sorted(score_uris, key=paths.shard_of)
    if all(_done(cfg, crawl, paths.shard_of(u), u) for u in uris):
        return [run_shard("dedup", crawl, paths.shard_of(u), [u], cfg, attempt, process=_already_done) for u in uris]
    tables = [kept_rows(u, cfg) for u in uris]
    model = next((t["model"][0].as_py() for t in tables if t.num_rows), "")
    released = emb_index.iter_released(cfg, crawl, model) if cfg.dedup.released_index else ()
    decisions = decide(candidates(cfg, tables, uris), for_model(cfg.dedup, model), released)
    summaries, start = [], 0
    for uri, table in zip(uris, tables, strict=True):
        end = start + table.num_rows
        reasons = list(decisions.reasons[start:end])
        dup_of = decisions.duplicate_of[start:end]
        summaries.append(run_shard("dedup", crawl, paths.shard_of(uri), [uri], cfg, attempt,
                                   process=_writer(table, reasons, dup_of)))
        start = end
    return summaries


def _writer(table: pa.Table, reasons: list[str], dup_of: list[str]):
    def process(job: ShardJob, stats: StageStats) -> pa.Table:
        return with_reasons(table.append_column("duplicate_of", pa.array(dup_of, pa.string())), reasons)
    return process


def _already_done(job: ShardJob, stats: StageStats) -> pa.Table:
    raise RuntimeError(f"dedup shard {job.shard} was expected to be done")


def _done(cfg: PipelineConfig, crawl: str, shard: int, uri: str) -> bool:
    marker = paths.stats_uri(cfg.root, crawl, "dedup", shard)
    if not io.exists(marker, cfg.storage_options):
        return False
    done = io.read_json(marker, cfg.storage_options)
    return done["config_hash"] == cfg.hash() and done["inputs"] == [uri]


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
        emb = load_embeddings(score_uri.removesuffix(".parquet") + "_img.npy", cfg.storage_options)
        ids += rows["id"].to_pylist()
        shas += _column(rows, "sha256")
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
