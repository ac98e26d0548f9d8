"""Benchmark reading a crawl's Chinese records: whole WARCs vs index-selected byte ranges.

Writes synthetic gzipped WARCs (a `--zh` share of the records Chinese, placed at random like in
a real crawl) and serves them from a loopback HTTP server that adds `--latency-ms` per request
(an S3 first byte) and caps each reply at `--mbps`. Then reads the Chinese records four ways
and prints seconds, bytes, requests and the ratio to the baseline (scan every WARC whole):

    python scripts/bench_source.py [--warcs 2] [--records 4000] [--zh 0.05] [--latency-ms 30] [--mbps 400]
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def make_warcs(dest: Path, n_warcs: int, records: int, zh: float, seed: int = 1):
    """WARC files of random-text pages; returns {relpath: [(offset, length, is_zh)]}."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    rng = random.Random(seed)
    han = [chr(c) for c in range(0x4E00, 0x4E00 + 3000)]
    latin = "abcdefghijklmnopqrstuvwxyz     "
    layout = {}
    for w in range(n_warcs):
        rel = f"crawl-data/CC-MAIN-BENCH/segments/1/warc/bench-{w:05d}.warc.gz"
        buf = io.BytesIO()
        writer = WARCWriter(buf, gzip=True)
        flags = []
        for i in range(records):
            is_zh = rng.random() < zh
            alphabet = han if is_zh else latin
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(2000, 9000)))
            html = f"<html><body><p>{text}</p><img src='/i{i}.jpg' alt='x'></body></html>".encode()
            hh = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(f"https://b{w}.test/p{i}", "response",
                                                          payload=io.BytesIO(html), http_headers=hh))
            flags.append(is_zh)
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
        it = ArchiveIterator(io.BytesIO(buf.getvalue()))
        offsets = []
        for rec in it:
            rec.content_stream().read()
            offsets.append((it.get_record_offset(), it.get_record_length()))
        layout[rel] = [(o, n, z) for (o, n), z in zip(offsets, flags, strict=True)]
    return layout


def slow_files(root: Path, latency_s: float, bytes_per_s: float, stats: dict):
    """A static-file handler that waits `latency_s` per request; the reply size sets the transfer time."""
    from source_helpers import range_reply

    cache: dict[str, bytes] = {}

    def handler(path: str, headers: dict):
        if path not in cache:
            cache[path] = (root / path.lstrip("/")).read_bytes()
        data = cache[path]
        status, extra, body = range_reply(data, headers)
        time.sleep(latency_s + len(body) / bytes_per_s)
        stats["requests"] += 1
        stats["bytes"] += len(body)
        return status, extra, body
    return handler


def read_all(specs: list[str], cfg) -> int:
    """Read every spec through warcio; returns the number of response records seen."""
    from source_helpers import read_targets

    from danqing import warcsource

    return sum(len(read_targets(warcsource.open_input(s, cfg))) for s in specs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warcs", type=int, default=2)
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--zh", type=float, default=0.05)
    ap.add_argument("--latency-ms", type=float, default=30.0)
    ap.add_argument("--mbps", type=float, default=400.0, help="megabits per second per reply")
    args = ap.parse_args()

    from source_helpers import LoopbackServer

    from danqing import warcsource
    from danqing.config import PipelineConfig

    with tempfile.TemporaryDirectory() as tmp:
        layout = make_warcs(Path(tmp), args.warcs, args.records, args.zh)
        total = sum((Path(tmp) / rel).stat().st_size for rel in layout)
        wanted = sum(z for recs in layout.values() for _, _, z in recs)
        stats = {"requests": 0, "bytes": 0}
        handler = slow_files(Path(tmp), args.latency_ms / 1000, args.mbps * 1e6 / 8, stats)
        print(f"{args.warcs} WARCs, {total / 1e6:.1f} MB, {wanted} Chinese records of "
              f"{args.warcs * args.records}; {args.latency_ms:.0f} ms/request, {args.mbps:.0f} Mbit/s per reply")
        with LoopbackServer(handler) as srv:
            whole = [f"{srv.url}/{rel}" for rel in layout]
            ranged = [warcsource.format_spec(f"{srv.url}/{rel}", [(o, n) for o, n, z in recs if z])
                      for rel, recs in layout.items()]
            modes = [
                ("whole WARCs (baseline)", whole, {}),
                ("ranges, serial, no gap merge", ranged, {"prefetch": 1, "max_gap_bytes": 0}),
                ("ranges, 4 in flight", ranged, {"prefetch": 4, "max_gap_bytes": 0}),
                ("ranges, 4 in flight, gaps <= 64 kB merged", ranged, {"prefetch": 4, "max_gap_bytes": 64_000}),
                ("ranges, 8 in flight, gaps <= 64 kB merged", ranged, {"prefetch": 8, "max_gap_bytes": 64_000}),
                ("ranges, 16 in flight, gaps <= 64 kB merged", ranged, {"prefetch": 16, "max_gap_bytes": 64_000}),
                ("ranges, config defaults (bucket 50 req/s)", ranged, {"requests_per_s": 50, "burst": 50}),
            ]
            base = base_bytes = None
            for name, specs, source in modes:
                unbounded = {"requests_per_s": 10_000, "burst": 100}  # only the last mode uses the bucket
                cfg = PipelineConfig.from_overrides({"root": tmp, "source": {**unbounded, **source}})
                stats.update(requests=0, bytes=0)
                started = time.perf_counter()
                seen = read_all(specs, cfg)
                took = time.perf_counter() - started
                base, base_bytes = base or took, base_bytes or stats["bytes"]
                print(f"{name:44s} {took:6.2f} s  {stats['bytes'] / 1e6:6.1f} MB  {stats['requests']:4d} req  "
                      f"{seen:5d} records  speed x{base / took:4.2f}  bytes x{stats['bytes'] / base_bytes:4.2f}")


if __name__ == "__main__":
    main()
