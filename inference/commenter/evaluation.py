"""Scores for a set of generated comments: character BLEU, how often objects are named, and fidelity
(objects named and invented, malformed Korean)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from inference.commenter.analysis import MorphemeAnalyser
from inference.commenter.bleu import char_corpus_bleu
from inference.commenter.data import object_labels
from inference.commenter.fidelity import ObjectNames
from inference.commenter.selection import label_coverage
from inference.commenter.wellformed import malformed_reasons


@dataclass(frozen=True)
class CommentScores:
    bleu: dict[str, float]
    # Among inputs with at least one object label: share whose comment names at least one of them.
    any_object_rate: float
    # Share of all object labels (over all inputs) that their comment names.
    object_recall: float
    # Total hypothesis characters over total reference characters (BLEU's brevity penalty reads this).
    length_ratio: float
    count: int


def score_comments(
    label_lists: Sequence[Sequence[str]], hypotheses: Sequence[str], references: Sequence[str]
) -> CommentScores:
    with_objects = 0
    naming_any = 0
    objects_total = 0
    objects_named = 0.0
    for labels, hypothesis in zip(label_lists, hypotheses, strict=True):
        objects = object_labels(labels)
        if not objects:
            continue
        with_objects += 1
        coverage = label_coverage(hypothesis, objects)
        naming_any += coverage > 0
        objects_total += len(objects)
        objects_named += coverage * len(objects)
    reference_chars = sum(len(text) for text in references)
    return CommentScores(
        bleu=char_corpus_bleu(hypotheses, references),
        any_object_rate=naming_any / with_objects if with_objects else 0.0,
        object_recall=objects_named / objects_total if objects_total else 0.0,
        length_ratio=sum(len(text) for text in hypotheses) / reference_chars if reference_chars else 0.0,
        count=len(hypotheses),
    )


@dataclass(frozen=True)
class FidelityScores:
    """How faithful comments are to their photo's labels (no references needed)."""

    # Share of all object labels that their comment names.
    object_recall: float
    # Among inputs with object labels: share whose comment names every one of them.
    all_named_rate: float
    # Share of comments naming an object from the table that is not among their labels.
    foreign_rate: float
    # Share of comments the well-formedness check flags (an empty comment counts as malformed).
    malformed_rate: float
    count: int


def fidelity_scores(
    label_lists: Sequence[Sequence[str]],
    comments: Sequence[str],
    analyser: MorphemeAnalyser,
    names: ObjectNames,
) -> FidelityScores:
    objects_total = objects_named = with_objects = all_named = foreign = malformed = 0
    for labels, comment in zip(label_lists, comments, strict=True):
        objects = object_labels(labels)
        morphemes = analyser.analyse(comment)
        if objects:
            named = round(label_coverage(comment, objects) * len(objects))
            objects_total += len(objects)
            objects_named += named
            with_objects += 1
            all_named += named == len(objects)
        foreign += bool(names.foreign_korean(comment, morphemes, objects))
        malformed += bool(malformed_reasons(comment, morphemes))
    count = len(comments) or 1
    return FidelityScores(
        object_recall=objects_named / objects_total if objects_total else 0.0,
        all_named_rate=all_named / with_objects if with_objects else 0.0,
        foreign_rate=foreign / count,
        malformed_rate=malformed / count,
        count=len(comments),
    )
