"""Benchmark the refine stage's text filters: captions per second on one core.

Builds N captions deterministically from the 50 real DanQing captions (variations: product codes,
emoji, traditional script, splices, repeats) plus bad cases (boilerplate, Japanese, Korean,
English, unsafe, repetitive), then times the stage's Refiner three ways in one run:
  naive      every check on every caption: OpenCC always, full jieba posseg (HMM), no cache
  uncached   the stage's shortcuts (OpenCC skipped for simplified text, dictionary-first noun test)
  stage      the stage as it runs: shortcuts plus the per-process verdict cache
naive and uncached run on alternating chunks of a prefix (the 2-core machine is shared, so a
ratio measured that way holds); uncached and stage then run on all captions.
Usage: .venv/bin/python scripts/bench_text.py [--n 100000] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from danqing.config import PipelineConfig  # noqa: E402
from danqing.records import KEPT  # noqa: E402
from danqing.stages import refine as stage  # noqa: E402
from danqing.text import clean, density, langid, quality, safety  # noqa: E402

CAPTIONS = ROOT / "tests" / "fixtures" / "danqing_examples" / "danqing_examples_captions.tsv"
BAD = [
    "点击查看大图", "返回顶部", "分享到微博", "微信扫一扫 关注我们", "DSC_0012.JPG", "IMG_{n}.jpg", "logo",
    "https://www.example.com/{n}.jpg", "{n}", "¥{n}.00", "第{n}页", "上一篇 下一篇",
    "東京タワーの夜景 {n}", "かわいい猫の写真", "서울 야경 사진 {n}", "맛있는 김치찌개 레시피",
    "Beautiful sunset over the sea {n}", "Photo of a cat", "Le petit chat noir dort",
    "加微信 abc{n} 领取优惠", "澳门百家乐在线赌场{n}", "成人视频免费看", "联系电话138{n:08d}",
    "哈哈哈哈哈哈哈哈", "特价特价特价特价特价", "非常漂亮", "快来看啊", "🎉🎉🎉",
]
EMOJI = ["❤️", "🔥", "★", "✨", "👍🏻", "🎉", "【热卖】", "！！！"]


def build(n: int, seed: int = 0) -> list[str]:
    """n captions: ~75% variations of real ones, ~25% bad cases; fixed by the seed."""
    real = [line.split("\t", 1)[1] for line in CAPTIONS.read_text("utf-8").splitlines()]
    from opencc import OpenCC

    traditional = [OpenCC("s2t").convert(c) for c in real]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.25:
            out.append(rng.choice(BAD).format(n=rng.randrange(10**6)))
        elif r < 0.40:
            out.append(rng.choice(real))  # verbatim repeats, as alt texts repeat across pages
        elif r < 0.55:
            out.append(f"{rng.choice(real)} {rng.choice('ABCDEFGHJK')}{rng.randrange(100, 99999)}")
        elif r < 0.65:
            e = rng.choice(EMOJI)
            out.append(f"{e}{rng.choice(real)}{e}")
        elif r < 0.75:
            out.append(rng.choice(traditional))
        elif r < 0.95:
            a, b = rng.choice(real), rng.choice(real)
            out.append(a[: len(a) // 2 + 1] + b[len(b) // 2:])
        else:
            out.append(" ".join([rng.choice(real)[:8]] * rng.randint(2, 4)))
    return out


def naive(alt_text: str, cfg, tokenizer: str) -> tuple[str, str]:
    """The same verdicts without the stage's shortcuts: a baseline for the ratio."""
    caption = clean._opencc().convert(clean.strip_special(alt_text))
    if not caption:
        return caption, stage.CAPTION_EMPTY
    reason = (quality.check_boilerplate(caption) or langid.check(caption, cfg) or safety.check(caption, cfg)
              or density.check(caption, cfg) or quality.check_unknown(caption, cfg.max_unknown_tokens, tokenizer))
    if not reason and not any(p.flag.startswith(("n", "vn", "an")) for p in quality._posseg().cut(caption)):
        reason = quality.CAPTION_NO_NOUN
    return caption, reason or KEPT


def timed(fn, captions) -> tuple[float, list]:
    start = time.perf_counter()
    out = [fn(c) for c in captions]
    return time.perf_counter() - start, out


def interleaved(a, b, captions, chunk: int = 250) -> tuple[float, float, list, list]:
    """Time a and b on alternating chunks, so load from other processes hits both alike."""
    ta = tb = 0.0
    va: list = []
    vb: list = []
    for i in range(0, len(captions), chunk):
        part = captions[i:i + chunk]
        t, v = timed(a, part)
        ta, va = ta + t, va + v
        t, v = timed(b, part)
        tb, vb = tb + t, vb + v
    return ta, tb, va, vb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--naive-n", type=int, default=10_000, help="the naive baseline runs on a prefix")
    parser.add_argument("--profile", action="store_true", help="print the top functions of the uncached run")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    cfg = PipelineConfig()
    captions = build(args.n)
    start = time.perf_counter()
    stage.refine("北京犬", cfg)  # loads fastText, OpenCC, jieba and the tokenizer once
    print(f"model load (once per process): {time.perf_counter() - start:.2f} s")

    uncached = stage.Refiner(cfg.refine.model_copy(update={"cache_size": 0}), cfg.score.tokenizer)
    cached = stage.Refiner(cfg.refine, cfg.score.tokenizer)
    prefix = captions[: args.naive_n]
    t_naive, t_short, v_naive, v_short = interleaved(
        lambda c: naive(c, cfg.refine, cfg.score.tokenizer), uncached.refine, prefix)
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
    t_uncached, v_uncached = timed(uncached.refine, captions)
    if args.profile:
        profiler.disable()
    t_stage, v_stage = timed(cached.refine, captions)

    assert v_stage == v_uncached and v_short == v_uncached[: len(prefix)], "a shortcut changed a verdict"
    differ = sum(a != b for a, b in zip(v_naive, v_short, strict=True))
    unique = len(set(captions))
    kept = sum(1 for _, r in v_stage if not r)
    n = len(prefix)
    print(f"captions: {len(captions):,} ({unique:,} distinct), kept {kept:,} ({kept / len(captions):.1%})")
    print(f"first {n:,}, interleaved: naive {n / t_naive:,.0f}/s, shortcuts {n / t_short:,.0f}/s: "
          f"x{t_naive / t_short:.1f} ({differ} verdicts differ)")
    rate_uncached, rate_stage = len(captions) / t_uncached, len(captions) / t_stage
    print(f"all {len(captions):,}, uncached: {rate_uncached:>9,.0f} captions/s")
    print(f"all {len(captions):,}, stage:    {rate_stage:>9,.0f} captions/s  (x{t_uncached / t_stage:.1f} from the "
          f"cache; target >= 5,000: {'met' if rate_stage >= 5000 else 'MISSED'})")
    reasons: dict[str, int] = {}
    for _, r in v_stage:
        reasons[r or "kept"] = reasons.get(r or "kept", 0) + 1
    print("verdicts:", dict(sorted(reasons.items(), key=lambda kv: -kv[1])))
    if args.profile:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
