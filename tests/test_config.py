"""Config: published defaults, overrides, validation and a hash that tracks what changes outputs."""

from __future__ import annotations

import pytest

from danqing.config import ConfigError, PipelineConfig
from danqing.errors import UserError


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
    with pytest.raises(ConfigError, match=r"visual\.min_sidepx: Extra inputs are not permitted"):
        PipelineConfig.from_overrides({"visual": {"min_sidepx": 200}})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"download": {"image_size_px": -10}}, r"download\.image_size_px: .*greater than or equal to 16 \(got -10\)"),
    ({"download": {"max_redirects": -1}}, r"download\.max_redirects: .*greater than or equal to 0"),
    ({"visual": {"min_aspect": 3.0, "max_aspect": 1.0}}, r"visual: min_aspect / max_aspect: the lower bound \(3\)"),
    ({"refine": {"min_han_share": 2.0}}, r"refine\.min_han_share: .*less than or equal to 1"),
    ({"refine": {"min_han_share": 0.6}}, r"refine: min_han_share / sure_han_share"),
    ({"download": {"jpeg_quality": 1000}}, r"download\.jpeg_quality: .*less than or equal to 100"),
    ({"download": {"max_bytes": -1}}, r"download\.max_bytes"),
    ({"download": {"max_pixels": -1}}, r"download\.max_pixels"),
    ({"extract": {"min_words": 70}}, r"extract: min_words / max_words"),
    ({"source": {"backoff_s": 90}}, r"source: backoff_s / max_backoff_s"),
    ({"align": {"bands": {"m": [0.5, 0.2]}}}, r"align: bands\['m'\]"),
    ({"visual": {"min_hist_entropy_bits": 12}}, r"visual\.min_hist_entropy_bits"),
    ({"refine": {"safety_categories": ["porn", "weather"]}}, r"refine\.safety_categories\.1"),
    ({"download": {"host_overrides": {"a.test": "localhost:80"}}}, r"download\.host_overrides"),
    ({"score": {"device": "gpu0"}}, r"score\.device"),
    ({"score": {"pod": {"memory": "lots"}}}, r"score\.pod\.memory"),
    ({"download": {"total_timeout_s": 0}}, r"download\.total_timeout_s"),
    ({"visual": [1, 2]}, r"visual: Input should be a valid dictionary"),
    ({"dedup": {"ivf_db_cells": 9}}, r"dedup: ivf_db_cells \(9\) must not exceed join_nprobe \(8\)"),
])
def test_nonsense_is_refused_in_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as refused:
        PipelineConfig.from_overrides(overrides)
    assert "\n" not in str(refused.value) and isinstance(refused.value, UserError)


@pytest.mark.parametrize("overrides", [[{"visual": {}}], "visual", 3])
def test_overrides_that_are_not_an_object_are_refused(overrides):
    with pytest.raises(ConfigError, match="must be a JSON object of sections"):
        PipelineConfig.from_overrides(overrides)


def test_a_refused_value_that_holds_a_credential_is_masked():
    with pytest.raises(ConfigError) as refused:
        PipelineConfig.from_overrides({"lineage_url": "u:hunter2-long@db"})  # no scheme
    assert "hunter2-long" not in str(refused.value) and "lineage_url" in str(refused.value)


def test_every_default_is_within_its_bounds():
    assert PipelineConfig.from_overrides({}) == PipelineConfig()
