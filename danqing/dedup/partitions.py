"""Dedup partitions: a crawl's kept images (and the released index) split into groups of cells and
hash buckets, so one bounded task finds the pairs of one group and no task holds the whole crawl.

Under {crawl}/dedup-work/: plan.json and cells.npz (one task), then per source (a run of score
shards or a slice of the released index) emb/<source>-<sketch>.parquet and hash/<source>.parquet
with one row group per group, then pairs/<group>.parquet per group. Every file is rewritten whole by a rerun.

Two modes, as close_pairs has: under ivf_min_rows crawl rows, one group holds the crawl's full
embeddings and is searched exactly; past it, rows go to their nearest cells in each sketch
(danqing.embed.cells), groups are ranges of cells sized by cfg.group_entries, and candidates found
in a group are checked on the full embeddings by the merge.
"""

from __future__ import annotations

import io as _io
import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from danqing import io, paths, records
from danqing.config import DedupConfig, PipelineConfig
from danqing.dedup import rules
from danqing.embed import cells
from danqing.embed import index as emb_index

READ_ROWS = 50_000  # rows of a released crawl read at once
# pair kinds in pairs/<group>.parquet
EXACT, PHASH, RELEASED_EXACT, CANDIDATE, EMBEDDING = range(5)
SHA, PHASH_BLOCK = 0, 1  # entry kinds in hash/<source>.parquet


def work_dir(cfg: PipelineConfig, crawl: str) -> str:
    return f"{paths.crawl_dir(cfg.root, crawl)}/dedup-work"


def for_model(cfg: DedupConfig, model: str) -> DedupConfig:
    """cfg with the distance threshold of the scoring model that made the embeddings."""
    for key in (model, model.split(":", 1)[0]):
        if key in cfg.model_max_cosine_distance:
            return cfg.model_copy(update={"max_cosine_distance": cfg.model_max_cosine_distance[key]})
    return cfg


# --- rows: what a source holds ----------------------------------------------------------------

@dataclass
class Rows:
    gid: np.ndarray  # int64
    emb: np.ndarray  # (n, d) float32, unit rows
    sha256: list[str]
    phash: np.ndarray  # uint64
    has_phash: np.ndarray  # bool


def kept_table(cfg: PipelineConfig, uri: str, columns=("id", "emb_row", "model", "sha256", "phash")) -> pa.Table:
    """A score shard's kept rows, only the columns dedup reads: row i here is row i of its gids."""
    with io.open_uri(uri, "rb", cfg.storage_options) as f:
        names = pq.read_schema(f).names
    wanted = [c for c in (*columns, "drop_reason") if c in names]
    return records.kept(io.read_parquet(uri, wanted, cfg.storage_options))


def load_rows(cfg: PipelineConfig, unit: dict) -> Rows:
    """The rows of one unit of a source: a score shard's kept rows, or a slice of a released crawl."""
    so = cfg.storage_options
    if unit["kind"] == "shard":
        table = kept_table(cfg, unit["uri"])
        emb = npy(score_npy(unit["uri"]), so)
        emb_row = np.asarray(table["emb_row"].to_pylist(), np.int64)
        in_order = np.array_equal(emb_row, np.arange(len(emb)))  # the usual case: no gather copy
        emb = (emb if in_order else emb[emb_row]).astype(np.float32)
        sha = column(table, "sha256")
        hashes, has = emb_index.parse_phash(column(table, "phash"))
        return Rows(rules.gid(unit["ordinal"], np.arange(table.num_rows)), emb, sha, hashes, has)
    rows = np.arange(unit["start"], unit["stop"])
    ids = io.read_parquet(f"{unit['uri']}/ids.parquet", ["sha256"], so).slice(unit["start"], len(rows))
    emb = _npy_rows(f"{unit['uri']}/embeddings.npy", rows, so)
    return Rows(rules.released_gid(unit["ordinal"], rows), emb, column(ids, "sha256"),
                np.zeros(len(rows), np.uint64), np.zeros(len(rows), bool))


