"""Airflow tasks that take a release out of the cluster: a human approval, then the uploads.

Hub tokens come from Airflow connections (`huggingface_default`, `modelscope_default`, or a target's
`conn_id`): the token in the password field, the hub's URL in the host (or extra `endpoint`; empty =
the public hub). They are read inside the upload task, never passed as task arguments, and masked.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk import BaseHook, task

from operators.context import run_context

# Unanswered for this long, the release counts as rejected: the run ends, nothing is uploaded.
APPROVAL_TIMEOUT = timedelta(days=7)


class ReleaseApproval(ApprovalOperator):
    """Shows the release (rows, funnel, sample captions, the card) and waits for Approve or Reject.

    Reject skips the upload. No wait when nothing would leave the cluster (no publish.targets) or
    when the run's `auto_approve` param is set (the demo and the tests).
    """

    def __init__(self, **kwargs):
        super().__init__(subject="Publish the release?", defaults="Reject", response_timeout=APPROVAL_TIMEOUT,
                         **kwargs)

    def execute(self, context):
        from danqing.publish import release

        cfg, crawl, _ = run_context()
        if not cfg.publish.targets:
            self.log.info("No publish.targets: the release of %s stays local, nothing to approve.", crawl)
            return None
        if context["params"].get("auto_approve"):
            self.log.info("auto_approve is set: the release of %s is approved without waiting.", crawl)
            return None
        self.subject, self.body = release.review(cfg, crawl)
        return super().execute(context)


def hub_connection(conn_id: str) -> tuple[str, str]:
    """(token, endpoint) of a hub connection; the token is registered for redaction."""
    from danqing import redact
    from danqing.errors import UserError

    conn = BaseHook.get_connection(conn_id)
    if not conn.password:
        raise UserError(f"Airflow connection {conn_id!r} has no token: put the hub token in its password field")
    redact.register(conn.password)
    endpoint = conn.extra_dejson.get("endpoint") or conn.host or ""
    if endpoint and "://" not in endpoint:
        endpoint = f"{conn.schema or 'https'}://{endpoint}" + (f":{conn.port}" if conn.port else "")
    return conn.password, endpoint.rstrip("/")


@task
def upload() -> list[dict]:
    """Publish the approved release to every publish.targets hub; one small summary per target."""
    from danqing.publish.upload import upload as to_hub

    cfg, crawl, attempt = run_context()
    summaries = []
    for target in cfg.publish.targets:
        token, endpoint = hub_connection(target.conn_id)
        summaries.append(to_hub(cfg, crawl, target, token, endpoint, attempt))
    return summaries
