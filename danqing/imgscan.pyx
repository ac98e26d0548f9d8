# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The <img> tags of an HTML page, found in its raw bytes: compiled, since it runs on every tag.

One forward pass of the HTML standard's tokenizer over the bytes, keeping what images need:
every tag is read to its '>' by the attribute rules (quoted values hide '>' and '<img'), comments
end as the standard ends them ('<!-->' at once), and the contents of raw-text elements (script,
with its '<!--' escapes, style, textarea, title, xmp, iframe, noembed, noframes, plaintext) are not
markup. <image> is read as <img>, as the tree builder does. A tag the input ends inside is not a
tag. The pass is linear: nothing is read twice.

captioned_images() returns the raw bytes of the attributes used; once the caller knows the
charset, decoded_pairs() turns them into text (character references by the standard's attribute
rule), in C too, since it also runs once per image.
"""

from html.entities import html5 as _HTML5_REFS
from urllib.parse import urljoin

from cpython.unicode cimport Py_UNICODE_ISSPACE, PyUnicode_Decode, PyUnicode_READ_CHAR
from libc.string cimport memchr, strlen

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, void *overflow_exception) except? -1.0

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
    CHARSET = 12
    HTTP_EQUIV = 13
    CONTENT = 14
    N_ATTRS = 15
cdef const char *_NAMES[N_ATTRS]
_NAMES[:] = [b"data-src", b"data-original", b"data-lazy-src", b"data-lazyload", b"data-echo",
             b"srcset", b"data-srcset", b"src", b"alt", b"width", b"height", b"href",
             b"charset", b"http-equiv", b"content"]

# The tags the scan acts on: those whose attributes it reads, then the raw-text elements.
cdef enum:
    TAG_IMG = 0
    TAG_IMAGE = 1
    TAG_BASE = 2
    TAG_META = 3
    TAG_SCRIPT = 4
    TAG_PLAINTEXT = 5
    N_TAGS = 13
cdef const char *_TAGS[N_TAGS]
_TAGS[:] = [b"img", b"image", b"base", b"meta", b"script", b"plaintext",
            b"style", b"textarea", b"title", b"xmp", b"iframe", b"noembed", b"noframes"]
# <noscript> is left out: with scripting off (a crawler's view) its contents are markup, and lazy-loading
# pages put the real <img> there.

cdef enum:
    MAX_METAS = 8  # <meta> declarations kept per page; the first usable one decides


cdef inline bint _space(unsigned char c) noexcept nogil:
    """The whitespace of Python's bytes.strip(): space, \\t, \\n, \\v, \\f, \\r (alts are split by Python's rule)."""
    return c == 32 or 9 <= c <= 13


cdef inline bint _html_space(unsigned char c) noexcept nogil:
    """The HTML tokenizer's whitespace: tab, LF, FF, CR (read as LF) and space; not \\v."""
    return c == 32 or c == 9 or c == 10 or c == 12 or c == 13


cdef inline bint _alpha(unsigned char c) noexcept nogil:
    return 97 <= (c | 32) <= 122


cdef inline unsigned char _lower(unsigned char c) noexcept nogil:
    return c + 32 if 65 <= c <= 90 else c


cdef bint _equals_lower(const unsigned char *s, Py_ssize_t n, const char *word) noexcept nogil:
    """s[:n], ASCII-lower-cased, equals the lower-case word."""
    cdef Py_ssize_t i
    for i in range(n):
        if word[i] == 0 or _lower(s[i]) != <unsigned char> word[i]:  # a shorter word, or a different one
            return False
    return word[n] == 0


cdef Py_ssize_t _after(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, unsigned char c) noexcept nogil:
    """The position past the first c at or after pos, or -1."""
    cdef const unsigned char *hit
    if pos >= n:
        return -1
    hit = <const unsigned char *> memchr(buf + pos, c, n - pos)
    return -1 if hit == NULL else hit - buf + 1


