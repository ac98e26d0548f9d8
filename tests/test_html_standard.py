"""The <img> scan and the charset rules against the HTML standard's own test data (html5lib-tests,
vendored under fixtures/html5lib-tests) and against html5lib, the standard's parser in Python.

The tokenizer suite lists tokens, and the scan reports images, so each test becomes image cases:
- every attribute of every start tag is read as an <img>'s alt and as its src: the tag is renamed
  to img, the attribute to alt (or src), and a marker src (or alt) is added after the tag name;
  html5lib's tokenizer confirms that the renamed input still tokenizes as the test says;
- a character-data test whose whole input would mean the same in an attribute value (character
  references, single characters) becomes an alt;
- a raw-text test (RCDATA, RAWTEXT, script data, PLAINTEXT) is opened by its element and followed
  by a marker <img>, which the scan must find exactly when the test's output closes the element.
Expected values are the suite's, taken as the pipeline uses them: an alt with its whitespace
collapsed, a src cleaned as the URL parser does (C0 controls and spaces stripped at the ends, tabs
and newlines removed) and resolved against the page.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from functools import cache
from urllib.parse import urljoin

import pytest
from conftest import FIXTURES

from danqing import charset, pagehtml
from danqing.imgscan import captioned_images

SUITE = FIXTURES / "html5lib-tests"
PAGE = "http://page.test/dir/p.html"
MARK_URL = "http://marker.test/m.jpg"
MARK_ALT = "marker"
MARK_IMG = f"<img src={MARK_URL} alt={MARK_ALT}>"
RAW_TEXT = {"script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "plaintext"}
READ_BY_SCAN = {"alt", "src", "srcset", "data-srcset", "data-src", "data-original", "data-lazy-src", "data-lazyload",
                "data-echo", "width", "height"}
C0_OR_SPACE = "".join(map(chr, range(33)))


# ---- reading the suite -----------------------------------------------------------------------

def _unescape(value):
    """A doubleEscaped test's strings: \\uHHHH is one more escape to undo."""
    if isinstance(value, str):
        return re.sub(r"\\u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), value)
    if isinstance(value, list):
        return [_unescape(v) for v in value]
    if isinstance(value, dict):
        return {_unescape(k): _unescape(v) for k, v in value.items()}
    return value


@cache
def tokenizer_tests() -> tuple[tuple[str, str, dict], ...]:
    """(file, "file #n: description", test) of the vendored tokenizer suite."""
    tests = []
    for path in sorted((SUITE / "tokenizer").glob("*.test")):
        for n, test in enumerate(json.loads(path.read_bytes())["tests"], 1):
            if test.get("doubleEscaped"):
                test = {**test, "input": _unescape(test["input"]), "output": _unescape(test["output"])}
            tests.append((path.stem, f"{path.stem} #{n}: {test['description']}", test))
    return tuple(tests)


def _data_state(test: dict) -> bool:
    return "Data state" in test.get("initialStates", ["Data state"])


def _surrogates(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def _images(html: str) -> list[tuple[str, str]]:
    return pagehtml.images(html.encode(), PAGE, "utf-8", 2, 1000)[0]


def _alt(value: str) -> str:
    return " ".join(value.split())


def _url(value: str) -> str | None:
    """The image URL a src value gives, by the URL parser's first cleaning; None when it gives none."""
    value = re.sub("[\t\n\r]", "", value.strip(C0_OR_SPACE))
    if not value or value[:5].lower() == "data:":
        return None
    url = urljoin(PAGE, value).split("#", 1)[0]
    return url if url.startswith(("http://", "https://")) else None


def _html5lib_start_tags(html: str) -> list[tuple[str, dict]]:
    from html5lib._tokenizer import HTMLTokenizer
    from html5lib.constants import tokenTypes

    return [(t["name"], dict(t["data"])) for t in HTMLTokenizer(html) if t["type"] == tokenTypes["StartTag"]]


def failures(cases: list[tuple[str, str, list]]) -> dict[str, str]:
    """{case: what the scan gave instead} of (case, html, expected pairs): only the marked image counts."""
    failed = {}
    for case, html, expected in cases:
        got = [pair for pair in _images(html) if pair[0] == MARK_URL or pair[1] == MARK_ALT]
        if got != expected:
            failed[case] = f"{html!r}: expected {expected}, got {got}"
    return failed


def _check(cases: list[tuple[str, str, list]], count: int) -> None:
    failed = failures(cases)
    assert not failed, "\n".join(f"{case}: {why}" for case, why in list(failed.items())[:20])
    assert len(cases) == count  # every case the derivation makes from the vendored data


# ---- tokenizer suite: start tags -> <img> ------------------------------------------------------

def start_tag_cases() -> tuple[list[tuple[str, str, list]], Counter]:
    """Every attribute of every start tag of a data-state test, as an alt and as a src; and why the
    others could not become image cases."""
    cases, skipped = [], Counter()
    for _, label, test in tokenizer_tests():
        if not _data_state(test):
            continue
        tags = [token for token in test["output"] if token[0] == "StartTag"]
        for k, (_, _, attributes, *_) in enumerate(tags):
            for attribute, value in attributes.items():
                for role in ("alt", "src"):
                    case = f"{label} [tag {k + 1}: {attribute!r} as {role}]"
                    html, reason = _renamed(test["input"], tags, k, attribute, role)
                    if html is None:
                        skipped[reason] += 1
                        continue
                    if role == "alt":
                        expected = [(MARK_URL, _alt(value))] if _alt(value) else []
                    else:
                        url = _url(value)
                        expected = [(url, MARK_ALT)] if url else []
                    cases.append((case, html, expected))
    return cases, skipped


def _renamed(html: str, tags: list, k: int, attribute: str, role: str) -> tuple[str | None, str]:
    """html with start tag k renamed to img, its attribute to role and the other role's marker added,
    checked against html5lib's tokenizer; or None and why not."""
    name, attributes = tags[k][1], tags[k][2]
    if _surrogates(html):
        return None, "a lone surrogate: page bytes cannot hold one"
    if any(tag[1] in RAW_TEXT for tag in tags[:k]):
        return None, "after a raw-text element's start tag (the tokenizer suite does not switch states on it)"
    if (set(attributes) - {attribute}) & READ_BY_SCAN:
        return None, "the tag has another attribute the scan reads"
    marked = ("src", MARK_URL) if role == "alt" else ("alt", MARK_ALT)
    marker = f" {marked[0]}={marked[1]} "
    want = [(tag[1], tag[2]) for tag in tags]
    want[k] = ("img", dict([marked, *((role if a == attribute else a, v) for a, v in attributes.items())]))
    lower = html.lower()
    pattern = re.compile("[\0\ufffd]".join(map(re.escape, attribute.split("\ufffd"))))  # NUL becomes U+FFFD
    for p in (m.start() for m in re.finditer(re.escape("<" + name), lower)):
        after = p + 1 + len(name)
        spans = [m.span() for m in pattern.finditer(lower, after)]
        for chosen in [[span] for span in spans] + [spans]:  # one occurrence, or all (repeats of the name)
            renamed, last = html[:p + 1] + "img" + marker, after
            for start, end in chosen:
                renamed, last = renamed + html[last:start] + role, end
            renamed += html[last:]
            if _html5lib_start_tags(renamed) == want:
                return renamed, ""
    return None, "no renaming tokenizes the same"


def test_start_tags_of_the_tokenizer_suite_as_images():
    cases, skipped = start_tag_cases()
    _check(cases, count=854)  # 427 attributes of the start tags of 364 tests, each as an alt and as a src
    assert not skipped


# ---- tokenizer suite: character data -> alt ----------------------------------------------------

@cache
def _named_references() -> tuple[frozenset, frozenset]:
    """(every name with ';', the legacy names that also go without it), from the suite's named-reference tests."""
    names, legacy = set(), set()
    for file, _, test in tokenizer_tests():
        if file == "namedEntities":
            text = test["input"][1:]
            if text.endswith(";"):
                names.add(text)
            elif test["output"][0][1] != test["input"]:
                legacy.add(text)
    return frozenset(names), frozenset(legacy)


def _means_the_same_in_an_attribute(text: str) -> bool:
    """Character data reads the same in an attribute value unless a legacy reference without ';'
    is followed by a letter, a digit or '=' there (kept literal in attributes only)."""
    names, legacy = _named_references()
    for m in re.finditer(r"&([A-Za-z0-9]+)", text):
        run, after = m.group(1), text[m.end():m.end() + 1]
        if after == ";" and run + ";" in names:
            continue
        prefix = next((run[:n] for n in range(min(len(run), 6), 1, -1) if run[:n] in legacy), None)
        if prefix and (len(prefix) < len(run) or after == "="):
            return False
    return True


def character_cases() -> tuple[list[tuple[str, str, list]], Counter]:
    cases, skipped = [], Counter()
    for _, label, test in tokenizer_tests():
        if not _data_state(test) or [t[0] for t in test["output"]] != ["Character"]:
            continue
        text, value = test["input"], test["output"][0][1]
        if _surrogates(text):
            skipped["a lone surrogate: page bytes cannot hold one"] += 1
        elif "<" in text or '"' in text:
            skipped["markup or a quote: not an attribute value"] += 1
        elif "\0" in text:
            skipped["NUL: U+0000 in data, U+FFFD in attributes"] += 1
        elif not _means_the_same_in_an_attribute(text):
            skipped["a legacy reference before a letter, digit or '=': data-state rule only"] += 1
        else:
            expected = [(MARK_URL, _alt(value))] if _alt(value) else []
            cases.append((label, f'<img src={MARK_URL} alt="{text}">', expected))
    return cases, skipped


def test_character_references_and_characters_of_the_tokenizer_suite_as_alts():
    cases, skipped = character_cases()
    _check(cases, count=5_031)
    assert sum(skipped.values()) == 39  # markup or quotes (30), lone surrogates (4), legacy names (3), NUL (2)


# ---- tokenizer suite: raw text -------------------------------------------------------------

_OPENERS = {"PLAINTEXT state": "plaintext", "Script data state": "script"}


def raw_text_cases() -> tuple[list[tuple[str, str, list]], Counter]:
    cases, skipped = [], Counter()
    for _, label, test in tokenizer_tests():
        for state in test.get("initialStates", []):
            if state == "Data state":
                continue
            if state == "CDATA section state":
                skipped["CDATA sections exist in foreign content only"] += 1
                continue
            if _surrogates(test["input"]):
                skipped["a lone surrogate: page bytes cannot hold one"] += 1
                continue
            element = _OPENERS.get(state) or test.get("lastStartTag") or "xmp"  # RCDATA and RAWTEXT end alike
            closed = ["EndTag", element] in test["output"] and element != "plaintext"
            cases.append((f"{label} ({state})", f"<{element}>{test['input']}{MARK_IMG}",
                          [(MARK_URL, MARK_ALT)] if closed else []))
    return cases, skipped


def test_raw_text_of_the_tokenizer_suite_hides_markup_until_its_end_tag():
    cases, skipped = raw_text_cases()
    _check(cases, count=286)
    assert skipped == Counter({"CDATA sections exist in foreign content only": 56})


# ---- html5lib as the reference ---------------------------------------------------------------

def _html5lib_images(html: str) -> list[tuple[str, str]]:
    """What the scan should report, from html5lib's tree: each <img> with a non-blank alt and a usable src."""
    import html5lib

    pairs = []
    for img in html5lib.parse(html, namespaceHTMLElements=False).iter("img"):
        alt, url = _alt(img.get("alt") or ""), _url(img.get("src") or "")
        if "alt" in img.attrib and alt and url and (url, alt) not in pairs:
            pairs.append((url, alt))
    return pairs


def test_every_tokenizer_input_leaves_a_following_img_as_html5lib_does():
    """Comments, bogus comments, doctypes, unfinished tags: a marker <img> after each data-state input is
    an image exactly when html5lib's parser makes it one."""
    mismatched = {}
    for _, label, test in tokenizer_tests():
        html = test["input"] + MARK_IMG
        if not _data_state(test) or _surrogates(html):
            continue
        expected = [(MARK_URL, MARK_ALT)] if (MARK_URL, MARK_ALT) in _html5lib_images(html) else []
        got = [pair for pair in _images(html) if pair == (MARK_URL, MARK_ALT)]
        if got != expected:
            mismatched[label] = html
    assert not mismatched, mismatched


_ATTR_VALUES = ["a.jpg", "s.jpg?a=1&region=cn&timestamp=5", "x.jpg?b=2&amp;c=3", "&copy2024", "&copy 2024", "&copy;",
                "&notit;", "&notin;", "&not=", "&#x41;", "&#65", "&#0;", "&#x80;", "&#x81;", "&#xD800;", "&#1114112;",
                "&amp", "&ampx", "中文说明", "a > b", "x\0y", "\x01a.jpg\n", " spaced alt ", "&lt;img&gt;", "'", '"',
                "=", "&", "&#", "&#x;", "p.jpg#frag", "//cdn.test/c.jpg", "../up.jpg", "\t&#32;t.jpg"]
_NAMES = ["src", "alt", "title", "class", "data-x", "src\0", "=alt", "a'b", "/"]


_MARKUP = ["<!-->", "<!--->", "<!-- x -->", "<!-- a --!>", "<!---->", "<!-- <img src=c.jpg alt=c> -->",
           "<?php echo 1 ?>", "<!DOCTYPE html>", "</p title='<img src=e.jpg alt=e>'>", "</>",
           "<![CDATA[<img src=f.jpg alt=f>]]>", "<!-- never closed"]


def _soup(rng: random.Random) -> str:
    """A short page of tags, comments and raw text, with attribute values full of references and quotes."""
    def attribute(name: str) -> str:
        value = rng.choice(_ATTR_VALUES)
        quote = rng.choice(['"', "'", ""])
        if quote and quote in value or not quote and any(c in value for c in " \t\n\x0c>'\"=<`"):
            quote = "'" if '"' in value else '"'
        return f"{name}{rng.choice(['=', ' = ', '='])}{quote}{value}{quote}"

    parts = []
    for _ in range(rng.randrange(1, 8)):
        kind = rng.random()
        if kind < 0.5:
            names = [rng.choice(["src", "SRC", "src"]), rng.choice(["alt", "Alt"])] + \
                rng.choices(_NAMES, k=rng.randrange(0, 3))
            rng.shuffle(names)
            tag = rng.choice(["img", "IMG", "image", "img", "a", "p"])
            parts.append(f"<{tag}{rng.choice([' ', '  ', chr(10), '/'])}{' '.join(map(attribute, names))}"
                         f"{rng.choice(['>', '/>', ' >'])}")
        elif kind < 0.6:
            parts.append(rng.choice(_MARKUP))
        elif kind < 0.75:
            element = rng.choice(sorted(RAW_TEXT - {"plaintext"}) + ["noscript"])
            inner = rng.choice(["<img src=r.jpg alt=原始文本>", "<!--<script></script><img src=s.jpg alt=x>-->",
                                f"</{element}x><img src=t.jpg alt=y>"])
            parts.append(f"<{element}>{inner}</{element}>")
        elif kind < 0.85:
            parts.append('<a title="<img src=\'tip.jpg\' alt=\'提示\'>">链接</a>')
        else:
            parts.append(rng.choice(["文字", "text &amp; more", "<p>", "</div>", " ", "<br/>", "a < b"]))
    return "".join(parts)


def test_random_tag_soups_give_html5libs_images():
    rng = random.Random(17)
    mismatched = []
    for _ in range(1_000):
        html = _soup(rng)
        if _images(html) != _html5lib_images(html):
            mismatched.append(html)
    assert not mismatched, mismatched[:5]


_PIECES = ["<", ">", "=", '"', "'", "!", "-", "--", "/", "?", "img", "image", "alt", "src", "script", "style", "title",
           "textarea", "xmp", "noscript", "plaintext", " ", "\n", "\t", "&", ";", "#", "x", "1", "a", "<!--", "-->",
           "</", "</script>", "<script>", "<!--<script>", "</script ", "<title>", "</title>", "</style>", "<style>",
           "<body>", "<head>", "<html>", "中", "&amp;", "&copy", "\0", "\x0c", "\x0b", "`", "[", "CDATA", "DOCTYPE",
           "<?"] + \
    ["<img alt=x src=y.jpg>", "<img alt='a b' src=\"c.jpg\">", " alt=", " src=", "<img "] * 6


def test_random_markup_strings_give_html5libs_images():
    """Strings of markup pieces, mostly malformed: tag, comment, raw-text and quote boundaries fall anywhere."""
    rng = random.Random(1717)
    mismatched, with_images = [], 0
    for _ in range(2_000):
        html = "".join(rng.choices(_PIECES, k=rng.randrange(5, 40)))
        expected = _html5lib_images(html)
        with_images += bool(expected)
        if _images(html) != expected:
            mismatched.append(html)
    assert not mismatched, mismatched[:5]
    assert with_images > 1_000


@pytest.mark.parametrize("html,ours,reference", [
    # An SVG <image> is SVG's own element (with href and no alt); the scan, which builds no tree, reads it as <img>.
    ("<svg><image src=a.jpg alt=矢量图></svg>", [("http://page.test/dir/a.jpg", "矢量图")], []),
    # In foreign content <style> is an element like any other, not raw text; the scan keeps it raw.
    ("<math><style><img src=b.jpg alt=公式></style></math>", [], [("http://page.test/dir/b.jpg", "公式")]),
    # A frameset page drops <img>; no crawled page with images is one.
    ("<frameset><img src=c.jpg alt=框架></frameset>", [("http://page.test/dir/c.jpg", "框架")], []),
    # html5lib 1.1 drops an <img> inside <select>, as the standard did before its select parsing was relaxed.
    ("<select><img src=e.jpg alt=选项></select>", [("http://page.test/dir/e.jpg", "选项")], []),
])
def test_tree_construction_is_not_modelled(html, ours, reference):
    """Where the tree builder, not the tokenizer, decides: the scan's answer beside html5lib's, and why they differ."""
    assert _images(html) == ours
    assert _html5lib_images(html) == reference


# ---- encoding suite --------------------------------------------------------------------------

def encoding_tests() -> list[tuple[str, bytes, str]]:
    """(file, page bytes, expected encoding label) of the vendored encoding tests."""
    tests = []
    for path in sorted((SUITE / "encoding").rglob("*.dat")):
        for chunk in path.read_bytes().split(b"#data\n")[1:]:
            data, _, rest = chunk.partition(b"\n#encoding\n")
            tests.append((path.relative_to(SUITE).as_posix(), data, rest.split(b"\n", 1)[0].decode().strip()))
    return tests


def sniffed(payload: bytes) -> str:
    """The encoding a browser would use with no HTTP charset: BOM, the page's declaration, else the suite's default."""
    if payload.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    return charset.declared(payload, captioned_images(payload, 0)[3]) or "cp1252"


ENCODING_EXCEPTIONS = {
    "encoding/scripted/tests1.dat #1": "the declaration is written by a script (document.write): no script runs here",
}


def test_encoding_suite():
    failed, numbers = {}, Counter()
    for file, payload, label in encoding_tests():
        numbers[file] += 1
        case = f"{file} #{numbers[file]}"
        if sniffed(payload) != charset.lookup(label):
            failed[case] = f"{payload[:120]!r}: expected {label}, got {sniffed(payload)}"
    assert set(failed) == set(ENCODING_EXCEPTIONS), failed
    assert len(encoding_tests()) == 83


def test_label_table_agrees_with_webencodings():
    """Every label html5lib's label table (webencodings: the Encoding Standard's, as of 2017) knows
    names the same encoding here, read by the decoder the standard describes."""
    from webencodings.labels import LABELS

    decoders = {"windows-1252": "cp1252", "iso-8859-1": "cp1252", "gbk": "gb18030", "gb18030": "gb18030",
                "big5": "big5hkscs", "shift_jis": "cp932", "euc-kr": "cp949", "utf-16le": "utf-8", "utf-16be": "utf-8",
                "x-user-defined": "cp1252", "iso-8859-8-i": "iso8859-8", "macintosh": "mac-roman",
                "x-mac-cyrillic": "mac-cyrillic", "windows-874": "cp874", "ibm866": "cp866", "euc-jp": "euc_jp",
                "iso-2022-jp": "iso2022_jp", "koi8-r": "koi8-r", "koi8-u": "koi8-u", "utf-8": "utf-8"}
    for label, name in LABELS.items():
        name = name.lower()
        expected = decoders.get(name) or name.replace("iso-8859-", "iso8859-").replace("windows-", "cp")
        assert charset.lookup(label) == expected, label
    assert charset.lookup("hz-gb-2312") == charset.lookup("iso-2022-kr") == charset.REPLACEMENT
    for label in ("cp936", "utf8mb4", "gb2312-80", "x-unknown", ""):
        assert charset.lookup(label) is None
