"""`danqing <stage> ...`: any stage on local or remote files, without Airflow; `score` is also the GPU pod's command.

A mistake in what was given (a missing file, a bad config value, a parquet without the columns a
stage reads) is one line on stderr and exit status 2; `--debug` shows its traceback as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from danqing.config import PipelineConfig, as_overrides
from danqing.errors import UserError

# What a user can fix: printed as one line, exit status 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
USAGE_ERROR = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="danqing", description=__doc__)
    parser.add_argument("--config", default="", help="overrides: a JSON object or a path to a JSON file")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
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
    score = sub.add_parser(
        "score", help="image-text similarity of one downloaded shard (stage 4, the GPU pod)",
        usage="%(prog)s IN.parquet --out OUT.parquet [--xcom PATH]\n"
              "       %(prog)s --crawl C --shard N --input URI [--run-id R] [--try-number T] [--xcom PATH]",
        description="Local form: any files, no skip, no lineage. Pipeline form (the GPU pod's command): "
                    "the shard in the pipeline layout under the config's root, skipped if done, recorded in lineage.")
    score.add_argument("input", nargs="?", help="local form: a download shard's parquet (its .tar lies beside it)")
    score.add_argument("--out", help="local form: output parquet; embeddings are written beside it")
    score.add_argument("--crawl", type=_crawl_arg, help="pipeline form: the crawl id")
    score.add_argument("--shard", type=int, help="pipeline form: the shard number")
    score.add_argument("--input", dest="uri", help="pipeline form: the download stage's parquet URI")
    score.add_argument("--run-id", help="pipeline form, for lineage (default: $DANQING_RUN_ID, else cli)")
    score.add_argument("--try-number", type=int, help="pipeline form (default: $DANQING_TRY_NUMBER, else 1)")
    score.add_argument("--xcom", default="", help="also write the summary JSON here (the pod's XCom file)")
    p = sub.add_parser("lineage", help="the funnel of a crawl, or the path of one sample")
    p.add_argument("crawl", type=_crawl_arg)
    p.add_argument("--sample", default="", help="a sample id: print its path from WARC record to release")
    p = sub.add_parser("sample-crawl", help="build the bundled sample crawl into a folder")
    p.add_argument("dest")
    p = sub.add_parser("publish", help="upload a crawl's local release folder to a hub (token: $HF_TOKEN or "
                                       "$MODELSCOPE_API_TOKEN)")
    p.add_argument("crawl", type=_crawl_arg)
    p.add_argument("--target", required=True, choices=["huggingface", "modelscope"])
    p.add_argument("--repo", required=True, help="the dataset repo, owner/name")
    p.add_argument("--endpoint", default="", help="the hub's URL (default: huggingface.co / modelscope.cn)")
    p.add_argument("--private", action="store_true", help="create the repo private")

    args = parser.parse_args(argv)
    in_pipeline = args.command == "score" and _score_in_pipeline(score, args)
    _log_to_stderr()
    try:
        return _command(args, in_pipeline)
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"danqing: error: {_one_line(e)}", file=sys.stderr)
        return USAGE_ERROR


def _command(args: argparse.Namespace, in_pipeline: bool) -> int:
    cfg = PipelineConfig.from_overrides(_overrides(args.config))
    if in_pipeline:
        return _report(_score_shard(args, cfg), args.xcom)
    if args.command in ("extract", "refine", "score"):
        return _run_stage(args.command, args.warcs if args.command == "extract" else [args.input],
                          args.out.removesuffix(".parquet"), cfg, getattr(args, "xcom", ""))
    if args.command == "download":
        return _run_stage("download", [args.input], f"{args.out.rstrip('/')}/00000", cfg)
    if args.command == "lineage":
        from danqing import report

        print(report.sample_path(cfg, args.crawl, args.sample) if args.sample else report.funnel_table(cfg, args.crawl))
        return 0
    if args.command == "publish":
        return _report(_publish(args, cfg), "")
    if args.command == "sample-crawl":
        from danqing.sample.crawl import build_sample_crawl

        print(json.dumps(build_sample_crawl(args.dest), indent=2))
        return 0
    return 2


def _log_to_stderr() -> None:
    """Warnings (a damaged WARC record skipped, say) as `danqing: ...` lines, credentials masked."""
    from danqing import redact

    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("danqing: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    redact.register_env()
    redact.install(root)


def _one_line(e: BaseException) -> str:
    from danqing.redact import redact

    if isinstance(e, OSError) and e.filename is not None:
        text = f"{e.filename}: {e.strerror or e}"
    else:
        text = str(e) or type(e).__name__
    return redact(" ".join(text.split()))


def _crawl_arg(value: str) -> str:
    from danqing.paths import crawl_id

    try:
        return crawl_id(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _run_stage(stage: str, inputs: list[str], out_prefix: str, cfg: PipelineConfig, xcom: str = "") -> int:
    from danqing.shard import run_local

    return _report(run_local(stage, inputs, out_prefix, cfg), xcom)


def _score_in_pipeline(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bool:
    """Which form `danqing score` was given; exits with a usage error when they mix or one is incomplete."""
    local = {"IN.parquet": args.input, "--out": args.out}
    pipeline = {"--crawl": args.crawl, "--shard": args.shard, "--input": args.uri,
                "--run-id": args.run_id, "--try-number": args.try_number}
    local_given = [k for k, v in local.items() if v is not None]
    pipeline_given = [k for k, v in pipeline.items() if v is not None]
    if local_given and pipeline_given:
        parser.error(f"the local form ({' '.join(local_given)}) and the pipeline form "
                     f"({' '.join(pipeline_given)}) do not mix")
    if not local_given and not pipeline_given:
        parser.error("give either IN.parquet --out OUT.parquet or --crawl C --shard N --input URI")
    required = ["--crawl", "--shard", "--input"] if pipeline_given else list(local)
    missing = [k for k in required if {**local, **pipeline}[k] is None]
    if missing:
        parser.error(f"the {'pipeline' if pipeline_given else 'local'} form also needs {' '.join(missing)}")
    return bool(pipeline_given)


def _score_shard(args: argparse.Namespace, cfg: PipelineConfig) -> dict:
    """The pod's run: one shard in the pipeline layout, skipped if done, recorded in lineage."""
    from danqing import lineage
    from danqing.shard import run_shard

    # The pod operator sets these env vars from the task instance (templated).
    run_id = args.run_id if args.run_id is not None else os.environ.get("DANQING_RUN_ID", "cli")
    try_number = args.try_number if args.try_number is not None else int(os.environ.get("DANQING_TRY_NUMBER", "1"))
    return run_shard("score", args.crawl, args.shard, [args.uri], cfg, lineage.Attempt(run_id, try_number))


