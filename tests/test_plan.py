"""Planning: whole-WARC shards from the real warc.paths.gz, byte-range shards from a columnar index."""

from __future__ import annotations

import contextlib
import gzip
import random
import shutil

import pytest
from source_helpers import (
    EN_PAGE,
    FIXTURES,
    ZH_PAGE,
    LoopbackServer,
    index_row,
    moto_s3,
    read_targets,
    s3_options,
    static_files,
    upload_tree,
    write_index,
    write_paths,
    write_warc,
)

from danqing import paths, warcsource
from danqing.config import PipelineConfig
from danqing.shard import ShardJob
from danqing.stages import extract, plan
from danqing.stats import StageStats

CRAWL = "CC-MAIN-2025-47"
REAL = FIXTURES / f"{CRAWL}.warc.paths.gz"


def with_source(cfg: PipelineConfig, **source) -> PipelineConfig:
    return cfg.model_copy(update={"source": cfg.source.model_copy(update=source)})


@pytest.mark.parametrize("n, per, most, expected", [
    (0, 4, 1024, 0), (1, 4, 1024, 1), (8, 4, 1024, 2), (9, 4, 1024, 3),
    (100_000, 4, 1024, 1024), (100_000, 200, 1024, 500), (10, 1, 3, 3),
])
def test_shard_count(n, per, most, expected):
    assert plan.shard_count(n, per, most) == expected


def test_split_is_balanced_and_keeps_order():
    chunks = plan.split(list(range(10)), 4, 1024)
    assert chunks == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert plan.split([], 4, 8) == []


def _cc(cfg, tmp_path, **source) -> tuple[PipelineConfig, str]:
    index = tmp_path / "warc.paths.gz"
    shutil.copy(REAL, index)
    source = {"kind": "commoncrawl", "commoncrawl_url": "https://data.commoncrawl.org/", "index_url": "", **source}
    return with_source(cfg, **source), str(index)


def test_commoncrawl_runs_read_the_columnar_index_by_default():
    cc = PipelineConfig.from_overrides({"source": {"kind": "commoncrawl"}})
    assert plan.uses_index(cc) and cc.source.index_url.startswith("https://data.commoncrawl.org/")
    assert not plan.uses_index(PipelineConfig())  # the sample crawl: whole WARCs
    assert not plan.uses_index(with_source(cc, index_url=""))  # whole WARCs on purpose


def test_real_crawl_grows_shards_to_fit_max_map_length(cfg, tmp_path):
    cc, index = _cc(cfg, tmp_path)
    shards = plan.plan(cc, CRAWL, index)
    assert shards == list(range(8192)) == list(range(cc.source.max_shards))
    sizes = [len(plan.shard_inputs(cc, CRAWL, s)) for s in shards]
    assert sum(sizes) == 100_000 and set(sizes) == {12, 13}  # grown from 4, balanced
    first = plan.shard_inputs(cc, CRAWL, 0)[0]
    assert first == ("https://data.commoncrawl.org/crawl-data/CC-MAIN-2025-47/segments/1762439342185.16/"
                     "warc/CC-MAIN-20251106200718-20251106230718-00000.warc.gz")
    blob = open(paths.plan_uri(cc.root, CRAWL), "rb").read()
    plan.plan(cc, CRAWL, index)  # deterministic: a rerun writes the same plan
    assert open(paths.plan_uri(cc.root, CRAWL), "rb").read() == blob
    import json

    assert json.loads(blob)[5] == {"shard": 5, "inputs": plan.shard_inputs(cc, CRAWL, 5)}


def test_max_warcs_takes_the_head_of_the_list(cfg, tmp_path):
    cc, index = _cc(cfg, tmp_path, max_warcs=10, warcs_per_shard=4)
    assert plan.plan(cc, CRAWL, index) == [0, 1, 2]
    real = gzip.decompress(REAL.read_bytes()).decode().split()[:10]
    got = [u.removeprefix(cc.source.commoncrawl_url) for s in range(3) for u in plan.shard_inputs(cc, CRAWL, s)]
    assert got == real


# --- columnar index pre-selection ---------------------------------------------------------------

