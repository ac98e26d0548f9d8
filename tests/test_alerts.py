"""Alerts through Airflow's notifiers: a real Slack-webhook POST and a real SMTP message on loopback, data-
quality alerts on constructed crawls, the deadline alert fired the scheduler's and triggerer's way, quiet on
the sample run, and never a token in a log line."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import pytest
from conftest import ROOT
from crawl_helpers import record_crawl

from danqing import health, lineage, redact
from danqing.config import AlertsConfig, PipelineConfig
from operators import alerts

CRAWL = "CC-MAIN-2025-47"
TOKEN = "T0DANQING/B0ONCALL/xoxb-s3cr3t-webhook-token"


class Webhook:
    """A Slack-style incoming webhook on loopback: records each POST, answers `status`."""

    def __init__(self, status: int = 200):
        self.received, self.status = [], status
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append((self.path, json.loads(body)))
                self.send_response(hook.status)
                self.end_headers()
                self.wfile.write(b"ok" if hook.status == 200 else b"invalid_token")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def texts(self) -> list[str]:
        return [body["text"] for _, body in self.received]


@pytest.fixture
def webhook(monkeypatch):
    hook = Webhook()
    monkeypatch.setenv("AIRFLOW_CONN_DANQING_SLACK", json.dumps(
        {"conn_type": "slackwebhook", "host": hook.url, "password": TOKEN}))
    monkeypatch.setenv("DANQING_ALERT_NOTIFIER", "slack")
    yield hook
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def crawl_cfg(tmp_path) -> PipelineConfig:
    return PipelineConfig.from_overrides({"root": str(tmp_path / "data"), "alerts": {"notifier": "slack"}})


def _alert(**kw) -> alerts.Alert:
    return alerts.Alert(**{"code": "task_failed", "crawl": CRAWL, "run_id": "manual__1", "shard": 7,
                           "stage": "download", "text": "download failed after 4 tries", **kw})


def test_slack_notifier_posts_through_the_airflow_connection(webhook):
    assert alerts.send(_alert(link="http://airflow/log"), AlertsConfig(notifier="slack"))
    [(path, body)] = webhook.received
    assert path == f"/{TOKEN}"  # the token lives in the connection, and only there
    assert body["text"].startswith(f"[danqing task_failed] {CRAWL} shard 00007 download\n")
    assert "download failed after 4 tries" in body["text"] and "http://airflow/log" in body["text"]


def test_a_failing_webhook_logs_no_token(webhook, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    webhook.status = 403
    assert not alerts.send(_alert(), AlertsConfig(notifier="slack"))
    webhook.server.shutdown()
    webhook.server.server_close()  # now nothing listens: a connection error, the other way to fail
    assert not alerts.send(_alert(), AlertsConfig(notifier="slack"))
    printed = caplog.text + "".join(capfd.readouterr())
    assert printed.count("[alert_not_sent]") == 2 and "invalid_token" in printed and "Connection refused" in printed
    assert "s3cr3t" not in printed and "B0ONCALL" not in printed
    # Whatever prints the webhook's URL later (slack_sdk does at DEBUG) prints it masked.
    assert redact.redact(f"Sending a request - url: {webhook.url}/{TOKEN}") == \
        f"Sending a request - url: {webhook.url}/***"


def test_smtp_notifier_mails_through_the_airflow_connection(monkeypatch):
    import smtpd  # deprecated, but a real SMTP server on loopback in the standard library of Python 3.11

    received = []

    class Server(smtpd.SMTPServer):
        def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
            received.append((mailfrom, rcpttos, data.decode()))

    import asyncore

    server = Server(("127.0.0.1", 0), None)
    port = server.socket.getsockname()[1]
    loop = threading.Thread(target=asyncore.loop, kwargs={"timeout": 0.05, "count": 200}, daemon=True)
    loop.start()
    monkeypatch.setenv("AIRFLOW_CONN_DANQING_SMTP", json.dumps(
        {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
         "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "danqing@localhost"}}))
    cfg = AlertsConfig(notifier="smtp", smtp_conn_id="danqing_smtp", email_to=["oncall@example.org"])
    assert alerts.send(_alert(text="score <pod> evicted"), cfg)
    server.close()
    [(sender, to, data)] = received
    assert (sender, to) == ("danqing@localhost", ["oncall@example.org"])
    mail = email.message_from_string(data)
    assert mail["Subject"] == f"[danqing task_failed] {CRAWL} shard 00007 download"
    [body] = [part.get_payload(decode=True).decode() for part in mail.walk() if part.get_content_type() == "text/html"]
    assert "score &lt;pod&gt; evicted" in body


def test_failed_task_pages_once_with_its_log(webhook, crawl_cfg):
    ti = SimpleNamespace(dag_id="danqing_snapshot", task_id="download", map_index=3, try_number=4,
                         rendered_map_index="shard 00007", log_url="http://airflow/dags/x/log")
    context = {"ti": ti, "run_id": "manual__1", "exception": RuntimeError("host https://u:hunter2@h/x down"),
               "params": {"crawl_id": CRAWL, "source": "sample", "shard_size": 1, "max_warcs": 0,
                          "config": {"root": crawl_cfg.root}}}
    alerts.page_on_failure(context)
    alerts.page_on_failure(context)  # the same failure again (a second callback): stored once, paged once
    [text] = webhook.texts()
    assert f"{CRAWL} shard 00007 download" in text and "failed after 4 tries" in text
    assert "hunter2" not in text and "http://airflow/dags/x/log" in text
    [stored] = lineage.alerts_raised(crawl_cfg.lineage, CRAWL)
    assert (stored["code"], stored["shard"], stored["stage"]) == ("task_failed", 7, "download")


def test_data_quality_alerts_fire_on_a_crawl_gone_wrong(webhook, crawl_cfg):
    # Shard 3 fails 40% of its downloads; shard 2's refine keeps 5x less than its siblings.
    record_crawl(crawl_cfg.lineage, CRAWL, shards=6, rows=2000, run_id="manual__1",
                 download_failed={3: 0.4}, keep={(2, "refine"): 0.85 / 5})
    found = alerts.check_quality(crawl_cfg, CRAWL, list(range(6)), "manual__1", link="http://airflow/page")
    assert [(f.shard, f.stage, f.code) for f in found] == [(2, "refine", health.KEPT_RATIO_DRIFT),
                                                           (3, "download", health.DOWNLOAD_SUCCESS_LOW)]
    texts = webhook.texts()
    assert len(texts) == 2
    assert f"{CRAWL} shard 00002 refine" in texts[0] and "where the crawl's median shard keeps 8" in texts[0]
    assert f"{CRAWL} shard 00003 download" in texts[1] and "download success 60%" in texts[1]
    assert "under 80%" in texts[1] and "download_timeout" in texts[1]
    # Checked again (the next stage of the shard): nothing new pages.
    alerts.check_quality(crawl_cfg, CRAWL, [2, 3], "manual__1")
    assert len(webhook.texts()) == 2
    # Configured to fail the shard: the task fails, naming the shard, stage and reason.
    failing = crawl_cfg.model_copy(update={"alerts": crawl_cfg.alerts.model_copy(update={"on_quality": "fail"})})
    with pytest.raises(alerts.DataQualityError, match="shard 00003, stage download: download success 60%"):
        alerts.check_quality(failing, CRAWL, [3], "manual__1")
    assert alerts.check_quality(failing, CRAWL, [0, 1, 4, 5], "manual__1") == []


def test_data_quality_is_quiet_on_normal_crawls(webhook, crawl_cfg):
    for seed in range(3):
        crawl = f"CC-MAIN-2025-{40 + seed}"
        record_crawl(crawl_cfg.lineage, crawl, shards=8, rows=1000, run_id="manual__1", seed=seed)
        assert alerts.check_quality(crawl_cfg, crawl, list(range(8)), "manual__1") == []
    assert webhook.received == []


def test_quiet_on_the_sample_run(sample_run):
    """Every shard task checked itself as it ran: nothing paged, and nothing to page now."""
    cfg = sample_run.cfg
    shards = sorted({r["shard"] for r in lineage.latest(cfg.lineage, sample_run.crawl)})
    assert len(shards) == 4
    assert alerts.check_quality(cfg, sample_run.crawl, shards, sample_run.run_id) == []
    assert [a for a in lineage.alerts_raised(cfg.lineage, sample_run.crawl) if a["run_id"] == sample_run.run_id] == []


def test_deadline_alert_fires_for_an_overdue_run_and_not_for_one_that_finished(airflow_db, webhook, monkeypatch):
    """The DAG's DeadlineAlert, the way Airflow runs it: a run created with it gets a deadline; once past it,
    the scheduler's step queues the callback as a trigger; the triggerer's CallbackTrigger pages."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db
    from airflow.models import DagRun
    from airflow.models.dagbag import DBDagBag
    from airflow.models.deadline import Deadline
    from airflow.models.trigger import Trigger
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    monkeypatch.setenv("DANQING_RUN_DEADLINE_H", "6")
    monkeypatch.setenv("AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL", "0")  # another test just wrote it
    bag = DagBag(dag_folder=str(ROOT / "dags" / "danqing_snapshot.py"))
    assert bag.get_dag("danqing_snapshot").deadline is not None
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    now = dt.datetime.now(dt.UTC)
    with create_session() as session:
        dag = DBDagBag().get_latest_version_of_dag("danqing_snapshot", session=session)
        runs = {}
        for name in ("overdue", "finished"):
            runs[name] = dag.create_dagrun(
                run_id=f"manual__deadline_{name}_{now.timestamp()}", run_after=now, run_type=DagRunType.MANUAL,
                conf={"crawl_id": CRAWL, "source": "sample", "shard_size": 1, "max_warcs": 0},
                triggered_by=DagRunTriggeredByType.TEST, state=DagRunState.QUEUED, session=session)
        session.flush()
        deadlines = {name: session.scalar(select(Deadline).where(Deadline.dagrun_id == run.id))
                     for name, run in runs.items()}
        for d in deadlines.values():
            assert abs(d.deadline_time - runs["overdue"].queued_at - dt.timedelta(hours=6)) < dt.timedelta(minutes=1)
        # The finished run ended in time: what DagRun.update_state does on success prunes its deadline.
        runs["finished"].end_date = now
        assert Deadline.prune_deadlines(session=session, conditions={DagRun.id: runs["finished"].id}) == 1
        # Seven hours on, the overdue run is still queued: the scheduler's deadline step queues its callback.
        deadlines["overdue"].deadline_time = now - dt.timedelta(hours=1)
        session.flush()
        missed = session.scalars(select(Deadline).where(Deadline.deadline_time < dt.datetime.now(dt.UTC),
                                                        ~Deadline.missed)).all()
        assert [d.dagrun_id for d in missed] == [runs["overdue"].id]
        missed[0].handle_miss(session)
        session.flush()
        trigger = session.get(Trigger, missed[0].callback.trigger_id)
        classpath, kwargs = trigger.classpath, trigger.kwargs
    from airflow._shared.module_loading import import_string

    async def run_trigger():
        return [event.payload async for event in import_string(classpath)(**kwargs).run()]

    events = asyncio.run(run_trigger())
    assert events[-1]["state"] == "success", events
    [text] = webhook.texts()
    assert text.startswith(f"[danqing run_overdue] {CRAWL}\n") and runs["overdue"].run_id in text
    assert "still queued 6 h after it was queued" in text and "/danqing/crawl/CC-MAIN-2025-47" in text
