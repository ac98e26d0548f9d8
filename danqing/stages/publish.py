"""Publish a crawl's release as one transaction: parquet, image tars, manifest, dataset card.

A release folder is either the previous complete release or the new complete one: the new
one is built beside it and swapped in by rename, so readers never see a partial shard.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from danqing import __version__, io, lineage, paths
from danqing.config import PipelineConfig
from danqing.records import kept
from danqing.stages import align


def publish(cfg: PipelineConfig, crawl: str, assemble_uris: list[str],
            attempt: lineage.Attempt = lineage.CLI) -> dict:
    """Write {release_root}/{crawl}/ from the assembled shards; returns a small summary."""
    final = paths.release_dir(cfg.release_root, crawl)
    if not paths.is_local(final):
        raise ValueError(f"publish writes a local release folder; got {final} (HF/ModelScope uploads read it)")
    final_dir = Path(final.removeprefix("file://"))
    staging = final_dir.with_name(f".{final_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    (staging / "images").mkdir(parents=True)
    try:
        shards = []
        for uri in sorted(assemble_uris):
            table = kept(io.read_parquet(uri, storage_options=cfg.storage_options))
            tar = uri.removesuffix(".parquet") + ".tar"
            name = f"images/{Path(tar).name}"
            with io.open_uri(tar, "rb", cfg.storage_options) as src, open(staging / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
            shards.append((uri, table))
        pairs = pa.concat_tables([t for _, t in shards]) if shards else pa.table({})
        io.write_parquet(pairs, str(staging / "pairs.parquet"))
        aligned = [paths.shard_uri(cfg.root, crawl, "align", paths.shard_of(uri)) for uri, _ in shards]
        similarity = align.histogram(cfg, crawl, aligned)  # the band's calibration data
        io.write_json(similarity, str(staging / "similarity.json"))
        files = {p.relative_to(staging).as_posix(): io.checksum(str(p))
                 for p in sorted(staging.rglob("*")) if p.is_file()}
        manifest = {"crawl": crawl, "rows": pairs.num_rows, "shards": len(shards), "files": files,
                    "code_version": __version__, "config_hash": cfg.hash(),
                    "version": f"{crawl}+{cfg.hash()}"}
        io.write_json(manifest, str(staging / "manifest.json"))
        funnel = lineage.funnel(cfg.lineage, crawl, paths.STAGES[:-1])
        (staging / "README.md").write_text(dataset_card(cfg, crawl, pairs, funnel, similarity), encoding="utf-8")
        _swap(staging, final_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    if cfg.dedup.released_index:  # later crawls dedup against what this release now holds
        from danqing.stages.dedup import add_release

        add_release(cfg, crawl, assemble_uris)
    for uri, table in shards:
        shard = paths.shard_of(uri)
        lineage.record(cfg.lineage, crawl=crawl, shard=shard, stage="publish", status="done",
                       run_id=attempt.run_id, try_number=attempt.try_number, inputs=[uri],
                       outputs={f"{final}/pairs.parquet": files["pairs.parquet"]},
                       count_in=table.num_rows, count_out=table.num_rows, dropped={}, errors={},
                       seconds=0.0, code_version=__version__, config_hash=cfg.hash())
    return {"release": str(final_dir), "rows": pairs.num_rows, "version": manifest["version"]}


def _swap(staging: Path, final_dir: Path) -> None:
    """Replace the release folder by the staged one with renames only."""
    old = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}")
    if final_dir.exists():
        os.rename(final_dir, old)
    os.rename(staging, final_dir)
    shutil.rmtree(old, ignore_errors=True)


def dataset_card(cfg: PipelineConfig, crawl: str, pairs: pa.Table, funnel: list[dict], similarity: dict) -> str:
    """The README.md of a release: what it is, where it came from, and the funnel."""
    lines = [
        f"# DanQing-style Chinese image-text pairs from Common Crawl {crawl}",
        "",
        f"{pairs.num_rows} image-text pairs. Columns: {', '.join(pairs.column_names)}.",
        "Each row keeps `warc_filename`, `warc_record_offset` and `warc_record_length`, so it can be",
        "traced back to the Common Crawl record it came from.",
        "",
        "## Funnel",
        "",
        "| stage | in | out | dropped (by reason) |",
        "|---|---:|---:|---|",
    ]
    for s in funnel:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s["dropped"].items())) or "-"
        lines.append(f"| {s['stage']} | {s['in']} | {s['out']} | {reasons} |")
    if pairs.num_rows:
        lines += ["", "## Distributions", "", "| | p5 | median | p95 |", "|---|---:|---:|---:|"]
        for name, column in [("caption length (chars)", pc.utf8_length(pairs["caption"])),
                             ("image width (px)", pairs["width"]), ("image height (px)", pairs["height"])]:
            p5, p50, p95 = pc.quantile(column, q=[0.05, 0.5, 0.95]).to_pylist()
            lines.append(f"| {name} | {p5:g} | {p50:g} | {p95:g} |")
    for name, h in similarity["models"].items():
        (lo, hi), q = h["band"], h["quantiles"]
        lines += ["", f"Image-text similarity under {name}, band {lo}..{hi}: {h['pairs']} pairs judged, "
                  f"{h['in_band']} in the band, {h['below']} below, {h['above']} above; p5 {q['p5']}, "
                  f"median {q['p50']}, p95 {q['p95']}. The histogram is in `similarity.json`."]
    model = cfg.score.model + (f" ({cfg.score.pretrained})" if cfg.score.pretrained else "")
    lines += ["", "## Scoring model", "", f"`{model}`."]
    if not cfg.score.pretrained:
        lines += ["", "**The scoring model was randomly initialised** (no weights can be downloaded where this",
                  "release was built): similarity scores, NSFW scores and embedding dedup are not meaningful.",
                  "This is a pipeline demonstration, not a dataset to train on."]
    lines += ["", "## Provenance and license", "",
              "Built by danqing-pipeline (code version " + __version__ + f", config {cfg.hash()}).",
              "Crawl content is Common Crawl data under its terms of use; images remain their owners'.",
              "The method follows DanQing (DeepGlint, arXiv 2601.10305).", ""]
    return "\n".join(lines)
