"""The scoring model, loaded once per process: open_clip by name, plus the tiny test model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from danqing.config import ScoreConfig

# A tiny CLIP for tests and the demo: random weights, 64 px images, open_clip's bundled BPE tokenizer.
# Its config ships in models/, the folder open_clip's registry scans.
TINY = "danqing-tiny"
MODEL_CONFIGS = Path(__file__).parent / "models"
TINY_CONFIG = json.loads((MODEL_CONFIGS / f"{TINY}.json").read_text())


@lru_cache(maxsize=1)
def register() -> None:
    """Add danqing-tiny to open_clip's registry (it scans a folder of JSON configs)."""
    import open_clip

    open_clip.add_model_config(MODEL_CONFIGS)


def model_id(cfg: ScoreConfig) -> str:
    """Name and version of the weights, as written to the `model` column."""
    return f"{cfg.model}:{cfg.pretrained or f'random-seed{cfg.seed}'}"


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def autocast_dtype(device: str, precision: str):
    """Half precision on GPU (bf16 where supported), float32 on CPU."""
    import torch

    if precision == "fp32" or (precision == "auto" and device == "cpu"):
        return None
    if precision == "bf16" or (precision == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


@dataclass
class Embedder:
    """A loaded open_clip model with its preprocessing and tokenizer."""

    model: Any
    preprocess: Any
    tokenizer: Any
    device: str
    dtype: Any
    name: str
    # preprocess up to uint8 pixels, and its ToTensor + Normalize done on a whole batch on the device
    # (split_preprocess); None when preprocess does not end that way.
    pixels: Any = None
    mean_std: Any = None

    def encode_images(self, images) -> np.ndarray:
        return self.image_features(images).cpu().numpy()

    def encode_texts(self, tokens) -> np.ndarray:
        return self.text_features(tokens).cpu().numpy()

    def image_features(self, images):
        """Unit-norm embeddings, left on the device; images are preprocess() floats or pixels() uint8."""
        import torch

        images = images.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            mean, std = self.mean_std
            images = images.float().div_(255).sub_(mean).div_(std)  # what ToTensor and Normalize do per image
        return self._features(self.model.encode_image, images)

    def text_features(self, tokens):
        return self._features(self.model.encode_text, tokens.to(self.device, non_blocking=True))

    def _features(self, fn, batch):
        import torch

        with torch.inference_mode(), torch.autocast(self.device, dtype=self.dtype, enabled=self.dtype is not None):
            out = fn(batch)
        return torch.nn.functional.normalize(out.float(), dim=-1)

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the model's input images."""
        size = self.model.visual.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    @property
    def logit_scale(self) -> float:
        """The model's zero-shot temperature, capped as CLIP caps it."""
        return float(min(self.model.logit_scale.exp().item(), 100.0))


def split_preprocess(preprocess, device: str) -> tuple[Any, Any]:
    """(preprocess up to uint8 pixels, (mean, std) on the device), or (None, None).

    Decode workers then ship uint8, a quarter of the bytes to copy and pin, and skip the float
    conversion and normalization (~1 ms an image at 224 px on a CPU core), which the device
    does for the whole batch. open_clip's transforms end in ToTensor + Normalize.
    """
    import torch
    from torchvision import transforms

    steps = list(getattr(preprocess, "transforms", []))
    tail = [type(t) for t in steps[-2:]]
    if len(tail) < 2 or not issubclass(tail[0], transforms.ToTensor) or not issubclass(tail[1], transforms.Normalize):
        return None, None
    mean, std = (torch.tensor(v, dtype=torch.float32, device=device).view(-1, 1, 1)
                 for v in (steps[-1].mean, steps[-1].std))
    return transforms.Compose([*steps[:-2], transforms.PILToTensor()]), (mean, std)


def load(cfg: ScoreConfig) -> Embedder:
    """The model named by cfg; cached, so a process loads it once."""
    return _load(cfg.model, cfg.pretrained, cfg.tokenizer, cfg.device, cfg.precision, cfg.seed)


@lru_cache(maxsize=2)
def _load(name: str, pretrained: str, tokenizer: str, device: str, precision: str, seed: int) -> Embedder:
    import open_clip
    import torch

    register()
    device = resolve_device(device)
    torch.manual_seed(seed)  # random init must give the same model on every run
    model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained or None, device=device)
    model.eval()
    cfg = ScoreConfig(model=name, pretrained=pretrained, seed=seed)
    return Embedder(model, preprocess, open_clip.get_tokenizer(tokenizer or name), device,
                    autocast_dtype(device, precision), model_id(cfg), *split_preprocess(preprocess, device))
