"""Benchmark: our downloader vs img2dataset on the same loopback URLs, same resize settings.

Serves the 50 real DanQing JPEGs as N distinct URLs from an aiohttp server in its own process,
then times `danqing.shard.run_local("download", ...)` and img2dataset (installed by this script
into a throwaway venv under /tmp) at image_size 256, center_crop, webdataset output.

    .venv/bin/python scripts/bench_download.py [--urls 4000] [--repeat 1] [--processes 1]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "tests" / "fixtures" / "danqing_examples" / "images"
I2D_VENV = Path("/tmp/danqing_bench_img2dataset")
# img2dataset applies no visual filters; count what we store, as it does.
NO_VISUAL_FILTERS = {"min_side_px": 0, "min_aspect": 0.0, "max_aspect": 1e9, "min_pixel_std": 0,
                     "min_laplacian_var": 0, "min_hist_entropy_bits": 0}


def serve(port_out, images: dict[str, bytes]) -> None:
    """A keep-alive aiohttp server: /img/<i>/<name> answers the named JPEG."""
    from aiohttp import web

    async def handler(request):
        return web.Response(body=images[request.match_info["name"]], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/img/{i}/{name}", handler)

    async def main():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
        await site.start()
        port_out.put(site._server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    import asyncio

    asyncio.run(main())


def img2dataset_cli() -> str:
    py, cli = I2D_VENV / "bin" / "python", I2D_VENV / "bin" / "img2dataset"
    if not cli.exists():
        subprocess.run([sys.executable, "-m", "venv", str(I2D_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "img2dataset"], check=True)
    return str(cli)


def img2dataset_command(cli: str, url_file: Path, out: Path, n_urls: int) -> list[str]:
    """img2dataset set as our side of the comparison is: 256 px center crop, JPEG 95, 20 s timeout, 2 retries."""
    # Four shards per process, so every img2dataset process has work to the end.
    per_shard = max(1, -(-n_urls // (4 * (os.cpu_count() or 1))))
    return [cli, "--url_list", str(url_file), "--input_format", "txt",
            "--output_folder", str(out), "--output_format", "webdataset", "--image_size", "256",
            "--resize_mode", "center_crop", "--processes_count", str(os.cpu_count()), "--thread_count", "64",
            "--encode_quality", "95", "--number_sample_per_shard", str(per_shard), "--disable_all_reencoding",
            "False", "--timeout", "20", "--retries", "2", "--distributor", "multiprocessing"]


def run_ours(urls: list[str], work: Path, download: dict) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT))
    from danqing import io
    from danqing.config import PipelineConfig
    from danqing.shard import run_local

    rows = [{"id": f"{i:08d}", "page_url": "", "url": u, "alt_text": "alt", "caption": "图片", "page_language": "zho",
             "charset": "utf-8", "warc_filename": "bench", "warc_record_offset": i, "warc_record_length": 1,
             "drop_reason": ""} for i, u in enumerate(urls)]
    inp = str(work / "in.parquet")
    io.write_parquet(pa.Table.from_pylist(rows), inp)
    cfg = PipelineConfig.from_overrides({
        "root": str(work / "data"),
        "download": {"allow_loopback": True, "resize_mode": "center_crop", "image_size_px": 256,
                     "respect_robots": False,  # img2dataset does not read robots.txt
                     # Every URL is on one loopback host: the per-host politeness cap would
                     # measure the cap, not the engine (img2dataset has none). bench-politeness
                     # measures the budgets, shared through Redis; here each loop keeps its own.
                     "per_host_concurrency": 64, "per_host_requests_per_s": 0, "coordination_url": "",
                     "concurrency": 64, **download},
        "visual": NO_VISUAL_FILTERS,
    })
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = run_local("download", [inp], str(work / "ours" / "00000"), cfg)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    table = pq.read_table(work / "ours" / "00000.parquet", columns=["drop_reason"])
    ok = sum(1 for r in table["drop_reason"].to_pylist() if not r)
    return {"seconds": seconds, "cpu": cpu, "success": ok, "total": summary["total"]}


def run_img2dataset(urls: list[str], work: Path, cli: str) -> dict:
    url_file = work / "urls.txt"
    url_file.write_text("\n".join(urls) + "\n")
    out = work / "i2d"
    cmd = img2dataset_command(cli, url_file, out, len(urls))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    start, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    return {"seconds": seconds, "cpu": cpu, "success": sum(s["successes"] for s in stats),
            "total": sum(s["count"] for s in stats)}


def cpu_seconds() -> float:
    """User + system CPU of this process and of every child it has reaped (decode workers, img2dataset)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--urls", type=int, default=4000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--pool", choices=["process", "thread"], default="thread", help="decode_pool (config default)")
    parser.add_argument("--workers", type=int, default=0, help="decode workers per process (0 = one per CPU)")
    parser.add_argument("--processes", type=int, default=0,
                        help="event loops (processes) per shard (0 = config default: one per CPU)")
    parser.add_argument("--skip-img2dataset", action="store_true")
    args = parser.parse_args()

    images = {p.name: p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))}
    names = sorted(images)
    cli = img2dataset_cli()
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=serve, args=(ports, images), daemon=True)
    server.start()
    port = ports.get(timeout=30)
    ours_cfg = {"decode_pool": args.pool, "decode_workers": args.workers, "processes": args.processes}
    ratios, cpu_ratios = [], []
    try:
        for rep in range(args.repeat):
            # Fresh URLs each repetition: nothing may come from a cache.
            urls = [f"http://127.0.0.1:{port}/img/{rep}-{i}/{names[i % len(names)]}" for i in range(args.urls)]
            with tempfile.TemporaryDirectory(prefix="bench_download_") as tmp:
                work = Path(tmp)
                ours_first = rep % 2 == 0  # alternate who runs first: a busy machine hurts neither side alone
                if ours_first or args.skip_img2dataset:
                    ours = run_ours(urls, work, ours_cfg)
                if args.skip_img2dataset:
                    print(ours)
                    continue
                i2d = run_img2dataset(urls, work, cli)
                if not ours_first:
                    ours = run_ours(urls, work, ours_cfg)
            for name, r in (("danqing", ours), ("img2dataset", i2d)):
                print(f"{name:12s} {r['success']:5d}/{r['total']} ok ({100 * r['success'] / r['total']:.1f}%)  "
                      f"{r['seconds']:6.1f} s  {r['success'] / r['seconds']:7.1f} images/s  "
                      f"{1000 * r['cpu'] / r['success']:5.2f} CPU ms/image")
            ratios.append((ours["success"] / ours["seconds"]) / (i2d["success"] / i2d["seconds"]))
            cpu_ratios.append((i2d["cpu"] / i2d["success"]) / (ours["cpu"] / ours["success"]))
            print(f"speed-up: {ratios[-1]:.2f}x images/s, {cpu_ratios[-1]:.2f}x less CPU per image "
                  f"({os.cpu_count()} cores)")
        if ratios:
            print(f"median over {len(ratios)} runs: {statistics.median(ratios):.2f}x images/s, "
                  f"{statistics.median(cpu_ratios):.2f}x less CPU per image "
                  "(the server process, the same for both, is not counted)")
    finally:
        server.terminate()


if __name__ == "__main__":
    main()
