"""The byte-level <img> scan: charsets, attribute syntax, markup that is not markup, and hostile pages."""

from __future__ import annotations

import time

import pytest

from danqing import imgscan, pagehtml

PAGE_URL = "http://www.shop.test/dir/item.html"
GBK_PAGE = "<html><body><p>欢迎光临本店，全场商品包邮。</p><img src=a.jpg alt='纯棉短袖T恤'></body></html>"


def pairs(html: str | bytes, page_url: str = PAGE_URL, http_charset: str | None = "utf-8") -> list[tuple[str, str]]:
    payload = html.encode() if isinstance(html, str) else html
    return pagehtml.images(payload, page_url, http_charset, 2, 1000)[0]


@pytest.mark.parametrize("payload,header,expected", [
    (GBK_PAGE.encode("gbk"), "gbk", "gb18030"),
    (GBK_PAGE.encode("gbk"), "GB2312", "gb18030"),
    (b'<meta charset="big5">' + GBK_PAGE.encode("big5", "ignore"), None, "big5hkscs"),
    (b"<meta http-equiv=Content-Type content='text/html; charset=gbk'>" + GBK_PAGE.encode("gbk"), None, "gb18030"),
    (b'<meta charset="gbk">' + GBK_PAGE.encode("gbk"), "utf-8", "gb18030"),  # server default loses to bytes
    (b"\xef\xbb\xbf" + GBK_PAGE.encode(), "gbk", "utf-8"),  # BOM first
    (GBK_PAGE.encode(), None, "utf-8"),
    (GBK_PAGE.encode(), "no-such-charset", "utf-8"),
    ((GBK_PAGE * 4).encode("gbk"), None, "gb18030"),  # detected
    (GBK_PAGE.encode("utf-16"), None, "utf-16"),  # BOM of a page that is not ASCII-compatible: rescanned
])
def test_charset(payload, header, expected):
    found, charset = pagehtml.images(payload, PAGE_URL, header, 2, 1000)
    assert charset == expected
    if expected != "big5hkscs":  # Big5 lacks the simplified characters; the rest must read back exactly
        assert found == [("http://www.shop.test/dir/a.jpg", "纯棉短袖T恤")]


@pytest.mark.parametrize("srcset,expected", [
    ("a.jpg 320w, b.jpg 1280w, c.jpg 640w", "b.jpg"),
    ("a.jpg 1x, b.jpg 2x", "b.jpg"),
    ("a.jpg, b.jpg 1.5x", "b.jpg"),
    ("https://cdn.test/w_300,h_200/a.jpg 300w, https://cdn.test/w_900,h_600/a.jpg 900w",
     "https://cdn.test/w_900,h_600/a.jpg"),
    ("data:image/gif;base64,R0lG 2x, real.jpg 1x", "real.jpg"),
    ("", None),
])
def test_largest_in_srcset(srcset, expected):
    assert imgscan.largest_in_srcset(srcset.encode()) == (expected.encode() if expected else None)


@pytest.mark.parametrize("attrs,expected", [
    ('src="a.jpg"', "a.jpg"),
    ('src="data:image/gif;base64,R0lG" data-src="real.jpg"', "real.jpg"),
    ('src="loading.gif" data-original="real.jpg"', "real.jpg"),
    ('src="small.jpg" srcset="small.jpg 1x, big.jpg 2x"', "big.jpg"),
    ('src="data:image/png;base64,iVBO"', None),
    ('src="  "', None),
    ('SRC="DATA:image/png;base64,iVBO"', None),
])
def test_image_source(attrs, expected):
    found = pairs(f'<img {attrs} alt="一张图片的说明">')
    assert found == ([("http://www.shop.test/dir/" + expected, "一张图片的说明")] if expected else [])


