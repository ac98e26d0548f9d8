"""Content safety: keyword lists per category (danqing/data/safety_<category>.txt) and a classifier hook."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from functools import cache

from danqing.config import RefineConfig
from danqing.text.data import word_list

UNSAFE_PORN = "unsafe_porn"
UNSAFE_GAMBLING = "unsafe_gambling"
UNSAFE_ADS = "unsafe_ads"
UNSAFE_POLITICAL = "unsafe_political"
UNSAFE_OTHER = "unsafe_other"  # a classifier category without a list of its own
REASONS = {"porn": UNSAFE_PORN, "gambling": UNSAFE_GAMBLING, "ads": UNSAFE_ADS, "political": UNSAFE_POLITICAL}

# Contact bait in captions: a mainland mobile number, or a WeChat/QQ id after its label.
# The label needs a colon or 号/群, so model numbers such as WX12345 pass.
_CONTACT = re.compile(r"(?<!\d)1[3-9]\d{9}(?!\d)|(?:qq|微信|vx|wx|v信)(?:[:：]|[号群][:：]?)[a-z0-9_-]{5,}")
_SPACES = re.compile(r"\s+")


class Keywords:
    """Keyword -> category for the enabled categories, indexed by first character (no regex scan)."""

    def __init__(self, categories: tuple[str, ...]):
        self.category: dict[str, str] = {}
        for category in categories:
            for word in word_list(f"safety_{category}"):
                self.category.setdefault(word, category)
        # Most characters start no keyword, so most positions cost one dict lookup.
        lengths: dict[str, set[int]] = {}
        for word in self.category:
            lengths.setdefault(word[0], set()).add(len(word))
        self.lengths = {first: sorted(ns) for first, ns in lengths.items()}

    def find(self, key: str) -> str | None:
        """The category of the first keyword in key (lowercased, spaces removed), or None."""
        starts = self.lengths.get
        for i, ch in enumerate(key):
            for n in starts(ch, ()):
                category = self.category.get(key[i:i + n])
                if category is not None:
                    return category
        return None


@cache
def keywords(categories: tuple[str, ...]) -> Keywords:
    return Keywords(categories)


@cache
def classifier(spec: str) -> Callable[[str], str | None]:
    """Load "module:function" once: a function of a caption returning a category or None."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def check(caption: str, cfg: RefineConfig) -> str | None:
    """The drop reason, or None when no list or classifier flags the caption."""
    key = _SPACES.sub("", caption.lower())
    category = keywords(tuple(cfg.safety_categories)).find(key)
    if category is None and "ads" in cfg.safety_categories and _CONTACT.search(key):
        category = "ads"
    if category is None and cfg.safety_classifier:
        category = classifier(cfg.safety_classifier)(caption)
    if category is None:
        return None
    return REASONS.get(category, UNSAFE_OTHER)
