"""Page the on-call engineer when a shard fails for good (after its retries)."""

from __future__ import annotations

import json
import logging
import os
import urllib.request

log = logging.getLogger(__name__)


def alert_payload(context) -> dict:
    ti = context["ti"]
    return {
        "dag_id": ti.dag_id,
        "task_id": ti.task_id,
        "shard": ti.map_index,
        "run_id": context["run_id"],
        "try_number": ti.try_number,
        "crawl": context["params"].get("crawl_id"),
        "error": str(context.get("exception") or "")[:500],
    }


def page_on_failure(context) -> None:
    """Log the failure; POST it to $DANQING_ALERT_WEBHOOK (PagerDuty/Slack relay) when set."""
    payload = alert_payload(context)
    log.error("danqing shard failed: %s", payload)
    url = os.environ.get("DANQING_ALERT_WEBHOOK")
    if not url:
        return
    req = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except OSError as exc:  # an alert that cannot be sent must not hide the task's own failure
        from danqing.redact import redact

        log.error("could not send the alert to %s: %s", redact(url), redact(exc))
