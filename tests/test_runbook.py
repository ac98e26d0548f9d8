"""docs/RUNBOOK.md covers every code on-call can meet: drop reasons, error events and alert codes."""

from __future__ import annotations

import re

from conftest import ROOT

# A code: a module-level constant holding a snake_case string (DOWNLOAD_TIMEOUT = "download_timeout"), or a
# literal counted as an event (stats.error("download_retry")).
CONSTANT = re.compile(r'^[A-Z][A-Z0-9_]* = "([a-z][a-z0-9]*(?:_[a-z0-9]+)+)"', re.MULTILINE)
EVENT = re.compile(r'\.error\("([a-z][a-z0-9_]+)"')


def codes_in_source() -> dict[str, str]:
    found = {}
    for folder in ("danqing", "operators"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            for code in CONSTANT.findall(text) + EVENT.findall(text):
                found.setdefault(code, str(path.relative_to(ROOT)))
    return found


def test_every_code_in_the_source_is_in_the_runbook():
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text(encoding="utf-8")
    codes = codes_in_source()
    assert {"download_timeout", "download_retry", "task_failed", "run_overdue", "kept_ratio_drift"} <= set(codes)
    missing = {code: where for code, where in codes.items() if f"`{code}`" not in runbook}
    assert missing == {}, f"add these codes to docs/RUNBOOK.md: {missing}"
