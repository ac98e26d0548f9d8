"""Cells for the embedding self-join: random-projection sketches, two-level k-means cells, and the
join of one set of cells, so the join can run over all cells in one process or over groups of cells
in many.

Each row is sketched (Johnson-Lindenstrauss, cfg.jl_dims wide) in cfg.jl_tables independent
projections. Per projection, a row sits in its ivf_db_cells nearest cells and is compared with the
rows of its join_nprobe nearest ones, sought among the fine cells of its cell_probes nearest coarse
cells (CellTree). Sketch distances bound the true ones (jl_bound); a close pair escapes only if it
shares no cell in every projection. Candidates are checked on the full embeddings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from danqing.config import DedupConfig

JOIN_MARGIN = 0.02  # bfloat16 error bound on the sketch products (terms near 1); candidates are checked exactly
JOIN_CHUNK = 1024


def product_dtype():
    """The join's product type: bfloat16 where the CPU multiplies it in hardware (AVX512-BF16, AMX), else
    float32. Elsewhere (AVX2: many AMD EPYC and older Xeons) oneDNN emulates bfloat16 products about 12x
    slower than float32 ones of the same shape."""
    import torch

    native = any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported",
                                                                        "_is_amx_tile_supported"))
    return torch.bfloat16 if native else torch.float32


ROWS_PER_CELL = 500  # past 1M rows the cells grow with the rows, so a row's join work stays put
MAX_CELLS = 16_384  # cell ids are uint16


def cell_count(n: int) -> int:
    """Cells for n rows: 2 sqrt(n) up to 1M rows, n / ROWS_PER_CELL past it (up to MAX_CELLS).
    Joining a row costs as the rows per cell; finding its cells (CellTree.nearest) grows only as
    sqrt(cells), so past 1M the cells keep their size. More cells also split more close pairs: the
    sketches cover it."""
    return int(min(MAX_CELLS, max(16, 2 * np.sqrt(n), n / ROWS_PER_CELL)))


def cells_per_row(cfg: DedupConfig) -> int:
    return max(cfg.join_nprobe, cfg.ivf_db_cells)


def sketch(x: np.ndarray, dims: int, seed: int = 0) -> np.ndarray:
    """x times a fixed Gaussian matrix scaled by 1/sqrt(dims): |sketch(v)|^2 = |v|^2 chi2(dims) / dims."""
    g = np.random.default_rng(seed).standard_normal((x.shape[1], dims)).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32) @ (g / np.float32(np.sqrt(dims)))


def jl_bound(max_sq: float, dims: int, miss: float) -> float:
    """Sketch squared distance that a pair at true squared distance max_sq exceeds with probability miss."""
    from scipy.stats import chi2

    return float(max_sq * chi2.isf(miss, dims) / dims)


def training_rows(n: int, nlist: int, seed: int) -> np.ndarray:
    """The rows (of n, in order) that k-means learns the cells from: a fixed sample, so reruns agree."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, 40 * nlist), replace=False))


