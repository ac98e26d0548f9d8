"""Open one shard input (a whole WARC, or byte ranges of one) as a stream of gzip members.

A spec is a WARC URI (https://, s3://, a local path), optionally followed by the records to
read: `URI#ranges=OFFSET-LENGTH,OFFSET-LENGTH` (decimal, sorted). Each range is whole gzip
members, so the concatenated ranges read like a .warc.gz. Positions in the stream map back to
offsets in the WARC file with `file_offset`, and a stream can start at any record boundary
(`start_offset`), so an interrupted shard resumes where it stopped.
"""

from __future__ import annotations

import bisect
import io as _io
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from danqing import http
from danqing.config import PipelineConfig, SourceConfig
from danqing.redact import redact

_RANGES = "#ranges="
_MAX_REQUEST_BYTES = 16 << 20  # a coalesced request never grows past this
_BUFFER_BYTES = 1 << 20


@dataclass(frozen=True)
class InputSpec:
    uri: str
    ranges: tuple[tuple[int, int], ...] = ()  # (offset, length); empty = the whole file

    def __str__(self) -> str:
        return format_spec(self.uri, self.ranges)


def format_spec(uri: str, ranges=()) -> str:
    """The spec string of `uri` restricted to `ranges` (coalesced); no ranges = the whole file."""
    if not ranges:
        return uri
    return uri + _RANGES + ",".join(f"{o}-{n}" for o, n in coalesce(ranges))


def parse_spec(spec: str) -> InputSpec:
    uri, sep, tail = spec.partition(_RANGES)
    if not sep:
        return InputSpec(spec)
    ranges = []
    for item in tail.split(","):
        off, _, length = item.partition("-")
        if not (off.isdigit() and length.isdigit()) or int(length) == 0:
            raise ValueError(redact(f"bad range {item!r} in spec {spec!r}"))
        ranges.append((int(off), int(length)))
    return InputSpec(uri, tuple(ranges))


def coalesce(ranges) -> list[tuple[int, int]]:
    """Sorted ranges with touching or overlapping ones merged: one range per run of adjacent records."""
    out: list[list[int]] = []
    for off, length in sorted(ranges):
        if out and off <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], off + length - out[-1][0])
        else:
            out.append([off, length])
    return [(o, n) for o, n in out]


def warc_filename(spec: str) -> str:
    """The name Common Crawl's index uses: the path from crawl-data/ on, else the file name."""
    path = spec.split("#", 1)[0]
    marker = path.find("crawl-data/")
    return path[marker:] if marker >= 0 else path.rsplit("/", 1)[-1]


def open_input(spec: str, cfg: PipelineConfig, start_offset: int = 0) -> BinaryIO:
    """A readable binary stream of the WARC records named by `spec`, from file offset `start_offset` on.

    `start_offset` must be a record boundary (0, or a value `file_offset` gave for a record).
    """
    parsed = parse_spec(spec)
    backend = _Backend(parsed.uri, cfg)
    if parsed.ranges:
        raw = _RangeRaw(backend, _trim(coalesce(parsed.ranges), start_offset), cfg.source)
    else:
        raw = _WholeRaw(backend, start_offset, cfg.source)
    return WarcStream(raw, _BUFFER_BYTES)


def file_offset(stream: BinaryIO, pos: int) -> int:
    """The WARC file offset of stream position `pos` (e.g. a record's stream_pos)."""
    return stream.file_offset(pos) if isinstance(stream, WarcStream) else pos


class WarcStream(_io.BufferedReader):
    """A buffered stream that knows where its bytes sit in the WARC file."""

    def file_offset(self, pos: int) -> int:
        return self.raw.file_offset(pos)

    @property
    def ranges_done(self) -> int:
        """Ranges read to the end (0 for a whole file until EOF): progress for the caller to report."""
        return self.raw.ranges_done


def _trim(ranges: list[tuple[int, int]], start: int) -> list[tuple[int, int]]:
    out = []
    for off, length in ranges:
        if off + length <= start:
            continue
        cut = max(0, start - off)
        out.append((off + cut, length - cut))
    return out


class _Backend:
    """Reads bytes of one URI: local file, http(s) with retries, or any fsspec store (s3...)."""

    def __init__(self, uri: str, cfg: PipelineConfig):
        self.uri, self.src = uri, cfg.source
        self.scheme = uri.split("://", 1)[0] if "://" in uri else "file"
        if self.scheme not in ("file", "http", "https"):
            from danqing import io

            self.fs, self.path = io.fs_for(uri, cfg.source.storage_options or cfg.storage_options)
        elif self.scheme == "file":
            self.path = uri.removeprefix("file://")

    def read(self, start: int, end: int) -> bytes:
        if self.scheme in ("http", "https"):
            return http.read_http(self.uri, self.src, start, end)
        if self.scheme == "file":
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read(end - start)
        else:
            data = http.with_retries(lambda: _fs_call(self.fs.cat_file, self.path, start=start, end=end),
                                     http.host_of(self.uri), self.src)
        if len(data) != end - start:
            raise http.SourceError(f"{self.uri}: asked for {end - start} bytes at {start}, got {len(data)}")
        return data

    def open(self, start: int):
        if self.scheme in ("http", "https"):
            return http.open_http(self.uri, self.src, start)
        f = open(self.path, "rb") if self.scheme == "file" else _fs_call(self.fs.open, self.path, "rb")
        f.seek(start)
        return f


