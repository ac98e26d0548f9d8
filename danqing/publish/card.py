"""The dataset card (README.md): YAML front matter the hubs parse, then what the data is, how it
was made, every crawl's funnel and plots, how to load it, the scoring model, license and opt-out.

One card covers every crawl in a repo: it is rendered from the crawls' manifests, so publishing
crawl B re-renders the card with A and B (one config per crawl plus `default` over all of them).
"""

from __future__ import annotations

from danqing import __version__
from danqing.config import PublishConfig

SIZE_CATEGORIES = [(1e3, "n<1K"), (1e4, "1K<n<10K"), (1e5, "10K<n<100K"), (1e6, "100K<n<1M"),
                   (1e7, "1M<n<10M"), (1e8, "10M<n<100M"), (1e9, "100M<n<1B"), (float("inf"), "n>1B")]

COLUMNS = {
    "id": "sample id (stable across stages: the key in lineage and in the image tars)",
    "url": "image URL, resolved against the page and its `<base href>`",
    "caption": "refined caption (simplified Chinese, cleaned)",
    "alt_text": "the raw alt text as found on the page",
    "page_url": "the page the image was found on",
    "width": "stored image width (px)", "height": "stored image height (px)",
    "sha256": "sha256 of the stored image", "phash": "64-bit perceptual hash of the image",
    "similarity": "image-text cosine similarity under `model`", "model": "the scoring model (name:weights)",
    "crawl": "Common Crawl snapshot id",
    "warc_filename": "provenance: the WARC file of the page's record",
    "warc_record_offset": "provenance: byte offset of the record in that WARC",
    "warc_record_length": "provenance: byte length of the (gzip member of the) record",
}


def render(manifests: list[dict], parts: list[str], publish: PublishConfig, repo_id: str = "<org>/<dataset>") -> str:
    """README.md for the crawls of `manifests`, as a target with `parts` receives them."""
    from huggingface_hub import DatasetCardData

    manifests = sorted(manifests, key=lambda m: m["crawl"])
    total = sum(m["rows"] for m in manifests)
    configs = []
    if "pairs" in parts:
        configs = [{"config_name": name, "data_files": [{"split": "train", "path": f"data/{glob}/*.parquet"}]}
                   for name, glob in [("default", "*")] + [(m["crawl"], m["crawl"]) for m in manifests]]
    other = {"license_name": "common-crawl-terms-of-use", "license_link": "https://commoncrawl.org/terms-of-use"}
    meta = DatasetCardData(
        language=["zh"], license=publish.license, **(other if publish.license == "other" else {}),
        pretty_name=publish.pretty_name,
        task_categories=["image-to-text", "text-to-image"],
        size_categories=[next(label for bound, label in SIZE_CATEGORIES if total < bound)],
        tags=["image-text", "common-crawl", "chinese"], configs=configs or None)
    lines = [f"---\n{meta.to_yaml()}\n---", "", f"# {publish.pretty_name}", "",
             f"{total:,} Chinese image-text pairs mined from {len(manifests)} Common Crawl "
             f"snapshot{'s' if len(manifests) != 1 else ''}, filtered the way DanQing was made "
             "(DeepGlint, arXiv 2601.10305): alt texts of `<img>` tags on Chinese pages, refined, the images "
             "downloaded and checked, deduplicated within and across crawls, and kept only when image and "
             "caption agree. Every row keeps the WARC record it came from.", "",
             "## Releases", "", "| crawl | pairs | shards | tag | config | code |", "|---|---:|---:|---|---|---|"]
    lines += [f"| {m['crawl']} | {m['rows']:,} | {m['shards']} | `{m['tag']}` | `{m['config_hash']}` | "
              f"{m['code_version']} |" for m in manifests]
    lines += ["", "Each release is a tag `<crawl>-<config hash>`: load a tag to get exactly that release.", ""]
    lines += _how_made()
    for m in manifests:
        lines += _crawl_section(m, "plots" in parts)
    lines += _columns(manifests)
    lines += _loading(manifests, parts, repo_id)
    lines += _model(manifests)
    lines += _license(publish)
    return "\n".join(lines) + "\n"


def _how_made() -> list[str]:
    return ["## How it was made", "",
            "1. **Extract**: image / alt-text pairs from HTML records labelled Chinese (`zho`); 5 to 60 words; "
            "blacklisted domains and unsafe captions dropped.",
            "2. **Refine**: language ID, traditional to simplified, emoji and boilerplate stripped, "
            "low-information and unsafe captions dropped.",
            "3. **Download**: robots.txt and `X-Robots-Tag: noai` honoured; aspect 1:3..3:1, shortest side "
            "over 100 px, contrast, sharpness and histogram-entropy checks.",
            "4. **Score and dedup**: image-text similarity and NSFW under an open_clip model; near-duplicate "
            "images merged within the crawl and against earlier releases.",
            "5. **Align**: only pairs whose similarity sits in the model's calibrated band are kept.", ""]


