"""Fuzzed images, generated: every format Pillow saves, CMYK, 16-bit, 1-bit, alpha, animated, headers
declaring huge sizes, then byte flips and cuts of each. Decoded through the real decode pool in a child
process: nothing raises or hangs, every image ends with a known reason, memory stays bounded."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from danqing.download import decode as dec
from danqing.download import visual

SEED = 7
KNOWN = {"", dec.DOWNLOAD_NOT_IMAGE, dec.DOWNLOAD_UNDECODABLE, dec.DOWNLOAD_TRUNCATED, dec.DOWNLOAD_BOMB,
         visual.VISUAL_ASPECT_RATIO, visual.VISUAL_TOO_SMALL, visual.VISUAL_LOW_STD, visual.VISUAL_BLURRY,
         visual.VISUAL_LOW_ENTROPY}

CHILD = """
import asyncio, json, os, sys, time
from danqing.config import PipelineConfig
from danqing.download import decode as dec, pool

folder, kind = sys.argv[1], sys.argv[2]
s = dec.Settings.of(PipelineConfig())
names = sorted(os.listdir(folder))

async def main():
    p = await pool.open_pool(s, kind, 2)
    started = time.monotonic()
    results = await asyncio.gather(*(p.decode(open(os.path.join(folder, n), "rb").read()) for n in names))
    await p.close()
    return time.monotonic() - started, results

seconds, results = asyncio.run(main())
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": seconds, "peak_mb": hwm,
                  "results": {n: {"reason": r["reason"], "stored": "jpg" in r} for n, r in zip(names, results)}}))
"""


def _picture(w: int = 240, h: int = 180, seed: int = 0) -> Image.Image:
    """Noise over gradients: sharp and varied enough to pass the visual filters."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h))], -1)
    return Image.fromarray((base + rng.integers(0, 64, (h, w, 3))).clip(0, 255).astype(np.uint8))


def _save(im: Image.Image, fmt: str, **kw) -> bytes | None:
    buf = io.BytesIO()
    try:
        im.save(buf, fmt, **kw)
    except (OSError, ValueError, KeyError, TypeError):  # a format Pillow cannot write in this mode or build
        return None
    return buf.getvalue()


def _every_format() -> dict[str, bytes]:
    """One picture in every format Pillow can write here, in a mode that format takes."""
    Image.init()
    rgb = _picture()
    out = {}
    for fmt in sorted(Image.SAVE):
        for mode in ("RGB", "L", "P", "1"):
            data = _save(rgb.convert(mode), fmt)
            if data:
                out[f"fmt-{fmt.lower()}"] = data
                break
    return out


def _modes() -> dict[str, bytes]:
    rgb = _picture(seed=1)
    frames = [_picture(seed=i) for i in range(3)]
    grey16 = Image.fromarray(np.asarray(rgb.convert("L"), np.uint16) * 257)  # mode I;16
    alpha = rgb.convert("RGBA")
    alpha.putalpha(Image.fromarray(np.tile(np.arange(240, dtype=np.uint8), (180, 1))))
    return {
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG"), "grey.jpg": _save(rgb.convert("L"), "JPEG"),
        "progressive.jpg": _save(rgb, "JPEG", progressive=True), "16bit.png": _save(grey16, "PNG"),
        "1bit.png": _save(rgb.convert("1"), "PNG"), "la.png": _save(rgb.convert("LA"), "PNG"),
        "rgba.png": _save(alpha, "PNG"), "palette-transparent.gif": _save(rgb.convert("P"), "GIF", transparency=0),
        "animated.gif": _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0),
        "animated.webp": _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50),
        "animated.png": _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50),
        "rgba.webp": _save(alpha, "WEBP"), "cmyk.tif": _save(rgb.convert("CMYK"), "TIFF"),
    }


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _huge() -> dict[str, bytes]:
    """Small files whose headers declare enormous images."""
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + _png_chunk(b"IEND", b""))
    png_under_pil = png.replace(struct.pack(">II", 100_000, 100_000), struct.pack(">II", 7_000, 7_000))
    png_under_pil = png_under_pil[:16] + png_under_pil[16:29] + struct.pack(">I", zlib.crc32(png_under_pil[12:29]))\
        + png_under_pil[33:]
    jpeg = bytearray(_save(_picture(), "JPEG"))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", 65_000, 65_000)
    gif = bytearray(_save(_picture().convert("P"), "GIF"))
    gif[6:10] = struct.pack("<HH", 65_535, 65_535)
    bmp = bytearray(_save(_picture(), "BMP"))
    bmp[18:26] = struct.pack("<ii", 60_000, 60_000)
    webp = b"RIFF" + struct.pack("<I", 18) + b"WEBPVP8X" + struct.pack("<I", 10) + b"\0" * 4 + b"\xff\xff\x3f" * 2
    return {"huge.png": png, "huge-49mp.png": png_under_pil, "huge.jpg": bytes(jpeg), "huge.gif": bytes(gif),
            "huge.bmp": bytes(bmp), "huge.webp": webp}


