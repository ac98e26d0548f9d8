"""Keep pairs whose image-text similarity sits in the scoring model's calibrated band.

Too low: the caption does not describe the image. Too high: the image mostly shows its
caption as text (screenshots, banners, OCR-able images). The band is per model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from danqing import io
from danqing.config import AlignConfig, PipelineConfig
from danqing.shard import ShardJob, kept_rows, with_reasons
from danqing.stats import StageStats

SIMILARITY_LOW = "similarity_low"
SIMILARITY_HIGH = "similarity_high"
HISTOGRAM_BINS = 40


def band(model: str, cfg: AlignConfig) -> tuple[float, float]:
    """The band for a `model` column value, exact ("name:weights") or by name alone."""
    for key in (model, model.split(":", 1)[0]):
        if key in cfg.bands:
            return cfg.bands[key]
    raise ValueError(f"no similarity band for model {model!r}: calibrate one (align.histogram) into AlignConfig.bands")


def check(similarity: float, lo: float, hi: float) -> str | None:
    """The drop reason, or None to keep."""
    if similarity < lo:
        return SIMILARITY_LOW
    if similarity > hi:
        return SIMILARITY_HIGH
    return None


def process(job: ShardJob, stats: StageStats) -> pa.Table:
    rows = kept_rows(job.inputs[0], job.cfg)
    reasons = [check(s, *band(m, job.cfg.align)) or ""
               for s, m in zip(rows["similarity"].to_pylist(), rows["model"].to_pylist(), strict=True)]
    return with_reasons(rows, reasons)


def histogram(cfg: PipelineConfig, crawl: str, uris: list[str]) -> dict:
    """Similarity histogram per model over a crawl's align inputs or outputs, to calibrate the band.

    Counts every row the band judged (kept, similarity_low, similarity_high); rows dropped
    upstream are not part of the distribution.
    """
    judged = {"", SIMILARITY_LOW, SIMILARITY_HIGH}
    by_model: dict[str, list[np.ndarray]] = {}
    for uri in sorted(uris):
        table = io.read_parquet(uri, ["similarity", "model", "drop_reason"], cfg.storage_options)
        keep = np.array([r in judged for r in table["drop_reason"].to_pylist()], dtype=bool)
        sims = np.asarray(table["similarity"].to_numpy(zero_copy_only=False), np.float64)[keep]
        models = np.asarray(table["model"].to_pylist(), dtype=object)[keep]
        for model in sorted(set(models)):
            by_model.setdefault(model, []).append(sims[models == model])
    out = {}
    for model, parts in by_model.items():
        sims = np.concatenate(parts)
        lo, hi = band(model, cfg.align)
        counts, edges = np.histogram(sims, bins=HISTOGRAM_BINS, range=(-1.0, 1.0))
        out[model] = {
            "pairs": int(sims.size),
            "band": [lo, hi],
            "in_band": int(((sims >= lo) & (sims <= hi)).sum()),
            "below": int((sims < lo).sum()),
            "above": int((sims > hi).sum()),
            "quantiles": {f"p{q}": round(float(np.quantile(sims, q / 100)), 4) for q in (1, 5, 25, 50, 75, 95, 99)},
            "bin_edges": [round(float(e), 3) for e in edges],
            "counts": counts.tolist(),
        }
    return {"crawl": crawl, "models": out}
