"""Monthly refresh: find crawls in Common Crawl's collinfo.json not processed yet and start
`danqing_snapshot` for each. The crawl id is the run id, so a crawl is never started twice.
"""

from __future__ import annotations

from datetime import datetime

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import Param, dag

from operators import stage


@dag(
    dag_id="danqing_discover",
    schedule="@monthly",
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=stage.DEFAULT_ARGS,
    tags=["danqing"],
    doc_md=__doc__,
    params={
        "collinfo_url": Param("https://index.commoncrawl.org/collinfo.json", type="string"),
        "limit": Param(1, type="integer", minimum=1, maximum=12, description="Crawls to start per refresh."),
        "shard_size": Param(4, type="integer", minimum=1, title="WARCs per shard"),
        "max_warcs": Param(0, type="integer", minimum=0, description="0 = all of them."),
    },
)
def danqing_discover():
    runs = stage.new_crawl_runs()
    TriggerDagRunOperator.partial(
        task_id="start_snapshot",
        trigger_dag_id="danqing_snapshot",
        skip_when_already_exists=True,
    ).expand_kwargs(runs)


danqing_discover()
