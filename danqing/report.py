"""Human-readable lineage: the funnel of a crawl and the path of one sample."""

from __future__ import annotations

from collections import Counter

import pyarrow.compute as pc

from danqing import io, lineage, paths, redact
from danqing.config import PipelineConfig


def funnel_table(cfg: PipelineConfig, crawl: str) -> str:
    rows = lineage.funnel(cfg.lineage, crawl, paths.STAGES)
    if not rows:
        return f"no lineage recorded for {crawl} in {redact.redact(cfg.lineage)}"
    lines = [f"funnel of {crawl}", f"{'stage':<10}{'shards':>7}{'in':>9}{'out':>9}  dropped by reason"]
    for s in rows:
        reasons = "  ".join(f"{k}={v}" for k, v in s["dropped"].most_common()) or "-"
        errors = "  ".join(f"{k}={v}" for k, v in s["errors"].most_common())
        lines.append(f"{s['stage']:<10}{s['shards']:>7}{s['in']:>9}{s['out']:>9}  {reasons}")
        if errors:
            lines.append(f"{'':<35}  errors: {errors}")
    # Where the release went: one line per hub repo, tag and commit, with the shards it holds.
    uploads = Counter((u["kind"], u["repo_id"], u["endpoint"], u["tag"], u["commit_id"])
                      for u in lineage.uploaded(cfg.lineage, crawl))
    for (kind, repo, endpoint, tag, commit), shards in sorted(uploads.items()):
        lines.append(f"published to {kind} {repo} ({redact.redact(endpoint)}): tag {tag}, commit {commit}, "
                     f"{shards} shards")
    return "\n".join(lines)


def sample_trace(cfg: PipelineConfig, crawl: str, sample: str) -> dict | None:
    """Every decision on one sample, from its WARC record to the release: None when no extract output has it.

    {"sample", "crawl", "shard", "origin": its extract row, "steps": [{"stage", "verdict": kept | dropped |
    not reached | released, "reason", "uri"}]}; the steps stop at the first stage that dropped it.
    """
    outputs = {(r["stage"], r["shard"]): r for r in lineage.latest(cfg.lineage, crawl)}
    extract = sorted(shard for stage, shard in outputs if stage == "extract")
    found = [(shard, row) for shard in extract for row in _rows(cfg, crawl, "extract", shard, sample)]
    if not found:
        return None
    shard, origin = found[0]
    steps = []
    for stage in paths.STAGES[:-1]:
        if (stage, shard) not in outputs:
            continue
        rows = _rows(cfg, crawl, stage, shard, sample)
        uri = paths.shard_uri(cfg.root, crawl, stage, shard)
        if not rows:
            steps.append({"stage": stage, "verdict": "not reached", "reason": "", "uri": uri})
            break
        reason = rows[0]["drop_reason"]
        steps.append({"stage": stage, "verdict": "dropped" if reason else "kept", "reason": reason, "uri": uri})
        if reason:
            break
    else:
        if ("publish", shard) in outputs:
            release = paths.release_dir(cfg.release_root, crawl)
            steps.append({"stage": "publish", "verdict": "released", "reason": "", "uri": f"{release}/data/{crawl}/"})
    return {"sample": sample, "crawl": crawl, "shard": shard, "origin": origin, "steps": steps}


def sample_path(cfg: PipelineConfig, crawl: str, sample: str) -> str:
    """sample_trace() as `danqing lineage --sample` prints it."""
    trace = sample_trace(cfg, crawl, sample)
    if trace is None:
        return f"sample {sample} not found in the extract outputs of {crawl}"
    origin = trace["origin"]
    lines = [f"sample {sample} of {crawl}, shard {trace['shard']:05d}",
             f"  warc      {origin['warc_filename']} offset={origin['warc_record_offset']} "
             f"length={origin['warc_record_length']}",
             f"  page      {origin['page_url']}",
             f"  image     {origin['url']}",
             f"  alt       {origin['alt_text']}"]
    for step in trace["steps"]:
        if step["verdict"] == "not reached":
            lines.append(f"  {step['stage']:<9} not reached")
        else:
            verdict = "dropped: " + step["reason"] if step["verdict"] == "dropped" else step["verdict"]
            lines.append(f"  {step['stage']:<9} {verdict:<28} {step['uri']}")
    return "\n".join(lines)


def _rows(cfg: PipelineConfig, crawl: str, stage: str, shard: int, sample: str) -> list[dict]:
    uri = paths.shard_uri(cfg.root, crawl, stage, shard)
    if not io.exists(uri, cfg.storage_options):
        return []
    table = io.read_parquet(uri, storage_options=cfg.storage_options)
    return table.filter(pc.equal(table["id"], sample)).to_pylist()