def _mutants(name: str, data: bytes, rng: random.Random) -> dict[str, bytes]:
    out = {name: data}
    for i in range(4):
        flipped = bytearray(data)
        for at in rng.sample(range(len(data)), min(len(data), rng.choice([1, 4, 32]))):
            flipped[at] ^= rng.randrange(1, 256)
        out[f"{name}.flip{i}"] = bytes(flipped)
    for frac in (0.02, 0.3, 0.7, 0.98):
        out[f"{name}.cut{int(frac * 100)}"] = data[: max(1, int(len(data) * frac))]
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(SEED)
    folder = tmp_path_factory.mktemp("images")
    seeds = {**_every_format(), **{k: v for k, v in _modes().items() if v}, **_huge()}
    files = {}
    for name, data in seeds.items():
        files.update(_mutants(name, data, rng) if not name.startswith("huge") else {name: data})
    for name, data in files.items():
        (folder / name.replace("/", "_")).write_bytes(data)
    return folder, seeds


def _decode_all(folder, kind: str) -> dict:
    run = subprocess.run([sys.executable, "-c", CHILD, str(folder), kind], capture_output=True, text=True,
                         cwd=ROOT, timeout=240)
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_the_corpus_covers_what_pillow_writes(corpus):
    _, seeds = corpus
    assert {"fmt-jpeg", "fmt-png", "fmt-gif", "fmt-webp", "fmt-bmp", "fmt-tiff"} <= set(seeds)
    assert len([n for n in seeds if n.startswith("fmt-")]) >= 15


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_every_fuzzed_image_gets_a_known_reason_without_a_crash(corpus, kind):
    folder, _ = corpus
    out = _decode_all(folder, kind)
    results = out["results"]
    assert len(results) == len(list(folder.iterdir()))
    assert {r["reason"] for r in results.values()} <= KNOWN
    assert all(r["stored"] == (r["reason"] == "") for r in results.values())  # kept = stored
    assert out["seconds"] < 60 and out["peak_mb"] < 900  # no hang; huge declared sizes are refused unread
    for name in ("huge.png", "huge-49mp.png", "huge.jpg", "huge.gif", "huge.bmp"):
        assert results[name]["reason"] in (dec.DOWNLOAD_BOMB, dec.DOWNLOAD_UNDECODABLE, dec.DOWNLOAD_TRUNCATED)
    for name in ("fmt-jpeg", "fmt-png", "fmt-webp", "cmyk.jpg", "16bit.png", "animated.gif", "animated.webp",
                 "animated.png", "rgba.png", "progressive.jpg"):
        assert results[name]["reason"] == "", name  # whole images of the formats we take are kept
    for name in ("fmt-jpeg.cut30", "fmt-jpeg.cut70", "progressive.jpg.cut70", "fmt-png.cut70"):
        assert results[name]["reason"] in (dec.DOWNLOAD_TRUNCATED, dec.DOWNLOAD_UNDECODABLE), name
    assert results["fmt-tiff"]["reason"] == dec.DOWNLOAD_NOT_IMAGE  # formats we do not take are named so
