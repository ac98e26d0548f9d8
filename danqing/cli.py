"""`danqing <stage> ...`: any stage on local or remote files, without Airflow."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from danqing.config import PipelineConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="danqing", description=__doc__)
    parser.add_argument("--config", default="", help="overrides: a JSON object or a path to a JSON file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="image/alt-text candidate pairs from WARC files (stage 1)")
    p.add_argument("warcs", nargs="+")
    p.add_argument("--out", required=True, help="output parquet")
    p = sub.add_parser("refine", help="refine captions (stage 2)")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="output parquet")
    p = sub.add_parser("download", help="download images and apply the visual filters (stage 3)")
    p.add_argument("input")
    p.add_argument("--out", required=True, help="output folder: 00000.tar, 00000.parquet, 00000_stats.json")
    p = sub.add_parser("score", help="image-text similarity of one downloaded shard (stage 4, the GPU pod)")
    p.add_argument("input", help="a download shard's parquet (its .tar lies beside it)")
    p.add_argument("--out", required=True, help="output parquet; embeddings are written beside it")
    p.add_argument("--xcom", default="", help="also write the summary JSON here (the pod's XCom file)")
    p = sub.add_parser("lineage", help="the funnel of a crawl, or the path of one sample")
    p.add_argument("crawl")
    p.add_argument("--sample", default="", help="a sample id: print its path from WARC record to release")
    p = sub.add_parser("sample-crawl", help="build the bundled sample crawl into a folder")
    p.add_argument("dest")

    args = parser.parse_args(argv)
    cfg = PipelineConfig.from_overrides(_overrides(args.config))
    if args.command in ("extract", "refine", "score"):
        return _run_stage(args.command, args.warcs if args.command == "extract" else [args.input],
                          args.out.removesuffix(".parquet"), cfg, getattr(args, "xcom", ""))
    if args.command == "download":
        return _run_stage("download", [args.input], f"{args.out.rstrip('/')}/00000", cfg)
    if args.command == "lineage":
        from danqing import report

        print(report.sample_path(cfg, args.crawl, args.sample) if args.sample else report.funnel_table(cfg, args.crawl))
        return 0
    if args.command == "sample-crawl":
        from danqing.sample.crawl import build_sample_crawl

        print(json.dumps(build_sample_crawl(args.dest), indent=2))
        return 0
    return 2


def _run_stage(stage: str, inputs: list[str], out_prefix: str, cfg: PipelineConfig, xcom: str = "") -> int:
    from danqing.shard import run_local

    summary = run_local(stage, inputs, out_prefix, cfg)
    if xcom:
        from danqing.stages.score import write_xcom

        write_xcom(summary, xcom)
    print(json.dumps(summary))
    return 0


def _overrides(value: str) -> dict:
    if not value:
        return {}
    if value.lstrip().startswith("{"):
        return json.loads(value)
    return json.loads(Path(value).read_text())


if __name__ == "__main__":
    sys.exit(main())
