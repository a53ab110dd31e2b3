"""What a classifier registration is checked against, and what is measured of the model it registers.

A category name must be valid and not another name of a built-in one; thresholds apply only to a
category of the classifier's own; the model must load and score an image (``verify_classifier``). The
registry records the model file's digest and the validation metrics the training wrote.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from PIL import Image

from bot.errors import UserFacingError
from bot.services.moderation.decisions import category_scores
from bot.services.moderation.policy import CATEGORIES, Action, CategoryRule
from inference.classifier import ClassifierMetadata, KerasClassifierRunner

__all__ = ["check_category", "custom_rule", "file_sha256", "validation_summary", "verify_classifier"]

_CATEGORY_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{1,31}$")
_REVIEW_ACTIONS: Final = (Action.ALERT, Action.HOLD)


def verify_classifier(folder: Path) -> None:
    """Load the classifier and run one image through it; raises ``ModelUnavailable`` when that fails.

    Imports TensorFlow (seconds): registration pays it once so a broken model is refused at the command
    line instead of failing on the first posted image.
    """
    runner = KerasClassifierRunner(folder, "cpu", name=f"classifier {folder.name}")
    runner.load()
    try:
        height, width = runner.metadata.input_size
        runner.predict_batch([Image.new("RGB", (width, height), (128, 128, 128))])
    finally:
        runner.close()


def check_category(category: str) -> None:
    if not _CATEGORY_NAME.match(category):
        raise UserFacingError(
            "a category name is 2-32 lowercase letters, digits or underscores, starting with a letter "
            f"(built-in: {', '.join(CATEGORIES)})"
        )
    if category not in CATEGORIES and category not in category_scores(
        (), None, {category: 1.0}, custom=[category]
    ):
        raise UserFacingError(f"{category!r} is another name for a built-in category; use that one instead")


def custom_rule(
    category: str,
    metadata: ClassifierMetadata,
    *,
    review: float | None,
    act: float | None,
    review_action: str | None,
) -> CategoryRule | None:
    if category in CATEGORIES:
        if review is not None or act is not None or review_action is not None:
            raise UserFacingError(
                f"{category} is a built-in category: its thresholds are the server's moderation policy "
                "(/moderation setup), not part of the classifier"
            )
        return None
    for label, value in (("--review", review), ("--act", act)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UserFacingError(f"{label} must be between 0 and 1 (got {value:g})")
    chosen_review = metadata.recommended_threshold if review is None else review
    if act is not None and act < chosen_review:
        raise UserFacingError(f"--act ({act:g}) must not be below the review threshold ({chosen_review:g})")
    action = Action.ALERT
    if review_action is not None:
        if review_action not in {choice.value for choice in _REVIEW_ACTIONS}:
            raise UserFacingError("--review-action must be alert or hold")
        action = Action(review_action)
    return CategoryRule(review=chosen_review, act=act, review_action=action)


def validation_summary(metadata: ClassifierMetadata) -> dict[str, Any]:
    metrics = metadata.metrics
    summary: dict[str, Any] = {}
    if isinstance(metrics.get("accuracy"), int | float):
        summary["accuracy"] = float(metrics["accuracy"])
    at_threshold = metrics.get("at_threshold")
    if isinstance(at_threshold, Mapping):
        for key in ("precision", "recall", "f1"):
            if isinstance(at_threshold.get(key), int | float):
                summary[key] = float(at_threshold[key])
    return summary


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
