"""Resume cache of one shard: every fetched result, written in chunks as it comes.

A killed run leaves its finished chunks; the rerun reads them and fetches only what is missing
(or failed in a way the resume mode retries). Keyed by URL and by the decode settings fingerprint.
The folder is the shard's scratch (ShardJob.scratch): deleted once the shard is done, so only a
failed or killed run leaves it.
"""

from __future__ import annotations

import json
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from danqing import io

_SCHEMA = pa.schema([("url", pa.string()), ("fingerprint", pa.string()), ("result", pa.string()),
                     ("jpg", pa.binary())])


class ResultCache:
    """Chunks of (url, fingerprint, result json, stored jpg) under `{shard prefix}_cache/`."""

    def __init__(self, folder: str, fingerprint: str, storage_options: dict | None = None):
        self.folder, self.fingerprint, self.so = folder.rstrip("/"), fingerprint, storage_options
        self._pending: list[tuple[str, dict]] = []

    def load(self) -> dict[str, dict]:
        """url -> result of every earlier run with the same settings; later chunks win."""
        fs, path = io.fs_for(self.folder, self.so)
        if not fs.exists(path):
            return {}
        out: dict[str, dict] = {}
        for chunk in sorted(fs.glob(f"{path}/*.parquet")):
            try:
                with fs.open(chunk, "rb") as f:
                    rows = pq.read_table(f).to_pylist()
            except Exception:  # noqa: BLE001 - a chunk cut by a kill is just not there
                continue
            for row in rows:
                if row["fingerprint"] == self.fingerprint:
                    out[row["url"]] = {**json.loads(row["result"]), "jpg": row["jpg"]}
        return out

    def add(self, url: str, result: dict) -> None:
        self._pending.append((url, result))

    def __len__(self) -> int:
        return len(self._pending)

    def take(self) -> list[tuple[str, dict]]:
        batch, self._pending = self._pending, []
        return batch

    def write(self, batch: list[tuple[str, dict]]) -> None:
        """Write one chunk atomically (callable from a thread)."""
        if not batch:
            return
        rows = [{"url": url, "fingerprint": self.fingerprint, "jpg": r.get("jpg"),
                 "result": json.dumps({k: v for k, v in r.items() if k != "jpg"}, sort_keys=True)}
                for url, r in batch]
        name = f"{self.folder}/{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        with io.atomic_write(name, "wb", self.so) as f:
            pq.write_table(pa.Table.from_pylist(rows, schema=_SCHEMA), f, compression="none")
