"""Reading past damage: a damaged record, member or stretch of bytes costs only itself, counted by reason."""

from __future__ import annotations

import gzip
import io
import logging
from collections import Counter

import pytest
from conftest import record_at
from warc_helpers import cc_records, members, page_url, response_index, with_content_length

from danqing import warcrecords
from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
from danqing.shard import ShardJob
from danqing.stages import extract
from danqing.stats import StageStats

PAGES = 6


def _extract(cfg: PipelineConfig, path) -> tuple[list[dict], StageStats]:
    stats = StageStats()
    rows = extract.process(ShardJob(cfg, SAMPLE_CRAWL_ID, "extract", 0, [str(path)]), stats).read_all().to_pylist()
    return rows, stats


def _write(tmp_path, parts: list[bytes], name: str = "d.warc.gz"):
    path = tmp_path / name
    path.write_bytes(b"".join(parts))
    return path


def _pages(rows: list[dict]) -> list[str]:
    return [r["page_url"] for r in rows]


ALL = [page_url(i) for i in range(PAGES)]
BUT_2 = [u for u in ALL if u != page_url(2)]


@pytest.mark.parametrize(("index", "length", "lost"), [
    (response_index(1) + 1, 0, []),  # a metadata record saying Content-Length: 0: only its languages go
    (response_index(1) + 1, 10**12, []),  # ... or a length past the end of the file
    (response_index(2), 10**9, [page_url(2)]),  # a response claiming a gigabyte
    (response_index(2), 40, [page_url(2)]),  # a response shorter than it is
    (response_index(2) - 1, 500, []),  # a request longer than it is
])
def test_a_bad_content_length_costs_only_its_record(cfg, tmp_path, index, length, lost):
    records = cc_records(PAGES)
    records[index] = with_content_length(records[index], length)
    rows, stats = _extract(cfg, _write(tmp_path, members(records)))
    assert _pages(rows) == [u for u in ALL if u not in lost]
    assert stats.errors == Counter({warcrecords.RECORD_MALFORMED: 1})
    for row in rows:  # every surviving row still points at its own record
        assert record_at(tmp_path, row).rec_headers.get_header("WARC-Target-URI") == row["page_url"]


@pytest.mark.parametrize("where", ["start", "middle", "crc"])
def test_a_garbled_member_costs_only_that_record(cfg, tmp_path, where):
    parts = members(cc_records(PAGES))
    bad = bytearray(parts[response_index(2)])
    bad[{"start": 12, "middle": len(bad) // 2, "crc": len(bad) - 6}[where]] ^= 0x55
    parts[response_index(2)] = bytes(bad)
    rows, stats = _extract(cfg, _write(tmp_path, parts))
    assert _pages(rows) == BUT_2
    assert stats.errors == Counter({warcrecords.WARC_CORRUPT: 1})
    assert {r["page_language"] for r in rows} == {"zho"}  # the others kept their metadata records


def test_junk_between_members_and_a_member_cut_short_mid_file(cfg, tmp_path):
    parts = members(cc_records(PAGES))
    parts.insert(response_index(1), b"\0" * 7 + b"<html>junk</html>")
    parts[response_index(3) + 1] = parts[response_index(3) + 1][:30]  # page 3's response, cut mid-member
    rows, stats = _extract(cfg, _write(tmp_path, parts))
    assert _pages(rows) == [u for u in ALL if u != page_url(3)]
    assert stats.errors == Counter({warcrecords.WARC_CORRUPT: 2})


@pytest.mark.parametrize("cut", [1, 40, 200])
def test_a_file_cut_inside_a_member_is_counted(cfg, tmp_path, cut):
    data = b"".join(members(cc_records(PAGES)))
    rows, stats = _extract(cfg, _write(tmp_path, [data[:-cut]]))
    assert _pages(rows) == ALL[: len(rows)] and len(rows) >= PAGES - 1
    assert stats.errors == Counter({warcrecords.WARC_TRUNCATED: 1})


@pytest.mark.parametrize(("data", "reason"), [
    (b"", warcrecords.WARC_EMPTY),
    (gzip.compress(b"", mtime=0)[:10], warcrecords.WARC_TRUNCATED),  # a bare gzip header
    (b"<!DOCTYPE html><html>not a WARC</html>", warcrecords.WARC_NOT_WARC),
    (b"\x28\xb5\x2f\xfd" + b"\0" * 40, warcrecords.WARC_NOT_WARC),  # zstd: not a format we read
])
def test_an_unreadable_file_is_counted_and_said(cfg, tmp_path, caplog, data, reason):
    path = _write(tmp_path, [data], "odd.warc.gz")
    with caplog.at_level(logging.WARNING, logger="danqing.warcrecords"):
        rows, stats = _extract(cfg, path)
    assert rows == [] and stats.errors == Counter({reason: 1})
    assert f"{path}:" in caplog.text and reason in caplog.text


def test_a_member_longer_than_any_record_switches_to_the_careful_path(cfg, tmp_path, monkeypatch):
    records = cc_records(PAGES)
    records[response_index(1) + 1] = with_content_length(records[response_index(1) + 1], 10**12)
    path = _write(tmp_path, members(records))
    monkeypatch.setattr(warcrecords, "_FAST_MAX_MEMBER", 700)  # FastWARC gives up at once; the rest is careful
    rows, stats = _extract(cfg, path)
    assert _pages(rows) == ALL and stats.errors == Counter({warcrecords.RECORD_MALFORMED: 1})


def test_records_come_with_their_member_spans():
    parts = members(cc_records(2))
    got = list(warcrecords.records(io.BytesIO(b"".join(parts)), lambda r: r.headers.get("WARC-Type"), StageStats()))
    starts = [sum(map(len, parts[:i])) for i in range(len(parts))]
    assert got == [(s, len(p), kind) for s, p, kind in
                   zip(starts, parts, ["warcinfo"] + ["request", "response", "metadata"] * 2, strict=True)]


def test_an_uncompressed_warc_reads_whole_and_counts_damage_it_cannot_pass(cfg, tmp_path):
    records = cc_records(PAGES)
    rows, stats = _extract(cfg, _write(tmp_path, records, "plain.warc"))
    assert _pages(rows) == ALL and not stats.errors
    records[response_index(3) + 1] = with_content_length(records[response_index(3) + 1], 3)
    rows, stats = _extract(cfg, _write(tmp_path, records, "plain.warc"))
    assert _pages(rows)[:3] == ALL[:3] and stats.errors == Counter({warcrecords.WARC_CORRUPT: 1})


def test_byte_ranges_with_a_damaged_record_keep_the_others_and_their_offsets(cfg, tmp_path):
    from danqing import warcsource

    parts = members(cc_records(PAGES))
    bad = bytearray(parts[response_index(2)])
    bad[len(bad) // 2] ^= 0x55
    parts[response_index(2)] = bytes(bad)
    path = _write(tmp_path, parts)
    starts = [sum(map(len, parts[:i])) for i in range(len(parts))]
    ranges = [(starts[response_index(p)], len(parts[response_index(p)])) for p in range(PAGES)]  # responses only
    rows, stats = _extract(cfg, warcsource.format_spec(str(path), ranges))
    assert _pages(rows) == BUT_2 and stats.errors == Counter({warcrecords.WARC_CORRUPT: 1})
    assert [(r["warc_record_offset"], r["warc_record_length"]) for r in rows] == \
        [span for p, span in enumerate(ranges) if p != 2]
