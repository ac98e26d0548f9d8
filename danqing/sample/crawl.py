"""Build the bundled sample crawl: a tiny Common Crawl look-alike around the 50 real DanQing pairs.

Same layout as Common Crawl (collinfo.json, crawl-data/<id>/warc.paths.gz, gzipped WARCs with
request/response/metadata records), plus www/<host>/<path> for the image server. Every byte is
fixed (record ids, dates, gzip headers), so two builds are identical. The pages hold the cases
extraction must get right: GBK/GB2312/Big5 with and without declarations, <base href>, lazy
loading, srcset, boilerplate alts, tracking pixels, data: URIs, foreign pages, a revisit, a
non-HTML payload, an HTML bomb, and a truncated last record.

Images and captions: DanQing examples by DeepGlint (CC BY 4.0).
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from danqing.config import SAMPLE_CRAWL_ID
from danqing.io import atomic_write

EXAMPLES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "danqing_examples"
SEGMENTS = ("4099000000000.00", "4099000000001.01")
SLOW_DELAY_S = 3.0
_NS = uuid.UUID("6f1c8a52-3c1e-4d55-9a57-0d1e1f2a2b3c")  # record ids are uuid5 under this namespace
_UA = "CCBot/2.0 (https://commoncrawl.org/faq/)"
_PIXEL_GIF = bytes.fromhex("47494638396101000100800000ffffff00000021f90401000000002c00000000010001000002024401003b")

# Big5 pages carry traditional captions: the Taiwan/Hong Kong examples converted (OpenCC s2tw).
TRADITIONAL = {
    "7633901": "【臺北麵包推薦】川雨鹽可頌、鹽可松、波蘿麵包、蛋黃酥，大安區麵包店推薦、科技大樓美食 科技大樓面包推薦3",
    "805755": "昨日花捲 |臺中勤美人氣跨界美食，2~4人套餐新上市，花捲、火烤飯、灣式面通通吃得到！",
    "197142": "沙鹿美仁裡彩繪村07",
    "7846519": "歐巴來了！韓國人氣部落客強推FUN TAIPEI 舊城街拍、陽明山踏青 帥氣吸引韓客",
    "9568285": "香港昂坪360纜車 來回水晶車廂 成人 電子票",
    "185765": "由即日至11月30日，入手X9c可獲得HONOR Watch 4（價值$1,099）及原廠碎屏寶服務（價值$899）。",
}

# Alts a stage-1 filter must drop, and captions of our own for the download failures.
BOILERPLATE = ["首页", "微博", "点击查看"]
UNSAFE_ALT = "澳门线上赌场注册即送彩金，网上博彩首选平台"
SEO_ALT = "，".join(["新款女装连衣裙夏季修身显瘦气质长裙子"] * 12)
MISSING_ALT = "年终盘点：本年度十大新闻现场图片回顾与解读"
NOT_IMAGE_ALT = "新春特惠活动横幅，全场商品限时五折优惠"
PIXEL_ALT = "新闻页面访问统计像素，用于广告效果分析"
FORUM_ALTS = [
    "返回首页 分享到微博 分享到微信 返回顶部 点击查看大图",  # boilerplate
    "かわいい猫の写真をたくさん撮りました",  # Japanese on a Chinese page
    "서울의 아름다운 야경 사진 모음입니다",  # Korean
    "好看好看好看好看好看好看好看好看好看好看",  # repetitive
    "🔥🔥超好看的夏季连衣裙😍 显瘦百搭 ✨",  # kept, emoji stripped
]
DATA_URI_ALT = "扫码下载新闻客户端，随时随地阅读最新资讯"


@dataclass
class Img:
    """One <img> as written in the page, and what the image server holds at its resolved URL."""

    attrs: str  # the attributes, verbatim
    serve: dict[str, bytes] = field(default_factory=dict)  # absolute URL -> bytes


@dataclass
class Page:
    url: str
    charset: str  # how the body is encoded
    header_charset: bool  # charset named in the HTTP Content-Type
    meta: str  # extra <head> markup (meta charset, base href)
    text: str  # visible text, in the page's language
    imgs: list[Img]
    language: dict | None  # languages-cld2 of the metadata record; None = no metadata record
    status: str = "200 OK"
    raw_body: bytes | None = None  # a body written as-is (bombs)


def _cld2(code: str, iso: str, name: str, covered: float = 0.96) -> dict:
    return {"reliable": True, "text-bytes": 4000,
            "languages": [{"code": code, "code-iso-639-3": iso, "text-covered": covered, "score": 990.0,
                           "name": name}]}


ZH = _cld2("zh", "zho", "Chinese")
ZH_T = _cld2("zh-Hant", "zho", "ChineseT")
EN = _cld2("en", "eng", "ENGLISH")
JA = _cld2("ja", "jpn", "Japanese")


def _captions(examples: Path) -> dict[str, str]:
    out = {}
    for line in (examples / "danqing_examples_captions.tsv").read_text(encoding="utf-8").splitlines():
        name, caption = line.split("\t", 1)
        out[name.removesuffix(".jpg")] = caption
    return out


class _Pages:
    """The page set, built from the examples; methods name the markup pattern of each image."""

    def __init__(self, examples: Path):
        self.caption = _captions(examples)
        self.image = {k: (examples / "images" / f"{k}.jpg").read_bytes() for k in self.caption}

    def plain(self, key: str, src: str, page_url: str, alt: str | None = None, extra: str = "") -> Img:
        alt = self.caption[key] if alt is None else alt
        return Img(f'src="{src}" alt="{_attr(alt)}"{extra}', {urljoin(page_url, src): self.image[key]})

    def build(self) -> list[list[Page]]:
        return [self.warc_utf8(), self.warc_gbk(), self.warc_big5(), self.warc_truncated()]

    def warc_utf8(self) -> list[Page]:
        a1 = "http://www.shop-a.test/item/1001.html"
        imgs = [self.plain(k, f"http://img.shop-a.test/p/{k}.jpg", a1)
                for k in ("3436721", "770933", "7233555", "4837515", "5234401", "5560702", "159500")]
        imgs += [
            self.plain("4402408", "//img.shop-a.test/p/4402408.jpg", a1),  # protocol-relative
            self.plain("1841005", "/static/p/1841005.jpg", a1),  # root-relative, served by the page host
            self.plain("7197061", "http://img.shop-a.test/p/7197061.jpg", a1, extra=' width="300" height="300"'),
            self.plain("2118792", "http://img.shop-a.test/private/2118792.jpg", a1),  # robots.txt disallows
            self.plain("3436721", "http://img.shop-a.test/p/3436721.jpg", a1),  # same pair again: deduped
            Img(f'src="/static/logo.png" alt="{BOILERPLATE[0]}"'),
            Img(f'src="http://img.shop-a.test/icons/weibo.png" alt="{BOILERPLATE[1]}" width="24" height="24"'),
            Img(f'src="http://img.shop-a.test/p/770933_s.jpg" alt="{BOILERPLATE[2]}"'),
            Img(f'src="http://img.shop-a.test/ad/casino.gif" alt="{UNSAFE_ALT}"'),
            Img('src="http://img.shop-a.test/p/spacer.gif" alt=""'),  # empty alt: no candidate
            Img('src="http://img.shop-a.test/p/noalt.jpg"'),
        ]
        shop = Page(a1, "utf-8", True, "", "原创设计师品牌旗舰店，正品保证，全场包邮，七天无理由退换货。"
                    "新品上市，欢迎选购。", imgs, ZH)

        a2 = "http://www.shop-a.test/list/lazy.html"
        blank = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
        lazy = []
        for key, pattern in (("6292810", "data-src"), ("5757114", "data-src"), ("6512388", "data-original"),
                             ("8252275", "data-original"), ("3990005", "srcset-w"), ("1758304", "srcset-w"),
                             ("5787098", "srcset-x"), ("7981927", "loading")):
            url = f"http://img.shop-a.test/p/{key}.jpg"
            alt = _attr(self.caption[key])
            if pattern == "data-src":
                attrs = f'src="{blank}" data-src="{url}" alt="{alt}"'
            elif pattern == "data-original":
                attrs = f'class="lazy" src="/static/loading.gif" data-original="{url}" alt="{alt}"'
            elif pattern == "srcset-w":
                attrs = (f'src="http://img.shop-a.test/p/{key}_320.jpg" srcset="http://img.shop-a.test/p/{key}_320.jpg'
                         f' 320w, {url} 1280w, http://img.shop-a.test/p/{key}_640.jpg 640w" alt="{alt}"')
            elif pattern == "srcset-x":
                attrs = f'src="/p/{key}_1x.jpg" srcset="/p/{key}_1x.jpg 1x, {url} 2x" alt="{alt}"'
            else:
                attrs = f'src="/static/loading.gif" data-src="{url}" loading="lazy" alt="{alt}"'
            lazy.append(Img(attrs, {url: self.image[key]}))
        shop_lazy = Page(a2, "utf-8", True, "", "热销榜单：本周人气商品推荐，限时抢购，先到先得。", lazy, ZH)

        b1 = "http://news.news-b.test/2099/01/01/story.html"
        base = "http://cdn.news-b.test/photos/"
        news_imgs = [Img(f'src="{k}.jpg" alt="{_attr(self.caption[k])}"', {base + f"{k}.jpg": self.image[k]})
                     for k in ("8083957", "6685794", "619223", "2521999")]
        news_imgs += [
            Img(f'src="/photos/2019/1911663.jpg" alt="{_attr(self.caption["1911663"])}"',
                {"http://cdn.news-b.test/photos/2019/1911663.jpg": self.image["1911663"]}),
            Img(f'src="../archive/2708557.jpg" alt="{_attr(self.caption["2708557"])}"',
                {"http://cdn.news-b.test/archive/2708557.jpg": self.image["2708557"]}),
            Img(f'src="http://cdn.news-b.test/photos/6372926.jpg" alt="{_attr(self.caption["6372926"])}"',
                {"http://cdn.news-b.test/photos/6372926.jpg": self.image["6372926"]}),
            Img(f'src="slow/7405834.jpg" alt="{_attr(self.caption["7405834"])}"',
                {base + "slow/7405834.jpg": self.image["7405834"]}),
            Img(f'src="gone/2099-review.jpg" alt="{MISSING_ALT}"'),  # 404
            Img(f'src="banner.jpg" alt="{NOT_IMAGE_ALT}"',
                {base + "banner.jpg": _html("活动页面", "<p>活动已结束</p>").encode()}),
            Img(f'src="http://track.ads-x.test/p.gif?id=20990101" width="1" height="1" alt="{PIXEL_ALT}"',
                {"http://track.ads-x.test/p.gif": _PIXEL_GIF}),
            Img(f'src="data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ'
                f'DwAEhQGAhKmMIQAAAABJRU5ErkJggg==" alt="{DATA_URI_ALT}"'),
        ]
        news = Page(b1, "utf-8", False, f'<meta charset="utf-8">\n<base href="{base}">',
                    "本报讯 记者从相关部门获悉，今年以来全市经济运行总体平稳，重点项目建设有序推进。", news_imgs, ZH)

        e1 = "http://www.en-d.test/blog/beijing-walk.html"
        english = Page(e1, "utf-8", True, "", "A slow walk through the old hutongs of Beijing, with notes on food.", [
            self.plain("435277", "http://static.en-d.test/img/lanterns.jpg", e1,
                       alt="Red lanterns over an old street in Beijing at dusk"),
            self.plain("2521999", "http://static.en-d.test/img/theatre.jpg", e1,
                       alt="A theatre poster for a play, seen on our second evening"),
        ], EN)
        return [shop, shop_lazy, news, english]

    def warc_gbk(self) -> list[Page]:
        c1 = "http://www.mall-c.test/product/88.html"
        keys1 = ("803635", "7464574", "8766481", "218517", "9401885", "1869544", "275101")
        imgs1 = [self.plain(k, f"http://img.mall-c.test/upload/{k}.jpg", c1) for k in keys1]
        imgs1.append(Img(f'src="http://img.mall-c.test/upload/seo.jpg" alt="{SEO_ALT}"'))
        gbk_header = Page(c1, "gbk", True, "", "本店所有商品均为现货，下单后四十八小时内发货，支持货到付款。",
                          imgs1, ZH)

        c2 = "http://www.mall-c.test/news/2.html"
        keys2 = ("3774830", "1755201", "435277", "264710", "9399035", "5323585")
        imgs2 = [self.plain(k, f"/upload/news/{k}.jpg", c2) for k in keys2]
        # Declared gb2312, encoded as GBK: 喆 is outside GB2312, so a strict gb2312 decoder fails.
        gb2312_meta = Page(c2, "gbk", False, '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">',
                           "歌手陶喆将于下月举办巡回演唱会，门票即将开售，敬请关注本站后续报道。", imgs2, ZH)

        c3 = "http://www.mall-c.test/old/3.html"
        keys3 = ("6306590", "7278101", "4204535", "8107261")
        imgs3 = [self.plain(k, f"http://img.mall-c.test/old/{k}.jpg", c3) for k in keys3]
        undeclared = Page(c3, "gbk", False, "", "旧版页面：本栏目收录往期精选内容，包括旅游攻略、美食推荐、"
                          "职业培训与生活常识等，欢迎各位读者浏览收藏并提出宝贵意见。" * 3, imgs3, None)

        j1 = "http://www.jp-e.test/photo/sakura.html"
        japanese = Page(j1, "shift_jis", False, '<meta charset="shift_jis">',
                        "東京の桜並木を歩きながら、春の風景をたくさん撮影しました。", [
                            self.plain("8252275", "http://img.jp-e.test/sakura/1.jpg", j1,
                                       alt="東京の桜並木と春の風景の写真です"),
                        ], JA)
        return [gbk_header, gb2312_meta, undeclared, japanese]

    def warc_big5(self) -> list[Page]:
        d1 = "http://www.tw-d.test/food/taipei.html"
        imgs = [Img(f'src="//pic.tw-d.test/food/{k}_s.jpg" srcset="//pic.tw-d.test/food/{k}_s.jpg 1x, '
                    f'//pic.tw-d.test/food/{k}.jpg 2x" alt="{_attr(TRADITIONAL[k])}"',
                    {f"http://pic.tw-d.test/food/{k}.jpg": self.image[k]})
                for k in ("7633901", "805755", "197142", "7846519")]
        big5 = Page(d1, "big5", True, "", "臺北美食地圖：在地人推薦的麵包店與小吃，週末出遊好去處。", imgs, ZH_T)

        h1 = "http://www.hk-e.test/travel/lantau.html"
        imgs = [self.plain(k, f"http://img.hk-e.test/travel/{k}.jpg", h1, alt=TRADITIONAL[k]) for k in
                ("9568285", "185765")]
        hk = Page(h1, "utf-8", False, '<meta http-equiv="content-type" content="text/html; charset=UTF-8">',
                  "香港旅遊攻略：大嶼山一日遊路線推薦，交通、門票與美食一次看。", imgs, ZH_T)
        gone = Page("http://www.tw-d.test/food/closed.html", "big5", True, "", "找不到網頁",
                    [Img('src="/img/404.png" alt="找不到您要的網頁，請返回首頁重新搜尋"')], ZH_T,
                    status="404 Not Found")
        return [big5, hk, gone]

    def warc_truncated(self) -> list[Page]:
        f1 = "http://www.repost-f.test/a/1.html"
        repost = Page(f1, "utf-8", True, "", "网友分享：最近入手的几件好物，真实使用感受，供大家参考。", [
            self.plain("3436721", "http://www.repost-f.test/upload/a1.jpg", f1,
                       alt="这款包包真的很百搭，通勤和约会都合适"),
            self.plain("7233555", "http://www.repost-f.test/upload/a2.jpg", f1,
                       alt="客厅换了新地毯之后整个空间都亮起来了"),
        ], ZH)
        huge_body = '<img src="/x.jpg" alt="超大页面里的图片说明文字">' + "<p>填充内容</p>" * 170_000  # > 2 MB
        huge = Page("http://www.bomb-g.test/huge.html", "utf-8", True, "", "", [], ZH,
                    raw_body=_html("大页面", huge_body).encode())
        deep_body = "<div>" * 20_000 + '<img src="/y.jpg" alt="深层嵌套页面里的图片说明">'  # nesting bomb
        deep = Page("http://www.bomb-g.test/deep.html", "utf-8", True, "", "", [], ZH,
                    raw_body=_html("深层嵌套", deep_body).encode())
        g1 = "http://bbs.forum-h.test/thread/42.html"
        # Alts long enough for stage 1 that stage 2 must refine or drop, each for its own reason.
        forum = Page(g1, "utf-8", True, "", "论坛精华帖：网友晒图合集，欢迎跟帖分享你的好物。", [
            self.plain(k, f"http://img.forum-h.test/attach/{k}.jpg", g1, alt=alt)
            for k, alt in zip(("2708557", "6685794", "619223", "8083957", "5323585"), FORUM_ALTS, strict=True)
        ], ZH)
        cut = Page("http://www.shop-a.test/item/1002.html", "utf-8", True, "", "这一页在抓取时被截断了。" * 40, [
            self.plain("159500", "http://img.shop-a.test/p/1002-main.jpg", "http://www.shop-a.test/item/1002.html",
                       alt="被截断页面上的商品主图，不应出现在结果里"),
        ], ZH)
        return [repost, huge, deep, forum, cut]


def _attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def _html(title: str, body: str, head: str = "") -> str:
    return (f"<!DOCTYPE html>\n<html>\n<head>\n{head}\n<title>{title}</title>\n"
            f'<link rel="stylesheet" href="/static/site.css">\n</head>\n<body>\n{body}\n</body>\n</html>\n')


def render(page: Page) -> bytes:
    """The page's HTML, encoded in its charset."""
    if page.raw_body is not None:
        return page.raw_body
    imgs = "\n".join(f'<li class="item"><a href="#"><img {img.attrs}></a></li>' for img in page.imgs)
    body = (f'<div class="nav"><a href="/">{page.text[:2]}</a> | <a href="/about">about</a></div>\n'
            f"<h1>{page.text[:12]}</h1>\n<p>{page.text}</p>\n<ul class=\"grid\">\n{imgs}\n</ul>\n"
            '<script>var _hmt = _hmt || []; document.write("<img src=\\"/count.gif\\">");</script>\n'
            f'<div class="footer">{page.text[:8]} &copy; 2099</div>')
    return _html(page.text[:12] or "page", body, page.meta).encode(page.charset)