@pytest.mark.parametrize("html,expected", [
    # attribute syntax: quotes, case, spacing, entities, a '>' inside a value, the first of repeats
    ("<IMG SRC=a.jpg ALT=连衣裙>", [("a.jpg", "连衣裙")]),
    ("<img alt='单引号 说明' src='a.jpg'/>", [("a.jpg", "单引号 说明")]),
    ('<img\nsrc = "a.jpg"\talt =\n"换行\n  分隔">', [("a.jpg", "换行 分隔")]),
    ('<img src=a.jpg alt=" 首尾　空格  和\xa0不换行 ">', [("a.jpg", "首尾 空格 和 不换行")]),
    ('<img src="a.jpg?x=1&amp;y=2" alt="鱼&amp;熊掌 &#x4e2d;&quot;">', [("a.jpg?x=1&y=2", '鱼&熊掌 中"')]),
    ('<img alt="a > b 的比较" src="a.jpg">', [("a.jpg", "a > b 的比较")]),
    ('<img alt="第一个" alt="第二个" src="a.jpg" src="b.jpg">', [("a.jpg", "第一个")]),
    ('<img src=a.jpg alt=无引号的说明 width=300>', [("a.jpg", "无引号的说明")]),
    ('<img src\x00=a.jpg sr\x00=b.jpg alt=名字里的空字节 src=c.jpg>', [("c.jpg", "名字里的空字节")]),
    # not images: no alt, empty alt, tracking pixels, data: URIs, non-http schemes, look-alike tags
    ('<img src="a.jpg"><img src="b.jpg" alt="  "><img src="c.jpg" alt>', []),
    ('<img src="p.gif" alt="追踪像素" width="1" height="1"><img src="q.gif" alt="追踪" height="1px">', []),
    ('<img src="javascript:void(0)" alt="脚本链接"><imgx src="a.jpg" alt="不是图片">', []),
    # markup that is not markup: comments, raw text elements
    ('<!-- <img src="c.jpg" alt="注释里的图片"> --><img src="a.jpg" alt="真的图片">', [("a.jpg", "真的图片")]),
    ('<script>document.write("<img src=s.jpg alt=脚本里的图片>")</script><img src="a.jpg" alt="真的图片">',
     [("a.jpg", "真的图片")]),
    ('<STYLE>.x{background:url("<img src=x.jpg alt=样式>")}</Style><title><img src=t.jpg alt=标题></title>'
     '<textarea><img src=t.jpg alt=文本框></textarea><img src="a.jpg" alt="真的图片">', [("a.jpg", "真的图片")]),
    ('<noscript><img src="a.jpg" alt="懒加载的后备图片"></noscript>', [("a.jpg", "懒加载的后备图片")]),
    ('<img src="a.jpg" alt="注释前"><!-- never closed <img src="b.jpg" alt="看不见">', [("a.jpg", "注释前")]),
    # one row per distinct (url, alt), in page order
    ('<img src="b.jpg" alt="第二"><img src="a.jpg" alt="第一"><img src="b.jpg#top" alt="第二">',
     [("b.jpg", "第二"), ("a.jpg", "第一")]),
])
def test_markup(html, expected):
    base = "http://www.shop.test/dir/"
    assert pairs(html) == [(base + url, alt) for url, alt in expected]


@pytest.mark.parametrize("src,expected", [
    ("s.jpg?a=1&region=cn&timestamp=5", "s.jpg?a=1&region=cn&timestamp=5"),  # not ®ion, not ×tamp
    *((f"s.jpg?x=1&{name}=2", f"s.jpg?x=1&{name}=2") for name in ("section", "param", "notice", "currency", "copy")),
    ("s.jpg?a=1&amp;b=2&#38;c=3", "s.jpg?a=1&b=2&c=3"),
    ("s.jpg?a=1&amp", "s.jpg?a=1&"),  # a legacy name with nothing after it is still a reference
    ("s.jpg?q=&not", "s.jpg?q=¬"),
    ("\x01 s.jpg\x1f", "s.jpg"),  # C0 controls and spaces at the ends go, as the URL parser strips them
    ("s\n.j\tp\rg", "s.jpg"),  # tabs and newlines go everywhere
    ("&#9;s.jpg&#32;", "s.jpg"),  # also when references make them
    ("s\x00.jpg", "s\ufffd.jpg"),  # NUL is U+FFFD in an attribute, which the URL keeps
])
def test_image_urls_read_references_by_the_attribute_rule(src, expected):
    assert pairs(f'<img src="{src}" alt="带参数的图片">') == [("http://www.shop.test/dir/" + expected, "带参数的图片")]


