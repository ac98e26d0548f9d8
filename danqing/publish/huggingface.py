"""A Hugging Face dataset repo, through huggingface_hub's HfApi (the same interface as modelscope.py).

Against anything but huggingface.co set HF_HUB_DISABLE_XET=1 before huggingface_hub is imported:
with hf_xet installed the client uploads through Xet storage, which only the real hub serves.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path

from danqing import redact

MANIFEST = re.compile(r"^data/[^/]+/manifest\.json$")


def _quiet_logs() -> None:
    """No progress bars in task logs, and upload URLs logged redacted: their signature is a credential."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    for name in ("httpx", "httpx2"):  # the client logs every request's URL at INFO
        logger = logging.getLogger(name)
        if not any(isinstance(f, redact.RedactingFilter) for f in logger.filters):
            logger.addFilter(redact.RedactingFilter())


class HuggingFace:
    kind = "huggingface"
    branch = "main"

    def __init__(self, repo_id: str, token: str, endpoint: str = "", private: bool = False):
        from huggingface_hub import HfApi

        _quiet_logs()
        self.repo_id, self.private = repo_id, private
        self.api = HfApi(endpoint=endpoint or None, token=token)
        self.endpoint = self.api.endpoint

    def tag_commit(self, tag: str) -> str | None:
        """The commit a tag points at; None when the tag (or the repo) does not exist."""
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            refs = self.api.list_repo_refs(self.repo_id, repo_type="dataset")
        except RepositoryNotFoundError:
            return None
        return next((t.target_commit for t in refs.tags if t.name == tag), None)

    def read(self, path: str, revision: str) -> bytes | None:
        from huggingface_hub.errors import EntryNotFoundError

        with tempfile.TemporaryDirectory() as cache:
            try:
                local = self.api.hf_hub_download(self.repo_id, path, repo_type="dataset", revision=revision,
                                                 cache_dir=cache)
            except EntryNotFoundError:
                return None
            return Path(local).read_bytes()

    def ensure_repo(self) -> None:
        self.api.create_repo(self.repo_id, repo_type="dataset", private=self.private, exist_ok=True)

    def head(self) -> str:
        return self.api.repo_info(self.repo_id, repo_type="dataset", revision=self.branch).sha

    def manifests(self, revision: str) -> list[bytes]:
        """Every crawl's manifest in the repo at `revision`."""
        paths = [p for p in self.api.list_repo_files(self.repo_id, repo_type="dataset", revision=revision)
                 if MANIFEST.match(p)]
        return [self.read(p, revision) for p in sorted(paths)]

    def upload(self, folder: Path, files: dict[str, str], patterns: list[str], message: str) -> None:
        """Upload `files` from `folder` and delete this crawl's files (`patterns`) that are not among them.

        Resumable: the hub names the LFS objects it already holds, and files it holds unchanged are
        left out, so a repeated call sends only what is missing and commits nothing when nothing is.
        """
        if files:
            self.api.upload_folder(repo_id=self.repo_id, repo_type="dataset", folder_path=folder,
                                   allow_patterns=sorted(files), delete_patterns=patterns, commit_message=message)

    def commit(self, files: dict[str, bytes], message: str, parent: str) -> str:
        """One atomic commit on top of `parent` (refused if the branch moved); no commit when nothing changed."""
        from huggingface_hub import CommitOperationAdd

        ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in sorted(files.items())]
        return self.api.create_commit(self.repo_id, ops, commit_message=message, repo_type="dataset",
                                      parent_commit=parent).oid

    def tag(self, tag: str, commit: str) -> None:
        self.api.create_tag(self.repo_id, tag=tag, revision=commit, repo_type="dataset", exist_ok=True)
