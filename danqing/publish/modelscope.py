"""A ModelScope dataset repo, through modelscope-hub's HubApi (the same interface as huggingface.py).

The client commits whatever it is given, so unchanged files are left out here, by the sha256
the repo listing reports: a repeated call uploads only what is missing and commits nothing when
nothing is. Its upload cache stays off: it would write into the release folder.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tempfile
from pathlib import Path

MANIFEST = re.compile(r"^data/[^/]+/manifest\.json$")


class ModelScope:
    kind = "modelscope"
    branch = "master"

    def __init__(self, repo_id: str, token: str, endpoint: str = "", private: bool = False):
        from modelscope_hub import HubApi

        self.repo_id, self.private = repo_id, private
        self.api = HubApi(endpoint=endpoint or None, token=token)
        self.endpoint = self.api.legacy.endpoint

    def _revisions(self) -> dict[str, str]:
        """Branch and tag names -> commit id (the name itself when the hub reports no id)."""
        from modelscope_hub.errors import NotExistError

        try:
            revisions = self.api.list_repo_revisions(self.repo_id, "dataset")
        except NotExistError:
            return {}
        return {r["Revision"]: r.get("CommitId") or r["Revision"] for r in revisions}

    def tag_commit(self, tag: str) -> str | None:
        return self._revisions().get(tag)

    def read(self, path: str, revision: str) -> bytes | None:
        from modelscope_hub.errors import NotExistError

        with tempfile.TemporaryDirectory() as local:
            try:
                got = self.api.download_file(self.repo_id, "dataset", path, revision=revision, local_dir=local,
                                             force=True)
            except NotExistError:
                return None
            return Path(got).read_bytes()

    def ensure_repo(self) -> None:
        from modelscope_hub.errors import AlreadyExistsError

        try:
            self.api.create_repo(self.repo_id, "dataset", visibility="private" if self.private else "public")
        except AlreadyExistsError:
            pass

    def head(self) -> str:
        return self._revisions().get(self.branch, self.branch)

    def _remote(self, revision: str) -> dict[str, str]:
        return {f.path: f.sha256 for f in self.api.list_repo_files(self.repo_id, "dataset", revision=revision)}

    def manifests(self, revision: str) -> list[bytes]:
        return [self.read(p, revision) for p in sorted(self._remote(revision)) if MANIFEST.match(p)]

    def upload(self, folder: Path, files: dict[str, str], patterns: list[str], message: str) -> None:
        remote = self._remote(self.branch)
        stale = [p for p in remote if p not in files and any(fnmatch.fnmatch(p, pat) for pat in patterns)]
        if stale:
            self.api.delete_files(self.repo_id, "dataset", stale, commit_message=f"{message} (remove stale files)")
        changed = sorted(p for p, sha in files.items() if remote.get(p) != sha)
        if changed:
            self.api.upload_folder(self.repo_id, "dataset", folder, allow_patterns=changed, commit_message=message,
                                   revision=self.branch, use_cache=False, disable_tqdm=True)

    def commit(self, files: dict[str, bytes], message: str, parent: str) -> str:
        """One commit of the changed `files` (ModelScope's commit takes no parent: `parent` is unused)."""
        remote = self._remote(self.branch)
        changed = {p: data for p, data in files.items() if remote.get(p) != hashlib.sha256(data).hexdigest()}
        if not changed:
            return self.head()
        with tempfile.TemporaryDirectory() as staging:
            for path, data in changed.items():
                (Path(staging) / path).parent.mkdir(parents=True, exist_ok=True)
                (Path(staging) / path).write_bytes(data)
            result = self.api.upload_folder(self.repo_id, "dataset", staging, commit_message=message,
                                            revision=self.branch, use_cache=False, disable_tqdm=True)
        commit = result[-1] if isinstance(result, list) else result
        return (commit or {}).get("CommitId") or self.head()

    def tag(self, tag: str, commit: str) -> None:
        from modelscope_hub.errors import AlreadyExistsError

        try:
            self.api.create_repo_tag(self.repo_id, "dataset", tag, revision=commit)
        except AlreadyExistsError:
            pass