@dataclass
class CellTree:
    """One sketch's cells in two levels: sqrt(cells) coarse cells, each split into fine cells (the
    cells rows sit in and probe). A row's nearest fine cells are sought among those of its nearest
    coarse cells only, so finding them costs as sqrt(cells), not as the cells: a flat search over
    10,000 cells cost more than the join itself."""

    coarse: np.ndarray  # (k1, dims) float32
    fine: np.ndarray  # (cells, dims) float32, those of coarse cell j at start[j]:start[j + 1]
    start: np.ndarray  # (k1 + 1,) int64

    def nearest(self, p: np.ndarray, k: int, probes: int) -> np.ndarray:
        """Each sketched row's k nearest fine cells (L2) among those of its `probes` nearest coarse
        cells, nearest first, as uint16. With every coarse cell probed this is the exact search."""
        import faiss
        import torch

        p = np.ascontiguousarray(p, np.float32)
        sizes = np.diff(self.start)
        k = min(k, len(self.fine))
        probes = min(len(sizes), probes)
        while np.sort(sizes)[:probes].sum() < k:  # any probed cells hold at least k fine cells
            probes += 1
        # Fine cells padded to one width per coarse cell (padding: infinitely far), so a row's
        # candidates are one (probes x width) block and one top-k picks its cells.
        width = int(sizes.max())
        fine = torch.zeros((len(sizes), width, p.shape[1]))
        half = torch.full((len(sizes), width), float("inf"))
        for j, (lo, hi) in enumerate(zip(self.start[:-1].tolist(), self.start[1:].tolist(), strict=True)):
            fine[j, :hi - lo] = torch.from_numpy(self.fine[lo:hi])
            half[j, :hi - lo] = torch.from_numpy(0.5 * np.einsum("ij,ij->i", self.fine[lo:hi], self.fine[lo:hi]))
        out = np.empty((len(p), k), np.uint16)
        for s in range(0, len(p), NEAREST_CHUNK):
            x = p[s:s + NEAREST_CHUNK]
            _, top = faiss.knn(x, self.coarse, probes)
            # (row, probe) slots grouped by coarse cell: one product per coarse cell
            order = np.argsort(top.ravel(), kind="stable")
            bounds = np.searchsorted(top.ravel()[order], np.arange(len(sizes) + 1))
            rows = torch.from_numpy(x[order // probes])
            d = torch.empty((len(order), width))  # |f|^2/2 - x.f: orders the fine cells by distance
            for j in np.flatnonzero(np.diff(bounds)).tolist():
                lo, hi = bounds[j], bounds[j + 1]
                torch.addmm(half[j], rows[lo:hi], fine[j].T, alpha=-1, out=d[lo:hi])
            slots = torch.empty_like(d)
            slots[torch.from_numpy(order)] = d
            _, best = torch.topk(slots.view(len(x), probes * width), k, dim=1, largest=False, sorted=True)
            best = best.numpy()
            cell = np.take_along_axis(top, best // width, axis=1)
            out[s:s + len(x)] = self.start[cell] + best % width
        return out


NEAREST_CHUNK = 2_048  # rows at once. Small on purpose: glibc raises its mmap threshold to a freed block's
# size (up to 32 MB), after which a task's arrays fragment the heap: +130 MB peak in a partition task at 8,192.


def train(sample: np.ndarray, nlist: int, seed: int) -> CellTree:
    """nlist cells of sketched sample rows (the rows training_rows named): k-means for sqrt(nlist)
    coarse cells, then k-means within each for its share of the fine cells, as its share of rows."""
    import faiss

    sample = np.ascontiguousarray(sample, np.float32)
    coarse = _kmeans(sample, max(1, round(np.sqrt(nlist))), seed, niter=10)
    owner = faiss.knn(sample, coarse, 1)[1].ravel()
    order = np.argsort(owner, kind="stable")
    count = np.bincount(owner, minlength=len(coarse))
    share = _apportion(count, nlist)
    starts = np.r_[0, np.cumsum(count)]
    fine = [_kmeans(sample[order[starts[j]:starts[j + 1]]], int(share[j]), seed, niter=4)
            for j in range(len(coarse))]
    return CellTree(coarse, np.vstack(fine), np.r_[0, np.cumsum(share)].astype(np.int64))


def _apportion(count: np.ndarray, total: int) -> np.ndarray:
    """total split in proportion to count (largest remainders), no part above its count."""
    if count.sum() < total:
        raise ValueError(f"{count.sum()} sample rows cannot make {total} cells")
    exact = total * count / count.sum()
    share = np.floor(exact).astype(np.int64)
    for j in np.argsort(share - exact, kind="stable")[:total - share.sum()]:
        share[j] += 1
    return share  # never above count: a part rounds up only from a fraction below it


def _kmeans(x: np.ndarray, k: int, seed: int, niter: int) -> np.ndarray:
    import faiss

    if k == 0 or k >= len(x):  # no cells, or (_apportion) as many as rows: each row is one
        return x[:k].copy()
    km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, min_points_per_centroid=1)
    km.train(x)
    return km.centroids


def packed(p: np.ndarray) -> np.ndarray:
    """Sketch rows and half their squared norms as bfloat16 bits (uint16): what the join reads."""
    import torch

    half = 0.5 * np.einsum("ij,ij->i", p, p)[:, None]
    return torch.from_numpy(np.hstack([p, half])).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


@dataclass
class Entries:
    """Rows of one projection that sit in some cells: their ids, nearest cells and packed sketches."""

    ids: np.ndarray  # int64, any ids (row numbers, or global ids across shards)
    cells: np.ndarray  # (m, cells_per_row) uint16, nearest first
    sketch: np.ndarray  # (m, jl_dims + 1) uint16, from packed()


def join(e: Entries, cells: range, cfg: DedupConfig) -> tuple[np.ndarray, np.ndarray]:
    """Candidate id pairs among e whose sketch distance passes the chi-square bound, in the given cells.

    A cell compares the rows probing it (join_nprobe nearest) with the rows sitting in it
    (ivf_db_cells nearest, so also probing it). Sitting rows meet each other once, in one triangle.
    A pair may come back more than once and in either order.
    """
    import torch

    # Every block has its own shape, and oneDNN keeps a compiled product (with packed operands) per
    # shape, 1,024 by default: hundreds of MB that a bounded task cannot spare. Read at first use.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")
    empty = np.empty(0, np.int64)
    if len(e.ids) == 0:
        return empty, empty
    db_start, db_rows = _lists(e.cells[:, :cfg.ivf_db_cells], cells)
    q_start, q_rows = _lists(e.cells[:, :cfg.join_nprobe], cells)
    bits = torch.from_numpy(e.sketch.view(np.int16)).view(torch.bfloat16)
    p, half = bits[:, :-1], bits[:, -1:]
    one = torch.ones_like(half)
    # Augmented rows: [-a, |a|^2/2, 1] . [b, 1, |b|^2/2] = |a - b|^2 / 2, one matmul per block.
    qm = torch.cat([-p, half, one], dim=1)
    dm = torch.cat([p, one, half], dim=1)
    limit = 0.5 * jl_bound(2.0 * cfg.max_cosine_distance, cfg.jl_dims, cfg.jl_miss) + JOIN_MARGIN
    # Rows stay bfloat16 (half the memory); blocks multiply in bfloat16 where the CPU has it, else in
    # float32. bfloat16 results are scanned as int16 bits, which order like the values when positive;
    # negative ones (d ~ 0) all pass.
    dtype = product_dtype()
    native = dtype == torch.bfloat16
    loose = torch.tensor(limit, dtype=torch.bfloat16).view(torch.int16).item() if native else np.float32(limit)
    never = np.iinfo(np.int16).max if native else np.inf
    heads, tails = [empty], [empty]

    def scan(rows: np.ndarray, cols: np.ndarray, right, skip_self: bool) -> None:
        """Candidates between rows (probing) and cols (sitting, their sketches in right)."""
        left = torch.index_select(qm, 0, torch.from_numpy(rows)).to(dtype)
        product = left @ right.T
        half_d2 = (product.view(torch.int16) if native else product).numpy()
        if skip_self:  # rows are the first cols: each row meets itself on the diagonal
            half_d2[np.arange(len(rows)), np.arange(len(rows))] = never
        hit = np.flatnonzero(half_d2.min(axis=1) <= loose)  # few rows have any: scan only those
        i, j = np.nonzero(half_d2[hit] <= loose)
        heads.append(e.ids[rows[hit[i]]])
        tails.append(e.ids[cols[j]])

    for c in range(len(db_start) - 1):
        sitting = db_rows[db_start[c]:db_start[c + 1]]
        if sitting.size == 0:
            continue
        probing = np.setdiff1d(q_rows[q_start[c]:q_start[c + 1]], sitting, assume_unique=True)
        # index_select, not x[...]: advanced indexing gathers scattered rows several times slower
        right = torch.index_select(dm, 0, torch.from_numpy(sitting)).to(dtype)
        # Blocks that stay in cache between the product and the scan. Sitting rows meet the sitting
        # rows from their own block on (one triangle); rows that only probe meet them all.
        for s in range(0, len(sitting), JOIN_CHUNK):
            scan(sitting[s:s + JOIN_CHUNK], sitting[s:], right[s:], skip_self=True)
        for s in range(0, len(probing), JOIN_CHUNK):
            scan(probing[s:s + JOIN_CHUNK], sitting, right, skip_self=False)
    return np.concatenate(heads), np.concatenate(tails)


def _lists(cells: np.ndarray, wanted: range) -> tuple[np.ndarray, np.ndarray]:
    """Inverted lists of the wanted cells as CSR: rows in cell wanted[k] are rows[start[k]:start[k + 1]],
    ascending. Memory goes with the (row, cell) hits in range, not with all rows' cells."""
    rows, k = np.nonzero((cells >= wanted.start) & (cells < wanted.stop))
    local = cells[rows, k].astype(np.int64) - wanted.start
    order = np.argsort(local, kind="stable")  # nonzero gives rows ascending: stable keeps them so
    start = np.zeros(len(wanted) + 1, dtype=np.int64)
    start[1:] = np.cumsum(np.bincount(local, minlength=len(wanted)))
    return start, rows[order].astype(np.int64)
