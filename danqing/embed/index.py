"""Range search over unit embeddings (faiss, inner product) and the index of released images."""

from __future__ import annotations

import io as _io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from danqing import io, paths
from danqing.config import DedupConfig, PipelineConfig

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


JOIN_MARGIN = 0.02  # bfloat16 error bound on the sketch products (terms near 1); candidates are checked exactly
ASSIGN_CHUNK = 32_768
JOIN_CHUNK = 1024


def _cell_join(x: np.ndarray, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Self-join by cells in random projections (Johnson-Lindenstrauss sketches, cfg.jl_dims wide):
    each row sits in its ivf_db_cells nearest cells and is compared with every row of its join_nprobe
    nearest ones. Sketch distances bound the true ones (jl_bound); a pair escapes only if it shares no
    cell in each of cfg.jl_tables independent sketches. Candidates are checked exactly."""
    n = len(x)
    found = [_candidates(x, cfg, seed) for seed in range(cfg.jl_tables)]
    a = np.concatenate([f[0] for f in found]).astype(np.int64)
    b = np.concatenate([f[1] for f in found]).astype(np.int64)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a < b
    pair = np.unique(a[keep] * n + b[keep])  # a pair sharing several cells is found several times
    a, b = pair // n, pair % n
    exact = np.einsum("ij,ij->i", x[a], x[b]) >= 1.0 - cfg.max_cosine_distance
    return a[exact], b[exact]


def _candidates(x: np.ndarray, cfg: DedupConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose sketch (seed) distance passes the chi-square bound, among rows sharing a cell."""
    import torch

    nlist = _cell_count(len(x))
    p = sketch(x, cfg.jl_dims, seed)
    cells = _nearest_cells(p, _centroids(p, nlist, seed), max(cfg.join_nprobe, cfg.ivf_db_cells))
    db_start, db_rows = _lists(cells[:, :cfg.ivf_db_cells], nlist)
    q_start, q_rows = _lists(cells[:, :cfg.join_nprobe], nlist)
    # Augmented rows: [-a, |a|^2/2, 1] . [b, 1, |b|^2/2] = |a - b|^2 / 2, one matmul per cell.
    half = 0.5 * np.einsum("ij,ij->i", p, p)[:, None]
    one = np.ones_like(half)
    qm = torch.from_numpy(np.hstack([-p, half, one])).to(torch.bfloat16)
    dm = torch.from_numpy(np.hstack([p, one, half])).to(torch.bfloat16)
    limit = 0.5 * jl_bound(2.0 * cfg.max_cosine_distance, cfg.jl_dims, cfg.jl_miss) + JOIN_MARGIN
    # bfloat16 bits as int16 order like the values when positive; negative ones (d ~ 0) all pass.
    loose = torch.tensor(limit, dtype=torch.bfloat16).view(torch.int16).item()
    heads, tails = [], []
    for c in range(len(db_start) - 1):
        d_rows = db_rows[db_start[c]:db_start[c + 1]]
        q = q_rows[q_start[c]:q_start[c + 1]]
        if d_rows.size == 0 or q.size == 0:
            continue
        # index_select, not q[...]: advanced indexing gathers scattered rows several times slower
        left = torch.index_select(qm, 0, torch.from_numpy(q))
        right = torch.index_select(dm, 0, torch.from_numpy(d_rows)).T.contiguous()
        _, own_q, own_d = np.intersect1d(q, d_rows, assume_unique=True, return_indices=True)
        for s in range(0, len(q), JOIN_CHUNK):  # blocks that stay in cache between the product and the scan
            half_d2 = (left[s:s + JOIN_CHUNK] @ right).view(torch.int16).numpy()
            own = (own_q >= s) & (own_q < s + JOIN_CHUNK)
            half_d2[own_q[own] - s, own_d[own]] = np.iinfo(np.int16).max  # each row meets itself: no candidate
            hit = np.flatnonzero(half_d2.min(axis=1) <= loose)  # few rows have any: scan only those
            i, j = np.nonzero(half_d2[hit] <= loose)
            heads.append(q[s + hit[i]])
            tails.append(d_rows[j])
    return np.concatenate(heads), np.concatenate(tails)


def sketch(x: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """x times a fixed Gaussian matrix scaled by 1/sqrt(dims): |sketch(v)|^2 = |v|^2 chi2(dims) / dims."""
    g = np.random.default_rng(seed).standard_normal((x.shape[1], dims)).astype(np.float32)
    return x @ (g / np.float32(np.sqrt(dims)))


def jl_bound(max_sq: float, dims: int, miss: float) -> float:
    """Sketch squared distance that a pair at true squared distance max_sq exceeds with probability miss."""
    from scipy.stats import chi2

    return float(max_sq * chi2.isf(miss, dims) / dims)


def _cell_count(n: int) -> int:
    return int(min(16_384, max(16, 2 * np.sqrt(n))))


def _centroids(x: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """k-means on a fixed sample: the same cells, and decisions, on every rerun."""
    import faiss

    km = faiss.Kmeans(x.shape[1], nlist, niter=4, seed=seed, max_points_per_centroid=40)
    rng = np.random.default_rng(seed)
    km.train(x[np.sort(rng.choice(len(x), size=min(len(x), 40 * nlist), replace=False))])
    return km.centroids


def _nearest_cells(x: np.ndarray, centroids: np.ndarray, k: int) -> np.ndarray:
    """The k nearest centroids (L2) of each row, nearest first."""
    import torch

    # [x, 1] . [c, -|c|^2 / 2] = -|x - c|^2 / 2 + const, in bfloat16: near ties hardly matter.
    c = np.hstack([centroids, -0.5 * np.einsum("ij,ij->i", centroids, centroids)[:, None]])
    c = torch.from_numpy(c).to(torch.bfloat16).T.contiguous()
    k = min(k, len(centroids))
    out = np.empty((len(x), k), dtype=np.int32)
    for start in range(0, len(x), ASSIGN_CHUNK):
        chunk = x[start:start + ASSIGN_CHUNK]
        score = torch.from_numpy(np.hstack([chunk, np.ones((len(chunk), 1), x.dtype)])).to(torch.bfloat16) @ c
        out[start:start + ASSIGN_CHUNK] = torch.topk(score.float(), k, dim=1).indices.numpy()
    return out


def _lists(cells: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists as CSR: rows of cell c are rows[start[c]:start[c + 1]], ascending."""
    flat = cells.ravel()
    order = np.argsort(flat, kind="stable")
    rows = (order // cells.shape[1]).astype(np.int64)
    start = np.zeros(nlist + 1, dtype=np.int64)
    start[1:] = np.cumsum(np.bincount(flat, minlength=nlist))
    return start, rows


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


def iter_released(cfg: PipelineConfig, exclude: str, model: str, chunk_rows: int = RELEASED_CHUNK
                  ) -> Iterator[Released]:
    """Released images of every crawl but `exclude` (never its own release) embedded by `model`,
    in crawl order, chunk_rows at a time: memory stays flat however many crawls were released."""
    so = cfg.storage_options
    fs, root = io.fs_for(paths.released_dir(cfg.root), so)
    crawls = sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)) if fs.exists(root) else []
    for crawl in crawls:
        folder = paths.released_dir(cfg.root, crawl)
        if crawl == exclude or not io.exists(f"{folder}/ids.parquet", so):
            continue
        table = io.read_parquet(f"{folder}/ids.parquet", storage_options=so)
        if table.num_rows == 0 or table["model"][0].as_py() != model:
            continue
        with io.open_uri(f"{folder}/embeddings.npy", "rb", so) as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(f)
            assert not fortran and shape[0] == table.num_rows, f"{folder}: embeddings do not match ids"
            row_bytes = int(np.prod(shape[1:])) * dtype.itemsize
            for start in range(0, shape[0], chunk_rows):
                part = table.slice(start, chunk_rows)
                emb = np.frombuffer(f.read(part.num_rows * row_bytes), dtype).reshape(part.num_rows, *shape[1:])
                yield Released(part["id"].to_pylist(), part["sha256"].to_pylist(), emb.astype(np.float32))
