"""Captions that carry no description: boilerplate, no noun, tokens the scoring model cannot read."""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from functools import cache
from pathlib import Path

from danqing.text.data import word_list

CAPTION_BOILERPLATE = "caption_boilerplate"
CAPTION_NO_NOUN = "caption_no_noun"
CAPTION_UNKNOWN_TOKENS = "caption_unknown_tokens"

# Structural leftovers besides the phrase list: URLs, file names, prices, page counters.
_PATTERNS = [
    r"(?:https?://|www\.)\S+",
    r"[\w\-.]+\.(?:jpe?g|png|gif|webp|bmp|svg|tiff?|ico|avif|heic|html?|php|aspx?)\b",
    r"[¥￥$€£]?\d+(?:[.,]\d+)*(?:\s*(?:元|块|rmb|usd|起|包邮|/件))+",
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
    # The HMM tags words the dictionary lacks (new brand and product names). It re-tags only runs of
    # single characters, so a dictionary word tagged noun above would stay one here.
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


def byte_level(tokenizer_name: str) -> bool:
    """True when open_clip gives this model its byte-level BPE, read from the model's config JSON.

    Deciding without importing open_clip (and torch) saves a refine worker seconds per process.
    Mirrors open_clip.get_tokenizer: a schema (hf-hub:, local-dir:), an hf_tokenizer_name or a
    SigLIP name means an HF tokenizer; a name whose config is not found here is left to open_clip.
    """
    if ":" in tokenizer_name or "siglip" in tokenizer_name.lower():
        return False
    from danqing.embed.model import TINY, TINY_CONFIG

    if tokenizer_name == TINY:
        config = TINY_CONFIG
    else:
        spec = importlib.util.find_spec("open_clip")
        folder = Path(next(iter(spec.submodule_search_locations))) if spec else Path()
        path = folder / "model_configs" / f"{tokenizer_name}.json"
        if not path.is_file():
            return False
        config = json.loads(path.read_text(encoding="utf-8"))
    return not config.get("text_cfg", {}).get("hf_tokenizer_name")


@cache
def unknown_tokens(tokenizer_name: str) -> UnknownTokens:
    """The adapter for open_clip's tokenizer of that name, built once per process."""
    if byte_level(tokenizer_name):
        return UnknownTokens(None)
    import open_clip

    from danqing.embed.model import register

    register()  # makes the project's own model names (danqing-tiny) known to open_clip
    return UnknownTokens(open_clip.get_tokenizer(tokenizer_name))


def check_boilerplate(caption: str) -> str | None:
    return CAPTION_BOILERPLATE if is_boilerplate(caption) else None


def check_unknown(caption: str, max_unknown: int, tokenizer_name: str) -> str | None:
    return CAPTION_UNKNOWN_TOKENS if unknown_tokens(tokenizer_name).count(caption) > max_unknown else None


def check_noun(caption: str) -> str | None:
    return None if has_noun(caption) else CAPTION_NO_NOUN