def embeddings_of(cfg: PipelineConfig, plan: dict, gids: np.ndarray) -> np.ndarray:
    """Unit embeddings (float32) of sorted gids, read one source at a time."""
    out = np.empty((len(gids), plan["dims"]), np.float32)
    for source, at, rows in _by_source(plan, gids):
        if source["kind"] == "shard":  # only the rows asked for, not the shard's whole .npy
            emb_row = np.asarray(kept_table(cfg, source["uri"], ("emb_row",))["emb_row"].to_pylist(), np.int64)
            wanted = emb_row[rows]
            order = np.argsort(wanted)
            out[at[order]] = _npy_rows(score_npy(source["uri"]), wanted[order], cfg.storage_options)
        else:
            out[at] = _npy_rows(f"{source['uri']}/embeddings.npy", rows, cfg.storage_options)
    return out


def names_of(cfg: PipelineConfig, plan: dict, gids: np.ndarray) -> list[str]:
    """Image ids of sorted gids."""
    out = [""] * len(gids)
    for source, at, rows in _by_source(plan, gids):
        if source["kind"] == "shard":
            ids = kept_table(cfg, source["uri"], ("id",))["id"]
        else:
            ids = io.read_parquet(f"{source['uri']}/ids.parquet", ["id"], cfg.storage_options)["id"]
        for i, row in zip(at.tolist(), rows.tolist(), strict=True):
            out[i] = ids[row].as_py()
    return out


def units(plan: dict, kind: str | None = None) -> list[dict]:
    """The plan's units (score shards, released slices) in order, or those of one kind."""
    return [u for s in plan["sources"] for u in s["parts"] if kind in (None, u["kind"])]


def _by_source(plan: dict, gids: np.ndarray):
    """(unit, positions in gids, rows) for each score shard or released crawl that gids name."""
    owner, row = rules.split(gids)
    released = gids >= rules.RELEASED
    firsts = {}
    for u in units(plan):
        firsts.setdefault((u["kind"], u["ordinal"]), u)
    for kind, mask in (("shard", ~released), ("released", released)):
        for o in np.unique(owner[mask]).tolist():
            at = np.flatnonzero(mask & (owner == o))
            yield firsts[(kind, o)], at, row[at]


# --- plan --------------------------------------------------------------------------------------

