"""Report what a task read and wrote to OpenLineage (Marquez and other backends), through the provider.

Any task calls `report(inputs, outputs, counts)` (or `report_stage(...)`, which reads them from the
lineage store) before it returns; the OpenLineage listener puts them in the task's COMPLETE event.
They travel as the task's runtime inlets/outlets, the provider's way for tasks without an extractor.
Datasets are named as OpenLineage's naming spec says: s3://bucket/key -> namespace "s3://bucket",
name "key"; a local path -> namespace "file", name the absolute path.
With no OpenLineage transport configured, the provider sends nothing and this costs nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import attr
from openlineage.client.generated.base import OutputDatasetFacet

# Where the counts facet is described (docs/RUNBOOK.md, "OpenLineage").
COUNTS_SCHEMA = "https://github.com/danqing-pipeline/danqing-pipeline/blob/main/docs/RUNBOOK.md#openlineage"


@attr.define
class StageCountsFacet(OutputDatasetFacet):
    """`danqing_stageCounts`: what the stage did with the rows it wrote (one output parquet, one shard)."""

    stage: str
    shard: int
    rowsIn: int  # noqa: N815 (OpenLineage facets use camelCase)
    rowsKept: int  # noqa: N815
    dropped: dict = attr.field(factory=dict)  # reason -> rows
    errors: dict = attr.field(factory=dict)  # event -> count (corrupt records, retries...)
    configHash: str = ""  # noqa: N815

    _additional_skip_redact = ["stage", "shard", "rowsIn", "rowsKept", "dropped", "errors", "configHash"]

    @staticmethod
    def _get_schema() -> str:
        return COUNTS_SCHEMA


def dataset_name(uri: str) -> tuple[str, str]:
    """(namespace, name) of a file URI under OpenLineage's naming spec."""
    if "://" not in uri or uri.startswith("file://"):
        from pathlib import Path

        return "file", str(Path(uri.removeprefix("file://")).absolute())
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/")


def report(inputs: Iterable[str], outputs: Mapping[str, str] | Iterable[str],
           counts: Mapping[str, StageCountsFacet] | None = None) -> None:
    """Declare the running task's inputs and outputs (URIs) for its OpenLineage COMPLETE event.

    outputs: URIs, or {URI: sha256} (the checksum becomes the dataset's version).
    counts: {output URI: StageCountsFacet}; its rows become the output's outputStatistics too.
    """
    from airflow.sdk import get_current_context
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset, output_statistics_output_dataset

    counts = counts or {}
    versions = outputs if isinstance(outputs, Mapping) else dict.fromkeys(outputs, "")
    task = get_current_context()["ti"].task
    task.inlets = [InputDataset(*dataset_name(uri)) for uri in dict.fromkeys(inputs)]
    task.outlets = []
    for uri, sha in versions.items():
        facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=sha)} if sha else {}
        output_facets = {}
        if uri in counts:
            c = counts[uri]
            output_facets = {"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=c.rowsIn), "danqing_stageCounts": c}
        task.outlets.append(OutputDataset(*dataset_name(uri), facets=facets, outputFacets=output_facets))


def report_stage(cfg, crawl: str, stage: str, shards: Iterable[int] | None = None) -> None:
    """report() what `stage` read and wrote for `shards` (all of the crawl's, by default), as lineage recorded it."""
    from danqing import lineage

    wanted = None if shards is None else set(shards)
    rows = sorted((r for r in lineage.latest(cfg.lineage, crawl)
                   if r["stage"] == stage and (wanted is None or r["shard"] in wanted)), key=lambda r: r["shard"])
    inputs, outputs, counts = [], {}, {}
    for r in rows:
        inputs += r["inputs"]
        outputs.update(r["outputs"])
        main = next((uri for uri in r["outputs"] if uri.endswith(".parquet")), None)
        if main in counts:  # one file for many shards (a release): the counts add up, the shard is -1
            c = counts[main]
            counts[main] = StageCountsFacet(stage=stage, shard=-1, rowsIn=c.rowsIn + r["count_in"],
                                            rowsKept=c.rowsKept + r["count_out"],
                                            dropped=dict(Counter(c.dropped) + Counter(r["dropped"])),
                                            errors=dict(Counter(c.errors) + Counter(r["errors"])),
                                            configHash=r["config_hash"])
        elif main:
            counts[main] = StageCountsFacet(stage=stage, shard=r["shard"], rowsIn=r["count_in"],
                                            rowsKept=r["count_out"], dropped=dict(r["dropped"]),
                                            errors=dict(r["errors"]), configHash=r["config_hash"])
    report(inputs, outputs, counts)
