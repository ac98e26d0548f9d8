"""Common Crawl-shaped WARCs made in memory: warcinfo, then request, response and metadata per page,
each record its own gzip member, so tests can damage one member and see what survives."""

from __future__ import annotations

import gzip
import re
import zlib

CLD2_ZHO = b'languages-cld2: {"reliable":true,"languages":[{"code":"zh","code-iso-639-3":"zho"}]}\r\n'


def record(kind: str, url: str, block: bytes, extra: str = "", content_length: int | None = None) -> bytes:
    """One uncompressed WARC record; content_length overrides the true length (to damage it)."""
    n = len(block) if content_length is None else content_length
    rid = f"<urn:uuid:00000000-0000-0000-0000-{zlib.crc32(f'{kind} {url}'.encode()):012d}>"
    head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"WARC-Record-ID: {rid}\r\n{extra}Content-Length: {n}\r\n\r\n")
    return head.encode() + block + b"\r\n\r\n"


def page_url(i: int) -> str:
    return f"http://www.p{i}.test/a.html"


def page_records(i: int) -> list[bytes]:
    """Request, response (a Chinese page with one captioned image) and metadata of page i."""
    url = page_url(i)
    html = (f"<html><p>这是一个中文页面，介绍各种家居用品，第{i}页。</p>"
            f"<img src='/i{i}.jpg' alt='北欧风格实木餐桌椅组合家用小户型第{i}款'></html>").encode()
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
    response = record("response", url, http, "Content-Type: application/http; msgtype=response\r\n")
    rid = re.search(rb"WARC-Record-ID: (<[^>]+>)", response).group(1).decode()
    return [record("request", url, b"GET /a.html HTTP/1.1\r\nHost: x\r\n\r\n",
                   "Content-Type: application/http; msgtype=request\r\n"),
            response,
            record("metadata", url, b"fetchTimeMs: 9\r\n" + CLD2_ZHO,
                   f"WARC-Concurrent-To: {rid}\r\nContent-Type: application/warc-fields\r\n")]


def cc_records(pages: int) -> list[bytes]:
    return [record("warcinfo", "", b"software: danqing-tests\r\n")] + [r for i in range(pages) for r in page_records(i)]


def members(records: list[bytes]) -> list[bytes]:
    return [gzip.compress(r, mtime=0) for r in records]


def response_index(page: int) -> int:
    """Index of page's response among cc_records (warcinfo first, three records per page)."""
    return 1 + 3 * page + 1


def with_content_length(rec: bytes, n: int) -> bytes:
    """The record with its Content-Length header replaced by n (the block left as it was)."""
    return re.sub(rb"Content-Length: \d+", f"Content-Length: {n}".encode(), rec, count=1)
