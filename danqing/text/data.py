"""Read the word lists under danqing/data/: plain text, one entry a line, "#" comments."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def word_list(name: str) -> tuple[str, ...]:
    """Entries of danqing/data/<name>.txt, lowercased, in file order."""
    text = resources.files("danqing").joinpath("data", f"{name}.txt").read_text(encoding="utf-8")
    entries = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return tuple(dict.fromkeys(e for e in entries if e))
