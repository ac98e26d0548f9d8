"""The character encoding of an HTML page, found as the HTML and Encoding standards find it.

Labels are the Encoding Standard's, and nothing else: a label it does not list (cp936, utf8mb4) is
no declaration, as in a browser. A page's own declaration is its first <meta> that declares a usable
encoding, wherever the tokenizer meets it (the tree builder's "change the encoding", which browsers
apply to a page whose encoding came from a prescan, a guess or a default); when no <meta> outside
comments and raw text declares one, the standard's prescan of the first 1,024 bytes (the limit it
encourages, and what browsers scan), which also reads <meta> inside <script> and an XML declaration.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache

from danqing.imgscan import attribute_text

# The Encoding Standard's labels (encodings.json, © WHATWG, BSD-3-Clause in source), by the Python
# codec that decodes what the standard's decoder does: GBK is read by the GB18030 decoder, Big5 is
# Big5-HKSCS, Shift_JIS is Windows-31J, EUC-KR is Windows-949 and ISO-8859-1 and ASCII are windows-1252.
_LABELS_BY_CODEC = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859-2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 iso_8859-2:1987 l2 latin2",
    "iso8859-3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 iso_8859-3:1988 l3 latin3",
    "iso8859-4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 iso_8859-4:1988 l4 latin4",
    "iso8859-5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 iso_8859-5 iso_8859-5:1988",
    "iso8859-6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 iso-8859-6-e "
                 "iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859-7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 iso8859-7 iso88597 iso_8859-7 "
                 "iso_8859-7:1987 sun_eu_greek",
    "iso8859-8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 iso8859-8 iso88598 iso_8859-8 "
                 "iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859-10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859-13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859-14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859-15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859-16": "iso-8859-16",
    "koi8-r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8-u": "koi8-ru koi8-u",
    "mac-roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 iso8859-1 iso88591 "
              "iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 iso_8859-9:1989 l5 latin5 "
              "windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac-cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 ksc5601 ksc_5601 "
             "windows-949",
}
REPLACEMENT = "replacement"  # labels of encodings that could smuggle markup: a browser shows one U+FFFD for the page
_SPECIAL_LABELS = {
    REPLACEMENT: "csiso2022kr hz-gb-2312 iso-2022-cn iso-2022-cn-ext iso-2022-kr replacement",
    # A <meta> that says UTF-16 means UTF-8 (the standard's rule: the bytes it was read in are ASCII), and
    # markup this scan reads in ASCII bytes is not UTF-16 whoever says so; BOMs are judged before labels.
    "utf-8": "unicodefffe utf-16be csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16 utf-16le",
    # What a <meta> saying x-user-defined means; its own decoder (bytes to private-use characters)
    # has no use for captions.
    "cp1252": "x-user-defined",
}
_LABELS = {label: (codec if codec == REPLACEMENT else codecs.lookup(codec).name)
           for table in (_LABELS_BY_CODEC, _SPECIAL_LABELS) for codec, labels in table.items()
           for label in labels.split()}

_ASCII_SPACE = "\t\n\x0c\r "
_BYTES_SPACE = b"\t\n\x0c\r "
_PRESCAN_BYTES = 1024
_DETECT_BYTES = 32_768
_DETECT_MIN_EVIDENCE = 256
_CHINESE_CODECS = ["gb18030", "big5hkscs"]  # with utf-8 (tried first), what Chinese pages are written in
_HIGH_BYTES = re.compile(rb"[\x80-\xff]")
_META_TAG = re.compile(rb"<meta[\t\n\x0c\r /]", re.I)
_CHARSET_WORD = re.compile("charset[\t\n\x0c\r ]*", re.I | re.A)
_VALUE_END = re.compile("[\t\n\x0c\r ;]")


@lru_cache(maxsize=256)  # a crawl uses a few dozen labels
def lookup(label: str | bytes | None) -> str | None:
    """The Python codec (or REPLACEMENT) of an encoding label, by the standard's "get an encoding": ASCII
    whitespace around it ignored, case-insensitive; None for a label the standard does not list."""
    if not label:
        return None
    if isinstance(label, bytes):
        label = label.decode("latin-1")
    return _LABELS.get(label.strip(_ASCII_SPACE).lower())


# ---- the page's own declaration ------------------------------------------------------------

def declared(payload: bytes, metas: list[tuple]) -> str | None:
    """The encoding the page declares: its first usable <meta> as the tokenizer met it (metas, as
    imgscan.captioned_images reports them), else the prescan of its first bytes; None if neither."""
    return meta_charset(metas) or prescan(payload[:_PRESCAN_BYTES])


def meta_charset(metas: list[tuple]) -> str | None:
    """The tree builder's rule for each <meta> (charset, http-equiv, content) in order: a charset
    attribute that names an encoding, else http-equiv Content-Type with a content naming one."""
    for charset, http_equiv, content in metas:
        codec = charset is not None and lookup(attribute_text(charset, "cp1252"))
        if not codec and http_equiv is not None and content is not None and \
                attribute_text(http_equiv, "cp1252").lower() == "content-type":
            codec = charset_in_content(attribute_text(content, "cp1252"))
        if codec:
            return codec
    return None


def charset_in_content(content: str | bytes) -> str | None:
    """The encoding of a <meta content="text/html; charset=..."> value, by the standard's algorithm
    for extracting a character encoding from a meta element."""
    if isinstance(content, bytes):
        content = content.decode("latin-1")
    for word in _CHARSET_WORD.finditer(content):
        if content[word.end():word.end() + 1] != "=":
            continue  # look for the next "charset"
        value = content[word.end() + 1:].lstrip(_ASCII_SPACE)
        if value[:1] in ("'", '"'):
            end = value.find(value[0], 1)
            return lookup(value[1:end]) if end > 0 else None
        return lookup(_VALUE_END.split(value, maxsplit=1)[0]) if value else None
    return None


class _OutOfBytes(Exception):
    """The prescan ran past its bytes: it has no answer."""


def prescan(data: bytes) -> str | None:
    """The encoding the HTML standard's prescan finds in data (give it the page's first 1,024 bytes):
    comments skipped, every tag's attributes read past, the first <meta> whose charset or http-equiv
    and content declare a known encoding; then an XML declaration's. None when there is none."""
    if data.startswith(b"<\0?\0x\0"):
        return "utf-16-le"
    if data.startswith(b"\0<\0?\0x"):
        return "utf-16-be"
    if not _META_TAG.search(data):  # the common case, found fast: nothing for the loop to find
        return xml_encoding(data)
    try:
        found = _prescan_metas(data)
    except _OutOfBytes:
        found = None
    return found or xml_encoding(data)


