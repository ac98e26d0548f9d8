"""Alerts for on-call: a task that failed for good, a shard whose data looks wrong, a run past its deadline.

They go out through Airflow's notifiers, picked by config (danqing.config.AlertsConfig.notifier):
SlackWebhookNotifier or SmtpNotifier, each reading its Airflow connection; "log" writes them to the
task log only. Every alert is also stored in the lineage store (once per run, shard, stage and code),
where the funnel page lists it. Messages and errors about sending them are redacted: a webhook token
or a password never reaches a log line. docs/RUNBOOK.md says what to do about each code.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import timedelta

from danqing.redact import RedactingFilter


def _redacting_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger


log = _redacting_logger(__name__)

# Alert codes of this module; the data-quality ones are in danqing.health.
TASK_FAILED = "task_failed"
RUN_OVERDUE = "run_overdue"
ALERT_NOT_SENT = "alert_not_sent"  # a log line: the notifier failed (the alert is still in the task log)

SEND_TIMEOUT_S = 10  # an alert must not hold up the task or the triggerer for long


class DataQualityError(RuntimeError):
    """A shard's data strays past the alert thresholds and AlertsConfig.on_quality is "fail"."""


@dataclass(frozen=True)
class Alert:
    code: str
    crawl: str
    run_id: str
    shard: int  # -1 = the whole run
    stage: str  # stage or task id; "" = the whole run
    text: str  # what happened, one line, redacted
    link: str = ""  # where to look: the task's log, or the crawl's page

    def subject(self) -> str:
        where = f" shard {self.shard:05d}" if self.shard >= 0 else ""
        return f"[danqing {self.code}] {self.crawl or '?'}{where}{' ' + self.stage if self.stage else ''}"

    def body(self) -> str:
        return f"{self.subject()}\n{self.text}\nrun {self.run_id}" + (f"\n{self.link}" if self.link else "")


def notifier_for(alert: Alert, cfg):
    """The provider notifier AlertsConfig names, or None for "log"."""
    from danqing.redact import redact

    body = redact(alert.body())
    if cfg.notifier == "slack":
        return _slack_notifier(cfg.slack_conn_id, body)
    if cfg.notifier == "smtp":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        if not cfg.email_to:
            raise ValueError("alerts.notifier is smtp but alerts.email_to is empty (DANQING_ALERT_EMAIL_TO)")
        content = "<br>".join(html.escape(line) for line in body.splitlines())
        return SmtpNotifier(to=cfg.email_to, subject=redact(alert.subject()), html_content=content,
                            smtp_conn_id=cfg.smtp_conn_id)
    return None


def _slack_notifier(conn_id: str, text: str):
    """SlackWebhookNotifier whose webhook client logs to a redacted logger: slack_sdk writes each retried
    request's URL, token included, at INFO to the logger it is given (by default the hook's, unredacted)."""
    from functools import cached_property

    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    class Notifier(SlackWebhookNotifier):
        @cached_property
        def hook(self) -> SlackWebhookHook:
            return SlackWebhookHook(slack_webhook_conn_id=self.slack_webhook_conn_id, timeout=self.timeout,
                                    proxy=self.proxy, logger=_redacting_logger(f"{__name__}.webhook"))

    return Notifier(slack_webhook_conn_id=conn_id, text=text, timeout=SEND_TIMEOUT_S)


def send(alert: Alert, cfg, context: dict | None = None) -> bool:
    """Log the alert and send it through the configured notifier; False when sending failed (logged, redacted)."""
    _guard_logs(cfg)
    log.warning("ALERT %s", alert.body())
    try:
        notifier = notifier_for(alert, cfg)
        if notifier is not None:
            notifier.notify(context or {})  # not notifier(context): its Jinja must not run on captions
    except Exception as exc:  # an alert that cannot be sent must not hide what it was about
        _not_sent(alert, cfg, exc)
        return False
    return True


async def send_async(alert: Alert, cfg, context: dict | None = None) -> bool:
    """send() for the triggerer, where deadline callbacks run."""
    _guard_logs(cfg)
    log.warning("ALERT %s", alert.body())
    try:
        notifier = notifier_for(alert, cfg)
        if notifier is not None:
            await notifier.async_notify(context or {})
    except Exception as exc:
        _not_sent(alert, cfg, exc)
        return False
    return True


def page_on_failure(context) -> None:
    """on_failure_callback of every task: the task failed after its retries."""
    from danqing.redact import redact

    ti = context["ti"]
    params = context.get("params") or {}
    cfg = _run_config(params)
    shard = shard_of_ti(ti)
    error = redact(str(context.get("exception") or ""))[:500]
    alert = Alert(TASK_FAILED, _crawl(params), context["run_id"], shard, ti.task_id,
                  f"{ti.task_id} failed after {ti.try_number} tries: {error or 'no error message'}",
                  link=getattr(ti, "log_url", ""))
    if cfg is None or _record(cfg, alert):
        send(alert, cfg.alerts if cfg else _alerts_config())