TOKEN_ENV = {"huggingface": "HF_TOKEN", "modelscope": "MODELSCOPE_API_TOKEN"}


def _publish(args: argparse.Namespace, cfg: PipelineConfig) -> dict:
    """Publish (or re-publish) a local release by hand, as the DAG's upload task does."""
    from danqing.config import PublishTarget
    from danqing.publish.upload import upload

    token = os.environ.get(TOKEN_ENV[args.target], "")
    if not token:
        raise UserError(f"set {TOKEN_ENV[args.target]} to a {args.target} token with write access to {args.repo}")
    target = PublishTarget(kind=args.target, repo_id=args.repo, private=args.private)
    return upload(cfg, args.crawl, target, token, args.endpoint)


def _report(summary: dict, xcom: str) -> int:
    """Print the summary; with `xcom`, also leave it where the pod's XCom sidecar reads it."""
    if xcom:
        from danqing.stages.score import write_xcom

        write_xcom(summary, xcom)
    print(json.dumps(summary))
    return 0


def _overrides(value: str) -> dict:
    """--config: a JSON object, or the path of a file holding one (PipelineConfig checks it is an object)."""
    if not value:
        return {}
    inline = value.lstrip().startswith(("{", "["))
    try:
        loaded = json.loads(value if inline else Path(value).read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"--config {'' if inline else value + ' '}is not JSON: {e}") from None
    return as_overrides(loaded)


if __name__ == "__main__":
    sys.exit(main())
