"""Turn alt text into a caption: drop emoji and symbols, fold whitespace, traditional -> simplified."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

# Categories that carry no words: pictographs and emoji (So), modifiers such as skin tones (Sk),
# enclosing keycaps (Me), controls, format characters (ZWJ, tags), private use, unassigned.
_DROP = frozenset({"So", "Sk", "Me", "Cc", "Cf", "Co", "Cs", "Cn"})
_VARIATION_SELECTORS = frozenset([*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)])
_SPACES = re.compile(r"\s+")
_PUNCT_RUN = re.compile(r"([^\w\s])\1{2,}")  # "！！！！" -> "！"


class _StripTable(dict):
    """str.translate table filled on first sight of each code point (the Unicode table is large)."""

    def __missing__(self, code: int) -> str | None:
        ch = chr(code)
        cat = unicodedata.category(ch)
        if ch.isspace():
            out = " "
        elif cat in _DROP or code in _VARIATION_SELECTORS:
            out = None
        elif cat == "Sm" and code > 0xFF and not 0xFF00 <= code <= 0xFFEF:
            out = None  # arrows and math signs; keep + = < > ~ and their full-width forms
        else:
            out = ch
        self[code] = out
        return out


_TABLE = _StripTable()


def strip_special(text: str) -> str:
    """Drop emoji and special characters, fold runs of whitespace and of one punctuation mark."""
    text = _SPACES.sub(" ", text.translate(_TABLE)).strip()
    return _PUNCT_RUN.sub(r"\1", text)


@cache
def _opencc():
    from opencc import OpenCC

    return OpenCC("t2s")


@cache
def _traditional_chars() -> frozenset[str]:
    """Every character that makes OpenCC t2s change a text; text without any is already simplified."""
    import opencc

    chars: set[str] = set()
    folder = Path(opencc.__file__).parent / "dictionary"
    for name in ("TSCharacters.txt", "TSPhrases.txt"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            key, value = line.split("\t")
            value = value.split(" ")[0]
            if len(key) == len(value):
                chars.update(k for k, v in zip(key, value, strict=True) if k != v)
            elif key != value:
                chars.update(key)
    return frozenset(chars)


def to_simplified(text: str) -> str:
    """OpenCC t2s, skipped for the (usual) text that has no traditional character."""
    if _traditional_chars().isdisjoint(text):
        return text
    return _opencc().convert(text)


def normalize(alt_text: str) -> str:
    """The refined caption: cleaned and simplified; alt_text stays raw beside it."""
    return to_simplified(strip_special(alt_text))
