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


def measure(grey: np.ndarray) -> Metrics:
    """Std, blur and histogram entropy of an 8-bit grey image (H x W, uint8)."""
    g = grey.astype(np.float32)
    # The 3x3 aperture of cv2.Laplacian(ksize=3): [[2,0,2],[0,-8,0],[2,0,2]], on the interior.
    if min(g.shape) >= 3:
        lap = 2 * (g[:-2, :-2] + g[:-2, 2:] + g[2:, :-2] + g[2:, 2:]) - 8 * g[1:-1, 1:-1]
        lap_var = float(lap.var(dtype=np.float64))
    else:
        lap_var = 0.0
    hist = np.bincount(grey.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / grey.size
    entropy = float(-(p * np.log2(p)).sum())
    return Metrics(float(g.std(dtype=np.float64)), lap_var, entropy)


def check_pixels(m: Metrics, cfg: VisualConfig) -> str | None:
    """Flat, blurry or near-empty images: the drop reason, or None to keep."""
    if m.pixel_std < cfg.min_pixel_std:
        return VISUAL_LOW_STD
    if m.laplacian_var < cfg.min_laplacian_var:
        return VISUAL_BLURRY
    if m.entropy_bits < cfg.min_hist_entropy_bits:
        return VISUAL_LOW_ENTROPY
    return None
