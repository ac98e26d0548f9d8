"""Stage 1: image/alt-text candidate pairs from the HTML pages of WARC files, coarsely filtered.

Reads WARCs with FastWARC, decodes pages (HTTP header, <meta>, then detection), finds <img>
with alt text via lexbor (selectolax), and judges each pair: page language, blacklisted
domain, caption length in jieba words, text-safety floor. Every pair keeps the offset and
length of its response record's gzip member, so a byte-range read returns that record.
Corrupt input is counted with stats.error and skipped; it never fails the shard.
"""

from __future__ import annotations

import codecs
import importlib
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from urllib.parse import urljoin, urlsplit

import pyarrow as pa

from danqing import warcsource
from danqing.config import ExtractConfig
from danqing.records import KEPT, PAIR_SCHEMA, sample_id
from danqing.shard import ShardJob
from danqing.stats import StageStats
from danqing.text.words import script_language, word_count  # light: jieba itself loads on first use

# Drop reasons (rows).
PAGE_NOT_CHINESE = "page_not_chinese"
DOMAIN_BLACKLISTED = "domain_blacklisted"
CAPTION_TOO_SHORT = "caption_too_short"
CAPTION_TOO_LONG = "caption_too_long"
CAPTION_UNSAFE = "caption_unsafe"

# Events that are not rows (stats.error).
WARC_CORRUPT = "warc_corrupt"  # the file cannot be read on: the rest of it is skipped
WARC_TRUNCATED = "warc_truncated"  # a record shorter than its Content-Length
RECORD_CORRUPT = "record_corrupt"  # one record that fails to parse
RECORD_REVISIT = "record_revisit"
RESPONSE_NOT_OK = "response_not_ok"
PAYLOAD_NOT_HTML = "payload_not_html"
HTML_TOO_LARGE = "html_too_large"
HTML_TOO_DEEP = "html_too_deep"
HTML_UNPARSABLE = "html_unparsable"

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_META_CHARSET = re.compile(rb"""<meta[^>]{0,300}?charset\s*=\s*["']?\s*([a-z0-9_.:\-]+)""", re.I)
_LAZY_ATTRS = ("data-src", "data-original", "data-lazy-src", "data-lazyload", "data-echo")
_SRCSET_URL = re.compile(r"[\s,]*(\S+)")
_CLD2 = re.compile(rb"^languages-cld2:\s*(.+?)\s*$", re.M)
_SPACES = re.compile(r"\s+")
# WHATWG labels: GB2312/GBK pages are decoded as GB18030 (a superset), Big5 as Big5-HKSCS, Latin-1 as cp1252.
_CHARSET_ALIASES = {
    **dict.fromkeys(("gb2312", "gbk", "x-gbk", "gb_2312", "gb_2312-80", "cp936", "ms936", "windows-936", "euc-cn",
                     "csgb2312", "chinese", "iso-ir-58", "gb18030"), "gb18030"),
    **dict.fromkeys(("big5", "big5-hkscs", "x-x-big5", "cn-big5", "csbig5", "cp950", "ms950"), "big5hkscs"),
    **dict.fromkeys(("iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii", "iso8859-1", "l1"), "cp1252"),
    **dict.fromkeys(("utf8", "unicode-1-1-utf-8", "utf-16", "utf-16le", "utf-16be"), "utf-8"),  # meta utf-16 = utf-8
}
_DETECT_BYTES = 32_768
_IMG_TAG = re.compile(rb"<img", re.I)
_BATCH_ROWS = 8192
_ROW_KEYS = ("page_url", "url", "alt_text", "page_language", "charset", "drop_reason")  # what page_rows gives
_DEPTH_CHECK_TAGS = 5  # pages with more than max_html_depth * this many "<" get a nesting scan
_TAG = re.compile(rb"<(/?)([a-zA-Z][a-zA-Z0-9]{0,15})")
# Elements that never hold children or are closed implicitly by a sibling: they add no depth.
_FLAT = {b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta", b"source", b"track",
         b"wbr", b"param", b"p", b"li", b"td", b"th", b"tr", b"option", b"dt", b"dd"}


@dataclass
class Page:
    """One HTML response record: where it sits in the WARC, its payload and its labels."""

    url: str
    record_id: str
    pos: int  # position in the input stream
    payload: bytes
    http_charset: str | None
    length: int = 0  # gzip member length, known when the next record starts
    language: str = ""  # CLD2 codes from the metadata record, like the index's content_languages


def process(job: ShardJob, stats: StageStats) -> pa.RecordBatchReader:
    """Candidate pairs of every WARC input, one row per pair with its drop reason, streamed."""
    return pa.RecordBatchReader.from_batches(PAIR_SCHEMA, iter_batches(job, stats))


