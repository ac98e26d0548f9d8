"""Stage 1 (extract): pairs from the sample crawl per case, traceable offsets, filters, broken input."""

from __future__ import annotations

import gzip
import io as stdio
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import FIXTURES, record_at

from danqing import warcsource
from danqing.config import SAMPLE_CRAWL_ID, ExtractConfig, PipelineConfig
from danqing.records import PAIR_SCHEMA
from danqing.sample.crawl import (
    BOILERPLATE,
    DATA_URI_ALT,
    PIXEL_ALT,
    SEO_ALT,
    TRADITIONAL,
    UNSAFE_ALT,
    build_sample_crawl,
)
from danqing.shard import ShardJob, run_shard
from danqing.stages import extract
from danqing.stats import StageStats

EXAMPLES = FIXTURES / "danqing_examples"
CC = FIXTURES / "commoncrawl"


def _run(cfg: PipelineConfig, inputs: list[str]) -> tuple[list[dict], StageStats]:
    stats = StageStats()
    table = extract.process(ShardJob(cfg, SAMPLE_CRAWL_ID, "extract", 0, inputs), stats).read_all()
    assert table.schema == PAIR_SCHEMA
    return table.to_pylist(), stats


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    dest = tmp_path_factory.mktemp("sample")
    manifest = build_sample_crawl(str(dest), examples=str(EXAMPLES))
    cfg = PipelineConfig.from_overrides({"root": str(dest / "data"),
                                         "extract": {"domain_blacklist": ["repost-f.test"]}})
    inputs = [str(dest / w) for w in manifest["warcs"]]
    rows, stats = _run(cfg, inputs)
    return dest, manifest, cfg, inputs, rows, stats


def _by_alt(rows: list[dict]) -> dict[str, dict]:
    return {r["alt_text"]: r for r in rows}


def test_all_fifty_captions_come_out_of_chinese_pages(sample):
    *_, rows, _ = sample
    alts = _by_alt(rows)
    for line in (EXAMPLES / "danqing_examples_captions.tsv").read_text(encoding="utf-8").splitlines():
        name, caption = line.split("\t")
        caption = " ".join(TRADITIONAL.get(name.removesuffix(".jpg"), caption).split())
        assert caption in alts, caption
        assert alts[caption]["page_language"] == "zho"
    kept = [r for r in rows if r["drop_reason"] == ""]
    assert 40 <= len(kept) <= 50


def test_charsets_are_decoded(sample):
    *_, rows, _ = sample
    alts = _by_alt(rows)
    assert alts["硅橡胶衬砌砖作为 球磨机内衬砖"]["charset"] == "gb18030"  # GBK in the HTTP header
    assert alts["生活油画，美国杰弗里·拉尔森"]["charset"] == "gb18030"  # gb2312 in <meta> only
    undeclared = alts["香港国家初级-中级茶艺师职业证书课程"]  # GBK, no declaration, no metadata record
    assert undeclared["charset"] == "gb18030" and undeclared["page_language"] == "zho"
    assert undeclared["drop_reason"] == ""
    big5 = alts[TRADITIONAL["197142"]]
    assert big5["charset"] == "big5hkscs" and big5["drop_reason"] == ""
    assert alts["東京の桜並木と春の風景の写真です"]["charset"] == "cp932"  # Shift_JIS, read as browsers read it