@pytest.mark.parametrize("alt,expected", [
    ("&copy2024 版权", "&copy2024 版权"),  # a legacy name before a digit stays literal in an attribute
    ("&copy 2024 版权", "© 2024 版权"),
    ("&copy;2024 版权", "©2024 版权"),
    ("鱼&amp;熊掌 &amp 兼得", "鱼&熊掌 & 兼得"),
    ("价格&yen=99元", "价格&yen=99元"),  # '=' after a legacy name: literal
    ("&notin; &notit; &not", "∉ &notit; ¬"),
    ("&NotEqualTilde; &CounterClockwiseContourIntegral;", "≂̸ ∳"),  # the full table, two code points for one
    ("&#0;&#x110000;&#xD800;&#99999999999;", "\ufffd" * 4),  # NUL, out of range, surrogate
    ("&#x80;&#128;&#x9F;", "€€Ÿ"),  # 0x80-0x9F as windows-1252 has them
    ("&#x81;&#x8D; &#1; &#x7F; &#xFFFE; &#xFDD0;", "\x81\x8d \x01 \x7f \ufffe \ufdd0"),  # kept as they are
    ("&#x41&#66;&#; &#x; &", "AB&#; &#x; &"),
    ("空\x00字节", "空\ufffd字节"),
])
def test_alts_read_references_by_the_attribute_rule(alt, expected):
    assert pairs(f'<img src="a.jpg" alt="{alt}">') == [("http://www.shop.test/dir/a.jpg", expected)]


@pytest.mark.parametrize("html,expected", [
    # comments end as the standard ends them
    ('<!--><img src="a.jpg" alt="空注释之后">', [("a.jpg", "空注释之后")]),
    ('<!---><img src="a.jpg" alt="空注释之后">', [("a.jpg", "空注释之后")]),
    ('<!----><img src="a.jpg" alt="空注释之后">', [("a.jpg", "空注释之后")]),
    ('<!-- a --!><img src="a.jpg" alt="感叹号结束">', [("a.jpg", "感叹号结束")]),
    ('<!-- a -- ><img src="b.jpg" alt="看不见"> --><img src="a.jpg" alt="真正结束后">', [("a.jpg", "真正结束后")]),
    ('<?php echo "<img src=b.jpg alt=看不见"; ?><img src="a.jpg" alt="伪注释之后">', [("a.jpg", "伪注释之后")]),
    ('<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN"><img src="a.jpg" alt="文档类型后">', [("a.jpg", "文档类型后")]),
    # markup inside another tag's attribute value (tooltips) or an end tag's is not markup
    ('<a title="<img src=b.jpg alt=提示里的图片>">链接</a><img src="a.jpg" alt="真的图片">', [("a.jpg", "真的图片")]),
    ("<span data-tip='<img src=\"b.jpg\" alt=\"提示\">'></span>", []),
    ('</div class="<img src=b.jpg alt=结束标签里>">', []),
    # <image> is <img>
    ('<IMAGE src="a.jpg" alt="图像标签">', [("a.jpg", "图像标签")]),
    # a tag the page ends inside is no tag; a quote that never closes runs to the end of the page
    ('<img src="a.jpg" alt="未闭合的引号', []),
    ('<img src="a.jpg" alt="未闭合的引号>后面的文字', []),
    ('<img src="a.jpg" alt="引号>后文<b class="x">', [("a.jpg", "引号>后文<b class=")]),
    ('<img src="a.jpg" alt="说明"', []),
    # raw text: scripts (with their <!-- <script> escapes), styles, RCDATA, plaintext
    ('<script><!--<script></script><img src=b.jpg alt=看不见></script>--></script><img src=a.jpg alt=脚本之后>',
     [("a.jpg", "脚本之后")]),
    ('<script><!--</script><img src=a.jpg alt=转义注释里的结束标签>', [("a.jpg", "转义注释里的结束标签")]),
    ('<script>if (a<b) document.write("<img src=b.jpg alt=看不见>")</SCRIPT ><img src=a.jpg alt=脚本之后>',
     [("a.jpg", "脚本之后")]),
    ('<title>标题 <img src=b.jpg alt=看不见></titles></title ><img src=a.jpg alt=标题之后>', [("a.jpg", "标题之后")]),
    ('<xmp><img src=b.jpg alt=看不见></xmp><iframe><img src=c.jpg alt=看不见></iframe>'
     '<noembed><img src=d.jpg alt=看不见></noembed><noframes><img src=e.jpg alt=看不见></noframes>'
     '<img src=a.jpg alt=原始文本之后>', [("a.jpg", "原始文本之后")]),
    ('<style>a::after{content:"</style"}</style><img src=a.jpg alt=样式之后>', [("a.jpg", "样式之后")]),
    ('<img src=a.jpg alt=之前><plaintext><img src=b.jpg alt=纯文本里>', [("a.jpg", "之前")]),
    ('<textarea><img src=b.jpg alt=看不见>', []),  # never closed: the rest of the page is its text
])
def test_markup_as_browsers_read_it(html, expected):
    base = "http://www.shop.test/dir/"
    assert pairs(html) == [(base + url, alt) for url, alt in expected]


