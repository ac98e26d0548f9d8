"""Stage 1: image/alt-text candidate pairs from the HTML pages of WARC files, coarsely filtered.

Reads WARCs with FastWARC, finds captioned <img> tags and the page charset with a byte-level
scan (danqing.pagehtml), and judges each pair: page language, blacklisted domain, caption
length in jieba words, text-safety floor. Every pair keeps the offset and
length of its response record's gzip member, so a byte-range read returns that record.
Corrupt input is counted with stats.error and skipped; it never fails the shard, and a damaged
record costs only itself (danqing.warcrecords resyncs at the next gzip member).
"""

from __future__ import annotations

import importlib
import json
import re
import zlib
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from itertools import accumulate
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa

from danqing import pagehtml, warcrecords, warcsource
from danqing.config import ExtractConfig
from danqing.records import KEPT, PAIR_SCHEMA, sample_ids
from danqing.shard import ShardJob
from danqing.stages.plan import shard_languages
from danqing.stats import StageStats
from danqing.text.words import script_language, word_count  # light: jieba itself loads on first use
from danqing.warcrecords import RECORD_CORRUPT, WARC_CORRUPT, WARC_TRUNCATED  # noqa: F401 (reasons of this stage)

# Drop reasons (rows).
PAGE_NOT_CHINESE = "page_not_chinese"
DOMAIN_BLACKLISTED = "domain_blacklisted"
CAPTION_TOO_SHORT = "caption_too_short"
CAPTION_TOO_LONG = "caption_too_long"
CAPTION_UNSAFE = "caption_unsafe"

# Events that are not rows (stats.error); damage to the WARC itself is counted by danqing.warcrecords.
RECORD_REVISIT = "record_revisit"
RESPONSE_NOT_OK = "response_not_ok"
PAYLOAD_NOT_HTML = "payload_not_html"
HTML_TOO_LARGE = "html_too_large"
HTML_TOO_DEEP = "html_too_deep"

_HTML_TYPES = ("text/html", "application/xhtml+xml")
_CLD2 = re.compile(rb"^languages-cld2:[ \t]*([^\r\n]*)", re.M)  # the JSON, as json.loads takes it
_BATCH_ROWS = 8192
_PAGE_COLUMNS = ("page_url", "page_language", "charset", "warc_filename", "warc_record_offset", "warc_record_length")


@dataclass
class Page:
    """One HTML response record: where it sits in the WARC, its payload and its labels."""

    url: str
    record_id: str
    pos: int  # position in the input stream
    payload: bytes
    http_charset: str | None
    length: int = 0  # gzip member length, known when the next record starts
    language: str = ""  # CLD2 codes from the metadata record, or the index's content_languages


def process(job: ShardJob, stats: StageStats) -> pa.RecordBatchReader:
    """Candidate pairs of every WARC input, one row per pair with its drop reason, streamed."""
    return pa.RecordBatchReader.from_batches(PAIR_SCHEMA, iter_batches(job, stats))


