"""OpenLineage through the provider's file transport (conftest sets it): the sample run reports one START and
one COMPLETE per stage task, whose inputs and outputs are the shard files on disk, with the stage's counts."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import OPENLINEAGE_LOG

from danqing import io, lineage, paths
from danqing.stages.plan import shard_inputs
from operators.openlineage import dataset_name

pytestmark = pytest.mark.slow

STAGES = ["extract", "refine", "download", "score", "dedup", "align", "assemble", "publish"]


def test_dataset_names_follow_the_naming_spec():
    assert dataset_name("s3://bucket/danqing/CC-MAIN-2025-47/extract/00001.parquet") == \
        ("s3://bucket", "danqing/CC-MAIN-2025-47/extract/00001.parquet")
    assert dataset_name("/data/x/00001.parquet") == ("file", "/data/x/00001.parquet")
    assert dataset_name("file:///data/x/00001.tar") == ("file", "/data/x/00001.tar")


def test_each_stage_task_reports_its_shard_files(sample_run):
    cfg, crawl = sample_run.cfg, sample_run.crawl
    events = defaultdict(list)  # (task, map index) -> [event]
    for line in OPENLINEAGE_LOG.read_text().splitlines():
        event = json.loads(line)
        airflow = event["run"]["facets"].get("airflow", {})
        if airflow.get("dagRun", {}).get("run_id") == sample_run.run_id and "taskInstance" in airflow:
            task = event["job"]["name"].removeprefix("danqing_snapshot.")
            events[(task, airflow["taskInstance"].get("map_index", -1))].append(event)
    stage_tasks = {key: evs for key, evs in events.items() if key[0] in STAGES}
    # Seven mapped stages over four shards (dedup's writes too), publish once: one START/COMPLETE pair apiece.
    assert len(stage_tasks) == 7 * 4 + 1
    assert all([e["eventType"] for e in evs] == ["START", "COMPLETE"] for evs in stage_tasks.values())

    rows = {(r["stage"], r["shard"]): r for r in lineage.latest(cfg.lineage, crawl)}
    for (stage, _), (_, complete) in stage_tasks.items():
        outputs = {d["name"]: d for d in complete["outputs"]}
        inputs = [d["name"] for d in complete["inputs"]]
        assert {d["namespace"] for d in complete["outputs"] + complete["inputs"]} == {"file"}
        shards = sorted({paths.shard_of(n) for n in inputs if n.endswith(".parquet") and "/dedup-work/" not in n}) \
            if stage != "extract" else \
            [paths.shard_of(n) for n in outputs if n.endswith(".parquet")]
        for shard in shards:
            row = rows[(stage, shard)]
            # Inputs: the upstream shard file, or for extract the shard's WARCs as planned; all on disk.
            expected = shard_inputs(cfg, crawl, shard) if stage == "extract" else row["inputs"]
            assert set(expected) <= set(inputs) and all(Path(n).is_file() for n in inputs)
            # Outputs: every file the shard wrote (parquet, tar, embeddings), with its sha256 as version.
            written = row["outputs"] if stage == "publish" else \
                {str(p): io.checksum(str(p)) for p in Path(paths.stage_dir(cfg.root, crawl, stage)).glob(
                    f"{shard:05d}*") if not p.name.endswith("_stats.json")}
            for uri, sha in written.items():
                assert outputs[uri]["facets"]["version"]["datasetVersion"] == sha
            main = outputs[paths.release_dir(cfg.release_root, crawl) + f"/data/{crawl}/pairs-00000.parquet"
                           if stage == "publish"
                           else paths.shard_uri(cfg.root, crawl, stage, shard)]
            counts = main["outputFacets"]["danqing_stageCounts"]
            if stage != "publish":
                assert (counts["stage"], counts["shard"]) == (stage, shard)
                assert (counts["rowsIn"], counts["rowsKept"], counts["dropped"]) == \
                    (row["count_in"], row["count_out"], row["dropped"])
                assert main["outputFacets"]["outputStatistics"]["rowCount"] == row["count_in"]
        if stage == "publish":
            kept = sum(r["count_out"] for (s, _), r in rows.items() if s == "publish")
            assert counts["shard"] == -1 and counts["rowsKept"] == kept > 0
