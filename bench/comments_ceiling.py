"""How far the comment data lets a system go: bounds beside the model's dev BLEU-4.

    .venv/bin/python bench/comments_ceiling.py [--model DIR] [--data PAIRS.jsonl] [--pool 64]

The dev references are one person's comment each, and people comment very differently on the same
labels, so even a perfect model cannot match them all. This script measures how much room is left:

- the model's default decoding, overall and by subset (inputs with and without object labels; label
  sets seen in the training split or not);
- oracle selection: among the model's first N candidates, the one closest to the reference. It peeks
  at the reference, so it is an upper bound for any rule that chooses among those N candidates;
- best single comment per emotion-only label set: for 기쁨, 슬픔, ... the one comment (from that label
  set's training comments and the model's candidates) with the highest corpus BLEU-4 against all of
  that set's dev references. It also peeks: an upper bound for any system that gives one label set one
  comment, which is what a deterministic comment writer does;
- retrieval consensus (no peeking): the training comment that agrees most with the other training
  comments for the same label set, the model's comment where the set has fewer than two.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.commenter.bleu import char_corpus_bleu
from inference.commenter.data import CommentPair, load_pairs, object_labels, split_pairs
from inference.commenter.selection import char_similarity, select_candidate, similarity_matrix

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "sns_comments_ko.jsonl"
LabelKey = tuple[str, ...]


def label_key(labels: Sequence[str]) -> LabelKey:
    return tuple(sorted(labels))


def bleu4(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    return char_corpus_bleu(hypotheses, references)["bleu4"]


def subset_bleu4(mask: Sequence[bool], hypotheses: Sequence[str], references: Sequence[str]) -> str:
    picked = [(h, r) for h, r, keep in zip(hypotheses, references, mask, strict=True) if keep]
    if not picked:
        return "   -    (0 pairs)"
    score = bleu4([h for h, _ in picked], [r for _, r in picked])
    return f"{score:.4f} ({len(picked)} pairs)"


def consensus(texts: Sequence[str]) -> str:
    """The text with the highest summed similarity to the others."""
    similarity = similarity_matrix(texts)
    np.fill_diagonal(similarity, 0.0)
    return texts[int(similarity.sum(axis=1).argmax())]


def closest(candidates: Sequence[str], reference: str) -> str:
    return max(candidates, key=lambda text: char_similarity(text, reference))


def best_single_comment(candidates: Sequence[str], references: Sequence[str]) -> str:
    """The candidate with the highest corpus BLEU-4 when it answers every one of `references`."""
    return max(candidates, key=lambda text: bleu4([text] * len(references), references))


def train_comments_by_set(train: Sequence[CommentPair]) -> dict[LabelKey, list[str]]:
    by_set: dict[LabelKey, list[str]] = defaultdict(list)
    for pair in train:
        by_set[label_key(pair.labels)].append(pair.comment)
    return by_set


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=None, help="model dir (default: the committed model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pool", type=int, default=64, help="candidates drawn per input for the bounds")
    parser.add_argument("--precision", default="float32", choices=["int8", "float32"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    from inference.commenter.generate import DEFAULT_MODEL_DIR, LocalCommenter

    torch.set_num_threads(args.threads)
    split = split_pairs(load_pairs(args.data))
    labels = [pair.labels for pair in split.dev]
    references = [pair.comment for pair in split.dev]
    by_set = train_comments_by_set(split.train)

    commenter = LocalCommenter(args.model or DEFAULT_MODEL_DIR, device="cpu", precision=args.precision)
    commenter.load()
    default_count = commenter.settings.num_candidates
    pool_size = max(args.pool, default_count)
    started = time.perf_counter()
    # Candidate k of an input is the same whatever the count drawn, so the first `default_count`
    # of the pool are exactly what default decoding chooses from.
    pools = commenter.generate_candidates(labels, num_candidates=pool_size)
    print(f"{len(labels)} dev pairs, {pool_size} candidates each in {time.perf_counter() - started:.0f} s")
    chosen = [
        group[
            select_candidate(
                group[:default_count],
                object_labels(item),
                coverage_weight=commenter.settings.coverage_weight,
                length_weight=commenter.settings.length_weight,
            )
        ]
        for item, group in zip(labels, pools, strict=True)
    ]

    print(f"\nmodel, default decoding ({default_count} candidates + MBR), {args.precision}")
    print(f"  all dev pairs            {bleu4(chosen, references):.4f}")
    without_objects = [not object_labels(item) for item in labels]
    print(f"  without object labels    {subset_bleu4(without_objects, chosen, references)}")
    print(f"  with object labels       {subset_bleu4([not m for m in without_objects], chosen, references)}")
    seen = [label_key(item) in by_set for item in labels]
    print(f"  label set seen in train  {subset_bleu4(seen, chosen, references)}")
    print(f"  label set not in train   {subset_bleu4([not s for s in seen], chosen, references)}")

    print("\noracle selection (peeks at the reference)")
    for count in sorted({default_count, pool_size}):
        oracle = [closest(group[:count], ref) for group, ref in zip(pools, references, strict=True)]
        print(f"  best of {count:>3} candidates     {bleu4(oracle, references):.4f}")

    print("\nbest single comment per emotion-only label set (peeks at the references)")
    dev_sets: dict[LabelKey, list[int]] = defaultdict(list)
    for index, item in enumerate(labels):
        if not object_labels(item) and len(item) == 1:
            dev_sets[label_key(item)].append(index)
    for key, indices in sorted(dev_sets.items(), key=lambda kv: -len(kv[1])):
        refs = [references[i] for i in indices]
        candidates = list(dict.fromkeys(by_set.get(key, []) + pools[indices[0]]))
        best = best_single_comment(candidates, refs)
        model_score = bleu4([chosen[i] for i in indices], refs)
        print(
            f"  {'+'.join(key)} ({len(refs)} refs): bound {bleu4([best] * len(refs), refs):.4f},"
            f" model {model_score:.4f}  [{best}]"
        )

    retrieval = [
        consensus(by_set[label_key(item)]) if len(by_set.get(label_key(item), [])) >= 2 else own
        for item, own in zip(labels, chosen, strict=True)
    ]
    print("\nretrieval consensus (no peeking)")
    print(f"  all dev pairs            {bleu4(retrieval, references):.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
