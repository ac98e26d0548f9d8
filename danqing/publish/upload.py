"""Publish a crawl's local release to one hub target: versioned, idempotent, resumable.

A release is the tag <crawl>-<config hash>[-version] on the repo. Its steps, each safe to repeat:
upload the crawl's files (resumable, unchanged files skipped), then one commit of the card and the
crawl's manifest (the manifest marks the release complete), then the tag. A tag that exists with
the same manifest means the release is out already: nothing is sent. One with another manifest is
refused: tags are never moved.
"""

from __future__ import annotations

import fnmatch
import json
import logging

from danqing import lineage, redact
from danqing.config import PipelineConfig, PublishTarget
from danqing.errors import UserError
from danqing.publish import card, release
from danqing.publish.huggingface import HuggingFace
from danqing.publish.modelscope import ModelScope

log = logging.getLogger(__name__)

HUBS = {"huggingface": HuggingFace, "modelscope": ModelScope}


def commit_message(manifest: dict) -> str:
    return (f"{manifest['crawl']}: {manifest['rows']:,} pairs, config {manifest['config_hash']}, "
            f"danqing-pipeline {manifest['code_version']}")


def target_files(manifest: dict, parts: list[str]) -> tuple[dict[str, str], list[str]]:
    """The release files a target receives ({path: sha256}) and the patterns they fall under."""
    patterns = [release.PARTS[p].format(crawl=manifest["crawl"]) for p in parts if p in release.PARTS]
    files = {p: sha for p, sha in manifest["files"].items() if any(fnmatch.fnmatch(p, pat) for pat in patterns)}
    return files, patterns


def upload(cfg: PipelineConfig, crawl: str, target: PublishTarget, token: str, endpoint: str = "",
           attempt: lineage.Attempt = lineage.CLI) -> dict:
    """Publish {release_root}/{crawl}/ to `target`; returns a small summary (no credentials)."""
    redact.register(token)
    manifest = release.read_manifest(cfg, crawl)
    folder = release.folder(cfg, crawl)
    tag, manifest_path = manifest["tag"], f"data/{crawl}/manifest.json"
    hub = HUBS[target.kind](target.repo_id, token, endpoint, target.private)
    where = f"{target.kind} {target.repo_id} ({redact.redact(hub.endpoint)})"
    files, patterns = target_files(manifest, target.parts)

    commit = hub.tag_commit(tag)
    if commit is not None:
        _check_same(json.loads(hub.read(manifest_path, commit) or b"{}"), manifest, where)
        log.info("%s already holds %s at %s: nothing to upload", where, tag, commit)
        published = False
    else:
        hub.ensure_repo()
        message = commit_message(manifest)
        log.info("uploading %d files of %s to %s", len(files), crawl, where)
        hub.upload(folder, files, patterns, message)
        head = hub.head()
        others = [m for m in map(json.loads, hub.manifests(head)) if m["crawl"] != crawl]
        meta = {manifest_path: (folder / "manifest.json").read_bytes()}
        if "card" in target.parts:
            meta["README.md"] = card.render([*others, manifest], target.parts, cfg.publish, target.repo_id).encode()
        commit = hub.commit(meta, f"{message}: card and manifest", parent=head)
        hub.tag(tag, commit)
        log.info("published %s to %s as %s (commit %s)", crawl, where, tag, commit)
        published = True

    for shard, paths in sorted(manifest["shard_files"].items(), key=lambda kv: int(kv[0])):
        lineage.record_upload(cfg.lineage, crawl=crawl, shard=int(shard), kind=target.kind, repo_id=target.repo_id,
                              endpoint=redact.redact(hub.endpoint), tag=tag, commit_id=commit,
                              files={p: files[p] for p in paths if p in files},
                              run_id=attempt.run_id, try_number=attempt.try_number)
    return {"kind": target.kind, "repo_id": target.repo_id, "tag": tag, "commit": commit, "published": published,
            "files": len(files), "rows": manifest["rows"]}


def _check_same(remote: dict, local: dict, where: str) -> None:
    """The tag's release must be this one: same rows, same files (tags are never moved)."""
    if remote.get("rows") == local["rows"] and remote.get("files") == local["files"]:
        return
    theirs = remote.get("files", {})
    differ = sorted(p for p in set(theirs) | set(local["files"]) if theirs.get(p) != local["files"].get(p))
    retag = f"{local['crawl']}-{local['config_hash']}-2"
    raise UserError(
        f"{where} already has tag {local['tag']} holding a different release of {local['crawl']} "
        f"({remote.get('rows', '?')} pairs there, {local['rows']} here; {len(differ)} files differ, e.g. "
        f"{', '.join(differ[:3]) or 'its manifest is missing'}). Tags are never moved: to publish this release, "
        f'set a new version, e.g. config {{"publish": {{"version": "2"}}}}, which tags it {retag}.')
