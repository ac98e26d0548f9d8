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
