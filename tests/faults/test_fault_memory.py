"""Decoding is bounded by pixels in flight: big images cost the same memory with 1 decode worker or 4."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

SIDE = 4000  # 16 megapixels a copy, under the max_pixels below
MAX_PIXELS = 20_000_000

# Peak RSS of a child decoding COPIES big PNGs through one pool, over its RSS once the pool is open.
CHILD = """
import asyncio, json, sys
from danqing.config import PipelineConfig
from danqing.download import decode as dec, pool

path, copies, workers, max_pixels = sys.argv[1], *map(int, sys.argv[2:5])
body = open(path, "rb").read()
s = dec.Settings.of(PipelineConfig.from_overrides({"download": {"max_pixels": max_pixels}}))

def peak():  # this process's own high-water mark (ru_maxrss would carry the forking parent's across exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024


async def main():
    p = await pool.open_pool(s, "thread", workers)
    base = peak()
    results = await asyncio.gather(*(p.decode(body) for _ in range(copies)))
    await p.close()
    print(json.dumps({"grew_mb": peak() - base, "reasons": sorted({r["reason"] for r in results})}))

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def big_png(tmp_path_factory):
    g = (np.add.outer(np.arange(SIDE), np.arange(SIDE) * 3) % 251).astype(np.uint8)  # compresses to ~0.5 MB
    path = tmp_path_factory.mktemp("big") / "big.png"
    Image.fromarray(np.stack([g, g.T, 255 - g], -1)).save(path, compress_level=1)
    return path


def _grew_mb(path, workers: int, copies: int = 4) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), str(copies), str(workers), str(MAX_PIXELS)],
                         capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    result = json.loads(out.stdout)
    assert result["reasons"] == [""]  # decoded whole, measured, resized and stored
    return result["grew_mb"]


def test_big_images_cost_the_same_memory_with_one_decode_worker_or_four(big_png):
    one, four = _grew_mb(big_png, 1), _grew_mb(big_png, 4)
    per_image_mb = SIDE * SIDE * 3 / 2**20  # the decoded RGB image alone: 46 MiB
    assert one < 4 * per_image_mb  # RGB, grey, metrics and the decoder's buffers of one image at a time
    assert four < one * 1.3 + 20
