"""Safe decode of fetched bytes: sniff the real format, refuse bombs and truncation, resize, hash.

Runs in a worker pool (pure CPU, picklable arguments), so the download event loop never blocks.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import asdict, dataclass

from danqing.config import PipelineConfig, VisualConfig
from danqing.download import visual

DOWNLOAD_NOT_IMAGE = "download_not_image"
DOWNLOAD_UNDECODABLE = "download_undecodable"
DOWNLOAD_TRUNCATED = "download_truncated"
DOWNLOAD_BOMB = "download_decompression_bomb"

# Magic bytes -> PIL format; only these are ever handed to a decoder.
_MAGIC = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
]


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the stored image; its fingerprint keys the resume cache."""

    max_pixels: int
    resize_mode: str
    size: int
    quality: int
    visual: VisualConfig

    @classmethod
    def of(cls, cfg: PipelineConfig) -> Settings:
        d = cfg.download
        return cls(d.max_pixels, d.resize_mode, d.image_size_px, d.jpeg_quality, cfg.visual)

    def fingerprint(self) -> str:
        blob = json.dumps({**asdict(self), "visual": self.visual.model_dump()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sniff(data: bytes) -> str | None:
    """The image format the bytes really are (whatever Content-Type claimed), or None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    return None


def decode(data: bytes, s: Settings) -> dict:
    """Decode, filter and store one image: a dict with `reason` ("" = kept) and what was measured."""
    from PIL import Image

    fmt = sniff(data)
    if fmt is None:
        return {"reason": DOWNLOAD_NOT_IMAGE}
    if fmt == "JPEG" and not _jpeg_complete(data):
        return {"reason": DOWNLOAD_TRUNCATED, "format": fmt}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=[fmt])
            return _decode_open(im, fmt, s)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return {"reason": DOWNLOAD_BOMB, "format": fmt}
    except OSError as e:
        truncated = "truncated" in str(e)
        return {"reason": DOWNLOAD_TRUNCATED if truncated else DOWNLOAD_UNDECODABLE, "format": fmt}
    except (ValueError, SyntaxError, IndexError, TypeError, EOFError, MemoryError):
        return {"reason": DOWNLOAD_UNDECODABLE, "format": fmt}


def _decode_open(im, fmt: str, s: Settings) -> dict:
    import numpy as np
    from PIL import ImageOps

    width, height = im.size
    # The header's pixel count decides before a single pixel is decoded.
    if width * height > s.max_pixels:
        return {"reason": DOWNLOAD_BOMB, "format": fmt}
    orientation = _orientation(im)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    out = {"reason": "", "format": fmt, "width": width, "height": height}
    reason = visual.check_size(width, height, s.visual)
    if reason:
        return {**out, "reason": reason}
    if fmt == "JPEG" and s.resize_mode != "no":
        # DCT scaling: decode at 1/2..1/8 size when that still covers the target; far less work.
        im.draft(None, (s.size, s.size))
    im.load()
    if orientation != 1:  # exif_transpose copies the image even when there is nothing to turn
        im = ImageOps.exif_transpose(im)
    rgb = _to_rgb(im)
    grey = rgb.convert("L")
    metrics = visual.measure(np.asarray(grey), grey.histogram(), rgb.histogram())
    out.update(pixel_std=metrics.pixel_std, laplacian_var=metrics.laplacian_var, entropy_bits=metrics.entropy_bits)
    reason = visual.check_pixels(metrics, s.visual)
    if reason:
        return {**out, "reason": reason}
    stored = _resize(rgb, s.resize_mode, s.size)
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=s.quality)
    jpg = buf.getvalue()
    return {**out, "stored_width": stored.width, "stored_height": stored.height, "jpg": jpg,
            "sha256": hashlib.sha256(jpg).hexdigest(), "phash": _phash(stored)}


def _jpeg_complete(data: bytes) -> bool:
    """False only when the bytes end before the JPEG does: no EOI marker (FFD9) after its first scan starts.

    Header segments are stepped over by their lengths (an EXIF thumbnail has an EOI of its own), and
    scan data cannot hold FFD9 (0xFF is byte-stuffed), so an FFD9 past the scan's start is the
    image's end. Whatever follows it (padding, junk, an appended page, as some servers send) is ignored.
    A header too broken to step through is left for the decoder to refuse.
    """
    pos, n = 2, len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return True
        marker = data[pos + 1]
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:  # fill byte, or a marker with no length
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:  # an end before any scan: no image, the decoder says so
            return True
        length = int.from_bytes(data[pos + 2: pos + 4], "big")
        if marker == 0xDA:  # start of scan
            return data.rfind(b"\xff\xd9", pos + 2 + length) >= 0  # from the end: a whole one ends there
        pos += 2 + length
    return False


def decoded_pixels(data: bytes, s: Settings) -> int:
    """Pixels decode() will hold for these bytes, from the header alone; 0 when it will refuse them unread."""
    from PIL import Image

    fmt = sniff(data)
    if fmt is None:
        return 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = im.size
            if width * height > s.max_pixels:
                return 0
            if fmt == "JPEG" and s.resize_mode != "no":
                im.draft(None, (s.size, s.size))  # as decode() will: DCT scaling shrinks what is held
                width, height = im.size
        return width * height
    except Exception:  # noqa: BLE001 - the decoder will give the reason; it holds next to nothing
        return 0


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1))
    except Exception:  # a broken EXIF block must not cost the image
        return 1


def _to_rgb(im):
    """RGB with alpha flattened on white; palette, CMYK, 16-bit and grey converted by PIL's matrices."""
    from PIL import Image

    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode in ("RGB", "L") and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB") if im.mode != "RGB" else im


def _resize(im, mode: str, size: int):
    """img2dataset's modes: keep_ratio/center_crop scale the shortest side to size, border the longest.

    Downscaling averages pixel areas (BOX, as img2dataset's INTER_AREA); upscaling is bicubic.
    """
    from PIL import Image

    w, h = im.size
    if mode == "no":
        return im
    if mode == "center_crop":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        # Resample only the central square: no work spent on pixels the crop throws away.
        return im.resize((size, size), _filter(side, size), box=(left, top, left + side, top + side))
    scale = size / (min(w, h) if mode == "keep_ratio" else max(w, h))
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new != (w, h):
        im = im.resize(new, _filter(w, new[0]))
    if mode == "keep_ratio":
        return im
    canvas = Image.new("RGB", (size, size), (0, 0, 0))
    canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


def _filter(src: int, dst: int):
    from PIL import Image

    return Image.Resampling.BOX if dst < src else Image.Resampling.BICUBIC


_DCT: dict[int, object] = {}


def _phash(im) -> str:
    """imagehash.phash's hex, with its two 32-point DCTs as one matrix product (no scipy call per image)."""
    import numpy as np
    from PIL import Image

    n = 32
    if n not in _DCT:
        k, x = np.arange(n)[:, None], np.arange(n)[None, :]
        _DCT[n] = 2 * np.cos(np.pi * k * (2 * x + 1) / (2 * n))  # scipy.fftpack.dct type II, unnormalised
    m = _DCT[n]
    pixels = np.asarray(im.convert("L").resize((n, n), Image.Resampling.LANCZOS), dtype=np.float64)
    low = (m @ pixels @ m.T)[:8, :8]
    return np.packbits(low > np.median(low)).tobytes().hex()  # row-major, first bit high: imagehash's hex