def test_image_urls_resolve_like_a_browser(sample):
    *_, rows, _ = sample
    url = {r["alt_text"]: r["url"] for r in rows}
    assert url["黑色星期五之夜新关卡版截图"] == "http://cdn.news-b.test/photos/8083957.jpg"  # <base href>
    assert url["DPA 标准版摄影测量系统"] == "http://cdn.news-b.test/photos/2019/1911663.jpg"
    assert url["你闻起来好像有故事"] == "http://cdn.news-b.test/archive/2708557.jpg"
    assert url["出口型不锈钢减压阀实验双表头氧氮氦气天然气管道石油管道减压器"] == \
        "http://www.shop-a.test/static/p/1841005.jpg"  # root-relative, no base
    assert url["ArmaniExchange腕表旗舰店官方正品阿玛尼手表男士黑武士三眼多功能休闲复古腕表AX1344"] == \
        "http://img.shop-a.test/p/4402408.jpg"  # protocol-relative
    # Lazy loading and srcset: the real image, never the placeholder or a smaller candidate.
    assert url["女牛仔九分裤弹力大码裤子中蓝色春秋新款显瘦小脚铅笔长裤中腰"] == "http://img.shop-a.test/p/6292810.jpg"
    assert url["茶杯系列之多肉苗"] == "http://img.shop-a.test/p/8252275.jpg"  # data-original
    assert url["美芝婷MAGIFIT内衣品牌终端形象"] == "http://img.shop-a.test/p/1758304.jpg"  # 1280w of 320/640/1280
    assert url["防静电除尘布袋"] == "http://img.shop-a.test/p/5787098.jpg"  # 2x
    assert url[TRADITIONAL["7633901"]] == "http://pic.tw-d.test/food/7633901.jpg"


def test_pixels_data_uris_and_repeats_are_skipped(sample):
    *_, rows, _ = sample
    alts = [r["alt_text"] for r in rows]
    assert PIXEL_ALT not in alts and DATA_URI_ALT not in alts
    assert alts.count("原单 Herbag 31CM 男女神通用版 最学院派的包袋") == 1  # same pair twice on the page
    assert not any(r["url"].startswith("data:") for r in rows)
    assert len({r["id"] for r in rows}) == len(rows)


def test_filters_give_their_reasons(sample):
    *_, rows, _ = sample
    reason = {r["alt_text"]: r["drop_reason"] for r in rows}
    assert {reason[a] for a in BOILERPLATE} == {extract.CAPTION_TOO_SHORT}
    assert reason[UNSAFE_ALT] == extract.CAPTION_UNSAFE
    assert reason[SEO_ALT] == extract.CAPTION_TOO_LONG
    assert reason["Red lanterns over an old street in Beijing at dusk"] == extract.PAGE_NOT_CHINESE
    assert reason["東京の桜並木と春の風景の写真です"] == extract.PAGE_NOT_CHINESE
    assert reason["这款包包真的很百搭，通勤和约会都合适"] == extract.DOMAIN_BLACKLISTED


def test_broken_records_are_counted_not_fatal(sample):
    *_, rows, stats = sample
    assert stats.errors == Counter({extract.WARC_TRUNCATED: 1, extract.HTML_TOO_LARGE: 1, extract.HTML_TOO_DEEP: 1,
                                    extract.RECORD_REVISIT: 1, extract.PAYLOAD_NOT_HTML: 1,
                                    extract.RESPONSE_NOT_OK: 1})
    assert not any("截断" in r["alt_text"] or "404" in r["url"] for r in rows)


def test_every_row_rereads_its_record(sample):
    dest, _, _, _, rows, _ = sample
    assert rows
    for row in rows:
        record = record_at(dest, row)
        assert record.rec_type == "response"
        assert record.rec_headers.get_header("WARC-Target-URI") == row["page_url"]


def test_byte_ranges_give_the_same_rows(sample):
    _, _, cfg, inputs, rows, _ = sample
    first = [r for r in rows if r["warc_filename"] in inputs[1]]
    spans = sorted({(r["warc_record_offset"], r["warc_record_length"]) for r in first})
    ranged, stats = _run(cfg, [warcsource.format_spec(inputs[1], spans)])
    strip = ("page_language", "drop_reason")  # no metadata records in a range read: own language guess
    assert [{k: v for k, v in r.items() if k not in strip} for r in ranged] == \
        [{k: v for k, v in r.items() if k not in strip} for r in first]
    assert {r["page_language"] for r in ranged} == {"zho", "jpn"}


def test_run_shard_balances_and_is_deterministic(sample, cfg):
    _, _, _, inputs, rows, _ = sample
    summary = run_shard("extract", SAMPLE_CRAWL_ID, 0, inputs[:2], cfg)
    table = pq.read_table(summary["uri"])
    dropped = sum(r != "" for r in table["drop_reason"].to_pylist())
    assert summary["total"] == table.num_rows == summary["kept"] + dropped
    assert table.to_pylist() == [r for r in rows if any(r["warc_filename"] in i for i in inputs[:2])]


