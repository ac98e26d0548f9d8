"""Publishing a release: the local folder, its card and plots, and uploads to Hugging Face and ModelScope.

The real clients (huggingface_hub, modelscope-hub, datasets, webdataset) talk over HTTP to the loopback
stand-ins of danqing/sample/hubs.py; nothing in the clients is patched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from publish_helpers import fake_crawl

from danqing import lineage
from danqing.config import PipelineConfig, PublishTarget
from danqing.publish import release, upload
from danqing.sample.hubs import HuggingFaceHub, ModelScopeHub
from danqing.stages.publish import publish as build

A, B = "CC-MAIN-2025-43", "CC-MAIN-2025-47"
HF_TOKEN, MS_TOKEN = "hf_test_token_5Qx9v2", "ms-test-token-7Hk3p1"
TOKENS = {"huggingface": HF_TOKEN, "modelscope": MS_TOKEN}


@pytest.fixture(scope="module")
def hubs():
    with HuggingFaceHub(HF_TOKEN) as hf, ModelScopeHub(MS_TOKEN) as ms:
        yield {"huggingface": hf, "modelscope": ms}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    """Crawls A and B built into local releases, 3 pairs per parquet file."""
    root = tmp_path_factory.mktemp("publish") / "data"
    cfg = PipelineConfig.from_overrides({"root": str(root), "publish": {"rows_per_file": 3},
                                         "dedup": {"released_index": False}})
    for crawl in (A, B):
        build(cfg, crawl, fake_crawl(cfg, crawl, shards=2, rows=4))
    return cfg


def publish(cfg, hubs, kind: str, repo: str, crawl: str = A, **kw):
    target = PublishTarget(kind=kind, repo_id=repo)
    return upload.upload(cfg, crawl, target, TOKENS[kind], hubs[kind].url, **kw)


def local_rows(cfg, crawl: str) -> list[dict]:
    files = sorted((release.folder(cfg, crawl) / "data" / crawl).glob("*.parquet"))
    return sorted(pa.concat_tables([pq.read_table(f) for f in files]).to_pylist(), key=lambda r: r["id"])


def writes(hub) -> list[tuple[str, str]]:
    return [(m, p) for m, p in hub.requests if m in ("POST", "PUT") and "verify" not in p]


def test_release_folder_has_split_pairs_card_and_plots(cfg):
    folder = release.folder(cfg, A)
    manifest = release.read_manifest(cfg, A)
    parquet = sorted((folder / "data" / A).glob("pairs-*.parquet"))
    assert [pq.read_metadata(p).num_rows for p in parquet] == [3, 3, 2]  # 8 pairs, 3 per file
    assert manifest["rows"] == 8 and manifest["tag"] == f"{A}-{cfg.hash()}"
    assert sorted(manifest["files"]) == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                               if p.is_file() and p.parent != folder)
    assert manifest["shard_files"]["0"] == [f"data/{A}/pairs-00000.parquet", f"data/{A}/pairs-00001.parquet",
                                            f"images/{A}/00000.tar"]
    card = (folder / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["language"] == ["zh"] and front["license"] == "other" and front["size_categories"] == ["n<1K"]
    assert {"image-to-text", "text-to-image"} <= set(front["task_categories"]) and front["pretty_name"]
    assert [c["config_name"] for c in front["configs"]] == ["default", A]
    for heading in ["## How it was made", "| align | 10 | 8 | similarity_low: 2 |", "## Columns and provenance",
                    "`warc_record_offset`", "## Loading", "load_dataset(", "wds.WebDataset", "## Scoring model",
                    "randomly initialised", "## License and opt-out"]:
        assert heading in card, heading
    for png in ["funnel", "caption_length", "image_size", "similarity"]:
        assert f"](assets/{A}/{png}.png)" in card
        assert (folder / "assets" / A / f"{png}.png").read_bytes()[:4] == b"\x89PNG"


def test_rebuilding_gives_the_same_bytes(cfg):
    before = release.read_manifest(cfg, A)
    build(cfg, A, fake_crawl(cfg, A, shards=2, rows=4))
    assert release.read_manifest(cfg, A) == before  # parquet, tars and plots alike


@pytest.mark.parametrize("kind", ["huggingface", "modelscope"])
def test_first_publish_then_rerun_sends_nothing(cfg, hubs, kind):
    hub, repo = hubs[kind], f"danqing/first-{kind}"
    summary = publish(cfg, hubs, kind, repo)
    manifest = release.read_manifest(cfg, A)
    remote = hub.repos[repo].files(manifest["tag"])
    parts = {"huggingface": ("data/", "assets/"), "modelscope": ("data/", "assets/", "images/")}[kind]
    expected = {p: sha for p, sha in manifest["files"].items() if p.startswith(parts)}
    assert {p: remote[p] for p in expected} == expected  # every file, byte for byte
    assert {"README.md", f"data/{A}/manifest.json"} <= set(remote)
    assert not any(p.startswith("images/") for p in remote) or kind == "modelscope"
    assert json.loads(hub.blobs[remote[f"data/{A}/manifest.json"]]) == manifest
    assert hub.repos[repo].tags == {manifest["tag"]: summary["commit"]}
    message = hub.repos[repo].commits[summary["commit"]]["message"]
    assert A in message and "8 pairs" in message and manifest["config_hash"] in message and "0.1.0" in message

    uploads = lineage.uploaded(cfg.lineage, A)
    rows = [u for u in uploads if u["repo_id"] == repo]
    assert [u["shard"] for u in rows] == [0, 1]
    for u in rows:
        assert u["tag"] == manifest["tag"] and u["commit_id"] == summary["commit"] and u["kind"] == kind
        assert u["files"] and all(remote[p] == sha for p, sha in u["files"].items())
        assert u["endpoint"] == hub.url

    commits, sent = len(hub.repos[repo].commits), len(writes(hub))
    again = publish(cfg, hubs, kind, repo)
    assert again["published"] is False and again["commit"] == summary["commit"]
    assert len(hub.repos[repo].commits) == commits and len(writes(hub)) == sent  # no commit, nothing sent


@pytest.mark.parametrize("kind", ["huggingface", "modelscope"])
def test_dropped_connection_resumes_to_one_complete_release(cfg, hubs, kind):
    """The hub stores every file, then the connection drops on the commit; the retry finishes the job."""
    hub, repo = hubs[kind], f"danqing/dropped-{kind}"
    files, _ = upload.target_files(release.read_manifest(cfg, A), PublishTarget(kind=kind, repo_id=repo).parts)
    hub.drop_commit_after(len(files))
    try:
        publish(cfg, hubs, kind, repo)
    except Exception as exc:  # Hugging Face's client gives up at once; ModelScope's retries the commit itself
        assert kind == "huggingface" and "disconnected" in str(exc).lower(), exc
        assert release.read_manifest(cfg, A)["tag"] not in hub.repos[repo].tags
        publish(cfg, hubs, kind, repo)  # the Airflow retry
    assert hub._drop_after is None  # the drop happened
    remote = hub.repos[repo].files(release.read_manifest(cfg, A)["tag"])
    assert {p: remote.get(p) for p in files} == files
    assert all(hub.stored[repo, sha] == 1 for sha in files.values())  # no file was sent twice


@pytest.fixture(scope="module")
def two_crawls(cfg, hubs):
    """A then B published to one repo per hub."""
    for kind in hubs:
        for crawl in (A, B):
            publish(cfg, hubs, kind, f"danqing/two-{kind}", crawl)
    return {kind: hub.repos[f"danqing/two-{kind}"] for kind, hub in hubs.items()}


@pytest.mark.parametrize("kind", ["huggingface", "modelscope"])
def test_second_crawl_keeps_the_first_and_the_card_lists_both(cfg, hubs, two_crawls, kind):
    repo, hub = two_crawls[kind], hubs[kind]
    ma, mb = release.read_manifest(cfg, A), release.read_manifest(cfg, B)
    head = repo.files()
    assert all(head[p] == sha for p, sha in repo.files(ma["tag"]).items() if p != "README.md")  # A untouched
    assert {f"data/{A}/manifest.json", f"data/{B}/manifest.json"} <= set(head)
    card = hub.blobs[head["README.md"]].decode()
    front = yaml.safe_load(card.split("---\n")[1])
    assert [c["config_name"] for c in front["configs"]] == ["default", A, B]
    assert f"| {A} | 8 |" in card and f"| {B} | 8 |" in card and f"## {A}" in card and f"## {B}" in card
    assert set(repo.tags) == {ma["tag"], mb["tag"]}


def test_datasets_loads_exactly_the_release(cfg, hubs, two_crawls, tmp_path):
    """`datasets.load_dataset` against the stand-in (HF_ENDPOINT is read at import: a subprocess)."""
    ma, mb = release.read_manifest(cfg, A), release.read_manifest(cfg, B)
    code = f"""