def check_quality(cfg, crawl: str, shards: list[int], run_id: str, link: str = "") -> list:
    """Page on data-quality findings for `shards` at the stages they went through in this run.

    Siblings are the crawl's other shards as recorded so far; each finding pages once per run.
    With alerts.on_quality == "fail", any finding fails the calling task (after paging).
    """
    from danqing import health, lineage

    rows = lineage.latest(cfg.lineage, crawl)
    ran = {(r["shard"], r["stage"]) for r in rows if r["shard"] in set(shards) and r["run_id"] == run_id}
    found = [f for f in health.findings(crawl, rows, cfg.alerts) if (f.shard, f.stage) in ran]
    for f in found:
        alert = Alert(f.code, crawl, run_id, f.shard, f.stage, f.reason, link=link)
        if _record(cfg, alert):
            send(alert, cfg.alerts)
    if found and cfg.alerts.on_quality == "fail":
        raise DataQualityError("; ".join(f.message() for f in found))
    return found


def deadline_alert(cfg=None):
    """The DAG's DeadlineAlert: page when a run is still going run_deadline_h after it was queued (None if 0)."""
    from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

    cfg = cfg or _alerts_config()
    if not cfg.run_deadline_h:
        return None
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=timedelta(hours=cfg.run_deadline_h),
                         callback=AsyncCallback(run_overdue, kwargs={"alerts": cfg.model_dump()}))


async def run_overdue(context: dict, alerts: dict) -> bool:
    """Deadline callback (runs in the triggerer): the run outlived its expected duration."""
    from danqing.config import AlertsConfig

    cfg = AlertsConfig.model_validate(alerts)
    run = context.get("dag_run") or {}
    conf = run.get("conf") or {}
    crawl = _crawl(conf)
    text = (f"{run.get('dag_id')} run for {crawl or 'an unknown crawl'} is still {run.get('state')} "
            f"{cfg.run_deadline_h:g} h after it was queued ({run.get('queued_at')}); deadline "
            f"{(context.get('deadline') or {}).get('deadline_time')}")
    alert = Alert(RUN_OVERDUE, crawl, run.get("dag_run_id", ""), -1, "", text, link=page_url(crawl))
    pipeline = _run_config(conf) if conf else None
    if pipeline is None or _record(pipeline, alert):
        return await send_async(alert, cfg)
    return False


def shard_of_ti(ti) -> int:
    """The shard a task instance worked on: its rendered map index ("shard 00007"), else its map index."""
    from danqing.paths import shard_of_label

    shard = shard_of_label(getattr(ti, "rendered_map_index", None))
    return ti.map_index if shard is None else shard


def page_url(crawl: str) -> str:
    """The crawl's page in Airflow's UI (the DanQing plugin), for links in alerts."""
    from airflow.sdk import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return f"{base.rstrip('/')}/danqing/crawl/{crawl}" if crawl else ""


def _crawl(params: dict) -> str:
    from danqing.paths import crawl_id

    try:
        return crawl_id(params.get("crawl_id"))
    except ValueError:
        return ""


def _run_config(params: dict):
    """The run's PipelineConfig (for its lineage store and alert settings), or None when its params do not
    make one: the alert still goes out. Source fields a partial conf lacks do not matter here."""
    try:
        from operators.context import pipeline_config

        return pipeline_config({"source": "sample", "shard_size": 1, "max_warcs": 0, **params})
    except Exception as exc:
        from danqing.redact import redact

        log.error("alerts: the run's config is unreadable (%s); using the defaults", redact(exc))
        return None


def _alerts_config():
    from danqing.config import AlertsConfig

    return AlertsConfig()


def _record(cfg, alert: Alert) -> bool:
    """Store the alert in the lineage store; False when this alert was raised already."""
    from danqing import lineage
    from danqing.redact import redact

    try:
        return lineage.record_alert(cfg.lineage, crawl=alert.crawl, run_id=alert.run_id, shard=alert.shard,
                                    stage=alert.stage, code=alert.code, message=redact(alert.text))
    except Exception as exc:  # the page must go out even when the lineage store is down
        log.error("alerts: could not store %s in the lineage store: %s", alert.code, redact(exc))
        return True


def _not_sent(alert: Alert, cfg, exc: BaseException) -> None:
    from danqing.redact import redact

    log.error("alert %s not sent through %s: %s: %s [%s]", alert.code, cfg.notifier, type(exc).__name__,
              redact(exc), ALERT_NOT_SENT)


def _guard_logs(cfg) -> None:
    """Register the notifier connection's secret (the webhook token, the SMTP password) for masking."""
    from danqing import redact

    conn_id = {"slack": cfg.slack_conn_id, "smtp": cfg.smtp_conn_id}.get(cfg.notifier)
    if not conn_id:
        return
    try:
        from airflow.sdk import BaseHook

        conn = BaseHook.get_connection(conn_id)
    except Exception:
        return  # the notifier reports the missing connection itself
    from airflow.sdk.log import mask_secret

    secrets = [conn.password]
    if conn.password and "://" in conn.password:  # a whole webhook URL in the password field
        secrets.append(conn.password.split("://", 1)[1].split("/", 1)[-1])
    for secret in filter(None, secrets):
        redact.register(secret)  # our log lines and errors
        mask_secret(secret)  # Airflow's task and structlog output
