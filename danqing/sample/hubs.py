"""Loopback stand-ins for the Hugging Face Hub and ModelScope, for the demo and the tests.

Each answers, over real HTTP, the calls that `huggingface_hub` / `modelscope-hub` make when we
publish (create repo, pre-upload and LFS batch, blob PUT, commit, tags and refs) and when
`datasets` / the clients read a release back (repo info, tree listing, file download). Repos
are kept in memory as commits of {path: sha256}. Writes need the token the hub was started with.

`drop_commit_after(n)` makes the hub drop the connection of the first commit that arrives once
it has stored n files: the files are there, the commit is lost, as when a worker dies mid-upload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from danqing.sample.loopback import Loopback

# Kept out of git objects by the hub's default .gitattributes; everything else is a regular file.
LFS_SUFFIXES = (".parquet", ".tar", ".png", ".jpg", ".npy", ".arrow")
LFS_MIN_BYTES = 10 * 1024 * 1024


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_oid(data: bytes) -> str:
    """A git blob id, as the hub reports for regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs(path: str, size: int) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES


class Repo:
    """A dataset repo: commits of {path: sha256} on one branch, and tags."""

    def __init__(self, repo_id: str, private: bool, branch: str):
        self.id, self.private, self.branch = repo_id, private, branch
        self.commits: dict[str, dict] = {}
        self.objects: set[str] = set()  # sha256 of the file contents this repo's storage holds
        self.head: str | None = None
        self.tags: dict[str, str] = {}

    def resolve(self, rev: str) -> str | None:
        """The commit id of a branch, tag or commit id."""
        if rev == self.branch:
            return self.head
        return self.tags.get(rev) or (rev if rev in self.commits else None)

    def files(self, rev: str | None = None) -> dict[str, str]:
        commit = self.resolve(rev or self.branch)
        return dict(self.commits[commit]["files"]) if commit else {}

    def commit(self, message: str, added: dict[str, str], deleted: list[str] = ()) -> str:
        files = self.files()
        files.update(added)
        for path in deleted:
            files.pop(path, None)
        cid = hashlib.sha1(json.dumps([self.head, message, sorted(files.items())]).encode()).hexdigest()
        self.commits[cid] = {"parent": self.head, "message": message, "files": files}
        self.head = cid
        return cid


class _Dropped(Exception):
    """Close the connection without an answer."""


class HubServer(Loopback):
    """A hub on 127.0.0.1 in a thread: repos, blobs, a request log; a context manager."""

    branch = "main"
    ROUTES: list[tuple[str, str, str]] = []  # (methods "GET|HEAD", path regex, handler method name)

    def __init__(self, token: str, port: int = 0):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.stored = Counter()  # (repo id, sha256) -> times those bytes were received
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.RLock()
        self._drop_after: int | None = None
        super().__init__(_Server(("127.0.0.1", port), _Handler))
        self.httpd.hub = self

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def drop_commit_after(self, files: int | None) -> None:
        """Drop the first commit that arrives once `files` more files have been stored."""
        self._drop_after = None if files is None else sum(self.stored.values()) + files

    def presign(self, repo_id: str, oid: str) -> str:
        """An upload URL that carries its own authorization, like the object store URLs hubs hand out."""
        sig = hashlib.sha256(f"{self.token}:{repo_id}:{oid}".encode()).hexdigest()[:32]
        return f"{self.url}/lfs/{repo_id}/{oid}?sig={sig}"

    def presigned(self, h: _Handler, repo_id: str, oid: str) -> Repo | None:
        if repo_id in self.repos and h.query.get("sig") == self.presign(repo_id, oid).rsplit("=", 1)[1]:
            return self.repos[repo_id]
        h.reply(403, {"error": "bad signature", "Code": 403, "Message": "bad signature"})
        return None

    def store(self, repo: Repo, data: bytes) -> str:
        digest = sha256(data)
        with self.lock:
            self.blobs[digest] = data
            repo.objects.add(digest)
            self.stored[repo.id, digest] += 1
        return digest

    def commit(self, repo: Repo, message: str, added: dict[str, str], deleted: list[str] = ()) -> str:
        with self.lock:
            if self._drop_after is not None and sum(self.stored.values()) >= self._drop_after:
                self._drop_after = None
                raise _Dropped
            return repo.commit(message, added, deleted)

    def create_repo(self, repo_id: str, private: bool) -> Repo | None:
        """The new repo, or None when it exists."""
        with self.lock:
            if repo_id in self.repos:
                return None
            repo = self.repos[repo_id] = Repo(repo_id, private, self.branch)
            return repo


