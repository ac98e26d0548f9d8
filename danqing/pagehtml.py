"""What an HTML page says about its images: charset, <base href> and captioned <img> tags.

A byte-level scan, not a DOM: extraction needs only <img> attributes, so no tree is built and
no page is decoded whole. The scan itself is compiled (danqing/imgscan.pyx), since it runs once
per tag. It is the HTML standard's tokenizer where it matters for images: every tag is read to its
'>' by the attribute rules, names are case-insensitive, the first of repeated attributes wins,
values are double-, single- or unquoted, character references are resolved by the attribute-value
rule, comments and the contents of <script>, <style>, <textarea>, <title> and the like are not
markup, and <image> is <img>.

Not modelled, as no tree is built: foreign content (an <svg> <image> with an alt would be read
as an <img>; SVG's carries href and no alt) and the insertion modes that drop an <img> (framesets).
<noscript> is read as markup, as a browser without scripting (a crawler) reads it.

It runs on the raw bytes: the ASCII bytes of markup (<, >, =, quotes, whitespace) never occur
inside a multi-byte character of UTF-8, GB18030 or Big5, so only the attribute values used
are decoded. UTF-16 pages (by their BOM), whose markup is not ASCII, are re-encoded first.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

try:
    from danqing.imgscan import captioned_images, decoded_pairs
except ImportError as e:  # a source tree that was never installed
    raise ImportError("danqing.imgscan is compiled at install: run `make .venv/.installed`") from e

_META_CHARSET = re.compile(rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([a-z0-9_.:\-]+)""", re.I)
# WHATWG labels: GB2312/GBK pages are decoded as GB18030 (a superset), Big5 as Big5-HKSCS, Latin-1 as cp1252.
_CHARSET_ALIASES = {
    **dict.fromkeys(("gb2312", "gbk", "x-gbk", "gb_2312", "gb_2312-80", "cp936", "ms936", "windows-936", "euc-cn",
                     "csgb2312", "chinese", "iso-ir-58", "gb18030"), "gb18030"),
    **dict.fromkeys(("big5", "big5-hkscs", "x-x-big5", "cn-big5", "csbig5", "cp950", "ms950"), "big5hkscs"),
    **dict.fromkeys(("iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii", "iso8859-1", "l1"), "cp1252"),
    **dict.fromkeys(("utf8", "unicode-1-1-utf-8", "utf-16", "utf-16le", "utf-16be"), "utf-8"),  # as WHATWG reads <meta>
}
_DETECT_BYTES = 32_768
_DETECT_MIN_EVIDENCE = 256
_CHINESE_CODECS = ["gb18030", "big5hkscs"]  # with utf-8 (tried first), what Chinese pages are written in
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")
# Visible-text approximation for a page without a language label: markup and non-text blocks go.
_NOT_TEXT = re.compile(rb"<(script|style|noscript)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)|<[a-zA-Z/!?][^>]*+(?:>|\Z)",
                       re.I | re.S)
_TEXT_BYTES = 65_536
_DEPTH_CHECK_TAGS = 5  # pages with more than max_depth * this many tags get a nesting scan
_TAG = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9]{0,15})")
# Elements that never hold children or are closed implicitly by a sibling: they add no depth.
_FLAT = {b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta", b"source", b"track",
         b"wbr", b"param", b"p", b"li", b"td", b"th", b"tr", b"option", b"dt", b"dd"}


class TooDeep(ValueError):
    """A page nested deeper than the limit: an HTML bomb, or a page no reader would see whole."""


# ---- charset --------------------------------------------------------------------------------

