"""A crawl's local release folder, laid out as its hub repos hold it, swapped in as one transaction.

    {release_root}/{crawl}/
      README.md                          the dataset card of this crawl (YAML front matter + body)
      manifest.json                      rows, shards, tag, config hash, code version, checksums, card facts
      similarity.json                    the similarity histogram per model (the band's calibration data)
      data/{crawl}/pairs-NNNNN.parquet   the pairs, at most publish.rows_per_file per file
      images/{crawl}/NNNNN.tar           one WebDataset tar of images per shard
      assets/{crawl}/*.png               the plots the card links to

The folder is built beside the old one and swapped in by rename, so a reader sees either the
previous complete release or the new one, never a partial shard.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from danqing import __version__, io, lineage, paths
from danqing.config import PipelineConfig
from danqing.errors import UserError
from danqing.publish import card, plots
from danqing.records import kept

ROW_GROUP_ROWS = 10_000  # the hub's viewer reads a parquet file a row group at a time
PARTS = {"pairs": "data/{crawl}/*.parquet", "images": "images/{crawl}/*.tar", "plots": "assets/{crawl}/*.png"}


def tag(cfg: PipelineConfig, crawl: str) -> str:
    """The release's version on the hubs: <crawl>-<config hash>, plus publish.version when set."""
    return "-".join(filter(None, [paths.crawl_id(crawl), cfg.hash(), cfg.publish.version]))


def folder(cfg: PipelineConfig, crawl: str) -> Path:
    final = paths.release_dir(cfg.release_root, crawl)
    if not paths.is_local(final):
        raise UserError(f"the release folder must be local (the hubs upload from it); got {final}")
    return Path(final.removeprefix("file://"))


def read_manifest(cfg: PipelineConfig, crawl: str) -> dict:
    path = folder(cfg, crawl) / "manifest.json"
    if not path.exists():
        raise UserError(f"no release of {crawl} at {path.parent}: build it first (the DAG's publish task)")
    return json.loads(path.read_text(encoding="utf-8"))