# ---- pure pieces -------------------------------------------------------------------------

def _row(alt: str, lang: str = "zho", page: str = "http://www.a.test/p.html", url: str = "http://img.a.test/1.jpg"):
    return {"alt_text": alt, "page_language": lang, "page_url": page, "url": url}


@pytest.mark.parametrize("row,reason", [
    (_row("夏季新款纯棉短袖T恤男士宽松圆领上衣"), None),
    (_row("夏季新款纯棉短袖T恤男士宽松圆领上衣", lang="zho,eng"), None),
    (_row("夏季新款纯棉短袖T恤男士宽松圆领上衣", lang="eng,zho"), extract.PAGE_NOT_CHINESE),
    (_row("夏季新款纯棉短袖T恤男士宽松圆领上衣", lang="und"), extract.PAGE_NOT_CHINESE),
    (_row("首页"), extract.CAPTION_TOO_SHORT),
    (_row("点击 查看 大图"), extract.CAPTION_TOO_SHORT),
    (_row("，".join(["纯棉短袖T恤"] * 30)), extract.CAPTION_TOO_LONG),
    (_row("夏季新款纯棉短袖T恤", page="http://shop.spam.test/x"), extract.DOMAIN_BLACKLISTED),
    (_row("夏季新款纯棉短袖T恤男士上衣", url="http://spam.test/1.jpg"), extract.DOMAIN_BLACKLISTED),
    (_row("夏季新款纯棉短袖T恤男士上衣", page="http://notspam.test/x"), None),
    (_row("网上 赌场 注册 即送 彩金 百家乐"), extract.CAPTION_UNSAFE),
])
def test_check(row, reason):
    assert extract.check(row, ExtractConfig(domain_blacklist=["spam.test"])) == reason


def test_a_batch_is_judged_caption_by_caption():
    judge = extract.Judge(ExtractConfig())
    # 'İ' lower-cases to two characters: the keyword hit in the next caption must still land on it.
    alts = ["İ" * 30 + "产品图片说明文字", "真人荷官在线发牌娱乐", "北欧风格实木餐桌椅组合家用小户型", "首页",
            "网上 赌场 注册 即送 彩金"]
    urls = [f"http://img.test/{i}.jpg" for i in range(len(alts))]
    assert judge.reasons(urls, alts, ["", "", "", "", extract.PAGE_NOT_CHINESE]) == [
        "", extract.CAPTION_UNSAFE, "", extract.CAPTION_TOO_SHORT, extract.PAGE_NOT_CHINESE]


def test_safety_classifier_hook():
    cfg = ExtractConfig(safety_classifier="test_extract:_flags_tea")
    assert extract.check(_row("夏季新款纯棉短袖T恤男士宽松圆领上衣"), cfg) is None
    assert extract.check(_row("云南普洱熟茶饼茶七子饼礼盒装"), cfg) == extract.CAPTION_UNSAFE


def _flags_tea(caption: str) -> bool:
    return "茶" in caption


def test_cld2_languages():
    fields = (b'fetchTimeMs: 9\r\nlanguages-cld2: {"reliable":true,"languages":[{"code":"zh","code-iso-639-3":"zho"},'
              b'{"code":"en","code-iso-639-3":"eng"}]}\r\n')
    assert extract._cld2_languages(fields) == "zho,eng"
    assert extract._cld2_languages(b"languages-cld2: {broken\r\n") == ""
    assert extract._cld2_languages(b"fetchTimeMs: 9\r\n") == ""


def test_dechunk():
    assert extract.dechunk(b"4\r\nWiki\r\n6;ext=1\r\npedia \r\n0\r\n\r\n") == b"Wikipedia "
    assert extract.dechunk(b"not chunked") == b"not chunked"


# ---- real and hand-made edge-case WARCs ------------------------------------------------------