@lru_cache(maxsize=256)  # a crawl uses a few dozen labels
def normalize_charset(label: str | bytes | None) -> str | None:
    """The Python codec for a declared charset label, or None when unknown."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("ascii", "ignore")
    label = label.strip().strip("\"'").lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None


def page_charset(payload: bytes, http_charset: str | None, evidence: bytes, language: str = "") -> str:
    """The codec of a page: its BOM, then the HTTP header and <meta> when they decode the evidence
    (the bytes actually used, such as alt texts), then UTF-8, then detection.

    A server default (often utf-8) that the bytes contradict loses to the page's own <meta>. A page
    labelled Chinese (CLD2 codes, main language first) is detected among Chinese encodings only.
    """
    if payload.startswith(codecs.BOM_UTF8):
        return "utf-8"
    header = normalize_charset(http_charset)
    ascii_only = not _HIGH_BYTES.search(evidence)  # ASCII reads the same in every ASCII-compatible charset
    if header and (ascii_only or _decodes(evidence, header)):
        return header  # the common case: no need to look for <meta>
    meta = _META_CHARSET.search(payload, 0, 4096)
    declared = list(dict.fromkeys(c for c in (header, normalize_charset(meta and meta.group(1))) if c))
    if ascii_only:
        return declared[0] if declared else "utf-8"
    for codec in declared + ([] if "utf-8" in declared else ["utf-8"]):
        if _decodes(evidence, codec):
            return codec
    if declared:
        return declared[0]
    chinese = language.startswith("zho")
    if chinese:  # GBK bytes seldom read as Big5: when only one Chinese codec reads them, no guess is needed
        readable = [codec for codec in _CHINESE_CODECS if _decodes(evidence, codec)]
        if len(readable) == 1:
            return readable[0]
    # Detection judges the evidence itself when there is enough of it: a few alts cost a fifth of a page.
    sample = evidence if len(evidence) >= _DETECT_MIN_EVIDENCE else payload
    return detect_charset(sample, _CHINESE_CODECS if chinese else None)


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def detect_charset(payload: bytes, candidates: list[str] | None = None) -> str:
    """The likeliest codec of payload, among candidates if given (fewer candidates, faster)."""
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:_DETECT_BYTES], cp_isolation=candidates).best()
    codec = normalize_charset(best.encoding if best else None) or "utf-8"
    return "utf-8" if codec.startswith(("utf-16", "utf-32")) else codec  # markup was found in ASCII


# ---- images ---------------------------------------------------------------------------------

def images(payload: bytes, page_url: str, http_charset: str | None, min_side_px: int, max_depth: int,
           language: str = "") -> tuple[list[tuple[str, str]], str]:
    """(absolute image URL, alt) of every captioned <img> in page order without repeats, and the charset.

    language, the page's CLD2 codes if known, narrows charset detection. Raises TooDeep for a page
    whose elements nest deeper than max_depth.
    """
    utf16 = payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if utf16:  # the one common encoding whose markup is not ASCII bytes: scanned as UTF-8
        payload = payload.decode("utf-16", "replace").encode()
    found, base, tags, _ = captioned_images(payload, min_side_px)
    if tags > max_depth * _DEPTH_CHECK_TAGS and nesting_depth(payload) > max_depth:
        raise TooDeep(f"elements nest deeper than {max_depth}")
    if not found:
        return [], ""
    codec = page_charset(payload, http_charset, b"\n".join([alt for _, alt in found]), language)
    return decoded_pairs(found, codec, page_url, base), "utf-16" if utf16 else codec


def nesting_depth(payload: bytes) -> int:
    """Approximate element depth from the tag stream (void and implicitly closed tags ignored)."""
    depth = deepest = 0
    for close, name in _TAG.findall(payload):
        name = name.lower()
        if name in _FLAT:
            continue
        if close:
            depth = depth - 1 if depth else 0
        else:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


def visible_text(payload: bytes, charset: str) -> str:
    """Roughly the text a reader sees at the top of the page: scripts, styles, comments and tags removed."""
    if charset == "utf-16":
        payload, charset = payload.decode(charset, "replace").encode(), "utf-8"
    return _NOT_TEXT.sub(b" ", payload[:_TEXT_BYTES]).decode(charset or "utf-8", "replace")
