"""The records of one WARC stream, read past damage: a damaged record costs that record, not the file.

Common Crawl writes each record as its own gzip member, so a reader can start afresh at any member.
FastWARC reads the stream (the fast path); a record is passed on only once the next one has been
parsed, which shows it was whole. When FastWARC fails, or reads one record for longer than any
member could be (a huge Content-Length swallowing the records after it), or the stream ends, the
bytes from the last record's member on are read again member by member (the careful path): each
member is inflated on its own, checked to hold whole records (Content-Length agrees with what the
member holds), and handed to FastWARC alone. A damaged member, junk between members or a record
that disagrees with its length is skipped and counted with its reason and byte range; a file cut
inside a member counts as truncated. The careful path then reads the rest of the file.

An uncompressed WARC has no members to start afresh at: damage there ends the file (counted).
"""

from __future__ import annotations

import io
import logging
import re
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

from danqing.redact import redact
from danqing.stats import StageStats

# Counted with stats.error, one per damaged range or record; each also logged with its byte range.
WARC_EMPTY = "warc_empty"  # a file with no bytes at all
WARC_NOT_WARC = "warc_not_warc"  # neither gzip nor a WARC header: nothing of it can be read
WARC_CORRUPT = "warc_corrupt"  # a damaged gzip member or junk between members: skipped up to the next whole member
WARC_TRUNCATED = "warc_truncated"  # the file ends inside a gzip member (or a record shorter than it says)
RECORD_MALFORMED = "record_malformed"  # a whole member whose record disagrees with its Content-Length or has no header
RECORD_TOO_LARGE = "record_too_large"  # a member inflating past _MAX_RECORD_BYTES (a bomb, or no page of ours)
RECORD_CORRUPT = "record_corrupt"  # a whole, well-sized record that FastWARC cannot parse

_GZIP = b"\x1f\x8b\x08"
_WARC = b"WARC/"
_CHUNK = 1 << 16
# A member FastWARC reads for longer than this is not a record: Common Crawl truncates payloads at 1 MiB.
_FAST_MAX_MEMBER = 16 << 20
_MAX_RECORD_BYTES = 32 << 20  # inflated; the careful path holds one member at a time
_CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*(\d+)[ \t]*\r?\n", re.I)

log = logging.getLogger(__name__)
T = TypeVar("T")