def test_whirlwind_cc_record(cfg):
    rows, stats = _run(cfg, [str(CC / "whirlwind" / "whirlwind.warc.gz")])
    assert rows and not stats.errors
    # Offsets of the real WARC: response at 1023, its metadata record (languages-cld2: spa) at 18374.
    assert {(r["warc_record_offset"], r["warc_record_length"], r["page_language"]) for r in rows} == \
        {(1023, 18374 - 1023, "spa")}
    assert {r["drop_reason"] for r in rows} == {extract.PAGE_NOT_CHINESE}
    assert all(r["url"].startswith("https://") for r in rows)


def test_warcio_revisit_and_gzip_encoded_payload(cfg):
    pages = list(extract.iter_pages(open(CC / "warcio" / "example.warc.gz", "rb"), stats := StageStats(),
                                    cfg.extract))
    assert stats.errors == Counter({extract.RECORD_REVISIT: 1})
    assert [p.url for p in pages] == ["http://example.com/"]
    assert pages[0].payload.startswith(b"<!doctype html>")  # Content-Encoding: gzip undone


def test_chunked_transfer_encoding(cfg):
    with open(CC / "warcio" / "example-iana.org-chunked.warc", "rb") as f:
        pages = list(extract.iter_pages(f, StageStats(), cfg.extract))
    assert [p.url for p in pages] == ["http://www.iana.org/"]
    assert pages[0].payload.startswith(b"<!doctype html>") and pages[0].payload.rstrip().endswith(b"</html>")


def _warc(version: str, url: str, html: bytes, gz: bool = True) -> bytes:
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html
    head = (f"{version}\r\nWARC-Type: response\r\nWARC-Target-URI: {url}\r\nWARC-Date: 2008-01-01T00:00:00Z\r\n"
            f"WARC-Record-ID: <urn:uuid:{abs(hash(url))}>\r\nContent-Type: application/http; msgtype=response\r\n"
            f"Content-Length: {len(http)}\r\n\r\n").encode()
    record = head + http + b"\r\n\r\n"
    return gzip.compress(record, mtime=0) if gz else record


ZH_PAGE = "<p>这是一个中文页面，介绍各种家居用品。</p><img src='/i.jpg' alt='北欧风格实木餐桌椅组合家用小户型'>"
ZH_PAGE = ZH_PAGE.encode()


@pytest.mark.parametrize("version", ["WARC/0.18", "WARC/1.0", "WARC/1.1"])
def test_warc_versions(cfg, tmp_path, version):
    path = tmp_path / "v.warc.gz"
    path.write_bytes(_warc(version, "http://www.v.test/a", ZH_PAGE))
    rows, stats = _run(cfg, [str(path)])
    assert [(r["url"], r["drop_reason"], r["page_language"]) for r in rows] == [("http://www.v.test/i.jpg", "", "zho")]


def test_corrupt_member_costs_only_itself(cfg, tmp_path):
    bad = tmp_path / "bad.warc.gz"
    garbage = b"\x1f\x8b\x08\x00not-deflate"
    first, last = _warc("WARC/1.0", "http://www.v.test/a", ZH_PAGE), _warc("WARC/1.0", "http://www.v.test/b", ZH_PAGE)
    bad.write_bytes(first + garbage + last)
    fine = tmp_path / "fine.warc.gz"
    fine.write_bytes(_warc("WARC/1.0", "http://www.v.test/c", ZH_PAGE))
    rows, stats = _run(cfg, [str(bad), str(fine)])
    assert stats.errors == Counter({extract.WARC_CORRUPT: 1})
    assert [r["page_url"] for r in rows] == ["http://www.v.test/a", "http://www.v.test/b", "http://www.v.test/c"]
    # Each page keeps the exact span of its own member, so it can still be read back by offset.
    assert [(r["warc_record_offset"], r["warc_record_length"]) for r in rows[:2]] == \
        [(0, len(first)), (len(first) + len(garbage), len(last))]
    for row in rows:
        assert record_at(tmp_path, row).rec_headers.get_header("WARC-Target-URI") == row["page_url"]