cdef Py_ssize_t _comment_end(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """End (past '>') of the comment whose '<!--' ends at pos, or -1: '<!-->' and '<!--->' end at once,
    then the first '-->' or '--!>'."""
    cdef Py_ssize_t i = pos
    if i < n and buf[i] == 62:
        return i + 1
    if i + 1 < n and buf[i] == 45 and buf[i + 1] == 62:
        return i + 2
    while i + 2 < n:
        if buf[i] == 45 and buf[i + 1] == 45:  # "--"
            if buf[i + 2] == 62:
                return i + 3
            if buf[i + 2] == 33 and i + 3 < n and buf[i + 3] == 62:  # "--!>"
                return i + 4
        i += 1
    return -1


cdef inline bint _tag_at(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, const char *name) noexcept nogil:
    """buf[pos:] is name (case-insensitive) followed by whitespace, '/' or '>', as an end tag's name must be."""
    cdef Py_ssize_t k = strlen(name)
    cdef unsigned char c
    if pos + k >= n or not _equals_lower(buf + pos, k, name):
        return False
    c = buf[pos + k]
    return _html_space(c) or c == 47 or c == 62


cdef Py_ssize_t _raw_text_end(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, const char *name) noexcept nogil:
    """Position of the '<' of the end tag that closes RAWTEXT or RCDATA started at pos, or -1."""
    while True:
        pos = _after(buf, pos, n, 60)  # past '<'
        if pos < 0:
            return -1
        if pos < n and buf[pos] == 47 and _tag_at(buf, pos + 1, n, name):
            return pos - 1


cdef Py_ssize_t _script_end(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n) noexcept nogil:
    """Position of the '<' of the </script> that closes script data started at pos, or -1.

    Script data has escapes: after '<!--', a '<script>' starts a stretch where '</script>' does not
    close the element (it ends the stretch), and '-->' returns to plain script data.
    """
    cdef int mode = 0  # 0 plain, 1 escaped (after '<!--'), 2 double-escaped (after '<!--' ... '<script>')
    cdef int dashes = 0
    cdef unsigned char c
    while pos < n:
        if mode == 0:
            pos = _after(buf, pos, n, 60)
            if pos < 0:
                return -1
            if pos < n and buf[pos] == 47 and _tag_at(buf, pos + 1, n, b"script"):
                return pos - 1
            if pos + 2 < n and buf[pos] == 33 and buf[pos + 1] == 45 and buf[pos + 2] == 45:  # "<!--"
                mode, dashes, pos = 1, 2, pos + 3  # its own dashes count: '<!-->' ends the escape at once
            continue
        c = buf[pos]
        if c == 45:
            dashes += 1
        elif c == 62 and dashes >= 2:
            mode, dashes = 0, 0
        elif c == 60:
            dashes = 0
            if mode == 1 and pos + 1 < n and buf[pos + 1] == 47 and _tag_at(buf, pos + 2, n, b"script"):
                return pos
            if mode == 1 and _tag_at(buf, pos + 1, n, b"script"):
                mode, pos = 2, pos + 8  # past '<script' and the character that ends it
            elif mode == 2 and pos + 1 < n and buf[pos + 1] == 47 and _tag_at(buf, pos + 2, n, b"script"):
                mode, pos = 1, pos + 9
            else:
                pos += 1
            continue
        else:
            dashes = 0
        pos += 1
    return -1


cdef int _tag_kind(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """Index in _TAGS of the tag name s[:n], or -1."""
    cdef int i
    if n < 3 or n > 9:
        return -1
    for i in range(N_TAGS):
        if _equals_lower(s, n, _TAGS[i]):
            return i
    return -1


cdef int _attr_index(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef int i
    if n < 3 or n > 13:
        return -1
    for i in range(N_ATTRS):
        if _equals_lower(s, n, _NAMES[i]):
            return i
    return -1


cdef Py_ssize_t _attributes(const unsigned char *buf, Py_ssize_t i, Py_ssize_t n, bint record,
                            Py_ssize_t *start, Py_ssize_t *end) noexcept nogil:
    """Read a tag's attributes from i (just past its name) to its '>', by the tokenizer's attribute
    states. When record, fills start/end with the value span (quotes excluded) of the first
    occurrence of each attribute in _NAMES. Returns the position past '>', or -1 when the input
    ends inside the tag (which is then no tag at all)."""
    cdef Py_ssize_t name, name_end, value, value_end
    cdef const unsigned char *close
    cdef unsigned char c
    cdef int index
    while True:
        while i < n and (_html_space(buf[i]) or buf[i] == 47):  # '/' not before '>' is ignored
            i += 1
        if i >= n:
            return -1
        if buf[i] == 62:
            return i + 1
        name = i  # a name may start with '=', and holds quotes and '<'
        i += 1
        while i < n and not (_html_space(buf[i]) or buf[i] == 47 or buf[i] == 62 or buf[i] == 61):
            i += 1
        name_end = i
        while i < n and _html_space(buf[i]):
            i += 1
        if i >= n:
            return -1
        value = value_end = name_end  # present without a value: ""
        if buf[i] == 61:  # '='
            i += 1
            while i < n and _html_space(buf[i]):
                i += 1
            if i >= n:
                return -1
            c = buf[i]
            if c == 34 or c == 39:  # a quoted value runs to its quote, '>' and all
                close = <const unsigned char *> memchr(buf + i + 1, c, n - i - 1)
                if close == NULL:
                    return -1
                value, value_end = i + 1, close - buf
                i = value_end + 1
            elif c != 62:  # unquoted: up to whitespace or '>'
                value = i
                while i < n and not (_html_space(buf[i]) or buf[i] == 62):
                    i += 1
                value_end = i
        if record:
            index = _attr_index(buf + name, name_end - name)
            if index >= 0 and start[index] < 0:
                start[index], end[index] = value, value_end


cdef inline void _strip(const unsigned char *buf, Py_ssize_t *s, Py_ssize_t *e) noexcept nogil:
    while s[0] < e[0] and _space(buf[s[0]]):
        s[0] += 1
    while e[0] > s[0] and _space(buf[e[0] - 1]):
        e[0] -= 1


cdef inline void _strip_url(const unsigned char *buf, Py_ssize_t *s, Py_ssize_t *e) noexcept nogil:
    """Strip C0 controls and spaces at both ends, as the URL parser does first (NUL excepted: the
    tokenizer has made it U+FFFD by then)."""
    while s[0] < e[0] and 1 <= buf[s[0]] <= 32:
        s[0] += 1
    while e[0] > s[0] and 1 <= buf[e[0] - 1] <= 32:
        e[0] -= 1


cdef inline bint _is_data_uri(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    return n >= 5 and _lower(s[0]) == 100 and _lower(s[1]) == 97 and _lower(s[2]) == 116 and \
        _lower(s[3]) == 97 and s[4] == 58  # "data:"


cdef bint _at_most(const unsigned char *buf, Py_ssize_t s, Py_ssize_t e, long limit) noexcept nogil:
    """A width or height value ("1", "1px", " 0 ") that is a whole number <= limit."""
    cdef long value = 0
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
    while k > 0 and _html_space(s[k - 1]):
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
        while pos < e and (_html_space(buf[pos]) or buf[pos] == 44):  # whitespace and ','
            pos += 1
        if pos >= e:
            break
        url = pos
        while pos < e and not _html_space(buf[pos]):
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
            while d < d_end and _html_space(buf[d]):
                d += 1
            while d_end > d and _html_space(buf[d_end - 1]):
                d_end -= 1
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
            _strip_url(buf, s, e)
            if e[0] > s[0] and not _is_data_uri(buf + s[0], e[0] - s[0]):
                return True
    for i in (SRCSET, DATA_SRCSET):
        if start[i] >= 0 and _largest_candidate(buf, start[i], end[i], s, e):
            return True
    if start[SRC] >= 0:
        s[0], e[0] = start[SRC], end[SRC]
        _strip_url(buf, s, e)
        return e[0] > s[0] and not _is_data_uri(buf + s[0], e[0] - s[0])
    return False


cdef object _span(bytes payload, Py_ssize_t *start, Py_ssize_t *end, int index):
    return payload[start[index]:end[index]] if start[index] >= 0 else None


def captioned_images(bytes payload, long min_side_px):
    """([(image source, alt)], base href, tags, metas) of the raw page: every <img> with a non-blank
    alt, a source that is not a data: URI and no width or height of min_side_px or less, in page
    order; the first non-empty <base href>, or None; how many '<' the scan met outside comments and
    raw text (a bound on the page's depth); and the (charset, http-equiv, content) of the first
    <meta> tags that declare an encoding, None for an absent attribute. Values are raw bytes.
    """
    cdef const unsigned char *buf = payload
    cdef Py_ssize_t n = len(payload), pos = 0, name, close, s, e, a, b, i, tags = 0
    cdef Py_ssize_t start[N_ATTRS]
    cdef Py_ssize_t end[N_ATTRS]
    cdef unsigned char c
    cdef int kind
    found = []
    metas = []
    base = None
    while True:
        pos = _after(buf, pos, n, 60)  # past '<'
        if pos < 0 or pos >= n:
            break
        tags += 1
        c = buf[pos]
        if _alpha(c):  # a start tag
            name = pos
            while pos < n and not (_html_space(buf[pos]) or buf[pos] == 47 or buf[pos] == 62):
                pos += 1
            kind = _tag_kind(buf + name, pos - name)
            for i in range(N_ATTRS):
                start[i] = end[i] = -1
            pos = _attributes(buf, pos, n, TAG_IMG <= kind <= TAG_META, start, end)
            if pos < 0:
                break
            if kind == TAG_IMG or kind == TAG_IMAGE:
                if start[ALT] < 0:
                    continue
                a, b = start[ALT], end[ALT]
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
                    _strip_url(buf, &s, &e)
                    if e > s:
                        base = payload[s:e]
            elif kind == TAG_META:
                if len(metas) < MAX_METAS and (start[CHARSET] >= 0 or (start[HTTP_EQUIV] >= 0 and start[CONTENT] >= 0)):
                    metas.append((_span(payload, start, end, CHARSET), _span(payload, start, end, HTTP_EQUIV),
                                  _span(payload, start, end, CONTENT)))
            elif kind == TAG_PLAINTEXT:  # the rest of the page is text
                break
            elif kind == TAG_SCRIPT:
                pos = _script_end(buf, pos, n)
                if pos < 0:
                    break
            elif kind > TAG_PLAINTEXT:  # RAWTEXT or RCDATA up to its end tag, which the loop then reads
                pos = _raw_text_end(buf, pos, n, _TAGS[kind])
                if pos < 0:
                    break
        elif c == 47:  # '</'
            if pos + 1 >= n:
                break
            if _alpha(buf[pos + 1]):  # an end tag: its attributes are read (and ignored) like a start tag's
                pos += 1
                while pos < n and not (_html_space(buf[pos]) or buf[pos] == 47 or buf[pos] == 62):
                    pos += 1
                pos = _attributes(buf, pos, n, False, start, end)
            elif buf[pos + 1] == 62:  # '</>' is nothing
                pos += 2
            else:  # a bogus comment, to the first '>'
                pos = _after(buf, pos, n, 62)
            if pos < 0:
                break
        elif c == 33:  # '<!': a comment, or a doctype, CDATA or bogus comment to the first '>'
            if pos + 2 < n and buf[pos + 1] == 45 and buf[pos + 2] == 45:
                pos = _comment_end(buf, pos + 3, n)
            else:
                pos = _after(buf, pos, n, 62)
            if pos < 0:
                break
        elif c == 63:  # '<?': a bogus comment
            pos = _after(buf, pos, n, 62)
            if pos < 0:
                break
    return found, base, tags, metas


# ---- attribute values as text ------------------------------------------------------------

# The named character references (the standard's table, as Python ships it): "amp;" and, for the
# legacy names that may go without ';', "amp".
cdef dict _NAMED = _HTML5_REFS
# Numeric references to 0x80-0x9F mean what those bytes mean in windows-1252, where it defines them.
cdef dict _C1 = {}
for _code in range(0x80, 0xA0):
    try:
        _C1[_code] = bytes([_code]).decode("cp1252")
    except UnicodeDecodeError:  # 0x81, 0x8D, 0x8F, 0x90, 0x9D stay control characters
        pass


cdef inline long _char(str text, Py_ssize_t i, Py_ssize_t n) noexcept:
    """text[i], or 0 past its end."""
    return PyUnicode_READ_CHAR(text, i) if i < n else 0


cdef inline bint _alnum(long c) noexcept:
    return 48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122


cdef inline int _digit(long c, bint is_hex) noexcept:
    if 48 <= c <= 57:
        return c - 48
    if is_hex and 97 <= (c | 32) <= 102:
        return (c | 32) - 87
    return -1


cdef str _numeric(long code):
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return "\ufffd"
    if 0x80 <= code <= 0x9F:
        return _C1.get(code, chr(code))
    return chr(code)  # other controls and noncharacters are kept


cdef str _char_refs(str text):
    """text with its character references resolved by the rule for attribute values: a legacy name
    without ';' ("&copy", "&amp") stays literal before a letter, a digit or '='."""
    cdef Py_ssize_t n = len(text), i = 0, last = 0, amp, j, k
    cdef list parts = []
    cdef long code
    cdef int d
    cdef bint is_hex
    cdef str value
    while True:
        amp = text.find("&", i)
        if amp < 0 or amp + 1 >= n:
            break
        j = i = amp + 1
        if _char(text, j, n) == 35:  # '#'
            k = j + 1
            is_hex = (_char(text, k, n) | 32) == 120  # 'x' or 'X'
            k += is_hex
            i, code = k, 0
            while (d := _digit(_char(text, i, n), is_hex)) >= 0:
                if code <= 0x10FFFF:  # larger is out of range however long it grows
                    code = code * (16 if is_hex else 10) + d
                i += 1
            if i == k:  # no digits: "&#" and "&#x" are text
                continue
            value = _numeric(code)
            i += _char(text, i, n) == 59  # an optional ';'
        else:
            k = j
            while _alnum(_char(text, k, n)):
                k += 1
            if k == j:
                continue
            # The longest name in the table wins. With ';' only the whole run can match; without it, only a
            # legacy name that is the whole run can, since a shorter one would end before a letter or digit.
            if _char(text, k, n) == 59 and (value := _NAMED.get(text[j:k + 1])) is not None:
                i = k + 1
            else:
                i = k
                if k - j > 6 or _char(text, k, n) == 61 or (value := _NAMED.get(text[j:k])) is None:
                    continue  # '=' after a legacy name keeps it literal too
        parts.append(text[last:amp])
        parts.append(value)
        last = i
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


cdef str _text(bytes value, const char *codec):
    """An attribute value as the tokenizer gives it: decoded (undecodable bytes replaced), NUL as
    U+FFFD, character references resolved."""
    text = PyUnicode_Decode(value, len(value), codec, "replace")
    if b"\0" in value:
        text = text.replace("\0", "\ufffd")
    return _char_refs(text) if b"&" in value else text


def attribute_text(bytes value, str codec):
    """A raw attribute value in the page's codec as the HTML tokenizer gives it."""
    cdef bytes name = codec.encode()
    return _text(value, name)


_C0_OR_SPACE = "".join(map(chr, range(33)))
_TAB_OR_NEWLINE = {9: None, 10: None, 13: None}


cdef str _url_text(str url):
    """A URL as the URL parser first cleans it: C0 controls and spaces stripped at both ends,
    tabs and newlines removed everywhere."""
    url = url.strip(_C0_OR_SPACE)
    if "\n" in url or "\t" in url or "\r" in url:
        url = url.translate(_TAB_OR_NEWLINE)
    return url


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
    if base is not None and (href := _url_text(_text(base, c_codec))):
        base_url = urljoin(page_url, href)
    for src, alt in found:
        text = _collapse_spaces(_text(alt, c_codec))
        if not text:
            continue
        url = _text(src, c_codec)
        if b"&" in src or b"\n" in src or b"\t" in src or b"\r" in src:  # else its ends were stripped as bytes
            url = _url_text(url)
            if not url:
                continue
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
