"""Speed of Lumi's comment model: load time and per-comment latency at batch sizes 1, 8 and 32.

    .venv/bin/python bench/comments_speed.py [--model DIR] [--threads 2] [--batches 12]

Per-comment latency is the batch's wall time divided by its size (what a caller waiting in a full
batch experiences on average); p50/p95 are over the measured batches. Imports are timed separately
from `load()` because a running bot has torch imported long before the commenter loads.

The default int8 decoding is measured beside float32 decoding of the same model (the baseline): each
batch is decoded by both, one right after the other, so a busy machine slows both alike.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sns_comments_ko.jsonl"
# Used when the data set is not at hand; typical detector outputs of one to four labels.
FALLBACK_LABELS: list[list[str]] = [
    ["기쁨"],
    ["슬픔", "안경"],
    ["공포", "나무", "건물"],
    ["분노", "재킷", "차", "바퀴"],
    ["기쁨", "자전거"],
    ["기쁨", "꽃", "테이블"],
]


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="model dir (default: the committed model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    # One thread by default: on the shared 2-core machine two threads measured ~10x slower (barrier waits).
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=12, help="measured batches per batch size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--candidates", type=int, nargs="+", default=[0, 1], help="0 = the model's default")
    parser.add_argument("--precisions", nargs="+", default=["int8", "float32"], choices=["int8", "float32"])
    args = parser.parse_args(argv)

    started = time.perf_counter()
    import torch

    torch_seconds = time.perf_counter() - started
    started = time.perf_counter()
    from inference.commenter.data import load_pairs, split_pairs
    from inference.commenter.generate import DEFAULT_MODEL_DIR, LocalCommenter

    library_seconds = time.perf_counter() - started
    torch.set_num_threads(args.threads)
    model_dir: Path = args.model or DEFAULT_MODEL_DIR
    commenters = {
        precision: LocalCommenter(model_dir, device="cpu", precision=precision)
        for precision in args.precisions
    }
    load_seconds: dict[str, float] = {}
    for precision, commenter in commenters.items():
        started = time.perf_counter()
        commenter.load()
        load_seconds[precision] = time.perf_counter() - started
    weights_mb = (model_dir / "model.safetensors").stat().st_size / 1e6

    print(f"model {model_dir} ({weights_mb:.1f} MB weights), {args.threads} torch threads")
    print(f"import torch {torch_seconds:.2f} s; import transformers + commenter {library_seconds:.2f} s")
    loads = ", ".join(f"{precision} {seconds:.2f} s" for precision, seconds in load_seconds.items())
    print(f"LocalCommenter.load(): {loads} (target ≤ 3 s)")

    if args.data.is_file():
        pool = [list(pair.labels) for pair in split_pairs(load_pairs(args.data)).dev]
    else:
        pool = FALLBACK_LABELS
    columns = f"{'batch p50':>10} {'batch p95':>10} {'/comment p50':>13} {'/comment p95':>13}"
    print(f"{'decoding':<34} {'batch':>5} {columns}")
    cursor = 0
    default_candidates = next(iter(commenters.values())).settings.num_candidates
    for count in args.candidates:
        actual = count or default_candidates
        name = "greedy" if actual == 1 else f"{actual} candidates + MBR"
        for size in args.sizes:
            timings: dict[str, list[float]] = {precision: [] for precision in commenters}
            for repetition in range(args.batches + 1):
                batch = [pool[(cursor + i) % len(pool)] for i in range(size)]
                cursor += size
                for precision, commenter in commenters.items():
                    began = time.perf_counter()
                    comments = commenter.generate(batch, num_candidates=actual)
                    elapsed = time.perf_counter() - began
                    if len(comments) != size:
                        raise RuntimeError("the commenter returned the wrong number of comments")
                    if repetition:  # the first batch of each size warms allocator and caches
                        timings[precision].append(elapsed)
            for precision, measured in timings.items():
                per_comment = [t / size for t in measured]
                print(
                    f"{name + ', ' + precision:<34} {size:>5} {statistics.median(measured) * 1e3:>8.1f}ms "
                    f"{_percentile(measured, 0.95) * 1e3:>8.1f}ms "
                    f"{statistics.median(per_comment) * 1e3:>11.1f}ms "
                    f"{_percentile(per_comment, 0.95) * 1e3:>11.1f}ms",
                    flush=True,
                )
            if {"int8", "float32"} <= timings.keys():
                ratio = statistics.median(timings["float32"]) / statistics.median(timings["int8"])
                print(f"{'  int8 speed-up over float32':<34} {size:>5} {ratio:>9.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
