"""Crawl ids: every real id passes, nothing that could leave the storage root does."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES

from danqing import cli, paths
from danqing.config import SAMPLE_CRAWL_ID

HOSTILE = ["../../escape_demo", "CC-MAIN-2025-47/../../x", "CC-MAIN-2025-47/", "/etc", "CC-MAIN-2025-4",
           "CC-MAIN-2025-47 ", "cc-main-2025-47", "CC-MAIN-2025-47\n", "", "CC-MAIN-2025-47\x00", "CC-MAIN-2025-4७"]


def test_every_crawl_of_collinfo_and_the_sample_are_valid():
    ids = [c["id"] for c in json.loads((FIXTURES / "commoncrawl" / "collinfo.json").read_text())]
    assert len(ids) == 118
    for crawl in [*ids, SAMPLE_CRAWL_ID]:
        assert paths.crawl_id(crawl) == crawl


@pytest.mark.parametrize("bad", [*HOSTILE, 2025])
def test_ids_that_could_escape_are_refused_by_every_path(bad):
    for build in (lambda c: paths.stage_dir("/r", c, "score"), lambda c: paths.index_dir("/r", c),
                  lambda c: paths.release_dir("/r", c), lambda c: paths.released_dir("/r", c),
                  lambda c: paths.shard_uri("/r", c, "extract", 0)):
        with pytest.raises(ValueError, match="is not of the form CC-MAIN-YYYY-WW"):
            build(bad)


@pytest.mark.parametrize("bad", HOSTILE[:3])
def test_cli_refuses_a_bad_crawl_id_with_a_usage_error(bad, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--config", json.dumps({"root": str(tmp_path)}), "score", "--crawl", bad, "--shard", "0",
                  "--input", str(tmp_path / "in.parquet")])
    assert exit_.value.code == 2
    assert "CC-MAIN-YYYY-WW" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written anywhere
    with pytest.raises(SystemExit):
        cli.main(["lineage", bad])


def test_publish_refuses_a_crawl_that_would_leave_the_release_root(tmp_path):
    from danqing.config import PipelineConfig
    from danqing.stages.publish import publish

    victim = tmp_path / "victim"
    (victim / "keep.txt").parent.mkdir()
    (victim / "keep.txt").write_text("not the pipeline's")
    root = tmp_path / "a" / "b"
    cfg = PipelineConfig.from_overrides({"root": str(root), "publish": {"release_root": str(root / "release")}})
    with pytest.raises(ValueError, match="CC-MAIN-YYYY-WW"):
        publish(cfg, "../../victim", [])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep.txt", "victim"]  # nothing moved, made or removed


def test_score_with_an_escaping_crawl_writes_and_records_nothing(tmp_path, capsys):
    from score_helpers import examples, write_download_shard

    from danqing.config import PipelineConfig

    source = PipelineConfig.from_overrides({"root": str(tmp_path / "src")})
    shard = write_download_shard(source, SAMPLE_CRAWL_ID, 0, examples(2))
    before = sorted(tmp_path.rglob("*"))
    root = tmp_path / "a" / "b"
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--config", json.dumps({"root": str(root)}), "score", "--crawl", "../../escape_demo", "--shard", "0",
                  "--input", shard])
    assert exit_.value.code == 2 and "CC-MAIN-YYYY-WW" in capsys.readouterr().err
    assert sorted(tmp_path.rglob("*")) == before  # no escape_demo, no lineage database, nothing


def test_lineage_refuses_a_bad_crawl_id(tmp_path):
    from danqing import lineage

    with pytest.raises(ValueError, match="CC-MAIN-YYYY-WW"):
        lineage.record(f"sqlite:///{tmp_path}/l.sqlite", crawl="../x", shard=0, stage="score", status="done",
                       run_id="r", try_number=1, inputs=[], outputs={}, count_in=0, count_out=0, dropped={},
                       errors={}, seconds=0.0, code_version="0", config_hash="h")
