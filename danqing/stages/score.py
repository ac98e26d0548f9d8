"""Embed each downloaded pair with open_clip: similarity, NSFW floor, embeddings for dedup.

Images are read from the download stage's WebDataset tar at the byte offsets that stage recorded
in its parquet (no pass over the tar's headers, which on S3 read the whole tar), decoded (JPEGs at
a reduced scale where the model's input allows), resized and cropped to uint8 pixels, and their
captions tokenized, all in DataLoader workers, so the GPU model is fed while the CPU decodes
the next batches; the device scales and normalizes the pixels a batch at a time.
Row i of the output parquet is row i of `_img.npy` and `_txt.npy` (float16, unit norm).
"""

from __future__ import annotations

import io as _io
import json
import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from danqing import io
from danqing.config import ScoreConfig
from danqing.embed import model as embed_model
from danqing.errors import UserError
from danqing.records import IMAGE_SPAN_COLUMNS
from danqing.shard import ShardJob, kept_rows, with_column, with_reasons
from danqing.stats import StageStats

IMAGE_UNREADABLE = "image_unreadable"  # missing from the tar or not decodable: nothing to embed
IMAGE_NSFW = "image_nsfw"
XCOM_PATH = "/airflow/xcom/return.json"  # where KubernetesPodOperator's sidecar reads the result


def check(readable: bool, nsfw_score: float, cfg: ScoreConfig) -> str | None:
    """The drop reason, or None to keep."""
    if not readable:
        return IMAGE_UNREADABLE
    if nsfw_score > cfg.nsfw_max_prob:
        return IMAGE_NSFW
    return None


def clip_zero_shot(img_emb: np.ndarray, embedder: embed_model.Embedder, cfg: ScoreConfig) -> np.ndarray:
    """Probability mass on the NSFW prompts against the safe ones: the floor, not a classifier."""
    prompts = cfg.nsfw_prompts + cfg.safe_prompts
    text = embedder.encode_texts(embedder.tokenizer(prompts))
    logits = embedder.logit_scale * img_emb @ text.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs[:, : len(cfg.nsfw_prompts)].sum(axis=1)


# A dedicated NSFW model plugs in here by name (ScoreConfig.nsfw_model); same signature.
NSFW_SCORERS: dict[str, Callable[[np.ndarray, embed_model.Embedder, ScoreConfig], np.ndarray]] = {
    "clip-zero-shot": clip_zero_shot,
}


class PairDataset:
    """Map-style dataset: row i -> (image tensor, tokens, readable); runs in DataLoader workers."""

    def __init__(self, tar_uri: str, storage_options: dict, spans: list[tuple[int, int] | None],
                 captions: list[str], preprocess, tokenizer, draft_size: tuple[int, int] | None = None):
        self.tar_uri, self.storage_options = tar_uri, storage_options
        self.spans, self.captions = spans, captions
        self.preprocess, self.tokenizer = preprocess, tokenizer  # preprocess: PIL image -> tensor
        self.draft_size = draft_size  # (width, height) of the model's input: JPEGs decode no larger
        self.blank = preprocess(_blank_image())
        self._file = None

    def __len__(self) -> int:
        return len(self.spans)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_file": None}  # each worker opens its own handle

    def __getitem__(self, i: int):
        image, readable = self.blank, False
        if self.spans[i] is not None:
            try:
                image, readable = self.preprocess(_decode(self._read(*self.spans[i]), self.draft_size)), True
            except (OSError, ValueError, SyntaxError):  # PIL's errors for corrupt or unknown data
                pass
        return image, self.tokenizer([self.captions[i]])[0], readable

    def _read(self, offset: int, size: int) -> bytes:
        if self._file is None:
            self._file = io.open_uri(self.tar_uri, "rb", self.storage_options)
        self._file.seek(offset)
        return self._file.read(size)


def _blank_image():
    from PIL import Image

    return Image.new("RGB", (32, 32))


def _decode(data: bytes, size: tuple[int, int] | None = None):
    """RGB image; a JPEG is decoded at 1/2, 1/4 or 1/8 scale when that still covers `size` (w, h).

    The model sees a crop of its input size (224 px for most), so decoding every pixel and then
    resizing them away was most of a worker's time; JPEG's own scaled decode is 3-4x cheaper.
    """
    from PIL import Image

    with Image.open(_io.BytesIO(data)) as img:
        if size:
            img.draft(None, size)  # both sides stay >= size, so the resize after still shrinks
        return img.convert("RGB")