def _crawl_section(m: dict, plots: bool) -> list[str]:
    lines = [f"## {m['crawl']}", "", f"{m['rows']:,} pairs in {m['shards']} shards, tag `{m['tag']}`.", "",
             *funnel_tables(m["summary"])]
    if plots:
        from danqing.publish.plots import PLOTS

        lines += [""] + [f"![{title}](assets/{m['crawl']}/{name})" for name, title in PLOTS.items()]
    return lines + [""]


def funnel_tables(summary: dict) -> list[str]:
    """The funnel by stage and reason, the distributions and the similarity band of one crawl."""
    lines = ["| stage | in | out | dropped (by reason) |", "|---|---:|---:|---|"]
    for s in summary["funnel"]:
        reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(s["dropped"].items())) or "-"
        lines.append(f"| {s['stage']} | {s['in']:,} | {s['out']:,} | {reasons} |")
    if summary["distributions"]:
        lines += ["", "| | p5 | median | p95 |", "|---|---:|---:|---:|"]
        lines += [f"| {name} | {q['p5']:g} | {q['p50']:g} | {q['p95']:g} |"
                  for name, q in summary["distributions"].items()]
    for model, h in sorted(summary["similarity"].items()):
        (lo, hi), q = h["band"], h["quantiles"]
        lines += ["", f"Similarity under `{model}`, band {lo}..{hi}: {h['pairs']:,} pairs judged, {h['in_band']:,} "
                  f"in the band, {h['below']:,} below, {h['above']:,} above (p5 {q['p5']}, median {q['p50']}, "
                  f"p95 {q['p95']})."]
    return lines


def _columns(manifests: list[dict]) -> list[str]:
    columns = manifests[-1]["summary"]["columns"] if manifests else []
    return ["## Columns and provenance", "", "| column | meaning |", "|---|---|",
            *[f"| `{c}` | {COLUMNS.get(c, '')} |" for c in columns],
            "", "`warc_filename`, `warc_record_offset` and `warc_record_length` locate the page's record in "
            "Common Crawl (`https://data.commoncrawl.org/<warc_filename>`, a byte range), so every row can be "
            "traced back and every decision on it replayed.", ""]


def _loading(manifests: list[dict], parts: list[str], repo_id: str) -> list[str]:
    latest = manifests[-1] if manifests else {"crawl": "<crawl>", "tag": "<tag>"}
    lines = ["## Loading", ""]
    if "pairs" in parts:
        lines += ["```python", "from datasets import load_dataset", "",
                  f'pairs = load_dataset("{repo_id}", "{latest["crawl"]}", revision="{latest["tag"]}", split="train")',
                  f'every_crawl = load_dataset("{repo_id}", split="train")  # the `default` config', "```", ""]
    if "images" in parts:
        lines += ["The images are WebDataset tars, one per shard (`images/<crawl>/NNNNN.tar`, members "
                  "`<id>.jpg`, `<id>.txt` (caption), `<id>.json` (the row)):", "",
                  "```python", "import glob", "", "import webdataset as wds", "",
                  f'shards = sorted(glob.glob("images/{latest["crawl"]}/*.tar"))  # after downloading them',
                  'for image, caption, row in wds.WebDataset(shards).decode("pil").to_tuple("jpg", "txt", "json"):',
                  "    ...", "```", ""]
    lines += ["To fetch the images from their URLs instead (they change and vanish over time), give the pairs "
              "to `danqing download PAIRS.parquet --out DIR` or to img2dataset (`url_col=\"url\"`, "
              "`caption_col=\"caption\"`).", ""]
    return lines


def _model(manifests: list[dict]) -> list[str]:
    lines = ["## Scoring model", ""]
    models = sorted({m["summary"]["model"] for m in manifests})
    lines += [f"- `{model}`" for model in models]
    if any(not m["summary"]["pretrained"] for m in manifests):
        lines += ["", "**A scoring model was randomly initialised** (no weights could be downloaded where the "
                  "release was built): its similarity scores, NSFW scores and embedding dedup are not meaningful. "
                  "Such a release demonstrates the pipeline; it is not a dataset to train on."]
    return lines + [""]


def _license(publish: PublishConfig) -> list[str]:
    return ["## License and opt-out", "",
            f"Card license: `{publish.license}`. Captions, URLs and provenance come from Common Crawl and are "
            "subject to its terms of use (https://commoncrawl.org/terms-of-use). The images remain their "
            "owners'; any tars here are provided for research on the pairs.", "",
            "Opt-out: downloads honoured robots.txt and `X-Robots-Tag: noai` / `noimageai` at crawl time. To "
            "have an image or page removed from future releases, open a discussion on this repository with its URL.",
            "",
            f"Built by danqing-pipeline {__version__}; the method follows DanQing (DeepGlint, arXiv 2601.10305).", ""]
