"""What `lumi scan` prints: the table of results, and the custom classifiers that ran or could not."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from bot.services.moderation import CheckStatus, RegisteredClassifier

_CHECKED = frozenset({CheckStatus.CHECKED.value, CheckStatus.REPEAT.value})
# The policy's unchecked_action, as moderation carries it out.
_UNCHECKED_WORDS = {
    "alert": "moderation alerts the moderators",
    "hold": "moderation holds the post for review",
    "none": "moderation only logs it",
}


def print_unavailable_classifiers(
    classifiers: Sequence[RegisteredClassifier], unavailable: Mapping[int, str]
) -> None:
    """One line on stderr per classifier that could not load (the scan went on without it)."""
    for classifier in classifiers:
        if classifier.id in unavailable:
            print(
                f"lumi: custom classifier #{classifier.id} {classifier.category} ({classifier.scope}) "
                f"could not be loaded and was left out: {unavailable[classifier.id]}",
                file=sys.stderr,
            )


def classifier_json(classifier: RegisteredClassifier, problem: str | None) -> dict[str, Any]:
    return {
        "id": classifier.id,
        "category": classifier.category,
        "guild_id": classifier.guild_id,
        "name": classifier.name,
        "problem": problem,
    }


def print_table(
    results: Sequence[dict[str, Any]],
    *,
    classifiers: Sequence[RegisteredClassifier] | None,
    unchecked_action: str = "alert",
) -> None:
    """One line per file; ``classifiers``: the custom ones that ran (None: turned off).

    An image Lumi could not check that people may still see (too large, or damaged while it starts like
    an image) says what moderation does with it: the policy's ``unchecked_action``.
    """
    custom_categories = {classifier.category for classifier in classifiers or ()}
    if not results:
        print("no image files found")
        return
    width = min(48, max(len("file"), *(len(r["path"]) for r in results)))
    print(f"{'file':<{width}}  {'verdict':<14} {'top score':<24} {'ms':>7}  details")
    for result in results:
        path = result["path"] if len(result["path"]) <= width else "…" + result["path"][-(width - 1) :]
        status = result["status"]
        if status in (CheckStatus.UNREADABLE.value, CheckStatus.ERROR.value):
            details = result["reason"]
            if result.get("may_be_shown"):
                details = f"{details} People may still see it: {_UNCHECKED_WORDS[unchecked_action]}."
            print(f"{path:<{width}}  {status:<14} {'':<24} {'':>7}  {details}")
            continue
        verdict = "safe" if not result["flagged"] else f"{result['level']}:{result['action']}"
        scores = result["scores"]
        top = max(scores.items(), key=lambda item: item[1]) if scores else None
        top_text = f"{top[0]} {top[1]:.2f}" if top else "repeat match"
        custom = [f"{name} {score:.2f}" for name, score in scores.items() if name in custom_categories]
        labels = [f"{label['label']} {label['score']:.2f}" for label in result["labels"][:3]]
        details = result["reason"] if result["flagged"] else ", ".join(custom + labels)
        print(f"{path:<{width}}  {verdict:<14} {top_text:<24} {result['elapsed_ms']:>7.0f}  {details}")
    flagged = sum(1 for r in results if r["flagged"])
    unchecked = sum(1 for r in results if r["status"] not in _CHECKED)
    print(f"\n{len(results)} image(s), {flagged} flagged, {unchecked} not checked")
    if classifiers is not None:
        names = ", ".join(f"#{c.id} {c.category} ({c.scope})" for c in classifiers)
        print(f"custom classifiers: {names or 'none apply'}")
