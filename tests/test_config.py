"""Config: published defaults, overrides, validation and a hash that tracks what changes outputs."""

from __future__ import annotations

import pydantic
import pytest

from danqing.config import PipelineConfig


def test_defaults_are_the_published_thresholds():
    cfg = PipelineConfig()
    assert (cfg.extract.min_words, cfg.extract.max_words) == (5, 60)
    assert (cfg.visual.min_side_px, cfg.visual.min_pixel_std, cfg.visual.min_laplacian_var) == (100, 2.0, 1000.0)
    assert cfg.visual.min_hist_entropy_bits == 3.0
    assert cfg.dedup.max_cosine_distance == 0.1


def test_overrides_merge_and_change_the_hash():
    base = PipelineConfig(root="/a")
    other = PipelineConfig.from_overrides({"root": "/b", "visual": {"min_side_px": 200}})
    assert other.visual.min_side_px == 200 and other.visual.max_aspect == base.visual.max_aspect
    assert other.hash() != base.hash()
    # Where outputs are stored, and how loopback hosts resolve, do not change what they contain.
    moved = PipelineConfig.from_overrides({"root": "/c", "download": {"host_overrides": {"a.test": "127.0.0.1:1"}}})
    assert moved.hash() == base.hash()


def test_unknown_fields_are_refused():
    with pytest.raises(pydantic.ValidationError):
        PipelineConfig.from_overrides({"visual": {"min_sidepx": 200}})
