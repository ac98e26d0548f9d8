"""Captions that carry no description: boilerplate, no noun, tokens the scoring model cannot read."""

from __future__ import annotations

import logging
import re
from functools import cache

from danqing.text.data import word_list

CAPTION_BOILERPLATE = "caption_boilerplate"
CAPTION_NO_NOUN = "caption_no_noun"
CAPTION_UNKNOWN_TOKENS = "caption_unknown_tokens"

# Structural leftovers besides the phrase list: URLs, file names, prices, page counters.
_PATTERNS = [
    r"(?:https?://|www\.)\S+",
    r"[\w\-.]+\.(?:jpe?g|png|gif|webp|bmp|svg|tiff?|ico|avif|heic|html?|php|aspx?)\b",
    r"[¥￥$€£]?\d+(?:[.,]\d+)*\s*(?:元|块|rmb|usd|起|包邮)",
    r"第\s*\d+\s*[页张篇章幅]|共\s*\d+\s*[页张篇幅]",
]
_LETTER = re.compile(r"[^\W\d_]")
# jieba tags: n* are nouns (nr person, ns place, nt organisation, nz other proper noun);
# vn and an are nouns made from verbs and adjectives (设计, 管理).
_NOUN_TAGS = ("n", "vn", "an")


@cache
def _boilerplate_re() -> re.Pattern:
    phrases = sorted(word_list("boilerplate"), key=len, reverse=True)  # longest phrase wins
    return re.compile("|".join([*_PATTERNS, *map(re.escape, phrases)]))


def is_boilerplate(caption: str) -> bool:
    """True when no letter is left once boilerplate phrases, URLs, file names and prices are removed."""
    return not _LETTER.search(_boilerplate_re().sub("", caption.lower()))


@cache
def _posseg():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def _is_noun(flag: str) -> bool:
    return flag.startswith(_NOUN_TAGS)


def has_noun(caption: str) -> bool:
    """jieba POS tagging finds a noun; the dictionary-only pass is 8x faster and settles most captions."""
    posseg = _posseg()
    if any(_is_noun(pair.flag) for pair in posseg.cut(caption, HMM=False)):
        return True
    # The HMM tags words the dictionary lacks (new brand and product names).
    return any(_is_noun(pair.flag) for pair in posseg.cut(caption))


class UnknownTokens:
    """Counts tokens the scoring model's tokenizer maps to its unknown id.

    open_clip's byte-level BPE (SimpleTokenizer) can spell any text, so it has none; HF tokenizers
    (HFTokenizer, SigLipTokenizer) wrap a transformers tokenizer with an unk_token_id.
    """

    def __init__(self, tokenizer: object):
        inner = getattr(tokenizer, "tokenizer", None)
        self.unk_id = getattr(inner, "unk_token_id", None)
        self._encode = inner.encode if self.unk_id is not None else None

    def count(self, text: str) -> int:
        if self._encode is None:
            return 0
        ids = self._encode(text, add_special_tokens=False)
        return list(getattr(ids, "ids", ids)).count(self.unk_id)


@cache
def unknown_tokens(tokenizer_name: str) -> UnknownTokens:
    """The adapter for open_clip's tokenizer of that name, built once per process."""
    import open_clip

    return UnknownTokens(open_clip.get_tokenizer(tokenizer_name))


def check_boilerplate(caption: str) -> str | None:
    return CAPTION_BOILERPLATE if is_boilerplate(caption) else None


def check_unknown(caption: str, max_unknown: int, tokenizer_name: str) -> str | None:
    return CAPTION_UNKNOWN_TOKENS if unknown_tokens(tokenizer_name).count(caption) > max_unknown else None


def check_noun(caption: str) -> str | None:
    return None if has_noun(caption) else CAPTION_NO_NOUN
