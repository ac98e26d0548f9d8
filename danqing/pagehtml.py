"""What an HTML page says about its images: charset, <base href> and captioned <img> tags.

A byte-level scan, not a DOM: extraction needs only <img> attributes, so no tree is built and
no page is decoded whole (about as fast as lexbor was; the per-pair work after it dominates).
The scan follows the HTML tokenizer where it matters for images: tag and attribute names are
case-insensitive, the first of repeated attributes wins, values may be double-, single- or
unquoted, entities are decoded, and the contents of comments, <script>, <style>, <textarea>,
<title> and the like are not markup.

It runs on the raw bytes: the ASCII bytes of markup (<, >, =, quotes, whitespace) never occur
inside a multi-byte character of UTF-8, GB18030 or Big5, so only the attribute values used
are decoded. UTF-16 pages (by their BOM), whose markup is not ASCII, are re-encoded first.
"""

from __future__ import annotations

import codecs
import html
import re
from urllib.parse import urljoin

# Markup that matters to the scan; group 1 names what was found.
_MARKUP = re.compile(rb"<(!--|(?:img|base|script|style|textarea|title|xmp|iframe|noembed|noframes)(?=[\s/>]))",
                     re.I)
# The rest of a tag up to its '>': attributes with their quoted values, so a '>' inside a value
# does not end it. Possessive, so no input backtracks; bounded by _MAX_TAG_BYTES per tag.
_TAG_REST = re.compile(rb"""(?:[\s/]++|[^\s/>=][^\s/>=]*+(?:\s*+=\s*+(?:"[^"]*+"|'[^']*+'|[^\s>]*+))?+|=)*+>""")
# One attribute: its name and its raw value, quotes included (stripped only from the values used).
_ATTR = re.compile(rb"""([^\s/>=][^\s/>=]*+)(?:\s*+=\s*+("[^"]*+"|'[^']*+'|[^\s>]*+))?+""")
_MAX_TAG_BYTES = 16_384
_COMMENT_END = re.compile(rb"--!?>")
_RAW_END = {name: re.compile(rb"</" + name + rb"(?=[\s/>])", re.I)
            for name in (b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes")}

LAZY_ATTRS = (b"data-src", b"data-original", b"data-lazy-src", b"data-lazyload", b"data-echo")
_SPACES = re.compile(r"\s+")
_SRCSET_URL = re.compile(r"[\s,]*(\S+)")

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
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")
# Visible-text approximation for a page without a language label: markup and non-text blocks go.
_NOT_TEXT = re.compile(rb"<(script|style|noscript)\b.*?(?:</\1\s*>|\Z)|<!--.*?(?:-->|\Z)|<[a-zA-Z/!?][^>]*+(?:>|\Z)",
                       re.I | re.S)
_TEXT_BYTES = 65_536


def scan(payload: bytes) -> tuple[list[dict[bytes, bytes]], bytes | None]:
    """The raw attributes of every <img> with an alt, in page order, and the first <base href>."""
    images: list[dict[bytes, bytes]] = []
    base = None
    pos, end = 0, len(payload)
    while match := _MARKUP.search(payload, pos):
        name = match.group(1).lower()
        pos = match.end()
        if name == b"!--":
            close = _COMMENT_END.search(payload, pos)
            if close is None:
                break  # an unclosed comment runs to the end of the page
            pos = close.end()
            continue
        tag = _TAG_REST.match(payload, pos, min(end, pos + _MAX_TAG_BYTES))
        tag_end = tag.end() if tag else payload.find(b">", pos)
        if tag_end < 0:
            break
        if name in _RAW_END:
            close = _RAW_END[name].search(payload, tag_end)
            if close is None:
                break
            pos = close.end()
            continue
        attrs = _attributes(payload, pos, tag_end)
        pos = tag_end
        if name == b"img":
            if b"alt" in attrs:
                images.append(attrs)
        elif base is None and (href := _unquote(attrs.get(b"href", b""))):
            base = href
    return images, base


def _attributes(payload: bytes, start: int, end: int) -> dict[bytes, bytes]:
    """Lower-case name -> raw value of the attributes in payload[start:end]; the first of repeats wins."""
    found = _ATTR.findall(payload, start, end)
    attrs = dict(reversed(found))
    if not b"".join(attrs).islower():  # rare: names in capitals
        attrs = {name.lower(): value for name, value in reversed(found)}
    return attrs


def _unquote(value: bytes) -> bytes:
    return value[1:-1] if value and value[0] in b"\"'" else value


# ---- charset --------------------------------------------------------------------------------

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


def page_charset(payload: bytes, http_charset: str | None, evidence: bytes) -> str:
    """The codec of a page: its BOM, then the HTTP header and <meta> when they decode the evidence
    (the bytes actually used, such as alt texts), then UTF-8, then detection on the page.

    A server default (often utf-8) that the bytes contradict loses to the page's own <meta>.
    """
    if payload.startswith(codecs.BOM_UTF8):
        return "utf-8"
    meta = _META_CHARSET.search(payload, 0, 4096)
    labels = (http_charset, meta and meta.group(1))
    declared = list(dict.fromkeys(c for c in map(normalize_charset, labels) if c))
    if not _HIGH_BYTES.search(evidence):  # ASCII reads the same in every ASCII-compatible charset
        return declared[0] if declared else "utf-8"
    for codec in declared + ([] if "utf-8" in declared else ["utf-8"]):
        try:
            evidence.decode(codec)
            return codec
        except UnicodeDecodeError:
            pass
    return declared[0] if declared else detect_charset(payload)


def detect_charset(payload: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:_DETECT_BYTES]).best()
    codec = normalize_charset(best.encoding if best else None) or "utf-8"
    return "utf-8" if codec.startswith(("utf-16", "utf-32")) else codec  # markup was found in ASCII


# ---- images ---------------------------------------------------------------------------------

def images(payload: bytes, page_url: str, http_charset: str | None, min_side_px: int
           ) -> tuple[list[tuple[str, str]], str]:
    """(absolute image URL, alt) of every captioned <img> in page order without repeats, and the charset."""
    utf16 = payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
    if utf16:  # the one common encoding whose markup is not ASCII bytes: scanned as UTF-8
        payload = payload.decode("utf-16", "replace").encode()
    found, base = scan(payload)
    if not found:
        return [], ""
    evidence = b"\n".join(attrs[b"alt"] for attrs in found)
    codec = page_charset(payload, http_charset, evidence)
    charset = "utf-16" if utf16 else codec
    base_url = page_url
    if base is not None and (href := _text(base, codec).strip()):
        base_url = urljoin(page_url, href)
    seen: set[tuple[str, str]] = set()
    pairs = []
    for attrs in found:
        alt = _unquote(attrs[b"alt"])
        if not alt.strip() or _is_pixel(attrs, min_side_px):
            continue
        src = image_source(attrs, codec)
        alt = _SPACES.sub(" ", _text(alt, codec)).strip()
        if not src or not alt:
            continue
        url = _absolute(base_url, src)
        if not url.startswith(("http://", "https://")):
            continue
        key = (url, alt)
        if key not in seen:
            seen.add(key)
            pairs.append(key)
    return pairs, charset


def _text(value: bytes, codec: str) -> str:
    text = value.decode(codec, "replace")
    return html.unescape(text) if "&" in text else text


def _absolute(base: str, src: str) -> str:
    """src resolved against base, without fragment; absolute URLs without dot segments skip urljoin."""
    if src.startswith(("http://", "https://")) and "/." not in src:
        url = src
    else:
        url = urljoin(base, src)
    return url.split("#", 1)[0]


def image_source(attrs: dict[bytes, bytes], codec: str = "utf-8") -> str | None:
    """The real image of an <img>: lazy-load attributes first, then srcset's largest, then src."""
    for name in LAZY_ATTRS:
        if (value := attrs.get(name)) and (value := _unquote(value).strip()) and not value.startswith(b"data:"):
            return _text(value, codec)
    for name in (b"srcset", b"data-srcset"):
        if (value := attrs.get(name)) and (value := largest_in_srcset(_text(_unquote(value), codec))):
            return value
    src = _unquote(attrs.get(b"src", b"")).strip()
    return _text(src, codec) if src and not src[:5].lower() == b"data:" else None


def largest_in_srcset(srcset: str) -> str | None:
    """The candidate with the largest width (w) or density (x) descriptor; widths win over densities."""
    best, best_key = None, (-1, -1.0)
    pos = 0
    while match := _SRCSET_URL.match(srcset, pos):
        url, pos = match.group(1), match.end()
        descriptor = ""
        if url.endswith(","):  # a URL directly followed by a comma has no descriptor (commas inside are kept)
            url = url.rstrip(",")
        else:
            end = srcset.find(",", pos)
            end = len(srcset) if end < 0 else end
            descriptor, pos = srcset[pos:end].strip().lower(), end
        key = _descriptor_key(descriptor)
        if key is not None and url and not url.startswith("data:") and key > best_key:
            best, best_key = url, key
    return best


def _descriptor_key(descriptor: str) -> tuple[int, float] | None:
    if not descriptor:
        return (0, 1.0)
    unit, number = descriptor[-1:], descriptor[:-1]
    try:
        value = float(number)
    except ValueError:
        return None
    return (1, value) if unit == "w" else (0, value) if unit == "x" else None


def _is_pixel(attrs: dict[bytes, bytes], min_side_px: int) -> bool:
    for name in (b"width", b"height"):
        if value := attrs.get(name):
            value = _unquote(value).strip().lower().removesuffix(b"px").strip()
            if value.isdigit() and int(value) <= min_side_px:
                return True
    return False


def visible_text(payload: bytes, charset: str) -> str:
    """Roughly the text a reader sees at the top of the page: scripts, styles, comments and tags removed."""
    if charset == "utf-16":
        payload, charset = payload.decode(charset, "replace").encode(), "utf-8"
    return _NOT_TEXT.sub(b" ", payload[:_TEXT_BYTES]).decode(charset or "utf-8", "replace")