def synthetic_index(n_warcs: int = 6, per_warc: int = 500, seed: int = 7):
    """Index rows with the real schema for contiguous records; returns (rows, expected selection)."""
    rng = random.Random(seed)
    rows, expected = [], []
    for w in range(n_warcs):
        warc = f"crawl-data/{CRAWL}/segments/17624393421{w:02d}.16/warc/CC-MAIN-2025-{w:05d}.warc.gz"
        offset = 0
        for i in range(per_warc):
            length = rng.randint(800, 40_000)
            langs = rng.choice(["zho", "zho,eng", "eng,zho", "eng", "jpn", "eng,jpn", None])
            mime = rng.choice(["text/html"] * 6 + ["application/xhtml+xml", "application/pdf", "image/jpeg"])
            status = rng.choice([200] * 8 + [301, 404])
            rows.append(index_row(CRAWL, f"https://h{w}.example.cn/p{i}", warc, offset, length, langs, mime, status))
            if status == 200 and langs and "zho" in langs.split(",") and mime != "application/pdf" \
                    and mime != "image/jpeg":
                expected.append((warc, offset, length))
            offset += length
    rng.shuffle(rows)  # index order is by SURT, not by WARC offset
    return rows, sorted(expected)


def _planned_records(cfg, shards) -> list[tuple[str, int, int]]:
    out = []
    for s in shards:
        for spec in plan.shard_inputs(cfg, CRAWL, s):
            parsed = warcsource.parse_spec(spec)
            out.extend((warcsource.warc_filename(parsed.uri), o, n) for o, n in parsed.ranges)
    return out


