"""How a crawl is doing, read from its lineage: download success per shard and per failure class,
and kept ratios that stray from the crawl's median. The funnel page shows these; operators/alerts.py
pages on them while the crawl runs, without waiting for a task to fail.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

from danqing.config import AlertsConfig

# Alert codes (docs/RUNBOOK.md explains each).
DOWNLOAD_SUCCESS_LOW = "download_success_low"
KEPT_RATIO_DRIFT = "kept_ratio_drift"


@dataclass(frozen=True, order=True)
class Finding:
    """One data-quality problem of one shard at one stage."""

    crawl: str
    shard: int
    stage: str
    code: str
    reason: str

    def message(self) -> str:
        return f"{self.crawl} shard {self.shard:05d}, stage {self.stage}: {self.reason} [{self.code}]"


def download_health(row: dict) -> dict:
    """A download lineage row (lineage.latest) as on-call reads it: attempted, fetched, success rate, failures by reason
    and by class (transient: a rerun may fetch it; permanent: it will not)."""
    from danqing.download.fetcher import error_class
    from danqing.download.robots import ROBOTS_DISALLOWED, ROBOTS_NOAI
    from danqing.stages.download import DOWNLOAD_DUPLICATE_ID

    dropped = row["dropped"]
    # Opted out, or another row's image: never fetched, so neither a success nor a failure.
    not_attempted = sum(dropped.get(r, 0) for r in (ROBOTS_DISALLOWED, ROBOTS_NOAI, DOWNLOAD_DUPLICATE_ID))
    failed = {r: n for r, n in dropped.items()
              if r not in (ROBOTS_DISALLOWED, ROBOTS_NOAI, DOWNLOAD_DUPLICATE_ID) and not r.startswith("visual_")}
    attempted = row["count_in"] - not_attempted
    fetched = attempted - sum(failed.values())
    classes = Counter()
    for reason, n in failed.items():
        classes[error_class(reason)] += n
    return {"shard": row["shard"], "attempted": attempted, "fetched": fetched,
            "rate": fetched / attempted if attempted else None,
            "failed": dict(sorted(failed.items(), key=lambda kv: -kv[1])),
            "classes": {c: classes.get(c, 0) for c in ("transient", "permanent")}}


def kept_ratio(row: dict) -> float | None:
    return row["count_out"] / row["count_in"] if row["count_in"] else None


def stage_medians(rows: list[dict], cfg: AlertsConfig) -> dict[str, float]:
    """Per stage, the median kept ratio over shards large enough to judge (when there are enough of them)."""
    judged: dict[str, list[float]] = {}
    for r in rows:
        if r["count_in"] >= cfg.min_rows:
            judged.setdefault(r["stage"], []).append(kept_ratio(r))
    return {stage: statistics.median(ratios) for stage, ratios in judged.items() if len(ratios) >= cfg.min_shards}


def findings(crawl: str, rows: list[dict], cfg: AlertsConfig) -> list[Finding]:
    """Data-quality findings over a crawl's latest lineage rows.

    Shards with fewer than cfg.min_rows rows in are not judged: a few rows give ratios that mean nothing.
    """
    medians = stage_medians(rows, cfg)
    found = []
    for r in rows:
        if r["stage"] == "download":
            h = download_health(r)
            if h["attempted"] >= cfg.min_rows and h["rate"] < cfg.min_download_success:
                top = ", ".join(f"{k} {v:,}" for k, v in list(h["failed"].items())[:3])
                found.append(Finding(crawl, r["shard"], r["stage"], DOWNLOAD_SUCCESS_LOW,
                                     f"download success {h['rate']:.0%} ({h['fetched']:,} of {h['attempted']:,}) is "
                                     f"under {cfg.min_download_success:.0%}; transient {h['classes']['transient']:,}, "
                                     f"permanent {h['classes']['permanent']:,}; most failed as {top}"))
        median = medians.get(r["stage"])
        if not median or r["count_in"] < cfg.min_rows:
            continue
        ratio = kept_ratio(r)
        drift = abs(ratio - median) / median
        if drift > cfg.max_kept_drift:
            drops = Counter(r["dropped"]).most_common(3)
            top = ", ".join(f"{k} {v:,}" for k, v in drops) or "none"
            found.append(Finding(crawl, r["shard"], r["stage"], KEPT_RATIO_DRIFT,
                                 f"kept {ratio:.1%} of {r['count_in']:,} rows where the crawl's median shard keeps "
                                 f"{median:.1%} (off by {drift:.0%}, more than {cfg.max_kept_drift:.0%}); "
                                 f"most dropped as {top}"))
    return sorted(found)
