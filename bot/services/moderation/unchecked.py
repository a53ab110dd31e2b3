"""Posts with an image Lumi could not check because of its size or number, and what the guild's policy
does then.

An image ends up unchecked in three ways: Lumi downloaded it but it is too large to decode (pixels,
frames); Lumi never downloaded it because the file is over the download limit
(`MODERATION_MAX_IMAGE_MB`; boosted servers accept bigger uploads); or the post carries more images
than Lumi checks per post (`MODERATION_MAX_IMAGES_PER_MESSAGE`; attachments plus image links and
embeds). Discord shows all of them to everyone, so none may pass silently: the guild's
``unchecked_action`` decides, and one post gives at most one case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final

from bot.services.image_fetch import FetchedImage, FetchError, megabytes
from bot.services.moderation.checker import CheckStatus, Verdict
from bot.services.moderation.decisions import Decision, Level, too_large_to_check, unchecked_decision
from bot.services.moderation.policy import Action, Policy

__all__ = ["RefusedDownload", "images_past_limit", "refused_downloads", "unchecked_case"]

_PLEASE_LOOK: Final = "please look at it"
_NOT_HELD: Final = "not held: Lumi has no copy of an image it did not download, so the post stays up"


@dataclass(frozen=True)
class RefusedDownload:
    """Images of a post that Lumi did not download: one file over its download limit, or (with
    ``past_image_limit``) the ``count`` images after the first ``past_image_limit`` of the post."""

    filename: str
    limit_bytes: int = 0
    # None when nothing declared the size and the download was stopped at the limit.
    size_bytes: int | None = None
    past_image_limit: int | None = None
    count: int = 1

    def describe(self) -> str:
        name = self.filename.replace("`", "'")
        if self.past_image_limit is not None:
            images = "image" if self.count == 1 else f"{self.count} images"
            return (
                f"{images} past the first {self.past_image_limit} of the post not checked "
                f"(`{name}`{'' if self.count == 1 else ', ...'})"
            )
        size = f"{megabytes(self.size_bytes)} MB, " if self.size_bytes is not None else ""
        return (
            f"image too large for Lumi to download (`{name}`, {size}limit {megabytes(self.limit_bytes)} MB)"
        )


def images_past_limit(filenames: Sequence[str], *, limit: int) -> list[RefusedDownload]:
    """One entry for the images of a post after the first ``limit`` (none when there are none)."""
    if not filenames:
        return []
    return [RefusedDownload(filenames[0], past_image_limit=limit, count=len(filenames))]


def refused_downloads(failures: Iterable[tuple[str, FetchError]]) -> list[RefusedDownload]:
    """The download failures that leave a posted image unchecked because of its size.

    Only ``too_large`` counts: the poster chose to upload a file that big, and Discord shows it to
    everyone. A network error, a timeout or an expired link is nothing the poster controls, and a link
    to a host Lumi does not fetch from is not an upload Discord shows as an image; those stay logged only.
    """
    return [
        RefusedDownload(filename, limit_bytes=error.limit_bytes or 0, size_bytes=error.size_bytes)
        for filename, error in failures
        if error.code == "too_large"
    ]


def unchecked_case(
    pairs: Sequence[tuple[FetchedImage, Verdict]], refused: Sequence[RefusedDownload], policy: Policy
) -> tuple[FetchedImage | None, Verdict] | None:
    """The image a case about unchecked images is about (None: it was never downloaded), with the
    verdict carrying the guild's decision; None when there is no such image or the guild only logs it.

    Only size and number count: Discord shows a huge but valid image, or a post's eleventh image, to
    everyone, so moderators must hear of it, while a corrupt file or a non-image cannot be shown either
    and stays "not checked", logged only.
    Several such images in one post give one case: about the first too large to decode (it has bytes
    for the preview), its reason naming the downloads Lumi refused as well.
    """
    too_large = next(((image, verdict) for image, verdict in pairs if verdict.too_large_to_check), None)
    if not refused:
        if too_large is None:
            return None
        image, verdict = too_large
        decision = unchecked_decision(policy, subject=_subject(verdict), size=(verdict.width, verdict.height))
        return None if decision is None else (image, replace(verdict, decision=decision))
    decision = _refused_decision(policy, refused, too_large[1] if too_large else None)
    if decision is None:
        return None
    if too_large is not None:
        return too_large[0], replace(too_large[1], decision=decision)
    return None, Verdict(
        status=CheckStatus.UNREADABLE,
        decision=decision,
        problem=refused[0].describe(),
        problem_code="too_many_images" if refused[0].past_image_limit is not None else "too_large",
    )


def _refused_decision(
    policy: Policy, refused: Sequence[RefusedDownload], too_large: Verdict | None
) -> Decision | None:
    """Always an alert, even where the guild holds: holding deletes the post to restore it later from a
    copy, and Lumi has no copy of an image it did not download; the alert says so."""
    if policy.unchecked_action is Action.NONE:
        return None
    parts = [download.describe() for download in refused]
    if too_large is not None:
        parts.insert(0, too_large_to_check(_subject(too_large), (too_large.width, too_large.height)))
    reason = f"{' and '.join(parts)}; {_PLEASE_LOOK}"
    if policy.unchecked_action is Action.HOLD:
        reason = f"{reason} ({_NOT_HELD})"
    return Decision(level=Level.REVIEW, action=Action.ALERT, reason=reason)


def _subject(verdict: Verdict) -> str:
    return "animation" if verdict.problem_code == "animation_too_large" else "image"
