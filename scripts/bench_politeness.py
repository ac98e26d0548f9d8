"""Benchmark: per-host budgets at cluster scale, ours (shared through Redis) vs img2dataset.

Four image hosts on one loopback server (danqing.sample.imageserver), each metering requests in
flight and requests per second, each answering 429 (Retry-After: 1) past its published rate. 8,000
URLs, 60% of them on one host, go to four download tasks started at once as separate processes, as
four workers would run them, sharing their budgets through Redis (DANQING_COORDINATION_URL, a key
prefix of this run's own). Then img2dataset (installed by scripts/bench_download.py's helper) fetches
the same URLs from the same server; its processes resolve the four names to loopback the way our
host_overrides do. Prints, per run: the budget, the most requests in flight and per second any host
saw, the seconds some host was over its budget, 429s, success and time against the floor the budget
allows (the busiest host's URLs at its rate).

    .venv/bin/python scripts/bench_politeness.py [--urls 8000] [--tasks 4] [--uncoordinated] [--skip-img2dataset]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from bench_download import NO_VISUAL_FILTERS, img2dataset_cli, img2dataset_command  # noqa: E402

IMAGES = sorted((ROOT / "tests" / "fixtures" / "danqing_examples" / "images").glob("*.jpg"))
REDIS = os.environ.get("DANQING_BENCH_REDIS", "redis://127.0.0.1:6379/2")
BIG = "cdn.bench.test"
# host -> (share of the URLs, latency s, connections C, requests/s R: our budget and the host's 429 line)
HOSTS = {
    BIG: (0.60, 0.02, 16, 120),
    "img-a.bench.test": (0.14, 0.02, 4, 40),
    "img-b.bench.test": (0.13, 0.05, 4, 40),
    "img-c.bench.test": (0.13, 0.10, 4, 40),  # 4 connections at 100 ms: both limits bind
}
RESOLVE_TO_LOOPBACK = """import socket
_getaddrinfo = socket.getaddrinfo
HOSTS = {hosts!r}


def getaddrinfo(host, *args, **kwargs):
    return _getaddrinfo("127.0.0.1" if isinstance(host, str) and host.lower() in HOSTS else host, *args, **kwargs)


socket.getaddrinfo = getaddrinfo
"""


def build_site(root: Path, n_urls: int) -> tuple[Path, dict[str, int]]:
    """www/<host>/img/<i>.jpg, hard links to the 50 DanQing JPEGs; the rules give latencies and limits."""
    counts, left = {}, n_urls
    for host, (share, *_rest) in list(HOSTS.items())[1:]:
        counts[host] = round(n_urls * share)
        left -= counts[host]
    counts = {BIG: left, **counts}
    for host, n in counts.items():
        (root / "www" / host / "img").mkdir(parents=True)
        for i in range(n):
            os.link(IMAGES[i % len(IMAGES)], root / "www" / host / "img" / f"{i}.jpg")
    rules = {"latency_s": {h: v[1] for h, v in HOSTS.items()}, "limits": {h: v[3] for h, v in HOSTS.items()},
             "robots": {h: "User-agent: *\nDisallow: /private/\n" for h in HOSTS}}
    (root / "www" / "_server.json").write_text(json.dumps(rules))
    return root, counts


def floor_s(counts: dict[str, int]) -> tuple[float, str]:
    """The least time the budget allows: each host's URLs at min(R, C / latency) requests per second."""
    times = {h: n / min(HOSTS[h][3], HOSTS[h][2] / HOSTS[h][1]) for h, n in counts.items()}
    host = max(times, key=times.get)
    return times[host], host


def run_ours(urls: list[str], work: Path, server, tasks: int, coordination: str) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from danqing import io

    download = {"host_overrides": server.host_overrides, "allow_loopback": True, "resize_mode": "center_crop",
                "image_size_px": 256, "per_host_concurrency": 4, "per_host_requests_per_s": 40, "processes": 1,
                "host_budgets": {BIG: {"concurrency": HOSTS[BIG][2], "requests_per_s": HOSTS[BIG][3]}}}
    config = json.dumps({"download": download, "visual": NO_VISUAL_FILTERS})
    procs = []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DANQING_COORDINATION_URL": coordination}
    inputs = []
    for t in range(tasks):
        rows = [{"id": f"{t}-{i:06d}", "page_url": "", "url": u, "alt_text": "alt", "caption": "图片",
                 "page_language": "zho", "charset": "utf-8", "warc_filename": "bench", "warc_record_offset": i,
                 "warc_record_length": 1, "drop_reason": ""} for i, u in enumerate(urls[t::tasks])]
        inputs.append(str(work / f"in{t}.parquet"))
        io.write_parquet(pa.Table.from_pylist(rows), inputs[-1])
    start = time.perf_counter()
    for t in range(tasks):
        procs.append(subprocess.Popen([sys.executable, "-m", "danqing.cli", "--config", config, "download",
                                       inputs[t], "--out", str(work / f"task{t}")], env=env,
                                      stdout=subprocess.DEVNULL, cwd=work))
    if any(p.wait() != 0 for p in procs):
        raise SystemExit("a download task failed")
    seconds = time.perf_counter() - start
    statuses = [s for t in range(tasks)
                for s in pq.read_table(work / f"task{t}" / "00000.parquet", columns=["status"])["status"].to_pylist()]
    ok = statuses.count("success")
    return {"seconds": seconds, "success": ok}