def records(stream: BinaryIO, handle: Callable[[Any], T], stats: StageStats, name: str = "") -> Iterator[
        tuple[int, int, T]]:
    """(stream position, member length, handle(record)) of every whole record, in order.

    `handle` runs while FastWARC's record is current (it may read the body) and must not count or
    keep anything itself: its result is dropped when the record turns out damaged. Damage is
    counted in `stats` by reason and logged with its byte range; a failing source is raised.
    """
    head = b""
    while len(head) < len(_WARC) and (more := stream.read(len(_WARC) - len(head))):
        head += more
    report = _Reporter(stats, name)
    if not head:
        report(WARC_EMPTY, 0, 0)
        return
    gzipped = head.startswith(_GZIP)
    if not gzipped and not head.startswith(_WARC):
        report(WARC_NOT_WARC, 0, None)
        return
    tail = _Tail(stream, head, keep=gzipped)
    held_pos, held = 0, []  # records FastWARC gave at held_pos, passed on once a later position starts
    failed = False
    from fastwarc.warc import ArchiveIterator

    it = iter(ArchiveIterator(tail, parse_http=False, auto_decode="none"))
    while True:
        try:
            record = next(it, None)
        except BaseException as e:  # noqa: B036 (FastWARC raises Rust panics as BaseException)
            if isinstance(e, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            failed = True
            break
        if record is None:
            break
        pos = record.stream_pos
        if pos > held_pos and held:
            for value in held:
                yield held_pos, pos - held_pos, value
            held = []
            tail.keep_from(pos)
        held_pos = pos
        held.append(handle(record))
    if tail.error is not None:  # the source failed (network, store): a retry of the task may succeed
        raise tail.error
    if gzipped:  # the held records and whatever follows, member by member
        yield from _careful(tail.replay(held_pos), held_pos, handle, report)
    elif failed:  # nothing to resync at: the held record and the rest of the file are lost
        report(WARC_CORRUPT, held_pos, None)
    else:
        for value in held:
            yield held_pos, tail.pos - held_pos, value


_WHAT = {
    WARC_EMPTY: "the file is empty",
    WARC_NOT_WARC: "not a WARC file (neither gzip nor a WARC header)",
    WARC_CORRUPT: "damaged gzip data",
    WARC_TRUNCATED: "the file ends inside a record",
    RECORD_MALFORMED: "a record that disagrees with its Content-Length",
    RECORD_TOO_LARGE: f"a record larger than {_MAX_RECORD_BYTES >> 20} MiB inflated",
    RECORD_CORRUPT: "a record that cannot be parsed",
}


class _Reporter:
    """Counts damage by reason and logs where it was: one line per damaged stretch."""

    def __init__(self, stats: StageStats, name: str):
        self.stats, self.name = stats, redact(name) if name else "WARC input"

    def __call__(self, reason: str, start: int, end: int | None) -> None:
        self.stats.error(reason)
        span = f"bytes {start}-{end}" if end is not None else f"bytes {start}-end"
        log.warning("%s: %s (%s): %s skipped", self.name, _WHAT[reason], reason, span)


class _Tail:
    """The stream as FastWARC reads it: counts bytes, keeps those since the held records' member
    (to read them again after damage), keeps a source failure for the caller, and ends a record
    that runs past _FAST_MAX_MEMBER by answering end-of-file."""

    def __init__(self, stream: BinaryIO, head: bytes, keep: bool):
        self.stream, self.head, self.keep = stream, head, keep
        self.pos = 0  # bytes handed to FastWARC
        self.kept: deque[bytes] = deque()
        self.kept_from = 0  # stream position of kept[0]
        self.kept_bytes = 0
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        if self.error is not None or self.kept_bytes > _FAST_MAX_MEMBER:
            return b""
        if self.head:
            data, self.head = self.head, b""
        else:
            try:
                data = self.stream.read(size)
            except BaseException as e:  # noqa: B036 (handed back to the caller past FastWARC)
                self.error = e
                return b""
        self.pos += len(data)
        if self.keep:
            self.kept.append(data)
            self.kept_bytes += len(data)
        else:
            self.kept_from = self.pos
        return data

    def tell(self) -> int:
        return self.pos

    def keep_from(self, pos: int) -> None:
        """Forget what lies before stream position `pos` (a record FastWARC has parsed past)."""
        kept = self.kept
        while kept and self.kept_from + len(kept[0]) <= pos:
            first = kept.popleft()
            self.kept_from += len(first)
            self.kept_bytes -= len(first)

    def replay(self, pos: int) -> Callable[[int], bytes]:
        """A read function over the stream from position `pos` on: the kept bytes, then the rest."""
        pending = b"".join(self.kept)[pos - self.kept_from:]
        self.kept.clear()
        stream = self.stream

        def read(size: int) -> bytes:
            nonlocal pending
            if pending:
                data, pending = pending[:size], pending[size:]
                return data
            return stream.read(size)

        return read


def _careful(read: Callable[[int], bytes], start: int, handle: Callable[[Any], T], report: _Reporter) -> Iterator[
        tuple[int, int, T]]:
    """The careful path: each whole gzip member from stream position `start`, checked and parsed alone."""
    from fastwarc.warc import ArchiveIterator

    for pos, length, data in _members(read, start, report):
        if not _whole_records(data):
            report(RECORD_MALFORMED, pos, pos + length)
            continue
        try:
            for record in ArchiveIterator(io.BytesIO(data), parse_http=False, auto_decode="none"):
                yield pos, length, handle(record)
        except Exception:  # checked above, so this is rare: the member's later records go with it
            report(RECORD_CORRUPT, pos, pos + length)


def _members(read: Callable[[int], bytes], start: int, report: _Reporter) -> Iterator[tuple[int, int, bytes]]:
    """(position, length, inflated bytes) of each whole gzip member; damaged stretches are reported and skipped."""
    buf = _Buffer(read, start)
    pos = start
    damaged: tuple[str, int] | None = None  # reason and start of the stretch being skipped
    while buf.has(pos):
        status, end, data = _inflate(buf, pos) if buf.startswith(_GZIP, pos) else ("junk", pos, b"")
        if status == "cut":
            if damaged is not None:
                report(damaged[0], damaged[1], pos)
            report(WARC_TRUNCATED, pos, end)
            return
        if status in ("ok", "large"):
            if damaged is not None:
                report(damaged[0], damaged[1], pos)
                damaged = None
            if status == "large":
                report(RECORD_TOO_LARGE, pos, end)
            else:
                yield pos, end - pos, data
            pos = end
            buf.drop(pos)
            continue
        if damaged is None:  # junk or a corrupt member: look for the next member that inflates whole
            damaged = (WARC_CORRUPT, pos)
        pos = buf.find(_GZIP, pos + 1)
        buf.drop(pos)
    if damaged is not None:
        report(damaged[0], damaged[1], pos)


def _inflate(buf: _Buffer, pos: int) -> tuple[str, int, bytes]:
    """Inflate the member at `pos`: ("ok", end, data), ("large", end, b""), ("cut", end of file, b"") or
    ("corrupt", pos, b"")."""
    d = zlib.decompressobj(31)  # gzip wrapper: header, CRC-32 and size are checked
    out: list[bytes] = []
    size, at = 0, pos
    while not d.eof:
        chunk = buf.get(at, _CHUNK)
        try:
            if not chunk:  # the end of the stream: output still held back may finish the member
                size += len(last := d.flush())
                out.append(last)
                if d.eof:
                    break
                return "cut", at, b""
            piece = d.decompress(chunk, _CHUNK * 16)
            while True:
                size += len(piece)
                if size <= _MAX_RECORD_BYTES:
                    out.append(piece)
                if d.eof or not d.unconsumed_tail:
                    break
                piece = d.decompress(d.unconsumed_tail, _CHUNK * 16)
        except zlib.error:
            return "corrupt", pos, b""
        at += len(chunk) - len(d.unused_data)
    if size > _MAX_RECORD_BYTES:
        return "large", at, b""
    return "ok", at, b"".join(out)


def _whole_records(data: bytes) -> bool:
    """The inflated member is whole WARC records: a header, Content-Length bytes, then only line ends."""
    pos, n = 0, len(data)
    while pos < n:
        if not data.startswith(_WARC, pos):
            return False
        end = data.find(b"\r\n\r\n", pos)
        if end < 0:
            return False
        match = _CONTENT_LENGTH.search(data, pos, end + 2)
        if match is None:
            return False
        pos = end + 4 + int(match.group(1))
        if pos > n:
            return False
        while pos < n and data[pos] in b"\r\n":
            pos += 1
    return True


class _Buffer:
    """Bytes of a read function from stream position `base` on, read as they are asked for."""

    def __init__(self, read: Callable[[int], bytes], base: int):
        self.read, self.base, self.data, self.eof = read, base, b"", False

    def _fill(self, end: int) -> None:
        while not self.eof and self.base + len(self.data) < end:
            more = self.read(_CHUNK)
            if not more:
                self.eof = True
            self.data += more

    def has(self, pos: int) -> bool:
        self._fill(pos + 1)
        return pos < self.base + len(self.data)

    def get(self, pos: int, size: int) -> bytes:
        self._fill(pos + size)
        return self.data[pos - self.base: pos - self.base + size]

    def startswith(self, prefix: bytes, pos: int) -> bool:
        return self.get(pos, len(prefix)) == prefix

    def find(self, sub: bytes, pos: int) -> int:
        """The next position of `sub` at or after `pos`, or the end of the stream."""
        while True:
            i = self.data.find(sub, pos - self.base)
            if i >= 0:
                return self.base + i
            if self.eof:
                return self.base + len(self.data)
            self._fill(self.base + len(self.data) + _CHUNK)

    def drop(self, pos: int) -> None:
        cut = pos - self.base
        if cut > 0:
            self.data, self.base = self.data[cut:], pos