def _prescan_metas(data: bytes) -> str | None:
    n, pos = len(data), 0
    while (pos := data.find(b"<", pos)) >= 0:
        if data.startswith(b"<!--", pos):
            pos = data.find(b"-->", pos + 2)  # the dashes may be those of "<!--"
            if pos < 0:
                raise _OutOfBytes
            pos += 3
            continue
        head = data[pos + 1:pos + 6].lower()
        if head[:4] == b"meta" and len(head) == 5 and head[4] in b"\t\n\x0c\r /":
            pos, codec = _prescan_meta(data, pos + 6)
            if codec:
                return codec
        elif head[:1].isalpha() or (head[:1] == b"/" and head[1:2].isalpha()):
            while pos < n and data[pos] not in b"\t\n\x0c\r >":
                pos += 1
            while (attribute := _get_attribute(data, pos))[1] is not None:
                pos = attribute[0]
            pos = attribute[0]
        elif head[:1] in (b"!", b"/", b"?"):
            pos = data.find(b">", pos + 1)
            if pos < 0:
                raise _OutOfBytes
        pos += 1
    return None


def _prescan_meta(data: bytes, pos: int) -> tuple[int, str | None]:
    """The prescan's steps for one <meta>: (where it ended, its encoding or None)."""
    seen: set[bytes] = set()
    got_pragma, need_pragma, codec = False, None, None  # None: no charset yet; "": a failed one
    while True:
        pos, name, value = _get_attribute(data, pos)
        if name is None:
            break
        if name in seen:
            continue
        seen.add(name)
        if name == b"http-equiv":
            got_pragma = got_pragma or value == b"content-type"
        elif name == b"content":
            found = charset_in_content(value)
            if found and codec is None:
                codec, need_pragma = found, True
        elif name == b"charset":
            codec, need_pragma = lookup(value) or "", False
    if need_pragma is None or (need_pragma and not got_pragma) or not codec:
        return pos, None
    return pos, codec


