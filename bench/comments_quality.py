"""Quality of Lumi's comment model on its dev split: character BLEU-1..4 and object mentions.

    .venv/bin/python bench/comments_quality.py [--model DIR] [--data PAIRS.jsonl] [--candidates 1 8 16]

The dev split is recomputed from the data with the same content hash the training used and checked
against the ids saved beside the model. Rows: the seed project's fine-tuned T5-base (its own figures,
on its own split), a trivial baseline computed here, and the model with greedy and MBR decoding.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

from inference.commenter.data import CommentPair, load_pairs, prompt_order, split_pairs
from inference.commenter.evaluation import CommentScores, score_comments

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sns_comments_ko.jsonl"
SEED_T5_BASE = {"bleu1": 0.6258, "bleu4": 0.4105}


class FrequentCommentBaseline:
    """The most frequent training comment for the same label set, else for the same first label,
    else the most frequent comment overall."""

    def __init__(self, train: Sequence[CommentPair]) -> None:
        by_set: dict[tuple[str, ...], Counter[str]] = defaultdict(Counter)
        by_first: dict[str, Counter[str]] = defaultdict(Counter)
        overall: Counter[str] = Counter()
        for pair in train:
            ordered = prompt_order(pair.labels)
            by_set[tuple(sorted(ordered))][pair.comment] += 1
            by_first[ordered[0]][pair.comment] += 1
            overall[pair.comment] += 1
        self._by_set = {key: counts.most_common(1)[0][0] for key, counts in by_set.items()}
        self._by_first = {key: counts.most_common(1)[0][0] for key, counts in by_first.items()}
        self._overall = overall.most_common(1)[0][0]

    def __call__(self, labels: Sequence[str]) -> str:
        ordered = prompt_order(labels)
        return self._by_set.get(tuple(sorted(ordered))) or self._by_first.get(ordered[0]) or self._overall


def _row(name: str, scores: CommentScores | dict[str, float], seconds: float | None = None) -> str:
    if isinstance(scores, CommentScores):
        bleu = scores.bleu
        extra = (
            f"{scores.any_object_rate:>8.1%} {scores.object_recall:>8.1%} {scores.length_ratio:>6.3f}"
            f" {seconds if seconds is not None else 0:>7.1f}"
        )
    else:
        bleu = scores
        extra = f"{'-':>8} {'-':>8} {'-':>6} {'-':>7}"
    cells = " ".join(
        f"{bleu[key]:>7.4f}" if key in bleu else f"{'-':>7}" for key in ("bleu1", "bleu2", "bleu3", "bleu4")
    )
    return f"{name:<52} {cells} {extra}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="model dir (default: the committed model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 0], help="0 = the model's default")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["int8", "float32"],
        choices=["int8", "float32"],
        help="int8: the default",
    )
    # One thread by default: on the shared 2-core machine two threads measured ~10x slower (barrier waits).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from inference.commenter.generate import DEFAULT_MODEL_DIR, LocalCommenter

    torch.set_num_threads(args.threads)
    model_dir: Path = args.model or DEFAULT_MODEL_DIR
    split = split_pairs(load_pairs(args.data))
    saved = model_dir / "split.json"
    if saved.is_file():
        dev_ids = set(json.loads(saved.read_text(encoding="utf-8"))["dev_ids"])
        if dev_ids != {pair.pair_id for pair in split.dev}:
            print(
                f"warning: the dev split of {args.data} differs from the one saved in {saved}",
                file=sys.stderr,
            )
    labels = [pair.labels for pair in split.dev]
    references = [pair.comment for pair in split.dev]

    print(f"model {model_dir}; dev split: {len(split.dev)} pairs (train {len(split.train)})")
    columns = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4")
    header = f"{'system':<52} " + " ".join(f"{c:>7}" for c in columns)
    header += f" {'obj≥1':>8} {'obj rec':>8} {'len':>6} {'sec':>7}"
    print(header)
    print("-" * len(header))
    print(_row("seed T5-base fine-tuned (reported, own split)", SEED_T5_BASE))
    baseline = FrequentCommentBaseline(split.train)
    print(
        _row(
            "baseline: most frequent train comment",
            score_comments(labels, [baseline(x) for x in labels], references),
        )
    )

    for precision in args.precisions:
        commenter = LocalCommenter(model_dir, device="cpu", precision=precision)
        commenter.load()
        for count in args.candidates:
            started = time.perf_counter()
            hypotheses = commenter.generate(labels, num_candidates=count or None)
            seconds = time.perf_counter() - started
            actual = count or commenter.settings.num_candidates
            name = "Lumi greedy" if actual == 1 else f"Lumi {actual} candidates, MBR + bonuses"
            name += f", {precision}"
            print(_row(name, score_comments(labels, hypotheses, references), seconds), flush=True)
    print("obj≥1: comments naming at least one of their object labels (inputs with objects only);")
    print("obj rec: share of all object labels named; len: hypothesis/reference characters.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
