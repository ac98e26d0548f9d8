"""Loopback servers and synthetic crawl data for the discover / plan / warcsource tests."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import io
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from danqing.sample.loopback import Loopback

FIXTURES = Path(__file__).parent / "fixtures" / "commoncrawl"

Reply = tuple[int, dict, bytes]
Handler = Callable[[str, dict], Reply]


class LoopbackServer(Loopback):
    """A threaded HTTP server on 127.0.0.1 whose replies come from `handler(path, headers)`."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[tuple[str, dict]] = []
        owner = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers + body cost a 40 ms delayed ACK

            def do_GET(self):
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.requests.append((self.path, headers))
                status, extra, body = owner.handler(self.path, headers)
                self.send_response(status)
                for k, v in extra.items():
                    if k != "X-Cut-After":
                        self.send_header(k, v)
                if "Content-Length" not in extra:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = extra.get("X-Cut-After")
                if cut is not None:  # promise the whole body, send part of it, hang up
                    self.wfile.write(body[: int(cut)])
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        httpd.daemon_threads = True
        super().__init__(httpd)
        self.url = f"http://{self.address}"


def range_reply(data: bytes, headers: dict) -> Reply:
    """Serve `data`, honouring a single `Range: bytes=a-b` header like S3 does."""
    spec = headers.get("range")
    if not spec:
        return 200, {"Content-Type": "application/octet-stream"}, data
    first, _, last = spec.removeprefix("bytes=").partition("-")
    start, end = int(first), (int(last) + 1 if last else len(data))
    if start >= len(data):
        return 416, {}, b""
    end = min(end, len(data))
    return 206, {"Content-Range": f"bytes {start}-{end - 1}/{len(data)}"}, data[start:end]


def static_files(root: Path) -> Handler:
    """Serve files under `root` by path, with Range support; 404 otherwise."""
    def handler(path: str, headers: dict) -> Reply:
        file = root / path.split("?", 1)[0].lstrip("/")
        if not file.is_file():
            return 404, {}, b"not found"
        return range_reply(file.read_bytes(), headers)
    return handler


def recorded_ranges(jsonl: Path) -> tuple[Handler, list[dict]]:
    """Replay the HTTP 206 replies recorded in a cdx_toolkit mock file; returns the handler and the replies."""
    replies = []
    for line in jsonl.read_text().splitlines():
        rec = json.loads(line)
        if rec["response_status_code"] != 206:
            continue
        cr = rec["response_headers"]["Content-Range"].removeprefix("bytes ")
        first, _, rest = cr.partition("-")
        last = rest.split("/", 1)[0]
        path = "/" + rec["url"].split("://", 1)[1].split("/", 1)[1]
        replies.append({"path": path, "start": int(first), "end": int(last) + 1,
                        "body": base64.b64decode(rec["response_text"]), "headers": rec["response_headers"]})

    def handler(path: str, headers: dict) -> Reply:
        for r in replies:
            if r["path"] == path and headers.get("range") == f"bytes={r['start']}-{r['end'] - 1}":
                return 206, {"Content-Range": r["headers"]["Content-Range"]}, r["body"]
        return 416, {}, b""
    return handler, replies


class Flaky:
    """Answer the first requests with canned failures, then pass through to `inner`."""

    def __init__(self, inner: Handler, failures: list[Reply]):
        self.inner, self.failures = inner, list(failures)
        self.lock = threading.Lock()

    def __call__(self, path: str, headers: dict) -> Reply:
        with self.lock:
            if self.failures:
                return self.failures.pop(0)
        return self.inner(path, headers)


SLOWDOWN = (503, {"Content-Type": "application/xml"},
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>SlowDown</Code>"
            b"<Message>Please reduce your request rate.</Message></Error>")


def too_many(retry_after: str = "1") -> Reply:
    return 429, {"Retry-After": retry_after}, b"Too Many Requests"


# --- synthetic WARCs and a columnar index built from them -------------------------------------