def _get_attribute(data: bytes, pos: int) -> tuple[int, bytes | None, bytes]:
    """The standard's "get an attribute" at pos: (the position after it, its lower-cased name and value);
    the name is None when the tag ends there."""
    n = len(data)
    while pos < n and data[pos] in b"\t\n\x0c\r /":
        pos += 1
    if pos >= n:
        raise _OutOfBytes
    if data[pos] == 0x3E:  # '>'
        return pos, None, b""
    start = pos
    while True:
        if pos >= n:
            raise _OutOfBytes
        c = data[pos]
        if c == 0x3D and pos > start:  # '=' after a name
            name, pos = data[start:pos].lower(), pos + 1
            break
        if c in _BYTES_SPACE:
            name = data[start:pos].lower()
            while pos < n and data[pos] in _BYTES_SPACE:
                pos += 1
            if pos >= n:
                raise _OutOfBytes
            if data[pos] != 0x3D:
                return pos, name, b""
            pos += 1
            break
        if c in (0x2F, 0x3E):  # '/', '>'
            return pos, data[start:pos].lower(), b""
        pos += 1
    while pos < n and data[pos] in _BYTES_SPACE:
        pos += 1
    if pos >= n:
        raise _OutOfBytes
    quote = data[pos]
    if quote in (0x22, 0x27):
        end = data.find(bytes([quote]), pos + 1)
        if end < 0:
            raise _OutOfBytes
        return end + 1, name, data[pos + 1:end].lower()
    if quote == 0x3E:
        return pos, name, b""
    start = pos
    while pos < n and data[pos] not in b"\t\n\x0c\r >":
        pos += 1
    if pos >= n:
        raise _OutOfBytes
    return pos, name, data[start:pos].lower()


def xml_encoding(data: bytes) -> str | None:
    """The encoding named by an XML declaration at the start of data (<?xml ... encoding="gbk"?>), by the
    standard's "get an XML encoding"."""
    if not data.startswith(b"<?xml"):
        return None
    end = data.find(b">")
    pos = data.find(b"encoding", 0, end)
    if end < 0 or pos < 0:
        return None
    pos += 8
    while pos < end and data[pos] <= 0x20:
        pos += 1
    if pos >= end or data[pos] != 0x3D:
        return None
    pos += 1
    while pos < end and data[pos] <= 0x20:
        pos += 1
    quote = data[pos:pos + 1]
    if quote not in (b'"', b"'"):
        return None
    close = data.find(quote, pos + 1, end)
    if close < 0 or any(c <= 0x20 for c in data[pos + 1:close]):
        return None
    return lookup(data[pos + 1:close])


# ---- the page's codec ------------------------------------------------------------------

def page_charset(payload: bytes, http_charset: str | None, evidence: bytes, language: str = "",
                 metas: list[tuple] = ()) -> str:
    """The codec of a page: its BOM, then the HTTP header and the page's declaration when they decode
    the evidence (the bytes actually used, such as alt texts), then UTF-8, then detection, then
    GB18030 for a page labelled Chinese.

    A server default (often utf-8) that the bytes contradict loses to the page's own declaration. A
    page labelled Chinese (CLD2 codes, main language first) is detected among Chinese encodings only,
    and read as GB18030 when nothing decides: the standard's default for a Chinese reader.
    """
    if payload.startswith(codecs.BOM_UTF8):
        return "utf-8"
    header = lookup(http_charset and http_charset.strip('"'))  # a MIME parameter may be a quoted string
    if header == REPLACEMENT:
        return header
    ascii_only = not _HIGH_BYTES.search(evidence)  # ASCII reads the same in every ASCII-compatible charset
    if header and (ascii_only or _decodes(evidence, header)):
        return header  # the common case: no need to look for a declaration
    own = declared(payload, metas)
    if own and own.startswith("utf-16"):  # an XML declaration in UTF-16: the caller rescans such pages
        own = None
    declarations = list(dict.fromkeys(c for c in (header, own) if c))
    if ascii_only:
        return declarations[0] if declarations else "utf-8"
    for codec in declarations + ([] if "utf-8" in declarations else ["utf-8"]):
        if codec == REPLACEMENT or _decodes(evidence, codec):
            return codec
    if declarations:
        return declarations[0]
    chinese = language.startswith("zho")
    if chinese:  # GBK bytes seldom read as Big5: when only one Chinese codec reads them, no guess is needed
        readable = [codec for codec in _CHINESE_CODECS if _decodes(evidence, codec)]
        if len(readable) == 1:
            return readable[0]
    # Detection judges the evidence itself when there is enough of it: a few alts cost a fifth of a page.
    sample = evidence if len(evidence) >= _DETECT_MIN_EVIDENCE else payload
    return detect(sample, _CHINESE_CODECS if chinese else None) or ("gb18030" if chinese else "utf-8")


def _decodes(data: bytes, codec: str) -> bool:
    try:
        data.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def detect(payload: bytes, candidates: list[str] | None = None) -> str | None:
    """The likeliest codec of payload, among candidates if given (fewer candidates, faster); None when
    the detector finds none."""
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:_DETECT_BYTES], cp_isolation=candidates).best()
    if best is None:
        return None
    name = codecs.lookup(best.encoding).name
    if name.startswith(("utf-16", "utf-32")):
        return "utf-8"  # markup was found in ASCII
    return lookup(name) or lookup(name.replace("_", "-")) or name  # the standard's decoder where it has one