def _fs_call(fn, *args, **kwargs):
    """Call an fsspec method, turning throttling and transient errors into Retryable."""
    try:
        return fn(*args, **kwargs)
    except (FileNotFoundError, PermissionError):
        raise
    except OSError as e:
        text = str(e)
        throttled = any(s in text for s in ("SlowDown", "503", "429", "Throttl"))
        raise http.Retryable(f"{type(e).__name__}: {text}", throttled=throttled) from e


class _WholeRaw(_io.RawIOBase):
    """A whole WARC from `start` on; an HTTP body cut mid-way is resumed with a Range request."""

    def __init__(self, backend: _Backend, start: int, src: SourceConfig):
        self.backend, self.src, self.start = backend, src, start
        self.pos = 0
        self.ranges_done = 0
        self._f = None

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def file_offset(self, pos: int) -> int:
        return self.start + pos

    def readinto(self, buf) -> int:
        failures = 0
        while True:
            if self._f is None:
                self._f = self.backend.open(self.start + self.pos)
            n, err = self._read_once(buf)
            if n is not None:
                self.pos += n
                if n == 0:
                    self.ranges_done = 1
                return n
            self._close_f()
            failures += 1
            if self.backend.scheme not in ("http", "https") or failures > self.src.retries:
                raise http.SourceError(f"{self.backend.uri}: read failed at {self.start + self.pos}: {err}")

    def _read_once(self, buf):
        import urllib3

        try:
            return self._f.readinto(buf), None
        except (OSError, urllib3.exceptions.HTTPError) as e:
            return None, e

    def _close_f(self) -> None:
        if self._f is not None:
            getattr(self._f, "release_conn", self._f.close)()
            self._f = None

    def close(self) -> None:
        self._close_f()
        super().close()


class _RangeRaw(_io.RawIOBase):
    """The bytes of a sorted range list, fetched a few requests ahead in the background.

    Ranges closer than `max_gap_bytes` share one request; the gap bytes are dropped.
    """

    def __init__(self, backend: _Backend, ranges: list[tuple[int, int]], src: SourceConfig):
        self.backend, self.ranges = backend, ranges
        self._starts = []  # stream position where each range begins
        pos = 0
        for _, length in ranges:
            self._starts.append(pos)
            pos += length
        self._requests = deque(_group(ranges, src.max_gap_bytes))
        self._pool = ThreadPoolExecutor(max_workers=max(1, src.prefetch)) if ranges else None
        self._ahead: deque[tuple[list, Future]] = deque()
        self._pieces: deque[memoryview] = deque()
        self._depth = max(1, src.prefetch)
        self.ranges_done = 0
        self._current: memoryview | None = None
        self._pos = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:  # fastwarc asks where the stream starts
        return self._pos

    def file_offset(self, pos: int) -> int:
        i = bisect.bisect_right(self._starts, pos) - 1
        if i < 0:
            return pos
        return self.ranges[i][0] + pos - self._starts[i]

    def _fill(self) -> bool:
        while self._requests and len(self._ahead) < self._depth:
            group = self._requests.popleft()
            start, end = group[0][0], group[-1][0] + group[-1][1]
            self._ahead.append((group, self._pool.submit(self.backend.read, start, end)))
        if not self._ahead:
            return False
        group, fut = self._ahead.popleft()
        data = memoryview(fut.result())
        base = group[0][0]
        for off, length in group:
            self._pieces.append(data[off - base: off - base + length])
        return True

    def readinto(self, buf) -> int:
        while self._current is None or not len(self._current):
            if self._current is not None:
                self.ranges_done += 1
            self._current = None
            if not self._pieces and not self._fill():
                return 0
            self._current = self._pieces.popleft()
        n = min(len(buf), len(self._current))
        buf[:n] = self._current[:n]
        self._current = self._current[n:]
        self._pos += n
        return n

    def close(self) -> None:
        if self._pool is not None:
            for _, fut in self._ahead:
                fut.cancel()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        super().close()


def _group(ranges: list[tuple[int, int]], max_gap: int) -> list[list[tuple[int, int]]]:
    """Split sorted ranges into requests: neighbours closer than `max_gap` share one request."""
    groups: list[list[tuple[int, int]]] = []
    for off, length in ranges:
        if groups:
            first, last = groups[-1][0], groups[-1][-1]
            gap = off - (last[0] + last[1])
            if gap <= max_gap and off + length - first[0] <= _MAX_REQUEST_BYTES:
                groups[-1].append((off, length))
                continue
        groups.append([(off, length)])
    return groups