ZH_PAGE = '<html lang="zh"><body><img src="/a{i}.jpg" alt="春天的花园里开满了红色的花 {i}"></body></html>'
EN_PAGE = '<html lang="en"><body><img src="/b{i}.jpg" alt="a garden full of red flowers {i}"></body></html>'


def write_warc(path: Path, pages: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """Write (url, html) pages as gzipped WARC response records; returns (url, offset, length) of each."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    writer = WARCWriter(buf, gzip=True)
    for url, html in pages:
        http_headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")],
                                        protocol="HTTP/1.1")
        rec = writer.create_warc_record(url, "response", payload=io.BytesIO(html.encode()),
                                        http_headers=http_headers,
                                        warc_headers_dict={"WARC-Date": "2025-11-06T20:07:18Z"})
        writer.write_record(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    out = []
    with open(path, "rb") as f:
        it = ArchiveIterator(f)
        for rec in it:
            url = rec.rec_headers.get_header("WARC-Target-URI")
            rec.content_stream().read()
            out.append((url, it.get_record_offset(), it.get_record_length()))
    return out


def read_targets(stream) -> list[str]:
    """Target URIs of the response records in a WARC stream, read with warcio."""
    from warcio.archiveiterator import ArchiveIterator

    out = []
    for rec in ArchiveIterator(stream):
        if rec.rec_type == "response":
            rec.content_stream().read()
            out.append(rec.rec_headers.get_header("WARC-Target-URI"))
    return out


def index_schema() -> pa.Schema:
    """The columnar URL index schema, from the real cc-index-schema-flat.json."""
    types = {"string": pa.string(), "integer": pa.int32(), "short": pa.int16(),
             "long": pa.int64(), "timestamp": pa.timestamp("us", tz="UTC")}
    fields = json.loads((FIXTURES / "cc-index-schema-flat.json").read_text())["fields"]
    return pa.schema([pa.field(f["name"], types[f["type"]], f["nullable"]) for f in fields])


def index_row(crawl: str, url: str, warc: str, offset: int, length: int, langs: str | None,
              mime: str = "text/html", status: int = 200) -> dict:
    host = url.split("/")[2]
    row = {f.name: None for f in index_schema()}
    row.update(url_surtkey=",".join(reversed(host.split("."))) + ")/", url=url, url_host_name=host,
               url_protocol=url.split(":")[0], url_path="/" + url.split("/", 3)[-1],
               fetch_time=dt.datetime(2025, 11, 6, tzinfo=dt.UTC), fetch_status=status,
               content_mime_type=mime, content_mime_detected=mime, content_languages=langs,
               warc_filename=warc, warc_record_offset=offset, warc_record_length=length,
               warc_segment=warc.split("/")[3] if warc.count("/") > 3 else "", crawl=crawl, subset="warc")
    return row


def write_index(rows: list[dict], dest: Path, parts: int = 2) -> list[Path]:
    """Write rows as `parts` parquet files with the real schema; returns the files."""
    schema = index_schema()
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for p in range(parts):
        file = dest / f"part-{p:05d}.c000.gz.parquet"
        pq.write_table(pa.Table.from_pylist(rows[p::parts], schema=schema), file)
        files.append(file)
    return files


def write_paths(paths: list[str], dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.compress(("\n".join(paths) + "\n").encode(), mtime=0))
    return dest


@contextlib.contextmanager
def moto_s3(bucket: str = "commoncrawl"):
    """A real moto S3 server on loopback; yields (endpoint_url, boto3 client)."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    try:
        yield endpoint, client
    finally:
        server.stop()


def s3_options(endpoint: str) -> dict:
    return {"endpoint_url": endpoint, "key": "test", "secret": "test",
            "client_kwargs": {"region_name": "us-east-1"}}


def upload_tree(client, bucket: str, root: Path) -> None:
    for file in sorted(root.rglob("*")):
        if file.is_file():
            client.put_object(Bucket=bucket, Key=file.relative_to(root).as_posix(), Body=file.read_bytes())
