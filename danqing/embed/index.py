"""Range search over unit embeddings (faiss, inner product) and the index of released images."""

from __future__ import annotations

import io as _io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from danqing import io, paths
from danqing.config import DedupConfig, PipelineConfig
from danqing.embed import cells

QUERY_CHUNK = 65_536  # queries per range_search call: bounds the result buffers


def _ip_index(base: np.ndarray, cfg: DedupConfig):
    """Exact inner-product index, or IVF past cfg.ivf_min_rows (exact search is quadratic)."""
    import faiss

    n, d = base.shape
    if n < cfg.ivf_min_rows:
        index = faiss.IndexFlatIP(d)
    else:
        nlist = int(min(16_384, max(64, 4 * np.sqrt(n))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.spherical = True  # unit centroids: cells by angle, as the threshold is
        index.cp.niter = 10
        rng = np.random.default_rng(0)  # fixed training sample: same index, same decisions on rerun
        index.train(base[np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))])
        index.nprobe = cfg.ivf_nprobe
    index.add(base)
    return index


def close_pairs(x: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) of rows of x whose cosine distance is under cfg.max_cosine_distance."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if len(x) >= cfg.ivf_min_rows:
        return _cell_join(x, cfg)
    a, b = _range(x, _ip_index(x, cfg), 1.0 - cfg.max_cosine_distance)
    keep = a < b  # each pair comes back from both ends, and each row finds itself
    return a[keep], b[keep]


def _cell_join(x: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Self-join through sketches and cells (danqing.embed.cells), every cell in this process."""
    n, nlist = len(x), cells.cell_count(len(x))
    found = []
    for seed in range(cfg.jl_tables):
        sample = cells.sketch(x[cells.training_rows(n, nlist, seed)], cfg.jl_dims, seed)
        found.append(cells.join(entries(x, cfg, seed, cells.train(sample, nlist, seed)), range(nlist), cfg))
    return checked_pairs(np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]),
                         lambda rows: x[rows], cfg)


def entries(x: np.ndarray, cfg: DedupConfig, seed: int, tree: cells.CellTree,
            ids: np.ndarray | None = None) -> cells.Entries:
    """Rows of x (ids: row numbers unless given) in projection `seed`, with their nearest cells."""
    p = cells.sketch(x, cfg.jl_dims, seed)
    ids = np.arange(len(x), dtype=np.int64) if ids is None else ids
    return cells.Entries(ids, tree.nearest(p, cells.cells_per_row(cfg), cfg.cell_probes), cells.packed(p))


def checked_pairs(a: np.ndarray, b: np.ndarray, rows_of, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Candidate id pairs (any order, repeats allowed) as distinct pairs (a < b), ascending, that are
    within the distance on the full embeddings; rows_of(ids) gives the rows of sorted unique ids."""
    a, b = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    keep = a < b
    pair = np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)  # pairs sharing several cells come back often
    if len(pair) == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    ids, where = np.unique(pair, return_inverse=True)
    x = np.ascontiguousarray(rows_of(ids), dtype=np.float32)
    where = where.reshape(pair.shape)
    close = np.einsum("ij,ij->i", x[where[:, 0]], x[where[:, 1]]) >= 1.0 - cfg.max_cosine_distance
    return pair[close, 0], pair[close, 1]


def released_matches(index, released: np.ndarray, n: int, cfg: DedupConfig) -> np.ndarray:
    """For each of the n rows in `index`, the earliest row of `released` within the distance, or -1.

    The index holds this crawl's images and released rows are the queries, so the released set
    can be streamed chunk by chunk while the index is built once.
    """
    out = np.full(n, -1, dtype=np.int64)
    if n == 0 or len(released) == 0:
        return out
    rel, row = _range(np.ascontiguousarray(released, dtype=np.float32), index, 1.0 - cfg.max_cosine_distance)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, row, rel)  # the earliest released match, so reruns name the same one
    hit = first != np.iinfo(np.int64).max
    out[hit] = first[hit]
    return out


def search_index(x: np.ndarray, cfg: DedupConfig):
    """An index over unit embeddings x for released_matches (exact, or IVF past cfg.ivf_min_rows)."""
    return _ip_index(np.ascontiguousarray(x, dtype=np.float32), cfg)