def test_base_href_applies_to_the_whole_page_and_the_first_wins():
    html = ('<img src="a.jpg" alt="在基准之前"><base href="/static/img/"><base href="http://other.test/">'
            '<img src="../b.jpg" alt="在基准之后"><img src="//cdn.test/c.jpg" alt="协议相对">')
    assert pairs(html) == [("http://www.shop.test/static/img/a.jpg", "在基准之前"),
                           ("http://www.shop.test/static/b.jpg", "在基准之后"),
                           ("http://cdn.test/c.jpg", "协议相对")]


def test_gbk_urls_and_alts_decode_with_the_page_charset():
    html = '<meta charset="gbk"><img src="/图片/一.jpg" alt="国标编码的说明">'.encode("gbk")
    assert pairs(html, http_charset=None) == [("http://www.shop.test/图片/一.jpg", "国标编码的说明")]


@pytest.mark.parametrize("hostile", [
    b'<img alt="' * 200_000,  # every tag opens a quote that never closes
    b"<img " + b"a=" * 500_000,
    b'<img a="> ' * 200_000 + b"<img alt='> " * 200_000,
    b"<!--" + b"<img src=a.jpg alt=x>" * 50_000,
    b"<script>" + b"<img src=a.jpg alt=x>" * 50_000,
    b"<script>" + b"<!--<script></script>-->" * 50_000,
    b"<a title='" * 200_000 + b"<p title=\"" * 200_000,
    b"<img src=a.jpg alt='" + b"&amp" * 200_000 + b"&#" + b"9" * 500_000 + b"&notin" * 100_000 + b"'>",
    b"<meta charset=" * 100_000 + b"<img src=a.jpg alt=\xff>",
])
def test_hostile_pages_scan_in_linear_time(hostile):
    started = time.process_time()
    pagehtml.images(hostile, PAGE_URL, "utf-8", 2, 1000)
    assert time.process_time() - started < 2


def test_visible_text_drops_markup_scripts_and_comments():
    html = b"<html><head><title>T</title><script>var x='<p>js</p>';</script><style>p{}</style></head>" \
           b"<body><!-- note --><p>\xe4\xb8\xad\xe6\x96\x87</p><noscript>ns</noscript></body></html>"
    assert pagehtml.visible_text(html, "utf-8").split() == ["T", "中文"]


@pytest.mark.parametrize("language", ["", "zho,eng"])  # labelled Chinese: only Chinese encodings are candidates
@pytest.mark.parametrize("codec,expected", [("gbk", "gb18030"), ("big5", "big5hkscs")])
def test_undeclared_charset_is_detected_from_many_alts(codec, expected, language):
    alts = ["繁體中文圖片說明第一張", "臺灣夜市小吃與街景照片", "高雄港口的夕陽與船隻", "傳統茶館裡的老師傅泡茶"]
    body = "".join(f'<img src="{i}.jpg" alt="{alts[i % 4]}{i}">' for i in range(16))  # > 256 bytes of alts
    payload = f"<html><body>{body}</body></html>".encode(codec)
    found, charset = pagehtml.images(payload, PAGE_URL, None, 2, 1000, language)
    assert charset == expected
    assert found[0] == ("http://www.shop.test/dir/0.jpg", "繁體中文圖片說明第一張0")


def test_pages_not_labelled_chinese_are_detected_among_all_encodings():
    alts = ["Фотография товара в магазине", "Красивый вид на город", "Новая коллекция одежды"]
    body = "".join(f'<img src="{i}.jpg" alt="{alts[i % 3]} {i}">' for i in range(12))
    found, charset = pagehtml.images(body.encode("cp1251"), PAGE_URL, None, 2, 1000, "rus")
    assert charset == "cp1251" and found[0][1] == "Фотография товара в магазине 0"
