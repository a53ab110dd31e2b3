"""Quality of Lumi's comment model on its dev split: character BLEU-1..4 and object mentions, then
fidelity to the photo's labels with and without the comment guard (`inference.commenter.guard`).

    .venv/bin/python bench/comments_quality.py [--model DIR ...] [--data PAIRS.jsonl] [--candidates 1 8 16]

Several `--model` dirs (e.g. the committed model and a new one) are measured in the same run, on the
same label lists, one after the other.

Fidelity (object recall, share naming all objects, share naming an object from the table that is
not among the labels, share malformed) is measured on three sets of label lists:
(a) the dev split; (b) label sets never seen in training: the dev pairs whose label set does not occur
in the training split, plus fixed random combinations of training objects that never occur together
there; (c) random label sets drawn from the whole object table (no references: fidelity only).

The dev split is recomputed from the data with the same content hash the training used and checked
against the ids saved beside the model. Rows: the seed project's fine-tuned T5-base (its own figures,
on its own split), a trivial baseline computed here, and the model with greedy and MBR decoding.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

from inference.commenter.data import (
    EMOTION_LABELS,
    CommentPair,
    Split,
    load_pairs,
    object_labels,
    prompt_order,
    split_pairs,
)
from inference.commenter.evaluation import CommentScores, FidelityScores, fidelity_scores, score_comments

if TYPE_CHECKING:
    from inference.commenter.generate import LocalCommenter, Precision
    from inference.commenter.guard import GuardStats

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


def unseen_label_sets(
    train: Sequence[CommentPair], dev: Sequence[CommentPair], extra: int
) -> list[list[str]]:
    """Dev label sets absent from training, then `extra` fixed random combinations of objects from
    the training data (with an emotion or none) that never occur together in training."""
    seen = {frozenset(pair.labels) for pair in train}
    unseen = list(dict.fromkeys(tuple(pair.labels) for pair in dev if frozenset(pair.labels) not in seen))
    objects = sorted({label for pair in train for label in object_labels(pair.labels)})
    emotions = sorted(EMOTION_LABELS)
    rng = random.Random(13)
    target = len(unseen) + extra
    while len(unseen) < target:
        chosen = rng.sample(objects, rng.randint(1, 3))
        mood = rng.choice([*emotions, None])
        labels = ([mood] if mood else []) + chosen
        if frozenset(labels) not in seen and tuple(labels) not in unseen:
            unseen.append(tuple(labels))
    return [list(labels) for labels in unseen]


def table_label_sets(count: int) -> list[list[str]]:
    """`count` fixed random label sets from the object table: an emotion or none, 1-4 objects."""
    from inference.labels import oiv7_vocabulary

    names = sorted({item.ko for item in oiv7_vocabulary().classes if not item.generic})
    emotions = sorted(EMOTION_LABELS)
    rng = random.Random(601)
    sets = []
    for _ in range(count):
        mood = rng.choice([*emotions, None])
        sets.append(([mood] if mood else []) + rng.sample(names, rng.randint(1, 4)))
    return sets


def _fidelity_row(name: str, scores: FidelityScores, seconds: float) -> str:
    return (
        f"{name:<52} {scores.count:>5} {scores.object_recall:>8.1%} {scores.all_named_rate:>8.1%}"
        f" {scores.foreign_rate:>8.1%} {scores.malformed_rate:>8.1%} {seconds:>7.1f}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, nargs="+", default=None, help="model dirs (default: the committed model)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--candidates", type=int, nargs="+", default=[1, 0], help="0 = the model's default")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["int8", "float32"],
        choices=["int8", "float32"],
        help="int8: the default",
    )
    parser.add_argument("--unseen-extra", type=int, default=200, help="random unseen combinations in (b)")
    parser.add_argument("--table-sets", type=int, default=300, help="random label sets in (c)")
    # One thread by default: on the shared 2-core machine two threads measured ~10x slower (barrier waits).
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from inference.commenter.generate import DEFAULT_MODEL_DIR

    torch.set_num_threads(args.threads)
    split = split_pairs(load_pairs(args.data))
    for model_dir in args.model or [DEFAULT_MODEL_DIR]:
        _measure(args, model_dir, split)
    print("obj≥1: comments naming at least one of their object labels (inputs with objects only);")
    print("obj rec: share of all object labels named; len: hypothesis/reference characters.")
    return 0


def _measure(args: argparse.Namespace, model_dir: Path, split: Split) -> None:
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
        for guarded in (False, True):
            commenter = _commenter(model_dir, precision, guarded=guarded)
            commenter.load()
            for count in args.candidates:
                started = time.perf_counter()
                hypotheses = commenter.generate(labels, num_candidates=count or None)
                seconds = time.perf_counter() - started
                actual = count or commenter.settings.num_candidates
                name = "Lumi greedy" if actual == 1 else f"Lumi {actual} candidates, MBR"
                name += f", {precision}, {'guarded' if guarded else 'before'}"
                print(_row(name, score_comments(labels, hypotheses, references), seconds), flush=True)
    _fidelity_section(args, model_dir, split.train, split.dev)
    print()


def _fidelity_section(
    args: argparse.Namespace, model_dir: Path, train: Sequence[CommentPair], dev: Sequence[CommentPair]
) -> None:
    from inference.commenter.analysis import shared_analyser
    from inference.commenter.fidelity import object_names

    analyser, names = shared_analyser(), object_names()
    sets = {
        "(a) dev split": [list(pair.labels) for pair in dev],
        "(b) label sets unseen in training": unseen_label_sets(train, dev, args.unseen_extra),
        "(c) random sets from the object table": table_label_sets(args.table_sets),
    }
    print()
    header = f"{'fidelity (int8, default decoding)':<52} {'lists':>5} {'obj rec':>8} {'all obj':>8}"
    header += f" {'foreign':>8} {'malform':>8} {'sec':>7}"
    print(header)
    print("-" * len(header))
    print(_fidelity_row("training comments on their own labels", _training_fidelity(train), 0.0))
    for guarded in (False, True):
        commenter = _commenter(model_dir, args.precisions[0], guarded=guarded)
        commenter.load()
        for set_name, label_lists in sets.items():
            before = dataclasses.replace(commenter.guard_stats) if commenter.guard_stats else None
            started = time.perf_counter()
            comments = commenter.generate(label_lists)
            seconds = time.perf_counter() - started
            name = f"{set_name}, {'guarded' if guarded else 'before'}"
            print(_fidelity_row(name, fidelity_scores(label_lists, comments, analyser, names), seconds))
            if before is not None and commenter.guard_stats is not None:
                print(f"  {_guard_summary(before, commenter.guard_stats)}")
        stats = commenter.stats
        print(f"  rows that reached the token cap: {stats.capped_rows} of {stats.rows}")
    print("before: no comment guard and no repetition guard (the decoding as it was).")
    print("obj rec: share of object labels named; all obj: lists with objects whose comment names all;")
    print("foreign: comments naming a table object not among their labels; malform: flagged malformed.")


def _guard_summary(before: GuardStats, after: GuardStats) -> str:
    """What the guard did between two snapshots of its counters."""
    total = after.comments - before.comments or 1
    return (
        f"model's text as written {(after.as_written - before.as_written) / total:.1%}, with sentences"
        f" dropped {(after.repaired - before.repaired) / total:.1%}, replaced"
        f" {(after.replaced - before.replaced) / total:.1%}; objects added"
        f" {(after.objects_added - before.objects_added) / total:.1%}"
    )


def _commenter(model_dir: Path, precision: str, *, guarded: bool) -> LocalCommenter:
    """The default decoding (`guarded`), or as it was before the comment guard and the repetition
    guard existed, for before/after rows in one run."""
    from inference.commenter.generate import LocalCommenter, read_decode_settings

    settings = read_decode_settings(model_dir)
    if not guarded:
        settings = dataclasses.replace(settings, no_repeat_ngram=0)
    return LocalCommenter(
        model_dir, device="cpu", precision=cast("Precision", precision), settings=settings, guarded=guarded
    )


def _training_fidelity(train: Sequence[CommentPair]) -> FidelityScores:
    from inference.commenter.analysis import shared_analyser
    from inference.commenter.fidelity import object_names

    pairs = list(train)
    return fidelity_scores(
        [pair.labels for pair in pairs], [pair.comment for pair in pairs], shared_analyser(), object_names()
    )


if __name__ == "__main__":
    raise SystemExit(main())
