"""Benchmark stage 1 (extract) on one core against `gzip -dc` of the same WARC.

Generates a >= 200 MB gzipped WARC of realistic Chinese pages (the sample crawl's templates,
seeded random text and captions, CC-style request/response/metadata records) in a temp dir,
then times `gzip -dc FILE > /dev/null` and the extract stage (in a child process, for its
peak RSS), both pinned to one core. Prints wall and CPU seconds (CPU time is what a shared,
busy machine does not distort), MB/s (compressed input), pages/s, the ratio gzip / extract and
the extract child's peak RSS. Run two sizes to see whether memory grows with the file.
A shared machine's speed drifts by several percent from minute to minute: the pair runs --runs
times, alternated, and the median ratio is the figure.

    python scripts/bench_extract.py [--mb 200] [--runs 3] [--keep DIR] [--profile] [--core N]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CSS = "".join(f".c{i}{{margin:{i % 7}px;padding:{i % 5}px;color:#{i * 2654435761 % 0xFFFFFF:06x}}}\n"
               for i in range(300))
_JS = "".join(f"function f{i}(a,b){{return a*{i}+b-{i % 13};}}\n" for i in range(200))


def _vocabulary() -> tuple[list[str], list[str]]:
    from danqing.sample.crawl import EXAMPLES, _captions
    from danqing.text.words import words

    captions = list(_captions(EXAMPLES).values())
    vocab = sorted({w for c in captions for w in words(c)})
    return captions, vocab


def _page(rng: random.Random, captions: list[str], vocab: list[str], n: int) -> tuple[str, bytes, str]:
    """One page: URL, HTML bytes, charset."""
    host = f"www.site{rng.randrange(500)}.test"
    url = f"http://{host}/item/{n}.html"
    text = "".join(rng.choice(vocab) + ("，" if rng.random() < 0.15 else "") for _ in range(rng.randrange(400, 1600)))
    imgs = []
    for i in range(rng.randrange(10, 40)):
        # One alt in five repeats (real pages repeat logos and product names); the rest are unique.
        alt = rng.choice(captions) if rng.random() < 0.2 else "".join(rng.choices(vocab, k=rng.randrange(1, 14)))
        src = f"http://img{rng.randrange(9)}.{host[4:]}/p/{rng.randrange(10**9)}.jpg"
        kind = rng.random()
        if kind < 0.3:
            attrs = f'src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="{src}"'
        elif kind < 0.4:
            attrs = f'src="{src}" srcset="{src}?w=320 320w, {src} 960w"'
        else:
            attrs = f'src="{src}"'
        imgs.append(f'<li class="c{i}"><a href="/item/{rng.randrange(10**6)}.html"><img {attrs} alt="{alt}" '
                    f'width="{rng.randrange(80, 800)}"></a><span>{rng.choice(captions)}</span></li>')
    charset = rng.choice(["utf-8", "utf-8", "utf-8", "gbk"])
    meta = f'<meta charset="{charset}">' if rng.random() < 0.5 else ""
    html = (f"<!DOCTYPE html><html><head>{meta}<title>{text[:20]}</title><style>{_CSS[: rng.randrange(4000, 12000)]}"
            f"</style><script>{_JS[: rng.randrange(2000, 8000)]}</script></head><body>"
            f'<div class="nav">{"".join(f"<a href=/c/{k}>{rng.choice(vocab)}</a>" for k in range(40))}</div>'
            f"<h1>{text[:30]}</h1><p>{text}</p><ul>{''.join(imgs)}</ul>"
            f'<div class="footer">{text[-200:]}</div></body></html>')
    return url, html.encode(charset, "replace"), charset if meta else ("" if rng.random() < 0.3 else charset)


def _member(block: bytes) -> bytes:
    return gzip.compress(block, compresslevel=6, mtime=0)


def _records(n: int, url: str, html: bytes, header_charset: str) -> list[bytes]:
    """CC-style request, response, metadata records, each its own gzip member."""
    def warc(kind: str, rid: str, body: bytes, extra: str = "", ctype: str = "application/http") -> bytes:
        head = (f"WARC/1.0\r\nWARC-Type: {kind}\r\nWARC-Date: 2099-01-01T00:00:00Z\r\n"
                f"WARC-Record-ID: <urn:uuid:{rid}>\r\nWARC-Target-URI: {url}\r\n{extra}"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n")
        return _member(head.encode() + body + b"\r\n\r\n")

    req = f"GET /item/{n}.html HTTP/1.1\r\nHost: x.test\r\nUser-Agent: CCBot/2.0\r\n\r\n".encode()
    ctype = "text/html" + (f"; charset={header_charset}" if header_charset else "")
    resp = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(html)}\r\n\r\n".encode() + html
    cld2 = json.dumps({"reliable": True, "languages": [{"code": "zh", "code-iso-639-3": "zho", "name": "Chinese"}]})
    meta = f"fetchTimeMs: 100\r\nlanguages-cld2: {cld2}\r\n".encode()
    return [warc("request", f"{n}-q", req, ctype="application/http; msgtype=request"),
            warc("response", f"{n}-r", resp, f"WARC-Concurrent-To: <urn:uuid:{n}-q>\r\n"),
            warc("metadata", f"{n}-m", meta, f"WARC-Concurrent-To: <urn:uuid:{n}-r>\r\n", "application/warc-fields")]


def generate(path: Path, target_mb: int) -> int:
    """Write a WARC of at least target_mb compressed MB, every page distinct; returns the number of pages."""
    rng = random.Random(0)
    captions, vocab = _vocabulary()
    written, pages = 0, 0
    with open(path, "wb") as f:
        while written < target_mb * 1_000_000:
            block = b"".join(_records(pages, *_page(rng, captions, vocab, pages)))
            f.write(block)
            written += len(block)
            pages += 1
    return pages


def run_extract(path: str, profile: bool) -> None:
    """Child process: the CLI's `danqing extract` path on one core (rows stream to parquet); JSON figures."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from danqing.config import PipelineConfig
    from danqing.shard import run_local
    from danqing.text.words import word_count

    word_count("预热分词词典 v1.0")  # jieba (and rjieba) load their dictionaries once per process: not timed
    cfg = PipelineConfig.from_overrides({"root": tempfile.mkdtemp()})
    out = os.path.join(cfg.root, "pairs")
    started, cpu_started = time.perf_counter(), time.process_time()
    if profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        summary = prof.runcall(run_local, "extract", [path], out, cfg)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    else:
        summary = run_local("extract", [path], out, cfg)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    offsets = pq.read_table(out + ".parquet", columns=["warc_record_offset"])["warc_record_offset"]
    errors = json.load(open(out + "_stats.json"))["stats"]["errors"]
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rows": summary["total"],
                      "pages": pc.count_distinct(offsets).as_py(), "errors": errors, "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--keep", help="generate into (or reuse) this folder instead of a temp dir")
    parser.add_argument("--profile", action="store_true")
    # The last CPU by default: CPU 0 takes most of the system's interrupts and housekeeping.
    parser.add_argument("--core", type=int, default=max(os.sched_getaffinity(0)),
                        help="the one CPU both commands run on")
    parser.add_argument("--runs", type=int, default=3, help="gzip and extract alternated this many times")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return run_extract(args.child, args.profile)

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-extract-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"bench-{args.mb}mb.warc.gz"
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.mb)
        print(f"generated {path} in {time.perf_counter() - t:.1f}s")
    size_mb = path.stat().st_size / 1e6

    os.sched_setaffinity(0, {args.core})  # inherited by both children: one core each, the same one
    child = [sys.executable, __file__, "--child", str(path)] + (["--profile"] if args.profile else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    ratios = []
    for run in range(1, args.runs + 1):  # alternated, so drift in the machine's speed hits both alike
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(f"gzip -dc '{path}' > /dev/null", shell=True, check=True)
        gzip_s = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        gzip_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

        out = json.loads(subprocess.run(child, check=True, text=True, env=env,
                                        stdout=subprocess.PIPE).stdout.strip().splitlines()[-1])
        extract_s, extract_cpu = out["seconds"], out["cpu"]
        if run == 1:
            print(f"input: {size_mb:.1f} MB compressed, {out['pages']} pages, {out['rows']} rows, "
                  f"errors {out['errors']}")
        print(f"run {run}: gzip -dc: wall {gzip_s:.2f}s ({size_mb / gzip_s:.1f} MB/s)  cpu {gzip_cpu:.2f}s "
              f"({size_mb / gzip_cpu:.1f} MB/s)")
        print(f"run {run}: extract:  wall {extract_s:.2f}s ({size_mb / extract_s:.1f} MB/s, "
              f"{out['pages'] / extract_s:.0f} pages/s)  cpu {extract_cpu:.2f}s ({size_mb / extract_cpu:.1f} MB/s, "
              f"{out['pages'] / extract_cpu:.0f} pages/s)  peak RSS {out['peak_rss_mb']:.0f} MB")
        ratios.append(gzip_cpu / extract_cpu)
        print(f"run {run}: ratio extract/gzip throughput: wall {gzip_s / extract_s:.2f}x  cpu {ratios[-1]:.2f}x")
    print(f"ratio extract/gzip throughput (cpu), median of {len(ratios)}: {statistics.median(ratios):.2f}x "
          f"(runs {', '.join(f'{r:.2f}' for r in ratios)}; target >= 0.5x)")
    if not args.keep:
        path.unlink()
        folder.rmdir()


if __name__ == "__main__":
    main()
