"""Visual filters of PIPELINE.md stage 3: pure checks on an image's size and grey pixels, and what they measure.

They run once, at decode (decode.py), so an image is never decoded twice.
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


def measure(grey: np.ndarray, hist: list[int] | None = None, colour_hist: list[int] | None = None) -> Metrics:
    """Std and blur of an 8-bit grey image (H x W, uint8), and the entropy of the image's histogram.

    `hist` may pass the grey image's 256-bin histogram when it is at hand (PIL's is ten times faster);
    `colour_hist` the colour image's per-channel histograms, end to end (PIL's 768 bins for RGB).

    Entropy is measured on the colour histogram when there is one, as Pillow's Image.entropy() does
    for an RGB image: the 50 real DanQing images (final pairs, so they passed DanQing's own filters)
    all reach 4.05 bits or more that way, while on the grey histogram two near-flat product shots
    on coloured backdrops fall to 2.78 and 2.49 bits and would be dropped under the 3-bit threshold.
    Folding colour into grey discards what tells such a picture from an empty one; a two-tone or
    flat image still measures under 3 bits (a 1-bit image is 2.58 bits as RGB).
    """
    n = grey.size
    counts = np.asarray(hist if hist is not None else np.bincount(grey.ravel(), minlength=256), dtype=np.float64)
    levels = np.arange(256, dtype=np.float64)
    mean = counts @ levels / n
    std = float(np.sqrt(max(0.0, counts @ (levels * levels) / n - mean * mean)))
    return Metrics(std, _laplacian_var(grey), _entropy(counts if colour_hist is None else colour_hist))


def _entropy(hist) -> float:
    """Shannon entropy in bits of a histogram (all its bins together)."""
    counts = np.asarray(hist, dtype=np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


_STRIPE_ROWS = 256  # the Laplacian's int16/int32 temporaries cover this many rows at a time, not the image


def _laplacian_var(grey: np.ndarray) -> float:
    """Variance of cv2.Laplacian(ksize=3) ([[2,0,2],[0,-8,0],[2,0,2]]) over the interior, in exact integers."""
    if min(grey.shape) < 3:
        return 0.0
    s1 = s2 = 0
    for top in range(0, grey.shape[0] - 2, _STRIPE_ROWS):
        g = grey[top: top + _STRIPE_ROWS + 2].astype(np.int16)  # half the kernel spans +-2040: int16 is exact
        lap = g[:-2, :-2] + g[:-2, 2:]
        lap += g[2:, :-2]
        lap += g[2:, 2:]
        lap -= 4 * g[1:-1, 1:-1]
        s1 += int(lap.sum(dtype=np.int64))
        sq = lap.astype(np.int32)
        sq *= sq
        s2 += int(sq.sum(dtype=np.int64))
    n = (grey.shape[0] - 2) * (grey.shape[1] - 2)
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
