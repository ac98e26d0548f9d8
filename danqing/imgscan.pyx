# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The <img> tags of an HTML page, found in its raw bytes: compiled, since it runs on every tag.

The tokenizer rules of danqing.pagehtml's docstring, in one pass of C: markup is '<!--' or one
of _TAGS followed by whitespace, '/' or '>'; attribute names are case-insensitive and the first
of repeats wins; values are double-, single- or unquoted ('>' inside quotes does not end a tag);
comments and raw-text elements (<script>, <style>, <title>...) hold no markup. A tag whose '>'
is not within MAX_TAG_BYTES ends at the next '>' instead, so no page costs more than linear time.

captioned_images() returns the raw bytes of the attributes used; once the caller knows the
charset, decoded_pairs() turns them into text, in C too, since it also runs once per image.
"""

from html import unescape
from urllib.parse import urljoin

from cpython.unicode cimport Py_UNICODE_ISSPACE, PyUnicode_Decode
from libc.string cimport memchr, strlen

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, void *overflow_exception) except? -1.0

cdef enum:
    MAX_TAG_BYTES = 16_384

# The attributes read, by index into a tag's value table. Lazy-loading ones come first, in priority order.
cdef enum:
    N_LAZY = 5
    SRCSET = 5
    DATA_SRCSET = 6
    SRC = 7
    ALT = 8
    WIDTH = 9
    HEIGHT = 10
    HREF = 11
    N_ATTRS = 12
cdef const char *_NAMES[N_ATTRS]
_NAMES[:] = [b"data-src", b"data-original", b"data-lazy-src", b"data-lazyload", b"data-echo",
             b"srcset", b"data-srcset", b"src", b"alt", b"width", b"height", b"href"]

# Markup the scan stops at: <img>, <base>, and raw-text elements, which are skipped to their end tag.
cdef enum:
    TAG_IMG = 0
    TAG_BASE = 1
    N_TAGS = 10
cdef const char *_TAGS[N_TAGS]
_TAGS[:] = [b"img", b"base", b"script", b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes"]


cdef inline bint _space(unsigned char c) noexcept nogil:
    """The whitespace of Python's bytes \\s and bytes.strip(): space, \\t, \\n, \\v, \\f, \\r."""
    return c == 32 or 9 <= c <= 13


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef bint _equals_lower(const unsigned char *s, Py_ssize_t n, const char *word) noexcept nogil:
    """s[:n], ASCII-lower-cased, equals the lower-case word."""
    cdef Py_ssize_t i
    for i in range(n):
        if word[i] == 0 or _lower(s[i]) != <unsigned char> word[i]:  # a shorter word, or a different one
            return False
    return word[n] == 0


