"""Reading whole WARCs and byte ranges over local files, loopback HTTP and moto S3."""

from __future__ import annotations

import time

import pytest
from source_helpers import (
    EN_PAGE,
    FIXTURES,
    SLOWDOWN,
    ZH_PAGE,
    Flaky,
    LoopbackServer,
    moto_s3,
    range_reply,
    read_targets,
    recorded_ranges,
    s3_options,
    static_files,
    too_many,
    write_warc,
)

from danqing import http, ratelimit, warcsource
from danqing.config import PipelineConfig

WARC = "crawl-data/CC-MAIN-2099-01/segments/1/warc/CC-MAIN-test-00000.warc.gz"


@pytest.fixture
def fast(cfg) -> PipelineConfig:
    """Retries that back off in milliseconds, so failure tests run quickly."""
    return cfg.model_copy(update={"source": cfg.source.model_copy(update={"backoff_s": 0.01, "retries": 3})})


@pytest.fixture
def warc(tmp_path):
    """A gzipped WARC of 8 pages, alternately Chinese and English, and its records' (url, offset, length)."""
    pages = [(f"https://example.cn/p{i}", (ZH_PAGE if i % 2 == 0 else EN_PAGE).format(i=i)) for i in range(8)]
    root = tmp_path / "site"
    return root, write_warc(root / WARC, pages)


@pytest.mark.parametrize("spec, expected", [
    ("s3://b/x.warc.gz", ("s3://b/x.warc.gz", ())),
    ("https://h/x.warc.gz#ranges=10-5,100-7", ("https://h/x.warc.gz", ((10, 5), (100, 7)))),
    ("/tmp/a b.warc.gz#ranges=0-1", ("/tmp/a b.warc.gz", ((0, 1),))),
])
def test_parse_spec(spec, expected):
    parsed = warcsource.parse_spec(spec)
    assert (parsed.uri, parsed.ranges) == expected
    assert str(parsed) == spec


@pytest.mark.parametrize("bad", ["u#ranges=", "u#ranges=1-", "u#ranges=a-3", "u#ranges=5-0", "u#ranges=1-2;3-4"])
def test_parse_spec_rejects(bad):
    with pytest.raises(ValueError):
        warcsource.parse_spec(bad)


def test_coalesce_merges_adjacent_and_overlapping():
    assert warcsource.coalesce([(30, 5), (0, 10), (10, 10), (25, 5), (18, 4)]) == [(0, 22), (25, 10)]
    assert warcsource.format_spec("u", [(10, 10), (0, 10), (40, 1)]) == "u#ranges=0-20,40-1"
    assert warcsource.format_spec("u", []) == "u"


def test_warc_filename():
    assert warcsource.warc_filename(f"https://data.commoncrawl.org/{WARC}#ranges=0-1") == WARC
    assert warcsource.warc_filename("/x/y/local.warc.gz") == "local.warc.gz"


@pytest.mark.parametrize("jsonl", ["test_warc_prefix_1.jsonl"])
def test_recorded_commoncrawl_range_replies_read_as_warc(cfg, jsonl):
    """Real 206 replies of data.commoncrawl.org, replayed: each range is one valid gzipped WARC record."""
    handler, replies = recorded_ranges(FIXTURES / "cdx_toolkit_mock" / jsonl)
    assert len(replies) == 2
    with LoopbackServer(handler) as srv:
        for r in replies:
            spec = warcsource.format_spec(srv.url + r["path"], [(r["start"], r["end"] - r["start"])])
            with warcsource.open_input(spec, cfg) as f:
                from warcio.archiveiterator import ArchiveIterator

                records = [(rec.rec_type, rec.rec_headers.get_header("WARC-Target-URI"),
                            len(rec.content_stream().read())) for rec in ArchiveIterator(f)]
            assert len(records) == 1
            rec_type, target, size = records[0]
            assert rec_type == "response" and "commoncrawl.org" in target and size > 0
            assert warcsource.warc_filename(spec).startswith("crawl-data/CC-MAIN-2025-33/")


def _backends(root, kind, stack):
    """The base URI of `root` served as local files, loopback HTTP, or moto S3."""
    if kind == "local":
        return str(root) + "/", {}
    if kind == "http":
        srv = stack.enter_context(LoopbackServer(static_files(root)))
        return srv.url + "/", {}
    endpoint, client = stack.enter_context(moto_s3())
    client.put_object(Bucket="commoncrawl", Key=WARC, Body=(root / WARC).read_bytes())
    return "s3://commoncrawl/", s3_options(endpoint)


@pytest.mark.parametrize("kind", ["local", "http", "s3"])
def test_ranges_read_only_selected_records_with_file_offsets(cfg, warc, kind):
    import contextlib

    from warcio.archiveiterator import ArchiveIterator

    root, records = warc
    chosen = [records[i] for i in (0, 1, 4, 6)]  # 0+1 adjacent: coalesced into one range
    with contextlib.ExitStack() as stack:
        base, so = _backends(root, kind, stack)
        cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"storage_options": so,
                                                                             "max_gap_bytes": 0})})
        spec = warcsource.format_spec(base + WARC, [(o, n) for _, o, n in chosen])
        assert len(warcsource.parse_spec(spec).ranges) == 3  # 0+1 coalesced
        with warcsource.open_input(spec, cfg) as f:
            it = ArchiveIterator(f)
            got = []
            for rec in it:
                rec.content_stream().read()
                got.append((rec.rec_headers.get_header("WARC-Target-URI"),
                            warcsource.file_offset(f, it.get_record_offset()), it.get_record_length()))
            assert f.ranges_done == 3
    assert got == chosen