def test_source_failure_is_raised_not_counted(cfg):
    class Failing(stdio.BytesIO):
        def read(self, size=-1):
            if self.tell() > 100:
                raise ConnectionError("network down")
            return super().read(min(size, 64) if size and size > 0 else 64)

    stream = Failing(Path(CC / "whirlwind" / "whirlwind.warc.gz").read_bytes())
    with pytest.raises(ConnectionError):
        list(extract.iter_pages(stream, StageStats(), cfg.extract))


def test_nesting_bomb_is_caught_fast():
    import time

    bomb = ("<html><body>" + "<div><span>" * 6000 + "<img src=a.jpg alt='深层嵌套页面里的图片说明文字'>").encode()
    page = extract.Page("http://www.b.test/", "<urn:uuid:1>", 0, bomb, "utf-8", language="zho")
    stats = StageStats()
    started = time.monotonic()
    assert extract.page_pairs(page, ExtractConfig(), stats)[0] == []
    assert stats.errors == Counter({extract.HTML_TOO_DEEP: 1}) and time.monotonic() - started < 1
    normal = ("<ul>" + "<li><img src=a.jpg alt='北欧风格实木餐桌椅组合家用小户型'>" * 6000 + "</ul>").encode()
    page = extract.Page("http://www.b.test/", "<urn:uuid:2>", 0, normal, "utf-8", language="zho")
    assert len(extract.page_pairs(page, ExtractConfig(), stats)[0]) == 1  # many tags, shallow: parsed


def test_batches_stream_the_same_rows(sample):
    *_, cfg, inputs, rows, _ = sample
    job = ShardJob(cfg, SAMPLE_CRAWL_ID, "extract", 0, inputs)
    batches = list(extract.iter_batches(job, StageStats(), batch_rows=7))
    assert len(batches) > 2 and all(b.schema == PAIR_SCHEMA for b in batches)
    assert [r for b in batches for r in b.to_pylist()] == rows


@pytest.mark.parametrize("caption", [
    "北欧风格实木餐桌椅组合家用小户型", "iPhone新款学生春秋系列操作服务张AX1344_19", "Sylvanian_E62534",
    "促销价12.5%折扣C++编程入门#1", "㐀㐁㐂中文标题", "東京の桜並木と春の風景", "纯棉短袖T恤 男士 夏季\r\n新款",
    "a-b&c.d 中文-英文", "价格：￥199元/件【包邮】", "2024_18酒精商用30字体多少"])
def test_word_count_is_jiebas(caption):
    import jieba

    from danqing.text import words

    jieba.initialize()
    expected = [t for t in jieba.lcut(caption) if words._WORDLIKE.search(t)]  # the definition: jieba, HMM on
    assert words.words(caption) == expected
    assert words.word_count(caption) == len(expected)


def test_symbol_blocks_segment_as_jieba_does():
    """rjieba takes the blocks with symbols too, except where its HMM would join "a-1": same words as jieba."""
    import random

    import jieba

    from danqing.text import words

    jieba.initialize()
    parts = ["北欧", "风格", "实木", "餐桌", "T恤", "C#", "c++", "AT&T", "A股", "iPhone", "PVC", "3D", "2024", "v2",
             "新", "日", "abc", "+", "#", "&", ".", "_", "%", "-", "__", "--", "-_", "%%", "2.5", "50%", "v1.0",
             "1.2.3", "x_y"]
    rng = random.Random(0)
    blocks = {"".join(rng.choices(parts, k=rng.randrange(2, 7))) for _ in range(2000)}
    for block in blocks:
        assert words.words(block) == [t for t in jieba.lcut(block) if words._WORDLIKE.search(t)], block


def test_short_captions_skip_segmenting():
    from danqing.text import words

    words.word_count.cache_clear()
    cfg = ExtractConfig()
    row = {"page_url": "http://www.a.test/", "url": "http://www.a.test/i.jpg", "alt_text": "首页图片",
           "page_language": "zho"}
    assert extract.check(row, cfg) == extract.CAPTION_TOO_SHORT
    assert words.word_count.cache_info().misses == 0
