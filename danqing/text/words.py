"""Chinese text helpers shared by stages: jieba word counts and script shares.

Words are jieba's (dictionary DAG plus HMM). rjieba (jieba-rs: the same dictionary and algorithm,
in Rust, ~10x faster) segments when installed; jieba itself otherwise. Both see only the blocks
jieba would segment, so they agree on every character outside them too. Inside a block they differ
in one place: jieba-rs's HMM keeps "a-1", "x_y" or "2.5abc" as one token where jieba splits them.
Blocks with such a run stay with jieba (a few in a thousand captions); every other block segments
the same in both (checked on 40,000 blocks mixing dictionary words, digits, letters and symbols).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache

from danqing.text.scripts import HAN, HANGUL, KANA

_LATIN = re.compile(r"[A-Za-z]")
_WORDLIKE = re.compile(r"[\w\u3400-\u4dbf\u4e00-\u9fff]")  # a token with a letter, digit or Han is a word
_BLOCK = re.compile(r"([\u4e00-\u9fd5a-zA-Z0-9+#&._%\-]+)")  # jieba's re_han_default: what it segments
_SPLIT_BY_JIEBA = re.compile(r"[a-zA-Z0-9][._\-][a-zA-Z0-9]")  # where jieba-rs's HMM would join what jieba splits
_PLAIN_BLOCK = re.compile(r"[\u4e00-\u9fd5a-zA-Z0-9]+")  # one of jieba's blocks, without its symbols


@cache
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@cache
def _fast_cut():
    try:
        import rjieba
    except ImportError:
        return None
    return rjieba.cut


def words(text: str) -> list[str]:
    """jieba tokens that are words: punctuation, spaces and symbols are not counted."""
    fast, out = _fast_cut(), []
    for i, part in enumerate(_BLOCK.split(text)):
        if i % 2:
            cut = fast if fast and not _SPLIT_BY_JIEBA.search(part) else _jieba().lcut
            out += [t for t in cut(part) if _WORDLIKE.search(t)]
        else:  # outside its blocks jieba yields every character alone
            out += [c for c in part if _WORDLIKE.match(c)]
    return out


@lru_cache(maxsize=1 << 12)  # small enough to stay in the CPU cache: a big one cost more than its hits saved
def word_count(text: str) -> int:
    """Words in text; cached, since alt texts repeat across pages (logos, banners, product names)."""
    fast = _fast_cut()
    if fast and _PLAIN_BLOCK.fullmatch(text):
        return len(fast(text))  # one block of Han, letters and digits only: every token is a word
    return len(words(text))


def han_share(text: str) -> float:
    """Han characters over Han plus Latin letters: how Chinese a text reads, 0..1."""
    han = len(HAN.findall(text))
    latin = len(_LATIN.findall(text))
    return han / (han + latin) if han + latin else 0.0


def script_language(text: str, min_han_share: float = 0.3) -> str:
    """ISO 639-3 guess from scripts alone: zho, jpn, kor, or und (not CJK)."""
    han = len(HAN.findall(text))
    kana = len(KANA.findall(text))
    hangul = len(HANGUL.findall(text))
    if kana and kana * 5 >= han:  # Japanese mixes kana into kanji; Chinese has almost none
        return "jpn"
    if hangul > han:
        return "kor"
    return "zho" if han and han_share(text) >= min_han_share else "und"