class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server names)
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def _route(self, method: str) -> None:
        hub: HubServer = self.server.hub
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        with hub.lock:
            hub.requests.append((method, url.path))
        for verb, pattern, name in hub.ROUTES:
            match = re.fullmatch(pattern, url.path)
            if match and method in verb.split("|"):
                try:
                    getattr(hub, name)(self, *[g and unquote(g) for g in match.groups()])
                except _Dropped:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                except Exception as exc:  # a stand-in bug shows up in the client's error, not as a hang
                    self.reply(500, {"error": f"{type(exc).__name__}: {exc}", "Message": str(exc)})
                return
        self.reply(404, {"error": f"no route for {method} {url.path}"})

    # ---- helpers the hubs call -------------------------------------------------------------------
    def json_body(self):
        return json.loads(self.body or b"{}")

    def authorized(self, repo: Repo | None = None, write: bool = False) -> bool:
        """Writes need the hub's token; reads of a public repo need none."""
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
        cookie = re.search(r"m_session_id=([^;]+)", self.headers.get("Cookie") or "")
        token = token or (cookie.group(1) if cookie else "")
        if token == self.server.hub.token:
            return True
        if token or write or (repo is not None and repo.private):
            self.reply(401, {"error": "Invalid credentials", "Code": 10010101, "Message": "Invalid credentials"})
            return False
        return True

    def reply(self, status: int, payload=None, body: bytes | None = None, headers: dict | None = None) -> None:
        data = body if body is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if body is not None else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format, *args) -> None:  # the request log is hub.requests
        pass


_REPO = r"([^/]+/[^/]+)"