def plan(cfg: PipelineConfig, crawl: str, score_uris: list[str]) -> dict:
    """Sources, mode, cells (learned on a fixed sample of the crawl) and groups; written to plan.json.

    A source is a run of units of one kind up to chunk_rows rows: score shards, or slices of a
    released crawl, so a crawl of many small shards is not as many files for every group to open.
    """
    d, so = cfg.dedup, cfg.storage_options
    shards, model, batches = [], "", set()
    for uri in sorted(score_uris, key=paths.shard_of):
        table, shard = kept_table(cfg, uri, ("model",)), paths.shard_of(uri)
        shards.append({"kind": "shard", "uri": uri, "ordinal": shard, "start": 0, "stop": table.num_rows})
        if table.num_rows:
            model = model or table["model"][0].as_py()
            batches.add(shard // d.batch_shards)
    rows = sum(u["stop"] for u in shards)
    released = []
    if d.released_index and rows:
        step = min(READ_ROWS, d.chunk_rows)
        for ordinal, (folder, count) in enumerate(emb_index.released_crawls(cfg, crawl, model)):
            released += [{"kind": "released", "uri": folder, "ordinal": ordinal, "start": start,
                          "stop": min(count, start + step)} for start in range(0, count, step)]
    sources = _pack(shards, d.chunk_rows) + _pack(released, d.chunk_rows)
    total = rows + sum(u["stop"] - u["start"] for u in released)
    work = work_dir(cfg, crawl)
    out = {"mode": "flat", "rows": rows, "model": model, "cross_batch": len(batches) > 1, "groups": 1,
           "bounds": [0, 0], "dims": _dims(cfg, shards + released), "uri": f"{work}/plan.json"}
    if rows >= d.ivf_min_rows:
        nlist = cells.cell_count(rows)
        entries = total * min(cells.cells_per_row(d), nlist)  # per sketch: a task holds one at a time
        groups = int(min(nlist, max(1, -(-entries // d.group_entries))))
        out.update(mode="join", groups=groups, bounds=np.linspace(0, nlist, groups + 1).astype(int).tolist())
        save_cells(_cells(cfg, shards, rows, nlist), f"{work}/cells.npz", so)
    io.write_json(sources, f"{work}/sources.json", so)  # apart: a partition task reads the small plan only
    io.write_json(out, out["uri"], so)
    return {**out, "sources": sources}


def _pack(parts: list[dict], chunk_rows: int) -> list[dict]:
    sources: list[dict] = []
    for u in parts:
        size = u["stop"] - u["start"]
        if not sources or sources[-1]["rows"] + size > chunk_rows:
            tag = f"s{u['ordinal']:05d}" if u["kind"] == "shard" else f"r{u['ordinal']:03d}-{u['start']:010d}"
            sources.append({"name": tag, "kind": u["kind"], "rows": 0, "parts": []})
        sources[-1]["parts"].append(u)
        sources[-1]["rows"] += size
    return sources


def load_plan(cfg: PipelineConfig, uri: str, sources: bool = True) -> dict:
    plan = io.read_json(uri, cfg.storage_options)
    if sources:
        plan["sources"] = io.read_json(f"{work_dir_of(plan)}/sources.json", cfg.storage_options)
    return plan


def _cells(cfg: PipelineConfig, shards: list[dict], rows: int, nlist: int) -> list[cells.CellTree]:
    """Each sketch's cells, learned on the rows cells.training_rows names.
    Only the sample's sketches stay in memory, filled one shard at a time."""
    d = cfg.dedup
    picks = [cells.training_rows(rows, nlist, seed) for seed in range(d.jl_tables)]
    sketches = [np.empty((len(pick), d.jl_dims), np.float32) for pick in picks]
    start = 0
    for unit in shards:
        stop = start + unit["stop"]
        spans = [np.searchsorted(pick, [start, stop]) for pick in picks]
        if any(hi > lo for lo, hi in spans):
            emb = load_rows(cfg, unit).emb
            for seed, (pick, (lo, hi)) in enumerate(zip(picks, spans, strict=True)):
                sketches[seed][lo:hi] = cells.sketch(emb[pick[lo:hi] - start], d.jl_dims, seed)
        start = stop
    return [cells.train(sketch, nlist, seed) for seed, sketch in enumerate(sketches)]


def _dims(cfg: PipelineConfig, parts: list[dict]) -> int:
    for s in parts:
        if s["stop"] > s["start"]:
            uri = score_npy(s["uri"]) if s["kind"] == "shard" else f"{s['uri']}/embeddings.npy"
            with io.open_uri(uri, "rb", cfg.storage_options) as f:
                return int(_npy_header(f)[0][1])
    return 0


# --- partition: one source into its groups -------------------------------------------------------

def partition(cfg: PipelineConfig, plan: dict, source: dict) -> None:
    """Write the source's embedding entries and hash entries, one row group per group."""
    d = for_model(cfg.dedup, plan["model"])
    work, so, groups = work_dir_of(plan), cfg.storage_options, plan["groups"]
    trees = load_cells(f"{work}/cells.npz", so) if plan["mode"] == "join" else []
    hashes, flat = [], []
    sketched: list[list[cells.Entries]] = [[] for _ in trees]
    for unit in source["parts"]:  # one unit's embeddings in memory at a time
        rows = load_rows(cfg, unit)
        hashes.append(_hash_entries(rows, d, groups))
        if not trees:
            flat.append(pa.table({"group": np.zeros(len(rows.gid), np.int32), "gid": rows.gid,
                                  "emb": _fixed(rows.emb.astype(np.float16))}))
        for seed, out in enumerate(sketched):
            out.append(emb_index.entries(rows.emb, d, seed, trees[seed], rows.gid))
    write_groups(hashes, f"{work}/hash/{source['name']}.parquet", so)
    if not trees:
        write_groups(flat, emb_uri(plan, source, 0), so)
    bounds = np.asarray(plan["bounds"])
    for seed, parts in enumerate(sketched):  # a row is copied into each group it reaches: one sketch at a time
        emb = []
        for e in parts:
            at, group = _by_group(np.searchsorted(bounds, e.cells, side="right") - 1)
            emb.append(pa.table({"group": group, "gid": e.ids[at], "cells": _fixed(e.cells[at]),
                                 "sketch": _fixed(e.sketch[at])}))
        write_groups(emb, emb_uri(plan, source, seed), so)
        del emb


def emb_uri(plan: dict, source: dict, sketch: int) -> str:
    return f"{work_dir_of(plan)}/emb/{source['name']}-{sketch}.parquet"


def _by_group(group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, group) once for each group a row reaches (group: a row's groups, one per column), by group."""
    g = np.sort(group, axis=1)
    first = np.ones(g.shape, bool)
    first[:, 1:] = g[:, 1:] != g[:, :-1]
    rows, k = np.nonzero(first)
    group = g[rows, k].astype(np.int32)
    order = np.argsort(group, kind="stable")
    return rows[order], group[order]


def work_dir_of(plan: dict) -> str:
    return plan["uri"].rsplit("/", 1)[0]


_MIX = np.uint64(0x9E3779B97F4A7C15)  # a multiplier spreading block values over the buckets


def _hash_entries(rows: Rows, d: DedupConfig, groups: int) -> pa.Table:
    """Each sha256 in the bucket of its crc; each perceptual hash in the buckets of its blocks: hashes
    within max_phash_distance bits agree on one of max_phash_distance + 1 blocks (pigeonhole)."""
    has_sha = np.array([bool(s) for s in rows.sha256], bool)
    sha_group = np.array([zlib.crc32(s.encode()) % groups for s in rows.sha256], np.int64)
    edges = np.linspace(0, 64, d.max_phash_distance + 2).astype(np.uint64)
    hashed = np.flatnonzero(rows.has_phash)
    h = rows.phash[hashed]
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps on purpose
        block = np.stack([((h >> lo) & ((np.uint64(1) << (hi - lo)) - np.uint64(1))) * _MIX + np.uint64(j)
                          for j, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))], axis=1)
    at, group = _by_group((block % np.uint64(groups)).astype(np.int64) if len(hashed) else
                          np.empty((0, len(edges) - 1), np.int64))
    at = hashed[at]
    own = np.flatnonzero(has_sha)
    sha = np.array(rows.sha256, dtype=object)
    return pa.table({"group": np.r_[sha_group[own], group].astype(np.int32), "gid": np.r_[rows.gid[own], rows.gid[at]],
                     "kind": np.r_[np.full(len(own), SHA, np.int8), np.full(len(at), PHASH_BLOCK, np.int8)],
                     "sha256": pa.array(np.r_[sha[own], sha[at]].tolist(), pa.string()),
                     "phash": np.r_[np.zeros(len(own), np.uint64), rows.phash[at]]})


# --- pairs: one group --------------------------------------------------------------------------

def find_pairs(cfg: PipelineConfig, plan: dict, group: int) -> str:
    """The group's exact, perceptual, released and embedding pairs (candidates, in join mode)."""
    d = for_model(cfg.dedup, plan["model"])
    work, so = work_dir_of(plan), cfg.storage_options
    found = _hash_pairs(pa.concat_tables([read_group(f"{work}/hash/{s['name']}.parquet", group, so)
                                          for s in plan["sources"]]), d)
    if plan["mode"] == "flat":
        found += _flat_pairs(cfg, plan, d)
    else:
        for seed in range(d.jl_tables):
            found.append((*_candidates(cfg, plan, group, seed, d), CANDIDATE))
    a = np.concatenate([f[0] for f in found]).astype(np.int64)
    b = np.concatenate([f[1] for f in found]).astype(np.int64)
    kind = np.concatenate([np.full(len(f[0]), f[2], np.int8) for f in found])
    unique = np.unique(np.stack([kind.astype(np.int64), a, b], axis=1), axis=0)
    uri = f"{work}/pairs/g{group:05d}.parquet"
    io.write_parquet(pa.table({"kind": unique[:, 0].astype(np.int8), "a": unique[:, 1], "b": unique[:, 2]}), uri,
                     storage_options=so)
    return uri


def _candidates(cfg: PipelineConfig, plan: dict, group: int, seed: int, d: DedupConfig) -> tuple[np.ndarray, ...]:
    """Distinct candidate pairs (a < b) of the group in one sketch; its entries are freed on return,
    so a task holds one sketch's entries at a time."""
    t = pa.concat_tables([read_group(emb_uri(plan, s, seed), group, cfg.storage_options) for s in plan["sources"]])
    e = cells.Entries(t["gid"].to_numpy(), _array(t["cells"], np.uint16), _array(t["sketch"], np.uint16))
    a, b = cells.join(e, range(plan["bounds"][group], plan["bounds"][group + 1]), d)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = (a < b) & (a < rules.RELEASED)  # released images are never compared with each other
    pair = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)  # pairs sharing cells come back often
    return pair[:, 0], pair[:, 1]


def _hash_pairs(t: pa.Table, d: DedupConfig) -> list[tuple[np.ndarray, np.ndarray, int]]:
    order = np.argsort(t["gid"].to_numpy(), kind="stable")
    gid, kind = t["gid"].to_numpy()[order], t["kind"].to_numpy()[order]
    sha = np.array(t["sha256"].to_pylist(), dtype=object)[order] if len(order) else np.empty(0, object)
    found = []
    own = (kind == SHA) & (gid < rules.RELEASED)
    first: dict[str, int] = {}
    for g, h in zip(gid[own].tolist(), sha[own].tolist(), strict=True):
        first.setdefault(h, g)
    keeper = np.fromiter((first[h] for h in sha[own]), np.int64, int(own.sum()))
    later = keeper != gid[own]
    found.append((keeper[later], gid[own][later], EXACT))
    released: dict[str, int] = {}
    for g, h in zip(gid[(kind == SHA) & ~own].tolist(), sha[(kind == SHA) & ~own].tolist(), strict=True):
        released.setdefault(h, g)
    hits = [(first[h], g) for h, g in released.items() if h in first]
    found.append((np.array([a for a, _ in hits], np.int64), np.array([b for _, b in hits], np.int64), RELEASED_EXACT))
    # Perceptual pairs among the first image of each sha256 only, as the exact rule keeps: copies of
    # one file would otherwise all pair with each other. All copies share their buckets, so are here.
    seen: set[str] = set()
    reps = [i for i in np.flatnonzero(kind == PHASH_BLOCK).tolist()
            if not sha[i] or not (sha[i] in seen or seen.add(sha[i]))]
    phash = t["phash"].to_numpy()[order][reps]
    a, b = emb_index.phash_pairs(phash, d.max_phash_distance)
    found.append((gid[reps][a], gid[reps][b], PHASH))
    return found


def _flat_pairs(cfg: PipelineConfig, plan: dict, d: DedupConfig) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Exact search: the crawl's rows against each other, then each released slice against them."""
    own = [s for s in plan["sources"] if s["kind"] == "shard"]
    so = cfg.storage_options
    t = pa.concat_tables([read_group(emb_uri(plan, s, 0), 0, so) for s in own])  # under ivf_min_rows rows
    gid, x = t["gid"].to_numpy(), _array(t["emb"], np.float16).astype(np.float32)
    a, b = emb_index.close_pairs(x, d)
    found = [(gid[a], gid[b], EMBEDDING)]
    index = None
    for source in plan["sources"][len(own):]:
        r = read_group(emb_uri(plan, source, 0), 0, so)
        if len(x) == 0 or r.num_rows == 0:
            continue
        if index is None:
            index = emb_index.search_index(x, d)
        match = emb_index.released_matches(index, _array(r["emb"], np.float16).astype(np.float32), len(x), d)
        hit = match >= 0
        found.append((gid[hit], r["gid"].to_numpy()[match[hit]], EMBEDDING))
    return found


# --- files ---------------------------------------------------------------------------------------

def write_groups(parts: list[pa.Table], uri: str, storage_options: dict) -> None:
    """Tables with a group column as one file with one row group per group: a reader finds its
    rows by the row groups' statistics and reads nothing else."""
    runs: dict[int, list[pa.Table]] = {}
    for t in parts:
        if t.num_rows == 0:
            continue
        group = t["group"].to_numpy()
        order = np.argsort(group, kind="stable")
        if not np.array_equal(order, np.arange(len(order))):  # embedding parts come sorted already
            t, group = t.take(order), group[order]
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]).tolist()
        for lo, hi in zip(starts, [*starts[1:], len(group)], strict=True):
            runs.setdefault(int(group[lo]), []).append(t.slice(lo, hi - lo))
    schema = parts[0].schema if parts else pa.schema([("group", pa.int32())])
    with io.atomic_write(uri, "wb", storage_options) as f, pq.ParquetWriter(f, schema, compression="none") as w:
        for key in sorted(runs):
            run = pa.concat_tables(runs[key])
            w.write_table(run, row_group_size=run.num_rows)


def read_group(uri: str, group: int, storage_options: dict) -> pa.Table:
    """The rows of one group from a file write_groups wrote, reading only those."""
    with io.open_uri(uri, "rb", storage_options) as f:
        pf = pq.ParquetFile(f)
        at = pf.schema_arrow.names.index("group")
        wanted = [i for i in range(pf.num_row_groups) if pf.metadata.row_group(i).column(at).statistics.min == group]
        return pf.read_row_groups(wanted) if wanted else pf.schema_arrow.empty_table()


def _fixed(x: np.ndarray) -> pa.Array:
    """Rows of a 2-d array as fixed-size binary values (sharing the array's memory)."""
    x = np.ascontiguousarray(x)
    width = x.shape[1] * x.itemsize
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(x), [None, pa.py_buffer(x)])