def iter_batches(job: ShardJob, stats: StageStats, batch_rows: int = _BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """process() as record batches of about batch_rows rows, for a writer that streams them out."""
    cfg = job.cfg.extract
    judge = Judge(cfg)
    # Pipeline shards planned from the index know each record's languages; the CLI's inputs do not.
    index_languages = shard_languages(job.cfg, job.crawl, job.shard) if job.out_prefix is None else {}
    rows = _Rows()
    for spec in job.inputs:
        name = warcsource.warc_filename(spec)
        stream = warcsource.open_input(spec, job.cfg)
        try:
            for page in iter_pages(stream, stats, cfg, spec):
                offset = warcsource.file_offset(stream, page.pos)
                page.language = page.language or index_languages.get((name, offset), "")
                pairs, charset, language = page_pairs(page, cfg, stats)
                if pairs:
                    rows.add(pairs, judge.page(page.url, language), page.url, language, charset, name, offset,
                             page.length)
                if len(rows.urls) >= batch_rows:  # Arrow holds rows in a fraction of Python's memory
                    yield rows.batch(judge)
        finally:
            stream.close()
    if rows.urls:
        yield rows.batch(judge)


class _Rows:
    """Pairs gathered page by page, then judged, identified and converted a batch at a time: each kind
    of work in one pass keeps its own data (the segmenter's dictionary, say) in the CPU's caches."""

    def __init__(self):
        self.urls: list[str] = []
        self.alts: list[str] = []
        self.page_reasons: list[str] = []
        self.pages: list[tuple] = []  # the values of _PAGE_COLUMNS, per page
        self.sizes: list[int] = []  # pairs per page

    def add(self, pairs: list[tuple[str, str]], page_reason: str, *page) -> None:
        self.urls += [url for url, _ in pairs]
        self.alts += [alt for _, alt in pairs]
        self.page_reasons += [page_reason] * len(pairs)
        self.pages.append(page)
        self.sizes.append(len(pairs))

    def batch(self, judge: Judge) -> pa.RecordBatch:
        """The rows gathered so far as one record batch; then starts afresh."""
        ids, start = [], 0
        for (_, _, _, name, offset, _), n in zip(self.pages, self.sizes, strict=True):
            ids += sample_ids(name, offset, self.urls[start:start + n], self.alts[start:start + n])
            start += n
        columns = {"id": pa.array(ids, pa.string()), "url": pa.array(self.urls, pa.string()),
                   "alt_text": pa.array(self.alts, pa.string()),
                   "drop_reason": pa.array(judge.reasons(self.urls, self.alts, self.page_reasons), pa.string())}
        row_page = pa.array(np.repeat(np.arange(len(self.sizes)), self.sizes))  # page values are converted once
        for key, values in zip(_PAGE_COLUMNS, zip(*self.pages, strict=True), strict=True):
            columns[key] = pa.array(values, PAIR_SCHEMA.field(key).type).take(row_page)
        self.__init__()
        return pa.record_batch([columns[key] for key in PAIR_SCHEMA.names], schema=PAIR_SCHEMA)


# ---- WARC records -> pages -------------------------------------------------------------

def iter_pages(stream, stats: StageStats, cfg: ExtractConfig, name: str = "") -> Iterator[Page]:
    """HTML response pages of one WARC stream, each with its record length and CLD2 languages.

    A response is held until its metadata record has been seen (its languages); Common Crawl
    writes request, response, metadata. Damaged records are skipped and counted by warcrecords.
    """
    pending: Page | None = None
    for pos, length, (kind, value) in warcrecords.records(stream, _handler(cfg), stats, name):
        if kind == _METADATA:
            if pending is not None and _describes(value, pending):
                pending.language = value[2]
            continue
        if kind == _OTHER:
            continue
        if pending is not None:
            yield pending
            pending = None
        if isinstance(value, str):
            stats.error(value)
        else:
            value.pos, value.length = pos, length
            pending = value
    if pending is not None:
        yield pending


_METADATA, _PAGE, _OTHER = 0, 1, 2


def _handler(cfg: ExtractConfig):
    """What a record holds for pages: a metadata record's ids and languages, or a response's Page or drop
    reason. Runs while FastWARC reads the record; it counts nothing, as a record found damaged is dropped."""
    from fastwarc.warc import WarcRecordType

    metadata, revisit, response = WarcRecordType.metadata, WarcRecordType.revisit, WarcRecordType.response

    def handle(record) -> tuple[int, object]:
        kind = record.record_type
        if kind == metadata:
            headers = record.headers
            return _METADATA, (headers.get("WARC-Concurrent-To"), headers.get("WARC-Target-URI"),
                               _cld2_languages(record.reader.read(65_536)))
        if kind == response:
            try:
                return _PAGE, _page(record, cfg)
            except Exception:
                return _PAGE, RECORD_CORRUPT
        return (_PAGE, RECORD_REVISIT) if kind == revisit else (_OTHER, None)

    return handle


def _describes(metadata: tuple, page: Page) -> bool:
    concurrent_to, target_uri, _ = metadata
    return concurrent_to == page.record_id or target_uri == page.url


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


def _page(record, cfg: ExtractConfig) -> Page | str:
    """The HTML payload of a response record, or the reason it is not one we can use."""
    record.parse_http()
    http = record.http_headers
    if not 200 <= (http.status_code or 0) < 300:
        return RESPONSE_NOT_OK
    mime = (record.http_content_type or "").lower()
    if mime and mime not in _HTML_TYPES:
        return PAYLOAD_NOT_HTML
    expected = record.content_length
    if expected > cfg.max_html_bytes:
        return HTML_TOO_LARGE
    payload = record.reader.read()
    if len(payload) < expected:
        return WARC_TRUNCATED
    payload = _decode_transfer(payload, http.get("Transfer-Encoding"), http.get("Content-Encoding"),
                               cfg.max_html_bytes)
    if payload is None:
        return HTML_TOO_LARGE
    if not mime and not payload.lstrip()[:1] == b"<":
        return PAYLOAD_NOT_HTML
    return Page(record.headers.get("WARC-Target-URI") or "", record.record_id or "", 0, payload,
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

def page_pairs(page: Page, cfg: ExtractConfig, stats: StageStats) -> tuple[list[tuple[str, str]], str, str]:
    """(image URL, alt) of every distinct captioned <img>, the page's charset and its language."""
    payload = page.payload
    try:
        pairs, charset = pagehtml.images(payload, page.url, page.http_charset, cfg.min_img_side_px, cfg.max_html_depth,
                                         page.language)
    except pagehtml.TooDeep:
        stats.error(HTML_TOO_DEEP)
        return [], "", ""
    if not pairs:
        return [], charset, page.language
    language = page.language or own_language(payload, charset, pairs)
    return pairs, charset, language


def own_language(payload: bytes, charset: str, pairs: list[tuple[str, str]]) -> str:
    """Script-based language of a page without a CLD2 label: its visible text plus its alts."""
    text = pagehtml.visible_text(payload, charset)
    return script_language(" ".join([text[:20_000], *(alt for _, alt in pairs)]))


# ---- checks ----------------------------------------------------------------------------

class Judge:
    """The stage-1 checks of one config, prepared once per shard, returning drop reasons (KEPT to keep)."""

    def __init__(self, cfg: ExtractConfig):
        self.languages = frozenset(cfg.languages)
        self.blocked = frozenset(d.strip().lower().strip(".") for d in cfg.domain_blacklist if d.strip())
        self.min_words, self.max_words = cfg.min_words, cfg.max_words
        self.classifier = _classifier(cfg.safety_classifier) if cfg.safety_classifier else None
        self.keywords = _keywords()

    def page(self, page_url: str, language: str) -> str:
        if language.split(",", 1)[0] not in self.languages:  # the page's main language, as CLD2 ranks them
            return PAGE_NOT_CHINESE
        return DOMAIN_BLACKLISTED if self.blocked and _blocked(page_url, self.blocked) else KEPT

    def reasons(self, urls: list[str], alts: list[str], page_reasons: list[str]) -> list[str]:
        """The drop reason of each (image URL, alt) of a batch, given its page's: one check at a time."""
        reasons = list(page_reasons)
        blocked, fewest, most = self.blocked, self.min_words, self.max_words
        for i, reason in enumerate(reasons):  # the image's domain, then the caption's length in words
            if reason:
                continue
            if blocked and _blocked(urls[i], blocked):
                reasons[i] = DOMAIN_BLACKLISTED
                continue
            # Every word is one character at least: a caption shorter than min_words is short without segmenting.
            words = len(alts[i])
            words = words if words < fewest else word_count(alts[i])
            reasons[i] = CAPTION_TOO_SHORT if words < fewest else CAPTION_TOO_LONG if words > most else KEPT
        for i in self.unsafe([i for i, reason in enumerate(reasons) if not reason], alts):
            reasons[i] = CAPTION_UNSAFE
        return reasons

    def unsafe(self, rows: list[int], alts: list[str]) -> set[int]:
        """Those of rows whose caption the keyword floor or the configured classifier flags."""
        # One search over the captions joined by a character no keyword holds, then back to rows by offset.
        captions = [alts[i] for i in rows]
        text = "\0".join(captions).lower()
        if len(text) != len(captions) + sum(map(len, captions)) - 1:  # lower() lengthened a letter: per caption
            captions = [caption.lower() for caption in captions]
            text = "\0".join(captions)
        ends = list(accumulate(len(caption) + 1 for caption in captions))
        flagged = {rows[bisect_right(ends, hit.start())] for hit in self.keywords.finditer(text)}
        if self.classifier:
            flagged.update(i for i in rows if i not in flagged and self.classifier(alts[i]))
        return flagged


def check(row: dict, cfg: ExtractConfig) -> str | None:
    """The drop reason of one candidate pair, or None to keep it."""
    judge = Judge(cfg)
    page_reason = judge.page(row["page_url"], row["page_language"])
    return judge.reasons([row["url"]], [row["alt_text"]], [page_reason])[0] or None


def _blocked(url: str, blocked: frozenset[str]) -> bool:
    """The URL's host is a blacklisted domain or a subdomain of one."""
    host = (urlsplit(url).hostname or "").rstrip(".")
    labels = host.split(".")
    return any(".".join(labels[i:]) in blocked for i in range(len(labels)))


@cache
def _keywords() -> re.Pattern:
    from danqing.text.data import word_list

    # Written without spaces; matched across any whitespace, as in "网上 赌场".
    words = sorted(word_list("blocklist_stage1"), key=len, reverse=True)
    return re.compile("|".join(r"\s*".join(map(re.escape, word)) for word in words))


@cache
def _classifier(spec: str):
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)
