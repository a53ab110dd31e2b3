"""What `lumi scan` prints and returns: the table of results, the custom classifiers that ran or could not,
and the exit status that sums the results up for scripts."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from bot.services.moderation import CheckStatus, RegisteredClassifier

# The policy's unchecked_action, as moderation carries it out.
_UNCHECKED_WORDS = {
    "alert": "moderation alerts the moderators",
    "hold": "moderation holds the post for review",
    "none": "moderation only logs it",
}
# Exit statuses of `lumi scan` (documented in `lumi scan --help` and docs/operations.md).
EXIT_CLEAN = 0  # every image was checked and none is flagged
EXIT_FLAGGED = 1  # at least one image is flagged (whatever happened to the others)
EXIT_NOTHING_CHECKED = 2  # bad usage, or not one image could be checked (none found, all unreadable...)
EXIT_SOME_NOT_CHECKED = 3  # none is flagged, but some could not be checked
EXIT_STATUS_HELP = (
    "Exit status: 0 every image was checked and none is flagged; 1 at least one image is flagged; "
    "2 bad usage, or no image could be checked at all; 3 none is flagged but some images could not be "
    "checked (missing, unreadable, too large, not an image, models unavailable)."
)
_CHECKED_STATUSES = frozenset({CheckStatus.CHECKED.value, CheckStatus.REPEAT.value})


def was_checked(result: Mapping[str, Any]) -> bool:
    return result["status"] in _CHECKED_STATUSES


def exit_status(results: Sequence[Mapping[str, Any]]) -> int:
    """0, 1, 2 or 3 as `EXIT_STATUS_HELP` says: "not checked" is never mistaken for "clean"."""
    if any(result["flagged"] for result in results):
        return EXIT_FLAGGED
    checked = sum(1 for result in results if was_checked(result))
    if checked == 0:
        return EXIT_NOTHING_CHECKED
    return EXIT_CLEAN if checked == len(results) else EXIT_SOME_NOT_CHECKED


def display_text(text: str) -> str:
    """`text` safe to print on a terminal: control characters (newlines, ANSI escapes) and bytes that are
    not UTF-8 (kept by Python as lone surrogates) are shown as backslash escapes, not sent raw."""
    return "".join(_escaped(char) for char in json_text(text))


def _escaped(char: str) -> str:
    return char if char.isprintable() else char.encode("unicode_escape").decode("ascii")


def json_text(text: str) -> str:
    """`text` encodable as UTF-8: a file name's undecodable bytes (surrogates) become `\\xNN`."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
    shown_paths = [display_text(r["path"]) for r in results]
    width = min(48, max(len("file"), *(len(path) for path in shown_paths)))
    print(f"{'file':<{width}}  {'verdict':<14} {'top score':<24} {'ms':>7}  details")
    for result, shown in zip(results, shown_paths, strict=True):
        path = shown if len(shown) <= width else "…" + shown[-(width - 1) :]
        status = result["status"]
        if not was_checked(result):
            details = display_text(result["reason"])
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
        details = display_text(result["reason"] if result["flagged"] else ", ".join(custom + labels))
        print(f"{path:<{width}}  {verdict:<14} {top_text:<24} {result['elapsed_ms']:>7.0f}  {details}")
    flagged = sum(1 for r in results if r["flagged"])
    not_checked = sum(1 for r in results if not was_checked(r))
    print(f"\n{len(results)} image(s), {flagged} flagged, {not_checked} not checked")
    if classifiers is not None:
        names = ", ".join(f"#{c.id} {c.category} ({c.scope})" for c in classifiers)
        print(f"custom classifiers: {names or 'none apply'}")