class _Writer:
    """One WARC file: CC-style request, response and metadata records with fixed ids and dates."""

    def __init__(self, name: str, version: str = "1.0"):
        from warcio.warcwriter import WARCWriter

        self.name, self.buf, self.n = name, io.BytesIO(), 0
        self.writer = WARCWriter(self.buf, gzip=True, warc_version=version)
        self.warcinfo_id = self._id()
        fields = f"software: danqing-sample\r\nisPartOf: {SAMPLE_CRAWL_ID}\r\nformat: WARC File Format\r\n".encode()
        self._write(None, "warcinfo", fields, {"WARC-Record-ID": self.warcinfo_id, "WARC-Filename": name,
                                               "Content-Type": "application/warc-fields"})

    def _id(self) -> str:
        self.n += 1
        return f"<urn:uuid:{uuid.uuid5(_NS, f'{self.name}/{self.n}')}>"

    def _date(self) -> str:
        return f"2099-01-01T00:{self.n // 60:02d}:{self.n % 60:02d}Z"

    def _write(self, uri, kind, payload: bytes, headers: dict, http=None) -> int:
        start = self.buf.tell()
        headers = {"WARC-Date": self._date(), **headers}
        record = self.writer.create_warc_record(uri, kind, payload=io.BytesIO(payload), length=len(payload),
                                                warc_headers_dict=headers, http_headers=http)
        self.writer.write_record(record)
        return start

    def page(self, page: Page) -> tuple[int, int]:
        """Write request, response and metadata of one page; returns the response's byte span."""
        from warcio.statusandheaders import StatusAndHeaders

        body = render(page)
        parts = urlsplit(page.url)
        request_id, response_id = self._id(), self._id()
        req = StatusAndHeaders(f"GET {parts.path} HTTP/1.1", [("Host", parts.netloc), ("User-Agent", _UA)],
                               is_http_request=True)
        self._write(page.url, "request", b"", {"WARC-Record-ID": request_id, "WARC-Warcinfo-ID": self.warcinfo_id}, req)
        ctype = "text/html" + (f"; charset={page.charset.upper()}" if page.header_charset else "")
        resp = StatusAndHeaders(page.status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                              ("Server", "nginx"), ("Date", "Fri, 01 Jan 2099 00:00:00 GMT")],
                                protocol="HTTP/1.1")
        offset = self._write(page.url, "response", body, {"WARC-Record-ID": response_id,
                                                          "WARC-Concurrent-To": request_id,
                                                          "WARC-Warcinfo-ID": self.warcinfo_id}, resp)
        span = (offset, self.buf.tell())
        if page.language is not None:
            fields = (f"fetchTimeMs: 120\r\ncharset-detected: {page.charset.upper()}\r\n"
                      f"languages-cld2: {json.dumps(page.language, separators=(',', ':'))}\r\n").encode()
            self._write(page.url, "metadata", fields, {"WARC-Record-ID": self._id(), "WARC-Concurrent-To": response_id,
                                                       "Content-Type": "application/warc-fields"})
        return span

    def other(self, uri: str, ctype: str, body: bytes) -> None:
        """A non-HTML response (an image fetched as a page)."""
        from warcio.statusandheaders import StatusAndHeaders

        resp = StatusAndHeaders("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))],
                                protocol="HTTP/1.1")
        self._write(uri, "response", body, {"WARC-Record-ID": self._id()}, resp)

    def revisit(self, uri: str, digest: str) -> None:
        from warcio.statusandheaders import StatusAndHeaders

        resp = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
        self._write(uri, "revisit", b"", {
            "WARC-Record-ID": self._id(), "WARC-Payload-Digest": digest, "WARC-Refers-To-Target-URI": uri,
            "WARC-Refers-To-Date": "2099-01-01T00:00:01Z",
            "WARC-Profile": "http://netpreserve.org/warc/1.0/revisit/identical-payload-digest"}, resp)


