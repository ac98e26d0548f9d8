"""fsspec access for every URI (local path, file://, s3://, https://) and atomic writes."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq


def fs_for(uri: str, storage_options: dict | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
    return fs, path


def exists(uri: str, storage_options: dict | None = None) -> bool:
    fs, path = fs_for(uri, storage_options)
    return fs.exists(path)


def open_uri(uri: str, mode: str = "rb", storage_options: dict | None = None) -> IO:
    fs, path = fs_for(uri, storage_options)
    return fs.open(path, mode)


@contextlib.contextmanager
def atomic_write(uri: str, mode: str = "wb", storage_options: dict | None = None) -> Iterator[IO]:
    """Write to a temp name beside the target, then rename: readers never see a partial file.

    On object stores the upload itself is atomic, so the temp name is skipped there. A temp file
    left by a writer that was killed mid-write is removed by the next write to the same target.
    """
    fs, path = fs_for(uri, storage_options)
    parent = path.rsplit("/", 1)[0]
    fs.makedirs(parent, exist_ok=True)
    if "file" not in fs.protocol and "local" not in fs.protocol:
        with fs.open(path, mode) as f:
            yield f
        return
    remove_stale_temps(path)
    tmp = f"{path}{_TMP}{os.getpid()}-{uuid.uuid4().hex[:8]}-{_HOST}"
    try:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


_TMP = ".tmp-"  # target + _TMP + "<pid>-<random>-<host>": whose it is, so a dead writer's can be told apart
_HOST = socket.gethostname()


def remove_stale_temps(path: str) -> list[str]:
    """Remove the temp files of earlier writes to `path` whose writer is gone; returns their paths."""
    folder, name = os.path.split(path)
    removed = []
    try:
        entries = [e for e in os.scandir(folder or ".") if e.name.startswith(name + _TMP)]
    except FileNotFoundError:
        return removed
    for entry in entries:
        if _writer_gone(entry.name[len(name + _TMP):], entry):
            with contextlib.suppress(FileNotFoundError):
                os.remove(entry.path)
                removed.append(entry.path)
    return removed


_OTHER_HOST_STALE_S = 86_400  # another machine's writer (a shared disk) cannot be asked: a day-old temp is its last


def _writer_gone(tag: str, entry: os.DirEntry) -> bool:
    """The writer of a temp tagged "<pid>-<random>-<host>" no longer runs (a tag without a pid: an old one)."""
    pid, _, rest = tag.partition("-")
    if not pid.isdigit() or not rest:
        return True
    if rest.partition("-")[2] != _HOST:
        return time.time() - entry.stat().st_mtime > _OTHER_HOST_STALE_S
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def write_parquet(table: pa.Table | list[dict], uri: str, schema: pa.Schema | None = None,
                  storage_options: dict | None = None) -> None:
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pylist(table, schema=schema)
    with atomic_write(uri, storage_options=storage_options) as f:
        pq.write_table(table, f, compression="zstd")


def read_parquet(uri: str, columns: list[str] | None = None, storage_options: dict | None = None) -> pa.Table:
    with open_uri(uri, storage_options=storage_options) as f:
        return pq.read_table(f, columns=columns)


def write_json(obj: Any, uri: str, storage_options: dict | None = None) -> None:
    with atomic_write(uri, "wb", storage_options) as f:
        f.write(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False).encode())


def read_json(uri: str, storage_options: dict | None = None) -> Any:
    with open_uri(uri, storage_options=storage_options) as f:
        return json.loads(f.read())


def checksum(uri: str, storage_options: dict | None = None) -> str:
    h = hashlib.sha256()
    with open_uri(uri, storage_options=storage_options) as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove(uri: str, storage_options: dict | None = None) -> None:
    fs, path = fs_for(uri, storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)
