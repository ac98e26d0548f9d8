"""Stand-ins for pluggable parts of the refine stage: a safety classifier and an HF-style tokenizer."""

from __future__ import annotations


def classify(caption: str) -> str | None:
    """A toy classifier for the hook: flags captions about weapons and about (made-up) ads."""
    if "枪支" in caption:
        return "weapons"
    if "推广链接" in caption:
        return "ads"
    return None


class CharVocab:
    """Character-level tokenizer with an unknown id, shaped like a transformers tokenizer."""

    unk_token_id = 1

    def __init__(self, known: str):
        self.ids = {ch: i + 2 for i, ch in enumerate(dict.fromkeys(known))}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = [self.ids.get(ch, self.unk_token_id) for ch in text if not ch.isspace()]
        return [0, *ids, 0] if add_special_tokens else ids


class WrappedTokenizer:
    """What open_clip's HFTokenizer looks like from outside: the HF tokenizer sits in .tokenizer."""

    def __init__(self, known: str):
        self.tokenizer = CharVocab(known)
