"""A page's encoding, as the HTML standard finds it: GBK pages with and without declarations."""

from __future__ import annotations

import pytest

from danqing import charset, pagehtml
from danqing.imgscan import captioned_images

PAGE_URL = "http://www.shop.test/dir/item.html"
ALT = "纯棉短袖T恤男士宽松圆领上衣"
IMG = f'<img src="a.jpg" alt="{ALT}">'.encode("gbk")
FOUND = [("http://www.shop.test/dir/a.jpg", ALT)]


def images(payload: bytes, http_charset: str | None = None, language: str = "zho") -> tuple[list, str]:
    return pagehtml.images(payload, PAGE_URL, http_charset, 2, 1000, language)


def declared(payload: bytes) -> str | None:
    return charset.declared(payload, captioned_images(payload, 0)[3])


@pytest.mark.parametrize("head", [
    b'<meta charset="gbk">',
    b"<META CHARSET=GB2312>",
    b'<meta http-equiv="Content-Type" content="text/html; charset=gbk">',
    b"<meta content='text/html;charset=\"x-gbk\"' http-equiv=content-type>",
    b'<!-- <meta charset="utf-8"> --><meta charset="gbk">',  # a commented-out declaration is none
    b'<meta charset="x-unknown"><meta charset="gbk">',  # an unknown label: the next one counts
    b'<meta charset="utf8mb4"><meta charset="gbk">',  # labels outside the standard's table are unknown
    b"<!--" + b"x" * 5000 + b'--><meta charset="gbk">',  # past 4 KB: the tokenizer meets it all the same
    b'<title>\xb1\xea\xcc\xe2</title><script>var m = "<meta charset=gbk>";</script>',  # only the prescan reads it
    b'<?xml version="1.0" encoding="GB2312"?>',
])
def test_declared_gbk(head):
    payload = head + IMG
    assert declared(payload) == "gb18030"
    assert images(payload) == (FOUND, "gb18030")
    assert images(payload, "utf-8") == (FOUND, "gb18030")  # a server default the bytes contradict loses


@pytest.mark.parametrize("header", ["gbk", "GB2312", '"gbk"', "x-gbk", "gb18030"])
def test_gbk_by_the_http_header(header):
    assert images(IMG, header) == (FOUND, "gb18030")


@pytest.mark.parametrize("head", [
    b"",
    b'<meta http-equiv="Content-Type">',  # a pragma without content
    b'<meta content="text/html; charset=gbk">',  # content without the pragma
    b'<meta name="keywords" content="charset=gbk">',
    b'<p title="<meta charset=gbk>">',  # inside another tag's attribute
    b'<meta http-equiv="Content-Type" content="text/html; charset=\'gbk">',  # unmatched quote
    b"<script>document.write('<meta charset=\"' + cs + '\">')</script>",
    b"<p>" + b"x" * 1100 + b'<script>"<meta charset=gbk>"</script>',  # in a script, past the prescan's 1,024 bytes
])
def test_not_declared(head):
    assert declared(head + IMG) is None


def test_declaration_rules():
    assert declared(b'<meta charset="gbk"') is None  # the page ends inside the tag
    assert declared(b'<meta charset="gbk"' + IMG) == "gb18030"  # ... or the tag runs on to the next '>'
    assert declared(b'<meta charset="big5"><meta charset="gbk">') == "big5hkscs"
    # The prescan reads the <meta> in <title> first; the parser meets the later one and changes to it.
    assert declared(b'<title><meta charset=big5></title><meta charset="gbk">') == "gb18030"
    # A charset attribute that names nothing leaves the pragma to decide, for the parser.
    assert declared(b'<meta charset="bogus" http-equiv="content-type" content="charset=gbk"><p>') == "gb18030"


def test_undeclared_gbk_with_a_stray_byte_reads_as_gb18030_on_a_chinese_page():
    """The detector finds nothing (one stray byte is enough) and the alts read as GBK and as Big5:
    a page labelled Chinese is read as GB18030, the standard's default for Chinese, not as UTF-8."""
    text = "<p>欢迎光临本店，全场商品包邮，七天无理由退换货。</p>".encode("gbk")
    payload = b"<html><body>" + text + b"\xff" + text + IMG + b"</body></html>"
    assert images(payload) == (FOUND, "gb18030")
    assert images(payload, language="")[1] != "gb18030"  # unlabelled: UTF-8 or a guess, as before


def test_undeclared_gbk_alts_the_detector_cannot_place_read_as_gb18030():
    # The alts of a bench-extract page: they read as GB18030 and Big5-HKSCS, and detection names neither.
    alts = ["双边家族阳明山世界", "脚器日记铅笔", "型icheckinnmayfairpratunam", "刀腰链高颜值吸引",
            "优雅散发健忘正品360随行电子2话剧美国30意大利你闻", "圣美伦寻梦神脚099吸引香水字体东城随行",
            "防静电除尘布袋", "yabitoo玻璃吸管杯男女学生高颜值耐高温大容量随行茶漏泡茶水杯",
            "Ritual 健康维他命品牌设计+包装设计", "设计怎么票实验本子自己菲尔", "卡通",
            "标准版票你闻酒店家用的入手可可颂吸管", "美茶几高颜值内衬型刀卡片美食中央之夜"]
    payload = "".join(f'<img src="{i}.jpg" alt="{alt}">' for i, alt in enumerate(alts)).encode("gbk")
    found, codec = images(payload)
    assert codec == "gb18030" and [alt for _, alt in found] == alts


def test_replacement_labels_make_a_page_unreadable():
    """hz-gb-2312, iso-2022-kr and the like decode to one U+FFFD in a browser: the page has no images."""
    assert images(b'<meta charset="hz-gb-2312">' + IMG) == ([], charset.REPLACEMENT)
    assert images(IMG, "iso-2022-cn") == ([], charset.REPLACEMENT)


@pytest.mark.parametrize("label,codec", [
    ("UTF-16", "utf-8"), ("utf-16le", "utf-8"),  # a <meta> saying UTF-16 means UTF-8
    ("x-user-defined", "cp1252"), ("latin1", "cp1252"), ("ascii", "cp1252"), ("shift_jis", "cp932"),
    ("euc-kr", "cp949"), ("big5", "big5hkscs"), (" GBK\t", "gb18030"), ("iso-8859-8-i", "iso8859-8"),
])
def test_labels(label, codec):
    assert charset.lookup(label) == codec


def test_utf16_pages_are_rescanned_whatever_they_declare():
    html = '<meta charset="gbk"><img src="a.jpg" alt="纯棉短袖T恤男士宽松圆领上衣">'
    assert images(html.encode("utf-16")) == (FOUND, "utf-16")  # a BOM outranks every label
    assert images(('<?xml version="1.0"?>' + html).encode("utf-16-le")) == (FOUND, "utf-16-le")
    assert images(('<?xml version="1.0"?>' + html).encode("utf-16-be")) == (FOUND, "utf-16-be")


@pytest.mark.parametrize("content,codec", [
    ("text/html; charset=gbk", "gb18030"),
    ("text/html;charset = 'big5' ", "big5hkscs"),
    ('charset="utf-8', None),
    ("text/html; charset", None),
    ("charsetx charset=koi8-r;q", "koi8-r"),
    ("text/html", None),
])
def test_charset_in_content(content, codec):
    assert charset.charset_in_content(content) == codec