@pytest.mark.parametrize("store", ["local", "s3"])
def test_index_selects_zho_html_ranges(cfg, tmp_path, store):
    rows, expected = synthetic_index()
    assert 500 < len(expected) < 2000  # a few thousand rows, a minority selected
    table = tmp_path / "table"
    write_index(rows, table / f"crawl={CRAWL}" / "subset=warc", parts=3)
    write_index(rows[:50], table / "crawl=CC-MAIN-2025-43" / "subset=warc", parts=1)  # another crawl: ignored
    index = write_paths(sorted({r["warc_filename"] for r in rows}), tmp_path / "warc.paths.gz")
    with contextlib.ExitStack() as stack:
        if store == "local":
            url, so = str(table), {}
        else:
            endpoint, client = stack.enter_context(moto_s3())
            upload_tree(client, "commoncrawl", table)
            url, so = "s3://commoncrawl/", s3_options(endpoint)
        cc = with_source(cfg, kind="commoncrawl", index_url=url, storage_options=so, ranges_per_shard=100)
        shards = plan.plan(cc, CRAWL, str(index))
    assert shards == list(range(len(shards)))
    merged = warcsource.coalesce
    got = _planned_records(cc, shards)
    # Adjacent selected records are coalesced, so compare the covered bytes per WARC.
    by_warc = {}
    for warc, o, n in expected:
        by_warc.setdefault(warc, []).append((o, n))
    got_by_warc = {}
    for warc, o, n in got:
        got_by_warc.setdefault(warc, []).append((o, n))
    assert {w: merged(r) for w, r in got_by_warc.items()} == {w: merged(r) for w, r in by_warc.items()}
    assert len(got) < len(expected)  # some neighbours were coalesced
    assert len(shards) == -(-len(expected) // 100)


def test_index_plan_respects_max_shards_and_max_warcs(cfg, tmp_path):
    rows, expected = synthetic_index()
    write_index(rows, tmp_path / "table" / f"crawl={CRAWL}" / "subset=warc")
    warcs = sorted({r["warc_filename"] for r in rows})
    index = write_paths(warcs, tmp_path / "warc.paths.gz")
    cc = with_source(cfg, kind="commoncrawl", index_url=str(tmp_path / "table"), ranges_per_shard=1,
                     max_shards=7, max_warcs=2)
    shards = plan.plan(cc, CRAWL, str(index))
    assert shards == list(range(7))
    got = _planned_records(cc, shards)
    assert {w for w, _, _ in got} == set(warcs[:2])
    again = plan.plan(cc, CRAWL, str(index))
    assert again == shards and _planned_records(cc, again) == got


def test_index_plan_reads_back_only_chinese_pages(cfg, tmp_path):
    """End to end: WARCs + an index built from their real offsets -> plan -> read the ranges over HTTP
    -> extract, which labels each page with the index's languages (ranges skip the metadata records)."""
    site, rows, zh_urls, labels = tmp_path / "site", [], [], {}
    warcs = [f"crawl-data/{CRAWL}/segments/1/warc/CC-MAIN-test-{w:05d}.warc.gz" for w in range(3)]
    for w, warc in enumerate(warcs):
        pages = []
        for i in range(12):
            zh = (i * 7 + w) % 3 != 0
            pages.append((f"https://s{w}.example.cn/p{i}", (ZH_PAGE if zh else EN_PAGE).format(i=i)))
        for (url, off, length), (_, html) in zip(write_warc(site / warc, pages), pages, strict=True):
            zh = 'lang="zh"' in html
            # Chinese text under an English-first label: selected (it has zho), then dropped by extract.
            langs = ("eng,zho" if off % 2 else "zho,eng") if zh else "eng"
            rows.append(index_row(CRAWL, url, warc, off, length, langs))
            zh_urls += [url] if zh else []
            labels[url] = langs
    write_index(rows, tmp_path / "table" / f"crawl={CRAWL}" / "subset=warc")
    index = write_paths(warcs, tmp_path / "warc.paths.gz")
    with LoopbackServer(static_files(site)) as srv:
        cc = with_source(cfg, kind="commoncrawl", commoncrawl_url=srv.url + "/", index_url=str(tmp_path / "table"),
                         ranges_per_shard=5, max_gap_bytes=0)
        read, extracted = [], []
        for s in plan.plan(cc, CRAWL, str(index)):
            for spec in plan.shard_inputs(cc, CRAWL, s):
                with warcsource.open_input(spec, cc) as f:
                    read += read_targets(f)
            job = ShardJob(cc, CRAWL, "extract", s, plan.shard_inputs(cc, CRAWL, s))
            extracted += extract.process(job, StageStats()).read_all().to_pylist()
    assert read == zh_urls
    assert [r["page_url"] for r in extracted] == zh_urls
    assert {r["page_url"]: r["page_language"] for r in extracted} == {u: labels[u] for u in zh_urls}
    assert {labels[r["page_url"]] for r in extracted if r["drop_reason"] == extract.PAGE_NOT_CHINESE} == {"eng,zho"}
    assert {labels[r["page_url"]] for r in extracted if r["drop_reason"] == ""} == {"zho,eng"}


def test_index_over_https_lists_files_from_cc_index_table_paths(cfg, tmp_path):
    """The production default: the index's parquet files named by the crawl's cc-index-table.paths.gz
    and read with HTTP range requests (here from a loopback 'data.commoncrawl.org')."""
    rows, expected = synthetic_index(n_warcs=3, per_warc=300)
    site = tmp_path / "site"
    table = "cc-index/table/cc-main/warc"
    files = write_index(rows, site / table / f"crawl={CRAWL}" / "subset=warc", parts=2)
    listed = [f.relative_to(site).as_posix() for f in files]
    listed.append(f"{table}/crawl={CRAWL}/subset=crawldiagnostics/part-00000.c000.gz.parquet")  # not read
    write_paths(listed, site / "crawl-data" / CRAWL / "cc-index-table.paths.gz")
    index = write_paths(sorted({r["warc_filename"] for r in rows}), tmp_path / "warc.paths.gz")
    with LoopbackServer(static_files(site)) as srv:
        cc = with_source(cfg, kind="commoncrawl", commoncrawl_url=srv.url + "/", index_url=f"{srv.url}/{table}/",
                         ranges_per_shard=100)
        assert plan.index_files(cc, CRAWL) == [f"{srv.url}/{p}" for p in listed[:2]]
        shards = plan.plan(cc, CRAWL, str(index))
        assert any("range" in h for _, h in srv.requests)  # parquet read in ranges, not downloaded whole
    got = sorted(_planned_records(cc, shards))
    assert {w for w, _, _ in got} == {w for w, _, _ in expected}
    assert len(shards) == -(-len(expected) // 100)


@pytest.mark.parametrize("seed", range(5))
def test_run_texts_match_format_spec(seed):
    """The vectorised spec of one WARC's records equals warcsource.format_spec's (touching, overlapping and
    apart records), and every record keeps its languages."""
    import json

    import pyarrow as pa

    rng = random.Random(seed)
    offsets, lengths, offset = [], [], 0
    for _ in range(rng.randint(1, 60)):
        offset += rng.choice([0, 0, 1, 50, 5000]) if offsets else rng.randint(0, 100)
        offsets.append(offset)
        lengths.append(rng.randint(1, 3000))
        offset += rng.choice([lengths[-1], lengths[-1] // 2, lengths[-1] + 10])
    langs = [rng.choice(["zho", "zho,eng", None, 'a"b']) for _ in offsets]
    run = pa.table({"warc_filename": ["w"] * len(offsets), "o": offsets, "n": lengths, "l": langs})
    spec, members = plan._run_texts(run)
    assert "w" + plan.RANGES_MARK + spec == warcsource.format_spec("w", list(zip(offsets, lengths, strict=True)))
    assert json.loads("{" + members + "}") == {str(o): lang or "" for o, lang in zip(offsets, langs, strict=True)}