def _range(queries: np.ndarray, index, min_sim: float) -> tuple[np.ndarray, np.ndarray]:
    heads, tails = [], []
    for start in range(0, len(queries), QUERY_CHUNK):
        lims, _, found = index.range_search(queries[start:start + QUERY_CHUNK], min_sim)
        heads.append(start + np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64)))
        tails.append(found.astype(np.int64))
    return np.concatenate(heads), np.concatenate(tails)


def phash_pairs(hashes: np.ndarray, max_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose 64-bit perceptual hashes differ in at most max_bits bits."""
    import faiss

    if len(hashes) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    codes = np.ascontiguousarray(hashes.astype(">u8").view(np.uint8).reshape(-1, 8))
    # Pigeonhole: within max_bits, one of nhash disjoint blocks differs in at most nflip bits. Wide
    # blocks probed with one flip bucket far fewer chance neighbours than narrow exact ones.
    nflip = 1 if max_bits >= 2 else 0
    nhash = max_bits // (nflip + 1) + 1
    index = faiss.IndexBinaryMultiHash(64, nhash, 64 // nhash)
    index.nflip = nflip
    index.add(codes)
    lims, _, found = index.range_search(codes, max_bits + 1)  # binary radius is exclusive
    a = np.repeat(np.arange(len(codes)), np.diff(lims).astype(np.int64))
    b = found.astype(np.int64)
    keep = a < b
    return a[keep], b[keep]


def parse_phash(values: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """Hex perceptual hashes as uint64, and a mask of the rows that had one."""
    out = np.zeros(len(values), dtype=np.uint64)
    ok = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values):
        if v and len(v) <= 16:
            try:
                out[i] = int(v, 16)
                ok[i] = True
            except ValueError:
                pass
    return out, ok


# --- the released index: what earlier crawls already published -------------------------------

RELEASED_CHUNK = 1_000_000  # released rows in memory at once: 2 GB of 512-d float32


@dataclass
class Released:
    """Ids, hashes and unit image embeddings of a slice of what is already released."""

    ids: list[str]
    sha256: list[str]
    emb: np.ndarray


def save_released(cfg: PipelineConfig, crawl: str, table: pa.Table, emb: np.ndarray) -> str:
    """Write one crawl's entry (embeddings first; ids.parquet last marks it complete).

    table: id, sha256 and model (embeddings of different models are never compared).
    """
    folder = paths.released_dir(cfg.root, crawl)
    so = cfg.storage_options
    buf = _io.BytesIO()
    np.save(buf, emb.astype(np.float16))
    with io.atomic_write(f"{folder}/embeddings.npy", "wb", so) as f:
        f.write(buf.getvalue())
    io.write_parquet(table, f"{folder}/ids.parquet", storage_options=so)
    return folder


def released_crawls(cfg: PipelineConfig, exclude: str, model: str) -> list[tuple[str, int]]:
    """(folder, images) of each released crawl but `exclude` (never its own release) embedded by
    `model`, in crawl order."""
    so = cfg.storage_options
    fs, root = io.fs_for(paths.released_dir(cfg.root), so)
    crawls = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) if fs.exists(root) else []
    out = []
    for crawl in crawls:
        folder = paths.released_dir(cfg.root, crawl)
        if crawl == exclude or not io.exists(f"{folder}/ids.parquet", so):
            continue
        table = io.read_parquet(f"{folder}/ids.parquet", ["model"], so)
        if table.num_rows and table["model"][0].as_py() == model:
            out.append((folder, table.num_rows))
    return out


def iter_released(cfg: PipelineConfig, exclude: str, model: str, chunk_rows: int = RELEASED_CHUNK
                  ) -> Iterator[Released]:
    """Released images of released_crawls(), chunk_rows at a time: memory stays flat however many
    crawls were released."""
    so = cfg.storage_options
    for folder, count in released_crawls(cfg, exclude, model):
        table = io.read_parquet(f"{folder}/ids.parquet", storage_options=so)
        with io.open_uri(f"{folder}/embeddings.npy", "rb", so) as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(f)
            assert not fortran and shape[0] == count, f"{folder}: embeddings do not match ids"
            row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
            for start in range(0, shape[0], chunk_rows):
                part = table.slice(start, chunk_rows)
                emb = np.frombuffer(f.read(part.num_rows * row_bytes), dtype).reshape(part.num_rows, *shape[1:])
                yield Released(part["id"].to_pylist(), part["sha256"].to_pylist(), emb.astype(np.float32))