import json, datasets
def rows(*args, **kw):
    return sorted(datasets.load_dataset(*args, split="train", **kw).to_list(), key=lambda r: r["id"])
print(json.dumps({{"a": rows("danqing/two-huggingface", revision="{ma['tag']}"),
                  "b": rows("danqing/two-huggingface", "{B}", revision="{mb['tag']}"),
                  "all": rows("danqing/two-huggingface", revision="{mb['tag']}")}}, ensure_ascii=False))
"""
    env = {**os.environ, "HF_ENDPOINT": hubs["huggingface"].url, "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["a"] == local_rows(cfg, A)
    assert got["b"] == local_rows(cfg, B)
    assert got["all"] == sorted(local_rows(cfg, A) + local_rows(cfg, B), key=lambda r: r["id"])


def test_webdataset_reads_the_modelscope_tars(cfg, hubs, two_crawls, tmp_path):
    import webdataset as wds
    from modelscope_hub import HubApi

    api = HubApi(endpoint=hubs["modelscope"].url, token=MS_TOKEN)
    tag = release.read_manifest(cfg, A)["tag"]
    tars = [str(api.download_file("danqing/two-modelscope", "dataset", f"images/{A}/{s:05d}.tar", revision=tag,
                                  local_dir=tmp_path)) for s in (0, 1)]
    samples = list(wds.WebDataset(tars, shardshuffle=False).decode("pil").to_tuple("__key__", "jpg", "txt", "json"))
    rows = {r["id"]: r for r in local_rows(cfg, A)}
    assert sorted(key for key, *_ in samples) == sorted(rows)
    for key, image, caption, row in samples:
        assert caption == rows[key]["caption"] and row == rows[key]
        assert image.size == (rows[key]["width"], rows[key]["height"])


def test_a_tag_with_other_content_is_refused_unless_a_new_version_is_set(cfg, hubs, tmp_path):
    kind, repo = "huggingface", "danqing/clash"
    publish(cfg, hubs, kind, repo)
    first = release.read_manifest(cfg, A)
    changed = cfg.model_copy(update={"root": str(tmp_path / "data"), "publish": cfg.publish.model_copy()})
    build(changed, A, fake_crawl(changed, A, shards=2, rows=4, variant="新"))  # same crawl, config: new rows
    assert release.read_manifest(changed, A)["tag"] == first["tag"]
    commits = len(hubs[kind].repos[repo].commits)
    with pytest.raises(ValueError, match=rf"tag {first['tag']} holding a different release.*publish.*version"):
        publish(changed, hubs, kind, repo)
    assert len(hubs[kind].repos[repo].commits) == commits

    versioned = changed.model_copy(update={"publish": changed.publish.model_copy(update={"version": "2"})})
    assert versioned.hash() == changed.hash()  # a version changes the tag, not the pipeline's outputs
    build(versioned, A, fake_crawl(versioned, A, shards=2, rows=4, variant="新"))
    summary = publish(versioned, hubs, kind, repo)
    assert summary["published"] and summary["tag"] == f"{first['tag']}-2"
    assert hubs[kind].repos[repo].tags[first["tag"]] != summary["commit"]  # the first tag did not move


def test_cli_publishes_with_the_token_from_the_environment(cfg, hubs):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent), "HF_TOKEN": HF_TOKEN,
           "HF_HUB_DISABLE_XET": "1", "HF_HOME": tempfile.mkdtemp()}
    overrides = json.dumps({"root": cfg.root, "publish": {"rows_per_file": 3}, "dedup": {"released_index": False}})
    cmd = [sys.executable, "-m", "danqing.cli", "--config", overrides, "publish", B, "--target", "huggingface",
           "--repo", "danqing/by-hand", "--endpoint", hubs["huggingface"].url]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["tag"] == release.read_manifest(cfg, B)["tag"] and summary["published"]
    assert set(hubs["huggingface"].repos["danqing/by-hand"].tags) == {summary["tag"]}
    assert HF_TOKEN not in out.stdout + out.stderr

    out = subprocess.run(cmd, env={**env, "HF_TOKEN": ""}, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "HF_TOKEN" in out.stderr


def test_a_wrong_token_is_refused_and_never_echoed(cfg, hubs):
    target = PublishTarget(kind="huggingface", repo_id="danqing/first-huggingface")
    wrong = "hf_wrong_token_Zq81"
    with pytest.raises(Exception) as err:
        upload.upload(cfg, A, target, wrong, hubs["huggingface"].url)
    assert "401" in str(err.value) and wrong not in str(err.value)
    rows = json.dumps(lineage.uploaded(cfg.lineage, A), default=str)
    assert HF_TOKEN not in rows and MS_TOKEN not in rows and wrong not in rows


def test_upload_urls_are_logged_without_their_signature(cfg, hubs, caplog):
    """Presigned upload URLs carry a signature (a short-lived credential): the client's log shows it masked."""
    import logging

    caplog.set_level(logging.INFO)
    publish(cfg, hubs, "huggingface", "danqing/logged")
    puts = [r.getMessage() for r in caplog.records if "PUT" in r.getMessage() and "/lfs/" in r.getMessage()]
    assert puts and all("sig=***" in m for m in puts)
