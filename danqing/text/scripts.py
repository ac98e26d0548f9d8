"""The writing systems a caption can mix, as character classes: one definition for every stage."""

from __future__ import annotations

import re

HAN_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # CJK ideographs with extensions
# Kana without U+30FB "・", which Chinese text uses as a name separator.
KANA_CHARS = "\u3040-\u309f\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\uff66-\uff9f"
HANGUL_CHARS = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"

HAN = re.compile(f"[{HAN_CHARS}]")
KANA = re.compile(f"[{KANA_CHARS}]")
HANGUL = re.compile(f"[{HANGUL_CHARS}]")