class HuggingFaceHub(HubServer):
    """The calls of huggingface_hub 2.4 (LFS, not Xet: set HF_HUB_DISABLE_XET=1) and of `datasets`."""

    ROUTES = [
        ("POST", r"/api/repos/create", "create"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/datasets/{_REPO}(?:/revision/([^/]+))?", "info"),
        ("POST", rf"/api/datasets/{_REPO}/preupload/([^/]+)", "preupload"),
        ("POST", rf"/datasets/{_REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", rf"/lfs/{_REPO}/([0-9a-f]{{64}})", "lfs_put"),
        ("POST", rf"/lfs/{_REPO}/([0-9a-f]{{64}})/verify", "lfs_verify"),
        ("POST", rf"/api/datasets/{_REPO}/commit/([^/]+)", "commit_ndjson"),
        ("POST", rf"/api/datasets/{_REPO}/tag/([^/]+)", "tag"),
        ("GET", rf"/api/datasets/{_REPO}/refs", "refs"),
        ("GET", rf"/api/datasets/{_REPO}/tree/([^/]+)(?:/(.*))?", "tree"),
        ("GET|HEAD", rf"/datasets/{_REPO}/resolve/([^/]+)/(.+)", "resolve"),
    ]

    def _repo(self, h: _Handler, repo_id: str, write: bool = False) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            h.reply(404, {"error": f"Repository not found: {repo_id}"}, headers={"X-Error-Code": "RepoNotFound"})
            return None
        return repo if h.authorized(repo, write) else None

    def _entry(self, path: str, digest: str) -> dict:
        data = self.blobs[digest]
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_oid(data)}
        if is_lfs(path, len(data)):
            entry["lfs"] = {"oid": digest, "size": len(data), "pointerSize": 134}
        return entry

    def create(self, h: _Handler) -> None:
        if not h.authorized(write=True):
            return
        body = h.json_body()
        repo_id = f"{body['organization']}/{body['name']}"
        url = f"{self.url}/datasets/{repo_id}"
        repo = self.create_repo(repo_id, body.get("visibility") == "private" or bool(body.get("private")))
        if repo is None:
            return h.reply(409, {"error": "You already created this dataset repo", "url": url})
        attributes = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
        with self.lock:  # the hub's own first commit: not an upload
            self.blobs[sha256(attributes)] = attributes
            repo.objects.add(sha256(attributes))
            repo.commit("initial commit", {".gitattributes": sha256(attributes)})
        h.reply(200, {"url": url, "name": repo_id})

    def validate_yaml(self, h: _Handler) -> None:
        """Parse the card's front matter as the hub does; a config's data_files must be paths or splits."""
        content = h.json_body().get("content", "")
        match = re.match(r"---\n(.*?)\n---\n", content, re.S)
        errors = []
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
            for config in meta.get("configs", []):
                for spec in config["data_files"]:
                    if not isinstance(spec, str) and not {"split", "path"} <= set(spec):
                        errors.append({"message": f"configs.{config['config_name']}: bad data_files entry {spec}"})
        except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
            errors.append({"message": f"invalid YAML front matter: {exc}"})
        h.reply(400 if errors else 200, {"errors": errors, "warnings": []})

    def info(self, h: _Handler, repo_id: str, rev: str | None = None) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        commit = repo.resolve(rev or repo.branch)
        if commit is None:
            return h.reply(404, {"error": f"Invalid rev id: {rev}"}, headers={"X-Error-Code": "RevisionNotFound"})
        files = repo.files(commit)
        h.reply(200, {"id": repo.id, "author": repo.id.split("/")[0], "sha": commit, "private": repo.private,
                      "tags": [], "siblings": [{"rfilename": p} for p in sorted(files)],
                      "lastModified": "2099-01-01T00:00:00.000Z", "downloads": 0, "likes": 0})

    def preupload(self, h: _Handler, repo_id: str, rev: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        remote = repo.files(rev)
        out = []
        for f in h.json_body()["files"]:
            lfs = is_lfs(f["path"], f["size"])
            digest = remote.get(f["path"])
            oid = None if digest is None else (digest if lfs else git_oid(self.blobs[digest]))
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        h.reply(200, {"files": out, "commitOid": repo.head})

    def lfs_batch(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        objects = []
        for obj in h.json_body()["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in repo.objects:  # the hub asks only for what it does not hold yet
                entry["actions"] = {"upload": {"href": self.presign(repo.id, obj["oid"])},
                                    "verify": {"href": f"{self.url}/lfs/{repo.id}/{obj['oid']}/verify"}}
            objects.append(entry)
        h.reply(200, {"transfer": "basic", "objects": objects})

    def lfs_put(self, h: _Handler, repo_id: str, oid: str) -> None:
        repo = self.presigned(h, repo_id, oid)
        if repo is None:
            return
        if sha256(h.body) != oid:
            return h.reply(400, {"error": "sha256 mismatch"})
        self.store(repo, h.body)
        h.reply(200, {})

    def lfs_verify(self, h: _Handler, repo_id: str, oid: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is not None:
            h.reply(200 if oid in repo.objects else 404, {})

    def commit_ndjson(self, h: _Handler, repo_id: str, rev: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        lines = [json.loads(line) for line in h.body.splitlines() if line.strip()]
        message, added, deleted = "", {}, []
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "header":
                message = value["summary"]
                if value.get("parentCommit", repo.head) != repo.head:
                    return h.reply(412, {"error": "A commit has happened since. Please refresh and try again."})
            elif key == "file":
                added[value["path"]] = self.store(repo, base64.b64decode(value["content"]))
            elif key == "lfsFile":
                if value["oid"] not in repo.objects:
                    return h.reply(422, {"error": f"LFS object {value['oid']} was never uploaded"})
                added[value["path"]] = value["oid"]
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
        cid = self.commit(repo, message, added, deleted)
        h.reply(200, {"commitOid": cid, "commitUrl": f"{self.url}/datasets/{repo.id}/commit/{cid}",
                      "pullRequestUrl": None})

    def tag(self, h: _Handler, repo_id: str, rev: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        name = h.json_body()["tag"]
        with self.lock:
            if name in repo.tags:
                return h.reply(409, {"error": f"Tag {name} already exists"})
            repo.tags[name] = repo.resolve(rev)
        h.reply(200, {})

    def refs(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        branch = {"name": repo.branch, "ref": f"refs/heads/{repo.branch}", "targetCommit": repo.head}
        tags = [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in repo.tags.items()]
        h.reply(200, {"branches": [branch], "tags": tags, "converts": []})

    def tree(self, h: _Handler, repo_id: str, rev: str, folder: str | None = None) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        if repo.resolve(rev) is None:
            return h.reply(404, {"error": f"Invalid rev id: {rev}"}, headers={"X-Error-Code": "RevisionNotFound"})
        prefix = f"{folder.strip('/')}/" if folder else ""
        recursive = h.query.get("recursive", "false").lower() == "true"
        entries, folders = [], set()
        for path, digest in sorted(repo.files(rev).items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            if recursive or len(parts) == 1:
                entries.append(self._entry(path, digest))
            depth = len(parts) - 1 if recursive else min(len(parts) - 1, 1)
            folders.update(prefix + "/".join(parts[:d]) for d in range(1, depth + 1))
        entries += [{"type": "directory", "path": f, "oid": git_oid(f.encode()), "size": 0} for f in sorted(folders)]
        h.reply(200, entries)

    def resolve(self, h: _Handler, repo_id: str, rev: str, path: str) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        commit = repo.resolve(rev)
        digest = repo.files(commit).get(path) if commit else None
        if digest is None:
            return h.reply(404, {"error": "Entry not found"}, headers={"X-Error-Code": "EntryNotFound"})
        data = self.blobs[digest]
        etag = digest if is_lfs(path, len(data)) else git_oid(data)
        h.reply(200, body=data, headers={"ETag": f'"{etag}"', "X-Repo-Commit": commit})


class ModelScopeHub(HubServer):
    """The legacy /api/v1 calls of modelscope-hub 0.5 for dataset repos."""

    branch = "master"

    ROUTES = [
        ("POST", r"/api/v1/datasets", "create"),
        ("POST", rf"/api/v1/repos/datasets/{_REPO}/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", rf"/lfs/{_REPO}/([0-9a-f]{{64}})", "blob_put"),
        ("POST", rf"/api/v1/repos/datasets/{_REPO}/commit/([^/]+)", "commit_json"),
        ("POST", rf"/api/v1/datasets/{_REPO}/repo/tag", "tag"),
        ("GET", rf"/api/v1/datasets/{_REPO}/revisions", "revisions"),
        ("GET", rf"/api/v1/datasets/{_REPO}/repo/tree", "tree"),
        ("GET|HEAD", rf"/api/v1/datasets/{_REPO}/repo", "download"),
    ]

    @staticmethod
    def ok(h: _Handler, data, status: int = 200) -> None:
        h.reply(status, {"Code": 200, "Data": data, "Message": "success", "Success": True, "RequestId": "local"})

    @staticmethod
    def error(h: _Handler, status: int, message: str) -> None:
        h.reply(status, {"Code": status, "Message": message, "Success": False, "RequestId": "local"})

    def _repo(self, h: _Handler, repo_id: str, write: bool = False) -> Repo | None:
        repo = self.repos.get(repo_id)
        if repo is None:
            self.error(h, 404, f"dataset {repo_id} does not exist")
            return None
        return repo if h.authorized(repo, write) else None

    def create(self, h: _Handler) -> None:
        if not h.authorized(write=True):
            return
        form = _multipart(h)
        repo_id = f"{form['Owner']}/{form['Name']}"
        if self.create_repo(repo_id, form.get("Visibility") == "1") is None:  # 1 = private, 5 = public
            return self.error(h, 409, f"dataset {repo_id} already exists")
        self.ok(h, {"Id": repo_id, "Owner": form["Owner"], "Name": form["Name"]})

    def lfs_batch(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        objects = []
        for obj in h.json_body()["objects"]:
            actions = {} if obj["oid"] in repo.objects else {"upload": {"href": self.presign(repo.id, obj["oid"])}}
            objects.append({"oid": obj["oid"], "size": obj["size"], "actions": actions})
        self.ok(h, {"objects": objects})

    def blob_put(self, h: _Handler, repo_id: str, oid: str) -> None:
        repo = self.presigned(h, repo_id, oid)
        if repo is None:
            return
        if sha256(h.body) != oid:
            return self.error(h, 400, "sha256 mismatch")
        self.store(repo, h.body)
        h.reply(200, {"Code": 200})

    def commit_json(self, h: _Handler, repo_id: str, rev: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        body = h.json_body()
        added, deleted = {}, []
        for action in body["actions"]:
            if action["action"] == "delete":
                deleted.append(action["path"])
            elif action.get("type") == "lfs":
                if action["sha256"] not in repo.objects:
                    return self.error(h, 400, f"blob {action['sha256']} was never uploaded")
                added[action["path"]] = action["sha256"]
            else:
                added[action["path"]] = self.store(repo, base64.b64decode(action["content"]))
        cid = self.commit(repo, body["commit_message"], added, deleted)
        self.ok(h, {"CommitId": cid, "Revision": rev})

    def tag(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id, write=True)
        if repo is None:
            return
        body = h.json_body()
        with self.lock:
            if body["TagName"] in repo.tags:
                return self.error(h, 409, f"tag {body['TagName']} already exists")
            repo.tags[body["TagName"]] = repo.resolve(body["Ref"])
        self.ok(h, {"TagName": body["TagName"], "Ref": repo.tags[body["TagName"]]})

    def revisions(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id)
        if repo is not None:
            tags = [{"Revision": t, "CommitId": c} for t, c in repo.tags.items()]
            self.ok(h, {"RevisionMap": {"Branches": [{"Revision": repo.branch, "CommitId": repo.head}], "Tags": tags}})

    def tree(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        files = sorted(repo.files(h.query.get("Revision")).items())
        size, page = int(h.query.get("PageSize", 200)), int(h.query.get("PageNumber", 1))
        root = h.query.get("Root", "").strip("/")
        files = [(p, d) for p, d in files if not root or p.startswith(root + "/")]
        entries = [{"Path": p, "Name": p.rsplit("/", 1)[-1], "Type": "blob", "Size": len(self.blobs[d]), "Sha256": d,
                    "IsLFS": is_lfs(p, len(self.blobs[d]))} for p, d in files[(page - 1) * size:page * size]]
        self.ok(h, {"Files": entries})

    def download(self, h: _Handler, repo_id: str) -> None:
        repo = self._repo(h, repo_id)
        if repo is None:
            return
        commit = repo.resolve(h.query.get("Revision") or repo.branch)
        digest = repo.files(commit).get(h.query.get("FilePath", "")) if commit else None
        if digest is None:
            return self.error(h, 404, "file does not exist")
        h.reply(200, body=self.blobs[digest], headers={"ETag": f'"{digest}"'})


def _multipart(h: _Handler) -> dict[str, str]:
    """The fields of a multipart/form-data body (ModelScope's dataset create form)."""
    boundary = re.search(r"boundary=([^;]+)", h.headers.get("Content-Type", "")).group(1).strip('"')
    fields = {}
    for part in h.body.split(f"--{boundary}".encode()):
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            fields[name.group(1).decode()] = value.rstrip(b"\r\n").decode()
    return fields