def iter_batches(job: ShardJob, stats: StageStats, batch_rows: int = _BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """process() as record batches of about batch_rows rows, for a writer that streams them out."""
    columns: dict[str, list] = {name: [] for name in PAIR_SCHEMA.names}
    for spec in job.inputs:
        name = warcsource.warc_filename(spec)
        stream = warcsource.open_input(spec, job.cfg)
        try:
            for page in iter_pages(stream, stats, job.cfg.extract):
                offset = warcsource.file_offset(stream, page.pos)
                rows = page_rows(page, job.cfg.extract, stats)
                columns["id"] += [sample_id(name, offset, row["url"], row["alt_text"]) for row in rows]
                for key in _ROW_KEYS:
                    columns[key] += [row[key] for row in rows]
                columns["warc_filename"] += [name] * len(rows)
                columns["warc_record_offset"] += [offset] * len(rows)
                columns["warc_record_length"] += [page.length] * len(rows)
                if len(columns["id"]) >= batch_rows:  # Arrow holds rows in a fraction of Python's memory
                    yield _batch(columns)
        finally:
            stream.close()
    if columns["id"]:
        yield _batch(columns)


def _batch(columns: dict[str, list]) -> pa.RecordBatch:
    """The rows gathered so far as one record batch; the lists are emptied."""
    batch = pa.record_batch([pa.array(values, type=PAIR_SCHEMA.field(key).type) for key, values in columns.items()],
                            schema=PAIR_SCHEMA)
    for values in columns.values():
        values.clear()
    return batch


# ---- WARC records -> pages -------------------------------------------------------------

class _Counting:
    """Counts the bytes FastWARC reads (the last record's length), and keeps a source failure to re-raise."""

    def __init__(self, stream):
        self.stream, self.pos, self.error = stream, 0, None

    def read(self, size: int = -1) -> bytes:
        try:
            data = self.stream.read(size)
        except BaseException as e:  # noqa: B036 (handed back to the caller past FastWARC)
            self.error = e
            raise
        self.pos += len(data)
        return data

    def tell(self) -> int:
        return self.pos


def iter_pages(stream, stats: StageStats, cfg: ExtractConfig) -> Iterator[Page]:
    """HTML response pages of one WARC stream, each with its record length and CLD2 languages.

    A response is held until the next record starts (its length) and its metadata record
    has been seen (its languages); Common Crawl writes request, response, metadata.
    """
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    counted = _Counting(stream)
    pending: Page | None = None
    records = iter(ArchiveIterator(counted, parse_http=False, auto_decode="none"))
    while True:
        try:
            record = next(records, None)
        except BaseException as e:  # noqa: B036 (FastWARC raises Rust panics as BaseException)
            if counted.error is not None:  # the source failed (network, store): a retry may succeed
                raise counted.error from e
            _reraise_interrupts(e)
            stats.error(WARC_CORRUPT)
            if pending is not None and pending.length:
                yield pending
            return  # the decompressor cannot resync past a corrupt member
        if record is None:
            break
        pos = record.stream_pos
        if pending is not None and not pending.length:
            pending.length = pos - pending.pos
        kind = record.record_type
        if kind == WarcRecordType.metadata:
            if pending is not None and _describes(record, pending):
                pending.language = _cld2_languages(record.reader.read(65_536))
            continue
        if kind not in (WarcRecordType.response, WarcRecordType.revisit):
            continue
        if pending is not None:
            yield pending
            pending = None
        if kind == WarcRecordType.revisit:
            stats.error(RECORD_REVISIT)
            continue
        try:
            pending = _page(record, pos, stats, cfg)
        except Exception:
            stats.error(RECORD_CORRUPT)
    if pending is not None:
        pending.length = pending.length or counted.pos - pending.pos
        yield pending


def _reraise_interrupts(e: BaseException) -> None:
    if isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        raise e


def _describes(metadata, page: Page) -> bool:
    headers = metadata.headers
    return headers.get("WARC-Concurrent-To") == page.record_id or headers.get("WARC-Target-URI") == page.url


def _cld2_languages(fields: bytes) -> str:
    """ISO 639-3 codes of the languages-cld2 field, most text first ("zho,eng"); "" if absent."""
    match = _CLD2.search(fields)
    if not match:
        return ""
    try:
        langs = json.loads(match.group(1))["languages"]
        return ",".join(lang.get("code-iso-639-3") or lang["code"] for lang in langs)
    except (ValueError, KeyError, TypeError):
        return ""


def _page(record, pos: int, stats: StageStats, cfg: ExtractConfig) -> Page | None:
    """The HTML payload of a response record, or None (counted) when it is not one we can use."""
    record.parse_http()
    http = record.http_headers
    if not 200 <= (http.status_code or 0) < 300:
        stats.error(RESPONSE_NOT_OK)
        return None
    mime = (record.http_content_type or "").lower()
    if mime and mime not in _HTML_TYPES:
        stats.error(PAYLOAD_NOT_HTML)
        return None
    expected = record.content_length
    if expected > cfg.max_html_bytes:
        stats.error(HTML_TOO_LARGE)
        return None
    payload = record.reader.read()
    if len(payload) < expected:
        stats.error(WARC_TRUNCATED)
        return None
    payload = _decode_transfer(payload, http.get("Transfer-Encoding"), http.get("Content-Encoding"),
                               cfg.max_html_bytes)
    if payload is None:
        stats.error(HTML_TOO_LARGE)
        return None
    if not mime and not payload.lstrip()[:1] == b"<":
        stats.error(PAYLOAD_NOT_HTML)
        return None
    return Page(record.headers.get("WARC-Target-URI") or "", record.record_id or "", pos, payload,
                record.http_charset)


def _decode_transfer(payload: bytes, transfer: str | None, encoding: str | None, limit: int) -> bytes | None:
    """Undo chunking and gzip/deflate as recorded on the wire; None if the result exceeds limit."""
    if transfer and "chunked" in transfer.lower():
        payload = dechunk(payload)
    encoding = (encoding or "").lower()
    if encoding in ("gzip", "x-gzip", "deflate") and payload[:1] in (b"\x1f", b"\x78"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
        try:
            out = inflater.decompress(payload, limit + 1)
        except zlib.error:
            return payload  # mislabelled: keep the bytes as they are
        return None if len(out) > limit else out
    return payload


def dechunk(data: bytes) -> bytes:
    """The body of an HTTP/1.1 chunked payload; a malformed tail keeps what came before it."""
    out, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n", pos)
        if end < 0:
            break
        try:
            size = int(data[pos:end].split(b";", 1)[0].strip() or b"x", 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(data[end + 2: end + 2 + size])
        pos = end + 2 + size + 2
    return b"".join(out) if out else data


# ---- page -> pairs ---------------------------------------------------------------------

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


def decode_html(payload: bytes, http_charset: str | None) -> tuple[str, str]:
    """Text and codec: BOM, the HTTP header, <meta>, strict UTF-8, then charset-normalizer's guess."""
    if payload.startswith(codecs.BOM_UTF8):
        return payload[3:].decode("utf-8", "replace"), "utf-8"
    meta = _META_CHARSET.search(payload, 0, 4096)
    declared = [c for c in (normalize_charset(http_charset), normalize_charset(meta and meta.group(1))) if c]
    # A server default (often utf-8) that the bytes contradict loses to the page's own <meta>.
    for charset in dict.fromkeys(declared):
        try:
            return payload.decode(charset), charset
        except UnicodeDecodeError:
            pass
    if "utf-8" not in declared:
        try:
            return payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    charset = declared[0] if declared else detect_charset(payload)
    return payload.decode(charset, "replace"), charset


def detect_charset(payload: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(payload[:_DETECT_BYTES]).best()
    return normalize_charset(best.encoding if best else None) or "utf-8"


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


def page_rows(page: Page, cfg: ExtractConfig, stats: StageStats) -> list[dict]:
    """One row per distinct (image URL, alt) of the page, judged."""
    from selectolax.lexbor import LexborHTMLParser

    payload = page.payload
    if payload.count(b"<") > cfg.max_html_depth * _DEPTH_CHECK_TAGS and nesting_depth(payload) > cfg.max_html_depth:
        stats.error(HTML_TOO_DEEP)
        return []
    if not _IMG_TAG.search(payload):
        return []  # no <img>, no pairs: the costly decode and parse are skipped
    text, charset = decode_html(payload, page.http_charset)
    # lexbor reads UTF-8 itself: cleanly decoded UTF-8 is handed over as the bytes, not re-encoded from text.
    clean_utf8 = charset == "utf-8" and "\ufffd" not in text and not payload.startswith(codecs.BOM_UTF8)
    try:
        tree = LexborHTMLParser(payload if clean_utf8 else text)
        pairs = find_images(tree, page.url, cfg.min_img_side_px)
    except Exception:
        stats.error(HTML_UNPARSABLE)
        return []
    language = page.language or own_language(tree, pairs)
    page_reason = _page_reason(page.url, language, cfg)  # check()'s first steps, once per page
    rows = []
    for url, alt in pairs:
        row = {"page_url": page.url, "url": url, "alt_text": alt, "page_language": language, "charset": charset}
        row["drop_reason"] = page_reason or _pair_reason(url, alt, cfg) or KEPT
        rows.append(row)
    return rows


def find_images(tree, page_url: str, min_side_px: int) -> list[tuple[str, str]]:
    """(absolute image URL, alt) of every captioned <img>, in page order, without repeats."""
    base = page_url
    base_node = tree.css_first("base[href]")
    if base_node is not None:
        href = (base_node.attributes.get("href") or "").strip()
        if href:
            base = urljoin(page_url, href)
    seen: set[tuple[str, str]] = set()
    pairs = []
    for node in tree.css("img[alt]"):
        attrs = node.attributes
        alt = _SPACES.sub(" ", attrs.get("alt") or "").strip()
        if not alt or _is_pixel(attrs, min_side_px):
            continue
        src = image_source(attrs)
        if not src:
            continue
        url = _absolute(base, src)
        if not url.startswith(("http://", "https://")):
            continue
        key = (url, alt)
        if key not in seen:
            seen.add(key)
            pairs.append(key)
    return pairs


def _absolute(base: str, src: str) -> str:
    """src resolved against base, without fragment; absolute URLs without dot segments skip urljoin."""
    if src.startswith(("http://", "https://")) and "/." not in src:
        url = src
    else:
        url = urljoin(base, src)
    return url.split("#", 1)[0]


def image_source(attrs: dict) -> str | None:
    """The real image of an <img>: lazy-load attributes first, then srcset's largest, then src."""
    for name in _LAZY_ATTRS:
        value = attrs.get(name)
        if value and (value := value.strip()) and not value.startswith("data:"):
            return value
    for name in ("srcset", "data-srcset"):
        value = attrs.get(name)
        if value and (value := largest_in_srcset(value)):
            return value
    src = (attrs.get("src") or "").strip()
    return src if src and not src.lower().startswith("data:") else None


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


def _is_pixel(attrs: dict, min_side_px: int) -> bool:
    for name in ("width", "height"):
        value = attrs.get(name)
        if not value:
            continue
        value = value.strip().lower().removesuffix("px").strip()
        if value.isdigit() and int(value) <= min_side_px:
            return True
    return False


def own_language(tree, pairs: list[tuple[str, str]]) -> str:
    """Script-based language of a page without a CLD2 label: its visible text plus its alts."""
    body = tree.body
    if body is not None:
        tree.strip_tags(["script", "style", "noscript"])
    title = tree.css_first("title")
    parts = [title.text() if title is not None else "", body.text(separator=" ") if body is not None else ""]
    parts += [alt for _, alt in pairs]
    return script_language(" ".join(parts)[:20_000])


# ---- checks ----------------------------------------------------------------------------

def check(row: dict, cfg: ExtractConfig) -> str | None:
    """The drop reason of one candidate pair, or None to keep it."""
    return _page_reason(row["page_url"], row["page_language"], cfg) or _pair_reason(row["url"], row["alt_text"], cfg)


def _page_reason(page_url: str, language: str, cfg: ExtractConfig) -> str | None:
    if language.split(",", 1)[0] not in cfg.languages:
        return PAGE_NOT_CHINESE
    blocked = _blacklist(tuple(cfg.domain_blacklist))
    return DOMAIN_BLACKLISTED if blocked and _blocked(page_url, blocked) else None


def _pair_reason(url: str, alt: str, cfg: ExtractConfig) -> str | None:
    blocked = _blacklist(tuple(cfg.domain_blacklist))
    if blocked and _blocked(url, blocked):
        return DOMAIN_BLACKLISTED
    # Every word is one character at least: a caption shorter than min_words is short without segmenting.
    words = len(alt)
    words = words if words < cfg.min_words else word_count(alt)
    if words < cfg.min_words:
        return CAPTION_TOO_SHORT
    if words > cfg.max_words:
        return CAPTION_TOO_LONG
    if unsafe(alt, cfg):
        return CAPTION_UNSAFE
    return None


@cache
def _blacklist(domains: tuple[str, ...]) -> frozenset[str]:
    return frozenset(d.strip().lower().strip(".") for d in domains if d.strip())


def _blocked(url: str, blocked: frozenset[str]) -> bool:
    """The URL's host is a blacklisted domain or a subdomain of one."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    labels = host.split(".")
    return any(".".join(labels[i:]) in blocked for i in range(len(labels)))


@cache
def _keywords() -> re.Pattern:
    from danqing.text.data import word_list

    words = sorted(word_list("blocklist_stage1"), key=len, reverse=True)
    return re.compile("|".join(map(re.escape, words)))


@cache
def _classifier(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def unsafe(caption: str, cfg: ExtractConfig) -> bool:
    """The keyword floor, then the configured classifier (if any)."""
    if _keywords().search(_SPACES.sub("", caption.lower())):
        return True
    return bool(cfg.safety_classifier and _classifier(cfg.safety_classifier)(caption))
