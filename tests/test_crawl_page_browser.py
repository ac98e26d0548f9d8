"""The crawl page in real headless Chromium against a real Airflow api-server with SimpleAuthManager users
(a viewer and an editor, not the all-admins local mode), over the session's sample run and a second run in
which one shard failed. Leaves a screenshot of the page in $DANQING_TEST_ARTIFACTS (default .artifacts/)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import ROOT, snapshot_dag

from danqing import paths
from danqing.stages.plan import shard_inputs

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
USERS = {"viewer": ("viewer", "viewer-pw-5821"), "editor": ("op", "editor-pw-3307")}
ARTIFACTS = Path(os.environ.get("DANQING_TEST_ARTIFACTS", ROOT / ".artifacts"))
FAILED_SHARD = 1

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not os.environ.get("CI"):
    pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)", allow_module_level=True)


@pytest.fixture(scope="module")
def failed_run(sample_run) -> str:
    """A second run of the sample crawl in which shard 1's extract fails (its WARC went missing);
    the other shards skip through, as their outputs are done."""
    cfg, crawl = sample_run.cfg, sample_run.crawl
    [warc] = shard_inputs(cfg, crawl, FAILED_SHARD)
    os.remove(paths.stats_uri(cfg.root, crawl, "extract", FAILED_SHARD))
    os.rename(warc, f"{warc}.away")
    mp = pytest.MonkeyPatch()
    mp.setenv("DANQING_ROOT", cfg.root)
    try:
        run = snapshot_dag().test(run_conf=sample_run.conf)
    finally:
        os.rename(f"{warc}.away", warc)
        mp.undo()
    assert run.state == "failed"
    return run.run_id


@pytest.fixture(scope="module")
def server(sample_run, failed_run, tmp_path_factory):
    """`airflow api-server` with this project's plugin, on the tests' metadata database."""
    home = tmp_path_factory.mktemp("api-server")
    (home / "passwords.json").write_text(json.dumps({name: pw for name, (_, pw) in USERS.items()}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT), "DANQING_ROOT": sample_run.cfg.root,
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{n}:{role}" for n, (role, _) in USERS.items()),
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
           "AIRFLOW__API__BASE_URL": url, "AIRFLOW__API_AUTH__JWT_SECRET": "danqing-test-" + "s" * 32}
    with open(home / "api-server.log", "w") as log:
        proc = subprocess.Popen(["airflow", "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _up(f"{url}/api/v2/monitor/health"):
            assert proc.poll() is None and time.monotonic() < deadline, (home / "api-server.log").read_text()[-3000:]
            time.sleep(0.5)  # the server is starting: poll its health endpoint
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_viewer_opens_the_page_from_the_nav_and_a_failed_shard_links_to_its_log(server, browser, sample_run,
                                                                                failed_run):
    from selenium.webdriver.common.by import By

    _login(browser, server, "viewer")
    _wait(browser, lambda d: d.find_elements(By.LINK_TEXT, "DanQing"))[0].click()
    browser.switch_to.frame(_wait(browser, lambda d: d.find_elements(By.TAG_NAME, "iframe"))[0])
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "svg.funnel rect"))
    bars = [t.text for t in browser.find_elements(By.CSS_SELECTOR, "svg.funnel text.label")]
    assert bars == ["extract", "refine", "download", "score", "dedup", "align", "assemble", "publish"]
    assert browser.find_elements(By.CSS_SELECTOR, "svg.funnel rect[data-reason='caption_too_short']")
    # The grid shows the newest run: shard 1's extract failed, so nothing after extract was started.
    tasks = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "table.grid th")]
    assert tasks == ["fetch_index", "plan", "extract", "refine", "download", "score", "dedup_plan", "dedup_partition",
                     "dedup_groups", "dedup_pairs", "dedup_merge", "dedup", "align", "assemble", "publish",
                     "approve_release", "upload"]
    states = {(c.get_attribute("data-task"), c.get_attribute("data-shard")): c.get_attribute("data-state")
              for c in browser.find_elements(By.CSS_SELECTOR, ".cell[data-task]")}
    assert [states[("extract", str(s))] for s in range(4)] == ["done", "failed", "done", "done"]
    assert states[("plan", "")] == "done" and states[("refine", "0")] == states[("publish", "3")] == "not started"
    assert not browser.find_elements(By.ID, "clear-failed")  # a viewer may look, not clear
    assert "clearing them needs permission to edit" in browser.find_element(By.ID, "grid").text
    failed = browser.find_element(By.CSS_SELECTOR, ".cell.failed[data-task='extract'][data-shard='1']")
    log_url = failed.get_attribute("href")
    assert log_url.startswith(f"{server}/dags/danqing_snapshot/runs/{quote(failed_run, safe='')}/tasks/extract/mapped/")
    assert log_url.endswith("?try_number=1")
    failed.click()  # Airflow's UI around the frame moves to that task instance's log
    browser.switch_to.default_content()
    _wait(browser, lambda d: d.current_url == log_url)
    _wait(browser, lambda d: "extract [shard 00001]" in d.find_element(By.TAG_NAME, "body").text)
    assert "Logs" in browser.find_element(By.TAG_NAME, "body").text


def test_sample_lookup_traces_a_released_pair_back_to_its_warc_record(server, browser, sample_run):
    import pyarrow.parquet as pq
    from selenium.webdriver.common.by import By

    cfg, crawl = sample_run.cfg, sample_run.crawl
    pair = pq.read_table(f"{paths.release_dir(cfg.release_root, crawl)}/data/{crawl}").to_pylist()[0]
    browser.switch_to.default_content()
    browser.get(f"{server}/danqing/crawl/{crawl}?run={quote(sample_run.run_id)}")
    field = _wait(browser, lambda d: d.find_elements(By.NAME, "sample"))[0]
    field.send_keys(pair["id"])
    field.submit()
    rows = _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "table.trace tr"))
    text = [r.text for r in rows]
    assert text[0].startswith(f"warc {pair['warc_filename']} offset {pair['warc_record_offset']}")
    assert text[1] == f"page {pair['page_url']}" and text[2] == f"image {pair['url']}"
    steps = [r.text.split()[0] for r in rows[4:]]
    assert steps == ["extract", "refine", "download", "score", "dedup", "align", "assemble", "publish"]
    assert text[-1].startswith("publish released")
    manifest = json.loads(Path(paths.release_dir(cfg.release_root, crawl), "manifest.json").read_text())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert f"{manifest['rows']:,} rows in {manifest['shards']} shards, tag {manifest['tag']}" in body
    # Each stage links to the log of the task instance that handled this pair's shard in that run.
    extract = browser.find_element(By.CSS_SELECTOR, "table.trace tr.kept a[data-ui]")
    assert f"/runs/{quote(sample_run.run_id, safe='')}/tasks/extract/mapped/" in extract.get_attribute("href")
    _screenshot(browser)


def test_anonymous_browser_and_client_get_no_page_schema_or_data(server, browser, sample_run):
    from selenium.webdriver.common.by import By

    browser.delete_all_cookies()
    for path in (f"/danqing/crawl/{sample_run.crawl}", "/danqing/openapi.json", "/danqing/docs",
                 f"/danqing/api/crawl/{sample_run.crawl}"):
        browser.get(server + path)
        _wait(browser, lambda d: d.find_elements(By.NAME, "password"))  # Airflow's login, nothing else
        assert "/auth/login" in browser.current_url and "Funnel" not in browser.page_source
    for path in ("/danqing/", f"/danqing/crawl/{sample_run.crawl}", f"/danqing/api/crawl/{sample_run.crawl}",
                 "/danqing/api/crawls", "/danqing/openapi.json", "/danqing/docs", "/danqing/redoc"):
        status, body = _http(server + path)
        assert status == 401 and sample_run.crawl not in body and "paths" not in body, (path, status, body)
    status, _ = _http(f"{server}/danqing/api/runs/x/clear-failed", method="POST", body=b"{}")
    assert status == 401


def test_a_viewer_cannot_clear_the_failed_shards_an_editor_can(server, failed_run, sample_run):
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session

    url = f"{server}/danqing/api/runs/{quote(failed_run, safe='')}/clear-failed"
    page = f"{server}/danqing/crawl/{sample_run.crawl}"
    viewer, editor = _token(server, "viewer"), _token(server, "editor")
    assert "id='clear-failed'" not in _http(page, token=viewer)[1]
    assert "id='clear-failed'" in _http(page, token=editor)[1]
    status, body = _http(url, method="POST", body=b"{}", token=viewer)
    assert status == 403 and "edit" in body
    status, body = _http(url, method="POST", body=b"{}", token=editor)
    assert status == 200, body
    cleared = {(c["task_id"], c["map_index"]) for c in json.loads(body)["cleared"]}
    with create_session() as session:
        session.expire_all()  # dag.test() left these objects in this thread's session
        tis = {(t.task_id, t.map_index): t for t in session.query(TI).filter(TI.run_id == failed_run)}
        run = session.query(DagRun).filter(DagRun.run_id == failed_run).one()
        failed_extract = next(k for k, t in tis.items() if k[0] == "extract" and t.rendered_map_index == "shard 00001")
        assert failed_extract in cleared and tis[failed_extract].state is None
        assert run.state == "queued"  # the scheduler picks it up again


def _login(browser, server: str, user: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{server}/auth/login")
    _wait(browser, lambda d: d.find_elements(By.NAME, "username"))[0].send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(USERS[user][1])
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    _wait(browser, lambda d: "/auth/login" not in d.current_url)


def _screenshot(browser) -> None:
    """The page as it is, full height: the run's artifact (and the README's picture)."""
    browser.execute_script("window.scrollTo(0, 0)")
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1400, min(height + 160, 6000))  # the window is taller than its viewport
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "crawl-page.png"))
    browser.set_window_size(1400, 1000)


def _wait(browser, found, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(found)


def _token(server: str, user: str) -> str:
    status, body = _http(f"{server}/auth/token", method="POST",
                         body=json.dumps({"username": user, "password": USERS[user][1]}).encode())
    assert status == 201, body
    return json.loads(body)["access_token"]


def _http(url: str, method: str = "GET", body: bytes | None = None, token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False

