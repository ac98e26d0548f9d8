"""One Common Crawl snapshot -> a released Chinese image-text dataset.

fetch_index -> plan -> [extract -> refine -> download -> score] per shard -> dedup_plan ->
[dedup_partition] per source (a run of shards, or a slice of earlier releases) -> dedup_groups ->
[dedup_pairs] per group of cells -> dedup_merge ->
[dedup -> align -> assemble] per shard -> publish (the local release) -> approve_release -> upload (to the
publish.targets hubs). Trigger it with the crawl id; the monthly `danqing_discover` DAG does that
by itself for every new crawl.
"""

from __future__ import annotations

from airflow.sdk import Param, dag

from danqing.paths import CRAWL_ID_PATTERN
from operators import alerts, publishing, stage
from operators.scoring import score_task

SAMPLE_CRAWL_ID = "CC-MAIN-2099-01"  # danqing.config.SAMPLE_CRAWL_ID, kept literal so parsing stays light


@dag(
    dag_id="danqing_snapshot",
    schedule=None,
    catchup=False,
    max_active_runs=2,
    default_args=stage.DEFAULT_ARGS,
    deadline=alerts.deadline_alert(),  # pages when a run outlives alerts.run_deadline_h
    tags=["danqing"],
    doc_md=__doc__,
    params={
        "crawl_id": Param(SAMPLE_CRAWL_ID, type="string", pattern=CRAWL_ID_PATTERN,
                          title="Crawl id", description="As listed in Common Crawl's collinfo.json."),
        "source": Param("sample", type="string", enum=["sample", "commoncrawl"], title="Source",
                        description="sample = the bundled sample crawl; commoncrawl = data.commoncrawl.org."),
        "shard_size": Param(2, type="integer", minimum=1, title="WARCs per shard"),
        "max_warcs": Param(0, type="integer", minimum=0, title="Max WARCs", description="0 = all of them."),
        "config": Param({}, type="object", title="Config overrides",
                        description='Any field of danqing.config.PipelineConfig, e.g. {"align": {...}}.'),
        "auto_approve": Param(False, type="boolean", title="Approve the release without waiting",
                              description="Off: a person approves the release before it goes to the hubs."),
    },
)
def danqing_snapshot():
    shards = stage.plan(stage.fetch_index())
    extracted = stage.shard_task("extract").expand(src=shards)
    refined = stage.shard_task("refine").expand(src=extracted)
    downloaded = stage.shard_task("download").expand(src=refined)
    scored = score_task().expand(src=downloaded)
    sources = stage.dedup_plan(scored)
    groups = stage.dedup_groups(stage.dedup_partition.expand(src=sources))
    deduped = stage.shard_task("dedup").expand(src=stage.dedup_merge(stage.dedup_pairs.expand(src=groups)))
    aligned = stage.shard_task("align").expand(src=deduped)
    assembled = stage.shard_task("assemble").expand(src=aligned)
    stage.publish(assembled) >> publishing.ReleaseApproval(task_id="approve_release") >> publishing.upload()


danqing_snapshot()
