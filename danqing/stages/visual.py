"""Visual filters of PIPELINE.md stage 3: pure checks on an image's size and grey pixels.

They run once, at decode (danqing.download.decode), so an image is never decoded twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from danqing.config import VisualConfig

VISUAL_ASPECT_RATIO = "visual_aspect_ratio"
VISUAL_TOO_SMALL = "visual_too_small"
VISUAL_LOW_STD = "visual_low_std"
VISUAL_BLURRY = "visual_blurry"
VISUAL_LOW_ENTROPY = "visual_low_entropy"


@dataclass(frozen=True)
class Metrics:
    pixel_std: float
    laplacian_var: float
    entropy_bits: float


def check_size(width: int, height: int, cfg: VisualConfig) -> str | None:
    """Shape checks, answerable from the header alone (before any pixel is decoded)."""
    if min(width, height) <= cfg.min_side_px:
        return VISUAL_TOO_SMALL
    if not cfg.min_aspect <= width / height <= cfg.max_aspect:
        return VISUAL_ASPECT_RATIO
    return None


def measure(grey: np.ndarray, hist: list[int] | None = None) -> Metrics:
    """Std, blur and histogram entropy of an 8-bit grey image (H x W, uint8).

    `hist` may pass the image's 256-bin histogram when it is at hand (PIL's is ten times faster).
    """
    n = grey.size
    counts = np.asarray(hist if hist is not None else np.bincount(grey.ravel(), minlength=256), dtype=np.float64)
    levels = np.arange(256, dtype=np.float64)
    mean = counts @ levels / n
    std = float(np.sqrt(max(0.0, counts @ (levels * levels) / n - mean * mean)))
    p = counts[counts > 0] / n
    entropy = float(-(p * np.log2(p)).sum())
    return Metrics(std, _laplacian_var(grey), entropy)


def _laplacian_var(grey: np.ndarray) -> float:
    """Variance of cv2.Laplacian(ksize=3) ([[2,0,2],[0,-8,0],[2,0,2]]) over the interior, in exact integers."""
    if min(grey.shape) < 3:
        return 0.0
    g = grey.astype(np.int16)  # half the kernel spans +-2040: int16 is exact
    lap = g[:-2, :-2] + g[:-2, 2:]
    lap += g[2:, :-2]
    lap += g[2:, 2:]
    lap -= 4 * g[1:-1, 1:-1]
    n = lap.size
    s1 = int(lap.sum(dtype=np.int64))
    sq = lap.astype(np.int32)
    sq *= sq
    s2 = int(sq.sum(dtype=np.int64))
    return 4.0 * (s2 - s1 * s1 / n) / n  # the full kernel is twice the half: variance times 4


def check_pixels(m: Metrics, cfg: VisualConfig) -> str | None:
    """Flat, blurry or near-empty images: the drop reason, or None to keep."""
    if m.pixel_std < cfg.min_pixel_std:
        return VISUAL_LOW_STD
    if m.laplacian_var < cfg.min_laplacian_var:
        return VISUAL_BLURRY
    if m.entropy_bits < cfg.min_hist_entropy_bits:
        return VISUAL_LOW_ENTROPY
    return None
