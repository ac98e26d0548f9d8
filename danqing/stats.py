"""Per-shard counts: every record a stage sees is kept or dropped for a named reason."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StageStats:
    total: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    # Events that are not rows of the funnel: corrupt WARC records, tripped hosts, retries.
    errors: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    def count(self, reason: str | None, n: int = 1) -> None:
        self.total += n
        if reason:
            self.dropped[reason] += n
        else:
            self.kept += n

    def error(self, reason: str, n: int = 1) -> None:
        self.errors[reason] += n

    def merge(self, other: StageStats) -> StageStats:
        return StageStats(
            self.total + other.total,
            self.kept + other.kept,
            self.dropped + other.dropped,
            self.errors + other.errors,
            self.seconds + other.seconds,
        )

    @property
    def balanced(self) -> bool:
        return self.total == self.kept + sum(self.dropped.values())

    def to_dict(self) -> dict:
        return {
            "total": self.total,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "errors": dict(sorted(self.errors.items())),
            "seconds": round(self.seconds, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> StageStats:
        return cls(d["total"], d["kept"], Counter(d["dropped"]), Counter(d.get("errors", {})), d.get("seconds", 0.0))