def build(cfg: PipelineConfig, crawl: str, assemble_uris: list[str], similarity: dict,
          attempt: lineage.Attempt = lineage.CLI) -> dict:
    """Write {release_root}/{crawl}/ from the assembled shards and the similarity histogram (align's)."""
    final = folder(cfg, crawl)
    staging = final.with_name(f".{final.name}.tmp-{uuid.uuid4().hex[:8]}")
    data, images, assets = (staging / p.format(crawl=crawl).rsplit("/", 1)[0] for p in PARTS.values())
    for d in (data, images, assets):
        d.mkdir(parents=True)
    try:
        shards, shard_files = [], {}
        measures = {"caption length (chars)": [], "image width (px)": [], "image height (px)": []}
        with _PairsWriter(data, cfg.publish.rows_per_file) as pairs:  # one shard in memory at a time
            for uri in sorted(assemble_uris):
                shard = paths.shard_of(uri)
                table = kept(io.read_parquet(uri, storage_options=cfg.storage_options))
                with (io.open_uri(uri.removesuffix(".parquet") + ".tar", "rb", cfg.storage_options) as src,
                      open(images / f"{shard:05d}.tar", "wb") as dst):
                    shutil.copyfileobj(src, dst)
                names = pairs.write(table)
                shard_files[str(shard)] = [f"data/{crawl}/{n}" for n in names] + [f"images/{crawl}/{shard:05d}.tar"]
                for values, column in zip(measures.values(), [pc.utf8_length(table["caption"]), table["width"],
                                                              table["height"]], strict=True):
                    values.append(column.to_numpy(zero_copy_only=False))
                shards.append((shard, uri, table.num_rows))
        measures = {k: np.concatenate(v) if v else np.array([]) for k, v in measures.items()}

        io.write_json(similarity, str(staging / "similarity.json"))
        funnel = [{"stage": s["stage"], "in": s["in"], "out": s["out"], "dropped": dict(sorted(s["dropped"].items()))}
                  for s in lineage.funnel(cfg.lineage, crawl, paths.STAGES[:-1])]
        plots.write(assets, measures, funnel, similarity)

        files = {p.relative_to(staging).as_posix(): io.checksum(str(p))
                 for p in sorted(staging.rglob("*")) if p.is_file() and p.name != "similarity.json"}
        manifest = {"crawl": crawl, "rows": pairs.rows, "shards": len(shards), "tag": tag(cfg, crawl),
                    "config_hash": cfg.hash(), "code_version": __version__, "files": files,
                    "shard_files": shard_files, "summary": _summary(cfg, pairs.columns, measures, funnel, similarity)}
        io.write_json(manifest, str(staging / "manifest.json"))
        (staging / "README.md").write_text(card.render([manifest], ["pairs", "images", "card", "plots"], cfg.publish),
                                           encoding="utf-8")
        _swap(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    for shard, uri, rows in shards:
        lineage.record(cfg.lineage, crawl=crawl, shard=shard, stage="publish", status="done",
                       run_id=attempt.run_id, try_number=attempt.try_number, inputs=[uri],
                       outputs={f"{final}/{p}": files[p] for p in shard_files[str(shard)]},
                       count_in=rows, count_out=rows, dropped={}, errors={},
                       seconds=0.0, code_version=__version__, config_hash=cfg.hash())
    return {"release": str(final), "rows": manifest["rows"], "tag": manifest["tag"]}


class _PairsWriter:
    """The pairs as pairs-NNNNN.parquet files of at most `step` rows each, written as they come."""

    def __init__(self, folder: Path, step: int):
        self.folder, self.step = folder, step
        self.rows, self.files, self.columns = 0, 0, []
        self._writer: pq.ParquetWriter | None = None
        self._in_file = 0

    def write(self, table: pa.Table) -> list[str]:
        """Append `table`; returns the names of the files its rows went into."""
        if self._writer is None:  # opened by the first shard, even an empty one: a release always has a file
            self._open(table.schema)
        names, done = [], 0
        while done < table.num_rows:
            if self._in_file == self.step:
                self._open(table.schema)
            piece = table.slice(done, self.step - self._in_file)
            self._writer.write_table(piece, row_group_size=ROW_GROUP_ROWS)
            names.append(self._name)
            done += piece.num_rows
            self._in_file += piece.num_rows
            self.rows += piece.num_rows
        return names

    def _open(self, schema: pa.Schema) -> None:
        self.close()
        self._name = f"pairs-{self.files:05d}.parquet"
        self._writer = pq.ParquetWriter(self.folder / self._name, schema, compression="zstd")
        self.files, self._in_file, self.columns = self.files + 1, 0, schema.names

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> _PairsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _summary(cfg: PipelineConfig, columns: list[str], measures: dict[str, np.ndarray], funnel: list[dict],
             similarity: dict) -> dict:
    """What the card says about this crawl, kept in the manifest so a repo's card can be re-rendered."""
    distributions = {name: dict(zip(("p5", "p50", "p95"), np.quantile(v, [0.05, 0.5, 0.95]).round(1).tolist(),
                                    strict=True))
                     for name, v in measures.items() if v.size}
    bands = {m: {k: h[k] for k in ("band", "pairs", "in_band", "below", "above", "quantiles")}
             for m, h in similarity["models"].items()}
    model = cfg.score.model + (f":{cfg.score.pretrained}" if cfg.score.pretrained else " (random init)")
    return {"funnel": funnel, "distributions": distributions, "similarity": bands, "model": model,
            "pretrained": bool(cfg.score.pretrained), "columns": columns}


def _swap(staging: Path, final: Path) -> None:
    """Replace the release folder by the staged one with renames only."""
    old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
    if final.exists():
        os.rename(final, old)
    os.rename(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def review(cfg: PipelineConfig, crawl: str, captions: int = 12) -> tuple[str, str]:
    """Subject and Markdown body of the approval request: rows, funnel, a sample of captions, the card."""
    manifest = read_manifest(cfg, crawl)
    where = ", ".join(f"{t.kind} `{t.repo_id}` ({', '.join(t.parts)})" for t in cfg.publish.targets)
    base = folder(cfg, crawl)
    first = sorted((base / "data" / crawl).glob("*.parquet"))[:1]
    sample = pq.read_table(first[0], columns=["caption"]).slice(0, captions)["caption"].to_pylist() if first else []
    subject = f"Publish {crawl}: {manifest['rows']:,} pairs as {manifest['tag']}?"
    body = [f"**{manifest['rows']:,} pairs** from {manifest['shards']} shards, tag `{manifest['tag']}`, "
            f"config `{manifest['config_hash']}`, code {manifest['code_version']}.", "",
            f"Goes to: {where or 'nowhere (no publish.targets)'}. Local release: `{base}`.", "",
            "### Funnel", "", *card.funnel_tables(manifest["summary"]), "",
            "### Sample captions", "", *[f"- {c}" for c in sample], "",
            "### Dataset card", "", "````markdown", (base / "README.md").read_text(encoding="utf-8"), "````"]
    return subject, "\n".join(body)
