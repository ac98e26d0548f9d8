"""Damaged WARCs, generated: cuts, byte flips in and between members, bad and huge Content-Length,
junk, bombs, empty, non-gzip, a folder, a missing file. Properties, not counts: nothing raises or
hangs, damage loses at most the pages whose own response member it touched, a loss is always
counted with a reason, and every row still reads back its record."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys

import pytest
from conftest import ROOT, record_at
from warc_helpers import cc_records, members, page_url, record, response_index, with_content_length

from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
from danqing.shard import ShardJob
from danqing.stages import extract
from danqing.stats import StageStats

PAGES = 12
SEED = 20260114
pytestmark = pytest.mark.timeout(120)


def _layout():
    """The clean WARC's members and, per page, the byte span of its response member."""
    parts = members(cc_records(PAGES))
    starts = [sum(map(len, parts[:i])) for i in range(len(parts) + 1)]
    spans = {page_url(p): (starts[response_index(p)], starts[response_index(p) + 1]) for p in range(PAGES)}
    return parts, b"".join(parts), spans


PARTS, CLEAN, SPANS = _layout()


def _extract(tmp_path, data: bytes, name: str = "d.warc.gz"):
    path = tmp_path / name
    path.write_bytes(data)
    cfg = PipelineConfig.from_overrides({"root": str(tmp_path / "data")})
    stats = StageStats()
    rows = extract.process(ShardJob(cfg, SAMPLE_CRAWL_ID, "extract", 0, [str(path)]), stats).read_all().to_pylist()
    return rows, stats


def _check(tmp_path, rows: list[dict], stats: StageStats, touched: list[tuple[int, int]]) -> None:
    """Damage at byte ranges `touched` costs at most the pages whose response member it overlaps."""
    got = [r["page_url"] for r in rows]
    assert len(got) == len(set(got))  # nothing read twice
    hit = {url for url, (a, b) in SPANS.items() if any(s < b and e > a for s, e in touched)}
    assert set(SPANS) - hit <= set(got)
    assert set(got) <= set(SPANS)  # no page made up from pieces of others
    if len(got) < PAGES:
        assert stats.errors  # a loss always has a reason
    for row in rows:
        assert record_at(tmp_path, row).rec_headers.get_header("WARC-Target-URI") == row["page_url"]


def test_the_clean_file_reads_whole(tmp_path):
    rows, stats = _extract(tmp_path, CLEAN)
    assert [r["page_url"] for r in rows] == list(SPANS) and not stats.errors


@pytest.mark.parametrize("cut", sorted(random.Random(SEED).sample(range(1, len(CLEAN)), 30)))
def test_a_file_cut_anywhere(tmp_path, cut):
    rows, stats = _extract(tmp_path, CLEAN[:cut])
    _check(tmp_path, rows, stats, [(cut, len(CLEAN))])
    if cut not in {sum(map(len, PARTS[:i])) for i in range(len(PARTS))}:  # cut inside a member
        assert stats.errors


@pytest.mark.parametrize("seed", range(30))
def test_byte_flips_inside_and_between_members(tmp_path, seed):
    rng = random.Random(SEED + seed)
    data = bytearray(CLEAN)
    flips = sorted(rng.sample(range(len(data)), rng.choice([1, 1, 2, 3])))
    for at in flips:
        data[at] ^= rng.randrange(1, 256)
    rows, stats = _extract(tmp_path, bytes(data))
    _check(tmp_path, rows, stats, [(at, at + 1) for at in flips])


@pytest.mark.parametrize("seed", range(8))
def test_junk_inserted_between_members(tmp_path, seed):
    rng = random.Random(SEED - seed)
    parts = list(PARTS)
    at = rng.randrange(1, len(parts))
    junk = rng.choice([b"\0" * rng.randrange(1, 600), rng.randbytes(rng.randrange(1, 600)), b"\x1f\x8b\x08\x00junk",
                       gzip.compress(b"not a WARC record\r\n\r\n", mtime=0)])
    parts.insert(at, junk)
    rows, stats = _extract(tmp_path, b"".join(parts))
    assert [r["page_url"] for r in rows] == list(SPANS) and stats.errors


@pytest.mark.parametrize("index", range(1, len(PARTS)))
@pytest.mark.parametrize("length", ["0", "1", "-1", "x", "shorter", "longer", "10000000000000"])
def test_a_bad_content_length_on_any_record(tmp_path, index, length):
    records = cc_records(PAGES)
    true = len(records[index].split(b"\r\n\r\n", 1)[1]) - 4
    value = {"shorter": true // 2, "longer": true + 40}.get(length, length)
    records[index] = with_content_length(records[index], value) if str(value).lstrip("-").isdigit() else \
        records[index].replace(f"Content-Length: {true}".encode(), f"Content-Length: {value}".encode())
    rows, stats = _extract(tmp_path, b"".join(members(records)))
    damaged = SPANS.get(records[index].split(b"WARC-Target-URI: ")[1].split(b"\r\n")[0].decode()) \
        if b"WARC-Type: response" in records[index] else None
    _check(tmp_path, rows, stats, [damaged] if damaged else [])
    assert len(rows) >= PAGES - 1


def test_bombs_stay_bounded_in_memory(tmp_path):
    """Members inflating to 300 MB each, in the middle (FastWARC skips it) and last (the careful path)."""
    bomb = gzip.compress(record("resource", "http://bomb.test/", b"\0" * 300_000_000), compresslevel=1, mtime=0)
    path = tmp_path / "bomb.warc.gz"
    path.write_bytes(b"".join(PARTS[:4]) + bomb + b"".join(PARTS[4:]) + bomb)
    code = ("import json, sys\nfrom danqing.config import PipelineConfig\nfrom danqing.shard import run_local\n"
            "cfg = PipelineConfig.from_overrides({'root': sys.argv[2]})\n"
            "s = run_local('extract', [sys.argv[1]], sys.argv[2], cfg)\n"
            "hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "print(json.dumps({'total': s['total'], 'peak_mb': hwm / 1024}))")
    run = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "out")], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    result = json.loads(run.stdout)
    assert result["total"] == PAGES and result["peak_mb"] < 400  # the process, not the bombs (300 MB each)
    assert "record_too_large" in run.stderr  # the last one, read member by member, is said


@pytest.mark.parametrize(("name", "data"), [("empty.warc.gz", b""), ("header.warc.gz", CLEAN[:10]),
                                            ("page.html", b"<html>not a WARC</html>"),
                                            ("random.bin", random.Random(SEED).randbytes(5000))])
def test_files_with_nothing_readable_are_counted_and_said(tmp_path, name, data):
    rows, stats = _extract(tmp_path, data, name)
    assert rows == [] and sum(stats.errors.values()) >= 1


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "cut", "flipped"])
def test_the_command_never_shows_a_traceback(tmp_path, kind):
    path = tmp_path / "in.warc.gz"
    if kind == "folder":
        path.mkdir()
    elif kind != "missing":
        data = {"empty": b"", "cut": CLEAN[: len(CLEAN) // 2],
                "flipped": CLEAN[:500] + bytes([CLEAN[500] ^ 0xFF]) + CLEAN[501:]}[kind]
        path.write_bytes(data)
    run = subprocess.run([sys.executable, "-m", "danqing.cli", "extract", str(path), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert "Traceback" not in run.stderr and "panicked" not in run.stderr
    if kind in ("missing", "folder"):
        assert run.returncode == 2 and run.stderr.count("\n") == 1 and str(path) in run.stderr
    else:
        assert run.returncode == 0 and "skipped" in run.stderr  # the damage is said, with its byte range
