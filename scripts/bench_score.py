"""Scoring throughput: images/s end to end against the model's forward pass alone, and their ratio
(target >= 0.8: the model never waits).

End to end is the score stage on one download shard: read the parquet (each image's offset in
the tar), read and decode JPEGs and preprocess them in DataLoader workers, tokenize there, run the
model, score NSFW, write the parquet and the embeddings. Forward alone is the same loaded model, batch
size and dtype on synthetic tensors, all threads to itself. Both run in this process on one device.

Usage: .venv/bin/python scripts/bench_score.py [--n N] [--model ViT-B-32] [--batch-size 64] [--workers 2]
The shard repeats the 50 real fixture JPEGs (tests/fixtures/danqing_examples, 200-1260 px) to --n rows.
The model is production-sized by default: ViT-B-32, the vision tower of the multilingual production
models, with random weights (none can be downloaded here); whether the model waits depends on its
size, and the tests' danqing-tiny (--model danqing-tiny) costs less than decoding an image.
--n defaults to 4,096 images on a GPU, the order of a shard that reaches scoring, so a shard's fixed
costs (worker start, model warm-up, writes) weigh as they do in a run; 512 on a CPU, where
ViT-B-32 takes ~0.1 s an image.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from score_helpers import examples, row  # noqa: E402

from danqing import io, paths, tario  # noqa: E402
from danqing.config import PipelineConfig  # noqa: E402
from danqing.embed import model as embed_model  # noqa: E402
from danqing.shard import run_local  # noqa: E402

CRAWL = "CC-MAIN-2099-02"  # paths take crawl ids only: any valid one names the bench's shards


def write_shard(cfg: PipelineConfig, shard: int, n: int) -> str:
    """A download shard of n rows cycling over the fixture images; the metadata is computed once per image."""
    pool = [(row(name.split(".")[0], caption, data, CRAWL), data) for name, caption, data in examples()]
    rows, members = [], []
    for i in range(n):
        meta, data = pool[i % len(pool)]
        key = f"{i:06d}"
        rows.append({**meta, "id": key})
        members += [(f"{key}.jpg", data), (f"{key}.txt", meta["caption"].encode())]
    uri = paths.shard_uri(cfg.root, CRAWL, "download", shard)
    spans = tario.write_tar(uri.removesuffix(".parquet") + ".tar", members)
    for r in rows:  # the image spans the download stage records
        r["tar_offset"], r["tar_size"] = spans[f"{r['id']}.jpg"]
    io.write_parquet(rows, uri)
    return uri


def forward_only(embedder, n: int, batch_size: int) -> float:
    """Seconds for the model alone to embed n synthetic images and captions, batch by batch.

    Inputs start on the device; as in the stage, features stay there and are fetched once at the end.
    """
    import torch

    height, width = embedder.image_size
    images = torch.randn(batch_size, 3, height, width, generator=torch.Generator().manual_seed(0))
    tokens = embedder.tokenizer(["一只猫坐在窗台上看外面的风景"] * batch_size)
    images, tokens = images.to(embedder.device), tokens.to(embedder.device)  # already there: no copies timed
    embedder.encode_images(images), embedder.encode_texts(tokens)  # warm up
    started = time.perf_counter()
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        out += [embedder.image_features(images[:m]), embedder.text_features(tokens[:m])]
    torch.cat(out).cpu()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, help="images in the shard (default: 4096 on a GPU, 512 on a CPU)")
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import torch

    args.n = args.n or (4096 if torch.cuda.is_available() else 512)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = PipelineConfig.from_overrides({"root": f"{tmp}/data", "score": {
            "model": args.model, "tokenizer": args.model, "batch_size": args.batch_size, "workers": args.workers}})
        uri, warm = write_shard(cfg, 0, args.n), write_shard(cfg, 1, args.batch_size)
        embedder = embed_model.load(cfg.score)
        run_local("score", [warm], f"{tmp}/warm", cfg)  # model load and first-call costs out of the timing

        started = time.perf_counter()
        summary = run_local("score", [uri], f"{tmp}/out", cfg)
        end_to_end = time.perf_counter() - started
        forward = forward_only(embedder, args.n, args.batch_size)
    e2e_rate, fwd_rate = summary["total"] / end_to_end, args.n / forward
    print(f"model {embedder.name} on {embedder.device} (dtype {embedder.dtype or 'float32'}), "
          f"batch {args.batch_size}, workers {args.workers}, images {args.n} at {embedder.image_size[0]}px, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print(f"end to end      {e2e_rate:8.1f} images/s ({end_to_end:.2f} s)")
    print(f"forward alone   {fwd_rate:8.1f} images/s ({forward:.2f} s)")
    print(f"ratio           {e2e_rate / fwd_rate:8.2f} (target >= 0.8)")


if __name__ == "__main__":
    main()