def test_nearby_ranges_share_one_request_and_drop_the_gap(cfg, warc):
    root, records = warc
    chosen = [records[i] for i in (0, 2, 4)]
    with LoopbackServer(static_files(root)) as srv:
        spec = warcsource.format_spec(f"{srv.url}/{WARC}", [(o, n) for _, o, n in chosen])
        with warcsource.open_input(spec, cfg) as f:  # default max_gap_bytes spans the skipped records
            assert read_targets(f) == [u for u, _, _ in chosen]
        assert len(srv.requests) == 1
        cfg = cfg.model_copy(update={"source": cfg.source.model_copy(update={"max_gap_bytes": 0})})
        with warcsource.open_input(spec, cfg) as f:
            assert read_targets(f) == [u for u, _, _ in chosen]
        assert len(srv.requests) == 1 + 3


@pytest.mark.parametrize("ranged", [False, True])
def test_resume_from_a_record_offset(cfg, warc, ranged):
    root, records = warc
    spec = str(root / WARC)
    if ranged:
        spec = warcsource.format_spec(spec, [(o, n) for _, o, n in records[1:]])
    resume_at = records[5][1]
    with warcsource.open_input(spec, cfg, start_offset=resume_at) as f:
        assert read_targets(f) == [u for u, _, _ in records[5:]]
        assert f.file_offset(0) == resume_at


def test_whole_warc_over_http_resumes_a_cut_body(cfg, warc):
    root, records = warc
    data = (root / WARC).read_bytes() * 1500  # a few MB of valid gzip members: longer than the read buffer
    calls = []

    def handler(path, headers):
        calls.append(headers.get("range"))
        status, extra, body = range_reply(data, headers)
        if len(calls) == 1:
            extra = {**extra, "X-Cut-After": str(len(body) // 2)}
        return status, extra, body

    with LoopbackServer(handler) as srv, warcsource.open_input(f"{srv.url}/{WARC}", cfg) as f:
        assert f.read() == data
    assert len(calls) == 2 and calls[0] is None
    resumed_at = int(calls[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= len(data) // 2


def test_fastwarc_reads_a_range_stream(cfg, warc):
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    root, records = warc
    spec = warcsource.format_spec(str(root / WARC), [(o, n) for _, o, n in records[3:6]])
    with warcsource.open_input(spec, cfg) as f:
        got = [(r.headers["WARC-Target-URI"], warcsource.file_offset(f, r.stream_pos))
               for r in ArchiveIterator(f, record_types=WarcRecordType.response)]
    assert got == [(u, o) for u, o, _ in records[3:6]]


def test_slowdown_and_429_are_retried_honouring_retry_after(fast, warc):
    root, records = warc
    _, off, length = records[2]
    flaky = Flaky(static_files(root), [SLOWDOWN, too_many("1")])
    with LoopbackServer(flaky) as srv:
        spec = warcsource.format_spec(f"{srv.url}/{WARC}", [(off, length)])
        started = time.monotonic()
        with warcsource.open_input(spec, fast) as f:
            assert read_targets(f) == [records[2][0]]
        waited = time.monotonic() - started
        bucket = ratelimit.bucket(http.host_of(srv.url), fast.source.requests_per_s, fast.source.burst)
    assert len(srv.requests) == 3
    assert waited >= 0.9  # the 429's Retry-After: 1
    assert bucket.rate < bucket.max_rate  # throttling slowed this worker down


def test_retries_run_out_and_404_fails_at_once(fast, warc):
    root, _ = warc
    flaky = Flaky(static_files(root), [SLOWDOWN] * 4)
    with LoopbackServer(flaky) as srv:
        with pytest.raises(http.SourceError, match="gave up after 4 tries"):
            http.read_http(f"{srv.url}/{WARC}", fast.source, 0, 10)
        assert len(srv.requests) == 4
        with pytest.raises(FileNotFoundError):
            http.read_http(f"{srv.url}/missing.warc.gz", fast.source, 0, 10)
        assert len(srv.requests) == 5


@pytest.mark.parametrize("value, expected", [("3", 3.0), (None, None), ("soon", None),
                                             ("Wed, 21 Oct 2015 07:28:10 GMT", 10.0)])
def test_retry_after(value, expected):
    now = 1445412480.0  # 2015-10-21 07:28:00 UTC
    assert http.retry_after(value, now=now) == expected


def test_token_bucket_bounds_the_rate():
    clock = [0.0]
    bucket = ratelimit.TokenBucket(10, 2, clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    for _ in range(22):
        bucket.acquire()
    assert clock[0] == pytest.approx(2.0)  # 2 from the burst, then 20 at 10/s
    bucket.slow_down()
    assert bucket.rate == 5
    for _ in range(40):
        bucket.recover()
    assert bucket.rate == 10
