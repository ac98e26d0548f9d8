"""The `danqing` CLI contract: extract and refine on real WARC files, lineage after a run, score's two forms."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from danqing import cli, io, lineage, paths
from danqing.sample.crawl import build_sample_crawl

EXTRACT_COLUMNS = {"page_url", "url", "alt_text", "warc_filename", "warc_record_offset", "warc_record_length",
                   "charset", "drop_reason"}


def danqing(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "danqing.cli", *args], capture_output=True, text=True, check=True)


def test_extract_then_refine(tmp_path):
    manifest = build_sample_crawl(str(tmp_path / "crawl"))
    warcs = [str(tmp_path / "crawl" / w) for w in manifest["warcs"]]
    danqing("extract", *warcs, "--out", str(tmp_path / "pairs.parquet"))
    pairs = pq.read_table(tmp_path / "pairs.parquet")
    assert EXTRACT_COLUMNS <= set(pairs.column_names)
    assert pairs.num_rows > 0 and "" in pairs["drop_reason"].to_pylist()

    out = danqing("refine", str(tmp_path / "pairs.parquet"), "--out", str(tmp_path / "refined.parquet"))
    summary = json.loads(out.stdout)
    refined = pq.read_table(tmp_path / "refined.parquet")
    assert {"caption", "drop_reason"} <= set(refined.column_names)
    assert refined.num_rows == summary["total"] == pairs["drop_reason"].to_pylist().count("")


def test_lineage_prints_the_funnel(tmp_path):
    url = f"sqlite:///{tmp_path}/lineage.sqlite"
    lineage.record(url, crawl="CC-MAIN-2025-47", shard=0, stage="extract", status="done", run_id="r", try_number=1,
                   inputs=[], outputs={}, count_in=10, count_out=4, dropped={"page_not_chinese": 6}, errors={},
                   seconds=1.0, code_version="0", config_hash="h")
    out = danqing("--config", json.dumps({"lineage_url": url}), "lineage", "CC-MAIN-2025-47").stdout
    assert "extract" in out and "page_not_chinese=6" in out


def test_score_writes_embeddings_and_the_xcom_summary(cfg, tmp_path):
    from score_helpers import examples, write_download_shard

    shard = write_download_shard(cfg, "CC-MAIN-2099-01", 0, examples(4))
    out = danqing("score", shard, "--out", str(tmp_path / "s.parquet"), "--xcom", str(tmp_path / "x" / "return.json"))
    summary = json.loads(out.stdout)
    assert summary["total"] == 4 and json.loads((tmp_path / "x" / "return.json").read_text()) == summary
    assert (tmp_path / "s_img.npy").exists() and (tmp_path / "s_txt.npy").exists()


def test_score_pipeline_form_writes_the_layout_records_lineage_and_skips_when_done(cfg, tmp_path):
    from score_helpers import examples, write_download_shard

    crawl = "CC-MAIN-2099-01"
    shard = write_download_shard(cfg, crawl, 3, examples(5))
    args = ["--config", json.dumps({"root": cfg.root}), "score", "--crawl", crawl, "--shard", "3", "--input", shard,
            "--run-id", "manual__7", "--try-number", "3", "--xcom", str(tmp_path / "x" / "return.json")]
    summary = json.loads(danqing(*args).stdout)
    out = paths.shard_uri(cfg.root, crawl, "score", 3)
    assert (summary["uri"], summary["total"], summary["skipped"]) == (out, 5, False)
    assert json.loads((tmp_path / "x" / "return.json").read_text()) == summary
    assert io.read_parquet(out).num_rows == 5 and io.exists(out.replace(".parquet", "_img.npy"))
    [row] = [r for r in lineage.latest(cfg.lineage, crawl) if r["stage"] == "score"]
    assert (row["shard"], row["status"], row["run_id"], row["try_number"]) == (3, "done", "manual__7", 3)

    assert json.loads(danqing(*args).stdout)["skipped"]  # same input and config: done already
    [row] = [r for r in lineage.latest(cfg.lineage, crawl) if r["stage"] == "score"]
    assert row["status"] == "skipped"


@pytest.mark.parametrize(("args", "message"), [
    (["in.parquet", "--out", "o.parquet", "--crawl", "CC-MAIN-2025-47"], "do not mix"),
    (["in.parquet", "--run-id", "r"], "do not mix"),
    (["in.parquet"], "local form also needs --out"),
    (["--crawl", "CC-MAIN-2025-47", "--input", "u.parquet"], "pipeline form also needs --shard"),
    (["--xcom", "x.json"], "give either"),
])
def test_score_refuses_mixed_or_incomplete_forms(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["score", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "--crawl C --shard N --input URI" in err  # the usage shows both forms
