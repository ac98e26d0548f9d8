"""The release's plots (PNG): funnel by stage and reason, caption lengths, image sizes, similarity band.

Drawn with matplotlib's object API (no pyplot state, safe in a worker) and saved without the
software stamp, so the same release draws the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PLOTS = {
    "funnel.png": "Pairs in and out of each stage, drops by reason",
    "caption_length.png": "Caption length (characters)",
    "image_size.png": "Image width and height (pixels)",
    "similarity.png": "Image-text similarity and the kept band",
}


def write(folder: Path, measures: dict[str, np.ndarray], funnel: list[dict], similarity: dict) -> list[str]:
    """Draw every plot into `folder`; `measures`: caption length, image width and height per pair."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    for name, draw in [("funnel.png", lambda ax: _funnel(ax, funnel)),
                       ("caption_length.png", lambda ax: _caption_length(ax, measures["caption length (chars)"])),
                       ("image_size.png", lambda ax: _image_size(ax, measures["image width (px)"],
                                                                 measures["image height (px)"])),
                       ("similarity.png", lambda ax: _similarity(ax, similarity))]:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        draw(ax)
        ax.set_title(PLOTS[name])
        fig.savefig(folder / name, format="png", metadata={"Software": None})
    return sorted(PLOTS)


def _funnel(ax, funnel: list[dict]) -> None:
    stages = [s["stage"] for s in funnel][::-1]
    kept = [s["out"] for s in funnel][::-1]
    ax.barh(stages, kept, color=_palette(1)[0], label="kept")
    left = np.array(kept, dtype=float)
    reasons = sorted({r for s in funnel for r in s["dropped"]})
    colors = _palette(len(reasons), start=2)  # tab20's first blues are the kept bars
    for reason, color in zip(reasons, colors, strict=True):
        counts = np.array([s["dropped"].get(reason, 0) for s in funnel][::-1], dtype=float)
        ax.barh(stages, counts, left=left, color=color, label=reason)
        left += counts
    ax.set_xlabel("pairs")
    if reasons or kept:
        ax.legend(fontsize=6, ncols=2, loc="lower right")


def _caption_length(ax, lengths: np.ndarray) -> None:
    ax.hist(lengths, bins=30, color="#55a868")
    ax.set_xlabel("characters")
    ax.set_ylabel("pairs")


def _image_size(ax, width: np.ndarray, height: np.ndarray) -> None:
    if width.size:  # hexagonal bins: bounded in size and time whatever the number of pairs
        counts = ax.hexbin(width, height, gridsize=30, mincnt=1, cmap="viridis")
        ax.figure.colorbar(counts, ax=ax, label="pairs")
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")


def _similarity(ax, similarity: dict) -> None:
    for (model, h), color in zip(sorted(similarity["models"].items()), _palette(len(similarity["models"])),
                                 strict=True):
        edges = np.array(h["bin_edges"])
        ax.stairs(h["counts"], edges, color=color, label=model)
        lo, hi = h["band"]
        ax.axvspan(lo, hi, color=color, alpha=0.15)
    ax.set_xlabel("cosine similarity (the shaded band is kept)")
    ax.set_ylabel("pairs judged")
    if similarity["models"]:
        ax.legend(fontsize=7)


def _palette(n: int, start: int = 0) -> list:
    from matplotlib import colormaps

    return [colormaps["tab20"]((start + i) % 20) for i in range(n)]