def build_sample_crawl(dest: str, examples: str | None = None) -> dict:
    """Write the sample crawl under dest (byte-identical on every run); returns a small manifest."""
    root = Path(dest)
    pages = _Pages(Path(examples) if examples else EXAMPLES)
    groups = pages.build()
    crawl = f"crawl-data/{SAMPLE_CRAWL_ID}"
    warcs = []
    for i, group in enumerate(groups):
        name = f"CC-MAIN-20990101{i:02d}0000-20990101{i:02d}5959-{i:05d}.warc.gz"
        rel = f"{crawl}/segments/{SEGMENTS[i // 2]}/warc/{name}"
        writer = _Writer(name, version="1.1" if i == 2 else "1.0")
        last = (0, 0)
        for page in group:
            last = writer.page(page)
        if i == 2:
            writer.other("http://pic.tw-d.test/logo.jpg", "image/jpeg", pages.image["1755201"])
            writer.revisit(group[0].url, "sha1:" + _sha1_b32(render(group[0])))
        data = writer.buf.getvalue()
        if i == len(groups) - 1:  # the crawler died mid-record: cut the last response in half
            data = data[: (last[0] + last[1]) // 2]
        _write(root / rel, data)
        warcs.append(rel)

    served = _serve_tree(root / "www", groups)
    _write(root / "www" / "_server.json", json.dumps(_server_rules(), indent=1, sort_keys=True).encode())
    _write(root / "ATTRIBUTION.txt", b"Images and captions: DanQing examples by DeepGlint (CC BY 4.0).\n"
                                     b"Pages, hosts and WARC records are synthetic.\n")
    collinfo = [{"id": SAMPLE_CRAWL_ID, "name": "Bundled sample crawl",
                 "timegate": f"http://index.sample.test/{SAMPLE_CRAWL_ID}/",
                 "cdx-api": f"http://index.sample.test/{SAMPLE_CRAWL_ID}-index",
                 "from": "2099-01-01T00:00:00", "to": "2099-01-01T00:05:00"}]
    _write(root / "collinfo.json", json.dumps(collinfo, indent=2).encode())
    # warc.paths.gz last: its presence says the crawl is complete.
    _write(root / crawl / "warc.paths.gz", gzip.compress(("\n".join(warcs) + "\n").encode(), mtime=0))
    all_pages = [p for g in groups for p in g]
    return {"crawl_id": SAMPLE_CRAWL_ID, "warcs": warcs, "pages": len(all_pages),
            "candidates": sum(len(p.imgs) for p in all_pages), "captions": len(pages.caption),
            "images_served": served, "hosts": sorted(p.name for p in (root / "www").iterdir() if p.is_dir())}


def _sha1_b32(data: bytes) -> str:
    import base64
    import hashlib

    return base64.b32encode(hashlib.sha1(data).digest()).decode()


def _server_rules() -> dict:
    """What the image server does besides serving files: delays, headers, robots.txt."""
    return {
        "delay_s": {"cdn.news-b.test/photos/slow/7405834.jpg": SLOW_DELAY_S},
        "headers": {"www.mall-c.test/upload/news/264710.jpg": {"X-Robots-Tag": "noai, noimageai"}},
        "robots": {"img.shop-a.test": "User-agent: *\nDisallow: /private/\n",
                   "cdn.news-b.test": "User-agent: *\nAllow: /\n"},
    }


def _serve_tree(www: Path, groups: list[list[Page]]) -> int:
    files = {}
    for group in groups:
        for page in group:
            for img in page.imgs:
                files.update(img.serve)
    if www.exists():
        shutil.rmtree(www)
    for url, data in sorted(files.items()):
        parts = urlsplit(url)
        _write(www / parts.hostname / parts.path.lstrip("/"), data)
    return len(files)


def _write(path: Path, data: bytes) -> None:
    with atomic_write(str(path)) as f:
        f.write(data)
