"""Stage 2: turn upstream alt texts into simplified Chinese captions, or drop them with a reason.

Checks run cheapest first and the first failing one names the drop: boilerplate, language,
safety, density, the scoring tokenizer, then jieba's noun test (the slow one, so last).
"""

from __future__ import annotations

from functools import cache, lru_cache

import pyarrow as pa

from danqing.config import PipelineConfig, RefineConfig
from danqing.records import KEPT
from danqing.shard import ShardJob, kept_rows, with_column, with_reasons
from danqing.stats import StageStats
from danqing.text import clean, density, langid, quality, safety

CAPTION_EMPTY = "caption_empty"


def check(caption: str, cfg: RefineConfig, tokenizer: str) -> str | None:
    """The drop reason for a cleaned, simplified caption, or None to keep it."""
    if not caption:
        return CAPTION_EMPTY
    return (quality.check_boilerplate(caption)
            or langid.check(caption, cfg)
            or safety.check(caption, cfg)
            or density.check(caption, cfg)
            or quality.check_unknown(caption, cfg.max_unknown_tokens, tokenizer)
            or quality.check_noun(caption))


class Refiner:
    """Verdicts under one config; alt texts repeat a lot across pages, so each is judged once."""

    def __init__(self, cfg: RefineConfig, tokenizer: str):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.refine = lru_cache(maxsize=cfg.cache_size)(self._refine) if cfg.cache_size else self._refine

    def _refine(self, alt_text: str) -> tuple[str, str]:
        caption = clean.normalize(alt_text)
        return caption, check(caption, self.cfg, self.tokenizer) or KEPT


@cache
def _refiner(refine_json: str, tokenizer: str) -> Refiner:
    return Refiner(RefineConfig.model_validate_json(refine_json), tokenizer)


def refiner(cfg: PipelineConfig) -> Refiner:
    """The process-wide Refiner for this config (its models and cache are built once)."""
    return _refiner(cfg.refine.model_dump_json(), cfg.score.tokenizer)


def refine(alt_text: str, cfg: PipelineConfig) -> tuple[str, str]:
    """(caption, drop_reason) for one alt text; drop_reason "" = kept."""
    return refiner(cfg).refine(alt_text)


def process(job: ShardJob, stats: StageStats) -> pa.Table:
    rows = kept_rows(job.inputs[0], job.cfg, needs=("alt_text",))
    judge = refiner(job.cfg).refine
    verdicts = [judge(alt or "") for alt in rows["alt_text"].to_pylist()]
    # A caption column already there (refine's own output fed back) is replaced, never doubled.
    rows = with_column(rows, "caption", pa.array([caption for caption, _ in verdicts], pa.string()))
    return with_reasons(rows, [reason for _, reason in verdicts])