def embed(dataset: PairDataset, embedder: embed_model.Embedder, cfg: ScoreConfig) -> tuple[np.ndarray, ...]:
    """Image and text embeddings of every row, and which images were readable."""
    import torch

    loader = torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=False, num_workers=cfg.workers,
        pin_memory=embedder.device == "cuda", prefetch_factor=4 if cfg.workers else None,
        persistent_workers=False,
    )
    imgs, txts, oks = [], [], []
    for images, tokens, readable in loader:
        # Features stay on the device: no wait for each batch before the next is queued.
        imgs.append(embedder.image_features(images))
        txts.append(embedder.text_features(tokens))
        oks.append(readable.numpy())
    if not imgs:
        d = embedder.encode_images(dataset.blank[None]).shape[1]
        return np.zeros((0, d), np.float32), np.zeros((0, d), np.float32), np.zeros(0, bool)
    img, txt, ok = torch.cat(imgs).cpu().numpy(), torch.cat(txts).cpu().numpy(), np.concatenate(oks)
    img[~ok] = 0.0  # an unreadable image has no embedding
    return img, txt, ok


def process(job: ShardJob, stats: StageStats) -> pa.Table:
    cfg = job.cfg.score
    so = job.cfg.storage_options
    rows = kept_rows(job.inputs[0], job.cfg, needs=("id",))
    tar_uri = job.inputs[0].removesuffix(".parquet") + ".tar"
    spans = _image_spans(rows, job.inputs[0])
    ids = rows["id"].to_pylist()
    text_col = "caption" if "caption" in rows.column_names else "alt_text"
    captions = [c or "" for c in rows[text_col].to_pylist()]
    embedder = embed_model.load(cfg)
    transform = embedder.preprocess if embedder.pixels is None else embedder.pixels
    dataset = PairDataset(tar_uri, so, spans, captions, transform, embedder.tokenizer, embedder.image_size[::-1])
    img, txt, ok = embed(dataset, embedder, cfg)
    if (~ok).any():
        stats.error(IMAGE_UNREADABLE, int((~ok).sum()))
    similarity = np.einsum("ij,ij->i", img, txt)
    nsfw = NSFW_SCORERS[cfg.nsfw_model](img, embedder, cfg) if len(img) else np.zeros(0)
    reasons = [check(bool(r), float(s), cfg) or "" for r, s in zip(ok, nsfw, strict=True)]
    _save_npy(img, job.side("_img.npy"), so)
    _save_npy(txt, job.side("_txt.npy"), so)
    rows = with_column(rows, "similarity", pa.array(similarity.astype(np.float32), pa.float32()))
    rows = with_column(rows, "nsfw_score", pa.array(np.asarray(nsfw, np.float32), pa.float32()))
    rows = with_column(rows, "model", pa.array([embedder.name] * len(ids), pa.string()))
    rows = with_column(rows, "emb_row", pa.array(np.arange(len(ids)), pa.int64()))
    return with_reasons(rows, reasons)


def _image_spans(rows: pa.Table, uri: str) -> list[tuple[int, int] | None]:
    """Each row's (offset, size) in the download tar, as the download stage recorded them; None: no image."""
    names = [name for name, _ in IMAGE_SPAN_COLUMNS]
    if not set(names) <= set(rows.column_names):
        marker = uri.removesuffix(".parquet") + "_stats.json"
        raise UserError(f"{uri} has no {'/'.join(names)} columns: an older download stage wrote it. Rerun the "
                         f"download stage for this shard (delete {marker} first, or the rerun skips it).")
    offsets, sizes = (rows[name].to_pylist() for name in names)
    return [None if o is None else (o, n) for o, n in zip(offsets, sizes, strict=True)]


def _save_npy(x: np.ndarray, uri: str, storage_options: dict) -> None:
    buf = _io.BytesIO()
    np.save(buf, x.astype(np.float16))
    with io.atomic_write(uri, "wb", storage_options) as f:
        f.write(buf.getvalue())


def write_xcom(summary: dict, path: str = XCOM_PATH) -> None:
    """Leave the shard summary where the pod's XCom sidecar picks it up."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(summary, f)

