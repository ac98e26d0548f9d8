"""Scoring throughput: images/s end to end (tar read, decode, preprocess, model) against the
model's forward pass alone on synthetic tensors, and their ratio (target >= 0.8: the model never waits).

Usage: .venv/bin/python scripts/bench_score.py [--n 512] [--model danqing-tiny] [--batch-size 64] [--workers 2]
The shard is built from the fixture images (tests/fixtures/danqing_examples), repeated to --n rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from score_helpers import examples, write_download_shard  # noqa: E402

from danqing.config import PipelineConfig  # noqa: E402
from danqing.embed import model as embed_model  # noqa: E402
from danqing.shard import run_local  # noqa: E402


def forward_only(embedder, n: int, batch_size: int, image_size: int) -> float:
    """Seconds for the model alone to embed n synthetic images and captions."""
    import torch

    gen = torch.Generator().manual_seed(0)
    images = torch.randn(batch_size, 3, image_size, image_size, generator=gen)
    tokens = embedder.tokenizer(["一只猫坐在窗台上看外面的风景"] * batch_size)
    embedder.encode_images(images), embedder.encode_texts(tokens)  # warm up
    started = time.perf_counter()
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        embedder.encode_images(images[:m])
        embedder.encode_texts(tokens[:m])
    if embedder.device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--model", default="danqing-tiny")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PipelineConfig.from_overrides({"root": f"{tmp}/data", "score": {
            "model": args.model, "tokenizer": args.model, "batch_size": args.batch_size, "workers": args.workers}})
        pool = examples()
        pairs = [(f"{i:06d}", pool[i % len(pool)][1], pool[i % len(pool)][2]) for i in range(args.n)]
        uri = write_download_shard(cfg, "bench", 0, pairs)
        warm = write_download_shard(cfg, "bench", 1, pairs[: args.batch_size])
        embedder = embed_model.load(cfg.score)
        run_local("score", [warm], f"{tmp}/warm", cfg)  # model load and first-call costs out of the timing

        started = time.perf_counter()
        summary = run_local("score", [uri], f"{tmp}/out", cfg)
        end_to_end = time.perf_counter() - started
        size = int(np.asarray(embedder.model.visual.image_size).reshape(-1)[0])
        forward = forward_only(embedder, args.n, args.batch_size, size)
    e2e_rate, fwd_rate = summary["total"] / end_to_end, args.n / forward
    print(f"model {embedder.name} on {embedder.device} (dtype {embedder.dtype or 'float32'}), "
          f"batch {args.batch_size}, workers {args.workers}, images {args.n} at {size}px")
    print(f"end to end      {e2e_rate:8.1f} images/s ({end_to_end:.2f} s)")
    print(f"forward alone   {fwd_rate:8.1f} images/s ({forward:.2f} s)")
    print(f"ratio           {e2e_rate / fwd_rate:8.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
