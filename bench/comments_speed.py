"""Speed of Lumi's comment model: load time and per-comment latency at batch sizes 1, 8 and 32.

    .venv/bin/python bench/comments_speed.py [--model DIR] [--threads 2] [--batches 12]

Per-comment latency is the batch's wall time divided by its size (what a caller waiting in a full
batch experiences on average); p50/p95 are over the measured batches. Imports are timed separately
from `load()` because a running bot has torch imported long before the commenter loads.

The default int8 decoding is measured beside float32 decoding of the same model (the baseline): each
batch is decoded by both, one right after the other, so a busy machine slows both alike.

Then the default decoding at batch 32 is set against its forward-pass limit, in interleaved rounds:
the bare encoder and cached decoder passes that teacher-force the chosen comments (one row per label
list, and all candidate rows per label list), fed ready tensors; what the default costs above that
is sampling, ended-row bookkeeping, the repetition guard, selection and the comment guard. Rows that
ran to the token cap are counted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inference.commenter.generate import LocalCommenter
    from inference.commenter.tokenizer import CommentTokenizer

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
    _limit_section(commenters, pool, args.batches)
    return 0


def _limit_section(commenters: dict[str, LocalCommenter], pool: Sequence[list[str]], batches: int) -> None:
    from inference.commenter.tokenizer import CommentTokenizer

    commenter = commenters.get("int8") or next(iter(commenters.values()))
    tokenizer = CommentTokenizer.load(commenter.model_dir)
    candidates = commenter.settings.num_candidates
    default: list[float] = []
    candidates_only: list[float] = []
    one_row: list[float] = []
    all_rows: list[float] = []
    before = dataclasses.replace(commenter.stats)
    for round_index in range(batches + 1):
        batch = [pool[(round_index * 32 + i) % len(pool)] for i in range(32)]
        began = time.perf_counter()
        comments = commenter.generate(batch)
        elapsed = time.perf_counter() - began
        began = time.perf_counter()
        commenter.generate_candidates(batch)
        drawn = time.perf_counter() - began
        bare_one = forward_limit(commenter, tokenizer, batch, comments, rows_per_list=1)
        bare_all = forward_limit(commenter, tokenizer, batch, comments, rows_per_list=candidates)
        if round_index:
            default.append(elapsed)
            candidates_only.append(drawn)
            one_row.append(bare_one)
            all_rows.append(bare_all)
    stats = commenter.stats
    rows = stats.rows - before.rows
    capped = stats.capped_rows - before.capped_rows
    p50 = statistics.median
    print(f"\ndefault decoding at batch 32 ({commenter.precision}) against its forward-pass limit:")
    print(f"  default (draw {candidates}, choose, guard): {p50(default) * 1e3:.1f} ms per batch")
    print(f"  drawing the candidates alone:            {p50(candidates_only) * 1e3:.1f} ms")
    print(f"  bare passes, 1 row per label list:       {p50(one_row) * 1e3:.1f} ms")
    print(f"  bare passes, {candidates} rows per label list:      {p50(all_rows) * 1e3:.1f} ms")
    ratios_one = sorted(d / b for d, b in zip(default, one_row, strict=True))
    ratios_all = sorted(d / b for d, b in zip(default, all_rows, strict=True))
    print(
        f"  default / limit: {p50(ratios_one):.2f}x for 1 row ({ratios_one[0]:.2f}-{ratios_one[-1]:.2f}), "
        f"{p50(ratios_all):.2f}x for {candidates} rows ({ratios_all[0]:.2f}-{ratios_all[-1]:.2f})"
    )
    print(f"  rows that reached the {commenter.settings.max_new_tokens}-token cap: {capped} of {rows}")


def forward_limit(
    commenter: LocalCommenter,
    tokenizer: CommentTokenizer,
    label_lists: Sequence[Sequence[str]],
    comments: Sequence[str],
    *,
    rows_per_list: int,
) -> float:
    """Seconds for the encoder and the cached decoder passes that teacher-force `comments`, fed ready
    tensors: what any decoding of these comments must at least pay."""
    import torch

    from inference.commenter.data import normalize_labels, prompt_order
    from inference.commenter.decoding import decoder_step, padded_prompts

    model, settings = commenter.model, commenter.settings
    prompts = [
        tokenizer.encode_labels(prompt_order(normalize_labels(labels)), max_length=settings.max_prompt_tokens)
        for labels in label_lists
    ]
    targets = [tokenizer.encode_comment(text, max_length=settings.max_new_tokens) for text in comments]
    input_ids, attention = padded_prompts(prompts, pad_id=tokenizer.pad_id)
    steps = max(len(target) for target in targets)
    forced = torch.full((len(targets), steps), tokenizer.pad_id, dtype=torch.long)
    for row, target in enumerate(targets):
        forced[row, : len(target)] = torch.tensor(target)
    forced = forced.repeat_interleave(rows_per_list, dim=0)
    with torch.inference_mode():
        began = time.perf_counter()
        encoded = model.encoder(input_ids=input_ids, attention_mask=attention).last_hidden_state
        encoded = encoded.repeat_interleave(rows_per_list, dim=0)
        mask = attention.repeat_interleave(rows_per_list, dim=0)
        current = torch.full((forced.shape[0], 1), model.config.decoder_start_token_id, dtype=torch.long)
        cache = None
        for step in range(steps):
            _, cache = decoder_step(model, encoded, mask, current, cache)
            current = forced[:, step : step + 1]
        return time.perf_counter() - began


if __name__ == "__main__":
    raise SystemExit(main())
