"""What an HTML page says about its images: charset, <base href> and captioned <img> tags.

A byte-level scan, not a DOM: extraction needs only <img> attributes, so no tree is built and
no page is decoded whole. The scan itself is compiled (danqing/imgscan.pyx), since it runs once
per tag. It is the HTML standard's tokenizer where it matters for images: every tag is read to its
'>' by the attribute rules, names are case-insensitive, the first of repeated attributes wins,
values are double-, single- or unquoted, character references are resolved by the attribute-value
rule, comments and the contents of <script>, <style>, <textarea>, <title> and the like are not
markup, and <image> is <img>. The charset is found as the standard finds it (danqing.charset).

Not modelled, as no tree is built: foreign content (an <svg> <image> with an alt would be read
as an <img>; SVG's carries href and no alt) and the insertion modes that drop an <img> (framesets).
<noscript> is read as markup, as a browser without scripting (a crawler) reads it.

It runs on the raw bytes: the ASCII bytes of markup (<, >, =, &, quotes, whitespace) never occur
inside a multi-byte character of UTF-8, GB18030, Big5 or Shift_JIS, so only the attribute values
used are decoded. UTF-16 pages (by their BOM or a UTF-16 XML declaration), whose markup is not
ASCII, are re-encoded first.
"""

from __future__ import annotations

import codecs
import re

try:
    from danqing.imgscan import captioned_images, decoded_pairs
except ImportError as e:  # a source tree that was never installed
    raise ImportError("danqing.imgscan is compiled at install: run `make .venv/.installed`") from e

from danqing.charset import REPLACEMENT, page_charset  # imports imgscan too

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


# ---- images ---------------------------------------------------------------------------------

def images(payload: bytes, page_url: str, http_charset: str | None, min_side_px: int, max_depth: int,
           language: str = "") -> tuple[list[tuple[str, str]], str]:
    """(absolute image URL, alt) of every captioned <img> in page order without repeats, and the charset.

    language, the page's CLD2 codes if known, narrows charset detection. Raises TooDeep for a page
    whose elements nest deeper than max_depth.
    """
    utf16 = _utf16(payload)
    if utf16:  # the one encoding whose markup is not ASCII bytes: scanned as UTF-8
        payload = payload.decode(utf16, "replace").encode()
    found, base, tags, metas = captioned_images(payload, min_side_px)
    if tags > max_depth * _DEPTH_CHECK_TAGS and nesting_depth(payload) > max_depth:
        raise TooDeep(f"elements nest deeper than {max_depth}")
    if not found:
        return [], ""
    if utf16:  # a BOM outranks every label
        return decoded_pairs(found, "utf-8", page_url, base), utf16
    codec = page_charset(payload, http_charset, b"\n".join([alt for _, alt in found]), language, metas)
    if codec == REPLACEMENT:  # a browser shows the page as one U+FFFD: it has no images
        return [], codec
    return decoded_pairs(found, codec, page_url, base), codec


def _utf16(payload: bytes) -> str | None:
    """The UTF-16 codec a page's first bytes announce (a BOM, or "<?x" of an XML declaration), or None."""
    if payload.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if payload.startswith(b"<\0?\0x\0"):
        return "utf-16-le"
    if payload.startswith(b"\0<\0?\0x"):
        return "utf-16-be"
    return None


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
    if charset.startswith("utf-16"):
        payload, charset = payload.decode(charset, "replace").encode(), "utf-8"
    return _NOT_TEXT.sub(b" ", payload[:_TEXT_BYTES]).decode(charset or "utf-8", "replace")