cdef Py_ssize_t _find_comment_end(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """End (past '>') of the first '-->' or '--!>' at or after pos, or -1."""
    cdef Py_ssize_t i = pos
    while i + 2 < n:
        if buf[i] == 45 and buf[i + 1] == 45:  # "--"
            if buf[i + 2] == 62:
                return i + 3
            if buf[i + 2] == 33 and i + 3 < n and buf[i + 3] == 62:  # "--!>"
                return i + 4
        i += 1
    return -1


cdef Py_ssize_t _find_end_tag(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, const char *name) noexcept:
    """End (past the name) of the first '</name' followed by whitespace, '/' or '>', or -1."""
    cdef Py_ssize_t k = strlen(name)
    cdef const unsigned char *hit
    while pos + 2 + k < n:
        hit = <const unsigned char *> memchr(buf + pos, 60, n - pos)  # '<'
        if hit == NULL:
            return -1
        pos = hit - buf + 1
        if pos + 1 + k < n and buf[pos] == 47 and _equals_lower(buf + pos + 1, k, name):
            if _space(buf[pos + 1 + k]) or buf[pos + 1 + k] == 47 or buf[pos + 1 + k] == 62:
                return pos + 1 + k
    return -1


cdef int _tag_kind(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) noexcept:
    """Index in _TAGS of the tag name at pos (followed by whitespace, '/' or '>'), or -1."""
    cdef Py_ssize_t end = pos
    cdef int i
    while end < n and end - pos < 9 and 97 <= _lower(buf[end]) <= 122:  # at most one letter past "noframes"
        end += 1
    if end >= n or not (_space(buf[end]) or buf[end] == 47 or buf[end] == 62):
        return -1
    for i in range(N_TAGS):
        if _equals_lower(buf + pos, end - pos, _TAGS[i]):
            return i
    return -1


cdef int _attr_index(const unsigned char *s, Py_ssize_t n) noexcept:
    cdef int i
    if n < 3 or n > 13:
        return -1
    for i in range(N_ATTRS):
        if _equals_lower(s, n, _NAMES[i]):
            return i
    return -1


cdef Py_ssize_t _attributes(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t limit,
                            Py_ssize_t *start, Py_ssize_t *end) noexcept:
    """Parse attributes from pos up to the tag's '>' (before limit); fills start/end (raw values,
    quotes kept) of the first occurrence of each attribute read. Returns the position past '>',
    or -1 when there is no '>' before limit."""
    cdef Py_ssize_t i = pos, name, name_end, j, value, value_end
    cdef const unsigned char *close
    cdef unsigned char c, quote
    cdef int index
    while i < limit:
        c = buf[i]
        if c == 62:  # '>'
            return i + 1
        if _space(c) or c == 47 or c == 61:  # whitespace, '/', a stray '='
            i += 1
            continue
        name = i
        while i < limit and not (_space(buf[i]) or buf[i] == 47 or buf[i] == 62 or buf[i] == 61):
            i += 1
        name_end = i
        value = value_end = -1
        j = i
        while j < limit and _space(buf[j]):
            j += 1
        if j < limit and buf[j] == 61:  # '=': a value follows
            j += 1
            while j < limit and _space(buf[j]):
                j += 1
            value = j
            close = NULL
            if j < limit and (buf[j] == 34 or buf[j] == 39):
                quote = buf[j]
                close = <const unsigned char *> memchr(buf + j + 1, quote, limit - j - 1)
            if close != NULL:
                value_end = close - buf + 1
            else:  # unquoted, or a quote that never closes: up to whitespace or '>'
                value_end = j
                while value_end < limit and not (_space(buf[value_end]) or buf[value_end] == 62):
                    value_end += 1
            i = value_end
        index = _attr_index(buf + name, name_end - name)
        if index >= 0 and start[index] < 0:
            if value < 0:
                start[index] = end[index] = name_end  # present without a value: b""
            else:
                start[index], end[index] = value, value_end
    return -1


cdef inline void _unquote(const unsigned char *buf, Py_ssize_t *s, Py_ssize_t *e) noexcept:
    """A value without its quotes (value[1:-1] when it starts with one)."""
    if e[0] > s[0] and (buf[s[0]] == 34 or buf[s[0]] == 39):
        s[0] += 1
        e[0] = e[0] - 1 if e[0] - 1 >= s[0] else s[0]


cdef inline void _strip(const unsigned char *buf, Py_ssize_t *s, Py_ssize_t *e) noexcept:
    while s[0] < e[0] and _space(buf[s[0]]):
        s[0] += 1
    while e[0] > s[0] and _space(buf[e[0] - 1]):
        e[0] -= 1


cdef inline bint _is_data_uri(const unsigned char *s, Py_ssize_t n) noexcept:
    return n >= 5 and _lower(s[0]) == 100 and _lower(s[1]) == 97 and _lower(s[2]) == 116 and \
        _lower(s[3]) == 97 and s[4] == 58  # "data:"


cdef bint _at_most(const unsigned char *buf, Py_ssize_t s, Py_ssize_t e, long limit) noexcept:
    """A width or height value ("1", "1px", " 0 ") that is a whole number <= limit."""
    cdef long value = 0
    _unquote(buf, &s, &e)
    _strip(buf, &s, &e)
    if e - s >= 2 and _lower(buf[e - 2]) == 112 and _lower(buf[e - 1]) == 120:  # "px"
        e -= 2
        _strip(buf, &s, &e)
    if s == e:
        return False
    while s < e:
        if not 48 <= buf[s] <= 57:
            return False
        value = value * 10 + (buf[s] - 48)
        if value > limit:
            return False
        s += 1
    return True


cdef bint _descriptor(const unsigned char *s, Py_ssize_t n, int *kind, double *value):
    """A srcset descriptor ("", "2x", "640w") as (kind, value): widths (1) rank above densities (0)."""
    cdef char number[64]
    cdef char *parsed
    cdef Py_ssize_t i, k
    cdef unsigned char unit
    if n == 0:
        kind[0], value[0] = 0, 1.0
        return True
    unit = _lower(s[n - 1])
    if unit != 119 and unit != 120:  # 'w', 'x'
        return False
    k = n - 1
    while k > 0 and _space(s[k - 1]):
        k -= 1
    if k == 0 or k >= 64:
        return False
    for i in range(k):
        number[i] = <char> s[i]
    number[k] = 0
    try:
        value[0] = PyOS_string_to_double(number, &parsed, NULL)
    except ValueError:
        return False
    if parsed != number + k:
        return False
    kind[0] = 1 if unit == 119 else 0
    return True


cdef bint _largest_candidate(const unsigned char *buf, Py_ssize_t s, Py_ssize_t e,
                             Py_ssize_t *best_s, Py_ssize_t *best_e):
    """The srcset candidate with the largest w (else x) descriptor; False if none is usable.
    Candidates split at ASCII whitespace and commas, as the HTML standard parses srcset."""
    cdef Py_ssize_t pos = s, url, url_end, d, d_end
    cdef int kind = 0, best_kind = -1
    cdef double value, best_value = -1.0
    cdef const unsigned char *comma
    while True:
        while pos < e and (_space(buf[pos]) or buf[pos] == 44):  # whitespace and ','
            pos += 1
        if pos >= e:
            break
        url = pos
        while pos < e and not _space(buf[pos]):
            pos += 1
        url_end = pos
        d = d_end = pos
        if buf[url_end - 1] == 44:  # "a.jpg,": no descriptor (commas inside a URL are kept)
            while url_end > url and buf[url_end - 1] == 44:
                url_end -= 1
        else:
            comma = <const unsigned char *> memchr(buf + pos, 44, e - pos)
            d_end = comma - buf if comma != NULL else e
            pos = d_end
            _strip(buf, &d, &d_end)
        if url_end > url and not _is_data_uri(buf + url, url_end - url) and \
                _descriptor(buf + d, d_end - d, &kind, &value) and \
                (kind > best_kind or (kind == best_kind and value > best_value)):
            best_kind, best_value = kind, value
            best_s[0], best_e[0] = url, url_end
    return best_kind >= 0


def largest_in_srcset(bytes srcset):
    """The URL of srcset's candidate with the largest width (w) or density (x) descriptor, or None."""
    cdef const unsigned char *buf = srcset
    cdef Py_ssize_t s = 0, e = 0
    if _largest_candidate(buf, 0, len(srcset), &s, &e):
        return srcset[s:e]
    return None


cdef bint _source(const unsigned char *buf, Py_ssize_t *start, Py_ssize_t *end, Py_ssize_t *s, Py_ssize_t *e):
    """The real image of an <img>: lazy-load attributes first, then the largest in srcset, then src."""
    cdef int i
    for i in range(N_LAZY):
        if start[i] >= 0:
            s[0], e[0] = start[i], end[i]
            _unquote(buf, s, e)
            _strip(buf, s, e)
            if e[0] > s[0] and not _is_data_uri(buf + s[0], e[0] - s[0]):
                return True
    for i in (SRCSET, DATA_SRCSET):
        if start[i] >= 0:
            s[0], e[0] = start[i], end[i]
            _unquote(buf, s, e)
            if _largest_candidate(buf, s[0], e[0], s, e):
                return True
    if start[SRC] >= 0:
        s[0], e[0] = start[SRC], end[SRC]
        _unquote(buf, s, e)
        _strip(buf, s, e)
        return e[0] > s[0] and not _is_data_uri(buf + s[0], e[0] - s[0])
    return False


def captioned_images(bytes payload, long min_side_px):
    """([(image source, alt)], base href, tags) of the raw page: every <img> with a non-blank alt, a
    source that is not a data: URI and no width or height of min_side_px or less, in page order;
    the first non-empty <base href>, or None; and how many '<' the scan met outside comments and raw
    text (a bound on the page's depth). Values are raw bytes without their quotes.
    """
    cdef const unsigned char *buf = payload
    cdef Py_ssize_t n = len(payload), pos = 0, tag_end, close, s, e, a, b, i, tags = 0
    cdef Py_ssize_t start[N_ATTRS]
    cdef Py_ssize_t end[N_ATTRS]
    cdef const unsigned char *hit
    cdef int kind
    found = []
    base = None
    while pos < n:
        hit = <const unsigned char *> memchr(buf + pos, 60, n - pos)  # '<'
        if hit == NULL:
            break
        pos = hit - buf + 1
        tags += 1
        if pos + 2 < n and buf[pos] == 33 and buf[pos + 1] == 45 and buf[pos + 2] == 45:  # "<!--"
            close = _find_comment_end(buf, pos + 3, n)
            if close < 0:
                break  # an unclosed comment runs to the end of the page
            pos = close
            continue
        kind = _tag_kind(buf, pos, n)
        if kind < 0:
            continue
        pos += strlen(_TAGS[kind])
        for i in range(N_ATTRS):
            start[i] = end[i] = -1
        tag_end = _attributes(buf, pos, min(n, pos + MAX_TAG_BYTES), start, end)
        if tag_end < 0:  # no '>' within bounds: the tag ends at the next '>', its quotes unpaired
            hit = <const unsigned char *> memchr(buf + pos, 62, n - pos)
            if hit == NULL:
                break
            for i in range(N_ATTRS):
                start[i] = end[i] = -1
            _attributes(buf, pos, hit - buf, start, end)
            tag_end = hit - buf
        pos = tag_end
        if kind == TAG_IMG:
            if start[ALT] < 0:
                continue
            a, b = start[ALT], end[ALT]
            _unquote(buf, &a, &b)
            s, e = a, b
            _strip(buf, &s, &e)
            if s == e:
                continue
            if (start[WIDTH] >= 0 and _at_most(buf, start[WIDTH], end[WIDTH], min_side_px)) or \
                    (start[HEIGHT] >= 0 and _at_most(buf, start[HEIGHT], end[HEIGHT], min_side_px)):
                continue
            if _source(buf, start, end, &s, &e):
                found.append((payload[s:e], payload[a:b]))
        elif kind == TAG_BASE:
            if base is None and start[HREF] >= 0:
                s, e = start[HREF], end[HREF]
                _unquote(buf, &s, &e)
                if e > s:
                    base = payload[s:e]
        else:  # raw text: no markup until its end tag
            close = _find_end_tag(buf, pos, n, _TAGS[kind])
            if close < 0:
                break
            pos = close
    return found, base, tags


cdef str _text(bytes value, const char *codec):
    """An attribute value as text: decoded (undecodable bytes replaced) and entities resolved."""
    text = PyUnicode_Decode(value, len(value), codec, "replace")
    return unescape(text) if b"&" in value else text


cdef str _collapse_spaces(str text):
    """text with its whitespace runs as single spaces and none at the ends (" ".join(text.split()))."""
    cdef Py_UCS4 ch
    cdef bint space = True  # at the start, a space is one too many
    for ch in text:
        if ch == 32:
            if space:
                return " ".join(text.split())
            space = True
        elif Py_UNICODE_ISSPACE(ch):
            return " ".join(text.split())
        else:
            space = False
    return " ".join(text.split()) if space and text else text


def decoded_pairs(list found, str codec, str page_url, bytes base):
    """[(absolute http(s) URL, alt)] of captioned_images()' raw pairs and <base href> in the page's codec:
    alts with their whitespace collapsed, URLs resolved against the base without fragment, repeats dropped."""
    cdef bytes name = codec.encode()
    cdef const char *c_codec = name
    cdef str base_url = page_url, text, url
    cdef set seen = set()
    cdef list pairs = []
    cdef bytes src, alt
    cdef tuple key
    cdef Py_ssize_t hash
    if base is not None and (href := _text(base, c_codec).strip()):
        base_url = urljoin(page_url, href)
    for src, alt in found:
        text = _collapse_spaces(_text(alt, c_codec))
        if not text:
            continue
        url = _text(src, c_codec)
        if not url.startswith(("http://", "https://")) or "/." in url:  # relative or with dot segments
            url = urljoin(base_url, url)
        hash = url.find("#")
        if hash >= 0:
            url = url[:hash]
        if url.startswith(("http://", "https://")):
            key = (url, text)
            if key not in seen:
                seen.add(key)
                pairs.append(key)
    return pairs