def run_img2dataset(urls: list[str], work: Path, cli: str) -> dict:
    url_file = work / "urls.txt"
    url_file.write_text("\n".join(urls) + "\n")
    hook = work / "resolve"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(RESOLVE_TO_LOOPBACK.format(hosts=set(HOSTS)))
    out = work / "i2d"
    cmd = img2dataset_command(cli, url_file, out, len(urls))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(hook)}
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    seconds = time.perf_counter() - start
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    return {"seconds": seconds, "success": sum(s["successes"] for s in stats)}


def report(name: str, run: dict, seen: dict, n_urls: int, floor: tuple[float, str], counts: dict[str, int],
           verbose: bool = False) -> None:
    over = set()  # seconds in which some host was over its budget (requests or connections)
    for host, s in seen.items():
        _, _, conns, rate = HOSTS[host]
        over |= {t for t, (requests, in_flight) in s["seconds"].items() if requests > rate or in_flight > conns}
    hosts = list(HOSTS)
    print(f"{name}")
    print("  budget                   " + "; ".join(f"{h} C={HOSTS[h][2]} R={HOSTS[h][3]}/s" for h in hosts))
    print("  max in flight per host   " + ", ".join(f"{h} {seen.get(h, {}).get('max_in_flight', 0)}" for h in hosts))
    print("  max requests/s per host  " + ", ".join(f"{h} {seen.get(h, {}).get('max_per_s', 0)}" for h in hosts))
    print(f"  over budget              {len(over)} s")
    print(f"  429s received            {sum(s['too_many'] for s in seen.values())}")
    print(f"  success                  {100 * run['success'] / n_urls:.1f}% ({run['success']}/{n_urls})")
    print(f"  time                     {run['seconds']:.1f} s; floor {floor[0]:.1f} s ({counts[floor[1]]} URLs on "
          f"{floor[1]} within its budget): {run['seconds'] / floor[0]:.2f}x the floor", flush=True)
    if verbose:
        for host in hosts:
            print(f"  {host} per second: {[n for n, _ in seen.get(host, {}).get('seconds', {}).values()]}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", type=int, default=8000)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--uncoordinated", action="store_true",
                        help="also run our tasks without Redis (a budget per task)")
    parser.add_argument("--skip-img2dataset", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="also print every host's requests per second")
    args = parser.parse_args()

    import redis

    from danqing.sample.imageserver import ImageServer

    cli = None if args.skip_img2dataset else img2dataset_cli()
    with tempfile.TemporaryDirectory(prefix="bench_politeness_") as tmp:
        work = Path(tmp)
        site, counts = build_site(work / "site", args.urls)
        floor = floor_s(counts)
        with ImageServer(str(site)) as server:
            port = server.address.rsplit(":", 1)[1]
            urls = [f"http://{h}:{port}/img/{i}.jpg" for h, n in counts.items() for i in range(n)]
            random.Random(0).shuffle(urls)
            prefix = f"bench-politeness-{uuid.uuid4().hex[:8]}"
            runs = [("danqing, 4 tasks sharing budgets through Redis", f"{REDIS}?prefix={prefix}")]
            if args.uncoordinated:
                runs.append(("danqing, 4 tasks without coordination (each its own budget)", ""))
            try:
                for i, (name, coordination) in enumerate(runs):
                    server.meter.reset()
                    (work / f"ours{i}").mkdir()
                    ours = run_ours(urls, work / f"ours{i}", server, args.tasks, coordination)
                    report(name, ours, server.meter.summary(), len(urls), floor, counts, args.verbose)
            finally:
                client = redis.Redis.from_url(REDIS)
                keys = list(client.scan_iter(f"{prefix}:*"))
                if keys:
                    client.delete(*keys)
            if cli:
                server.meter.reset()
                i2d = run_img2dataset(urls, work, cli)
                report("img2dataset (no per-host limit)", i2d, server.meter.summary(), len(urls), floor, counts)


if __name__ == "__main__":
    main()