def _array(col: pa.ChunkedArray, dtype) -> np.ndarray:
    """Fixed-size binary values back to rows of dtype."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    width = arr.type.byte_width
    dtype = np.dtype(dtype)
    if len(arr) == 0:  # no data buffer to view
        return np.empty((0, width // dtype.itemsize), dtype)
    flat = np.frombuffer(arr.buffers()[1], dtype, count=len(arr) * width // dtype.itemsize,
                         offset=arr.offset * width)
    return flat.reshape(len(arr), width // dtype.itemsize)


def score_npy(score_uri: str) -> str:
    return score_uri.removesuffix(".parquet") + "_img.npy"


def column(table: pa.Table, name: str) -> list[str]:
    return [v or "" for v in table[name].to_pylist()] if name in table.column_names else [""] * table.num_rows


def npy(uri: str, storage_options: dict) -> np.ndarray:
    with io.open_uri(uri, "rb", storage_options) as f:
        shape, dtype = _npy_header(f)
        return np.frombuffer(f.read(), dtype).reshape(shape)  # one copy of the data, read-only


def save_cells(trees: list[cells.CellTree], uri: str, storage_options: dict) -> None:
    """Every sketch's cells in one file (all have the same shapes)."""
    buf = _io.BytesIO()
    np.savez(buf, **{name: np.stack([getattr(t, name) for t in trees]) for name in ("coarse", "fine", "start")})
    with io.atomic_write(uri, "wb", storage_options) as f:
        f.write(buf.getvalue())


def load_cells(uri: str, storage_options: dict) -> list[cells.CellTree]:
    with io.open_uri(uri, "rb", storage_options) as f, np.load(_io.BytesIO(f.read())) as z:
        return [cells.CellTree(*parts) for parts in zip(z["coarse"], z["fine"], z["start"], strict=True)]


def _npy_header(f) -> tuple[tuple, np.dtype]:
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read(f)
    assert not fortran, "embeddings must be C-ordered"
    return shape, dtype


def _npy_rows(uri: str, rows: np.ndarray, storage_options: dict) -> np.ndarray:
    """Rows (ascending) of a 2-d .npy as float32, reading runs of consecutive rows only."""
    with io.open_uri(uri, "rb", storage_options) as f:
        shape, dtype = _npy_header(f)
        base, width = f.tell(), int(shape[1]) * dtype.itemsize
        out = np.empty((len(rows), shape[1]), np.float32)
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        for lo, hi in zip([0, *breaks.tolist()], [*breaks.tolist(), len(rows)], strict=True):
            if hi > lo:
                f.seek(base + int(rows[lo]) * width)
                out[lo:hi] = np.frombuffer(f.read((hi - lo) * width), dtype).reshape(hi - lo, -1)
        return out
