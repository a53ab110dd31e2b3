"""Posts with an image Lumi could not check although Discord may show it, and what the guild's policy
does then.

An image ends up unchecked in four ways: Lumi downloaded it but it is too large to decode (pixels,
frames); Lumi downloaded it but cannot decode it while Discord may still show it (it is damaged, or in
a format Lumi cannot decode, and its first bytes announce an image, or Discord's attachment metadata
gives it an image type and a size); Lumi never downloaded it because the file is over the download
limit (`MODERATION_MAX_IMAGE_MB`; boosted servers accept bigger uploads); or the post carries more
images than Lumi checks per post (`MODERATION_MAX_IMAGES_PER_MESSAGE`; attachments plus image links
and embeds). Discord shows all of them, so none may pass silently: the guild's ``unchecked_action``
decides, and one post gives at most one case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from bot.services.image_fetch import FetchedImage, FetchError, megabytes
from bot.services.moderation.check_results import CheckStatus, Verdict
from bot.services.moderation.decisions import could_not_read, too_large_to_check, unchecked_decision
from bot.services.moderation.policy import Policy

__all__ = ["RefusedDownload", "images_past_limit", "may_be_shown", "refused_downloads", "unchecked_case"]


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


def may_be_shown(image: FetchedImage, verdict: Verdict) -> bool:
    """Whether Discord may show an image Lumi did not check: the verdict says so (too large to check,
    or damaged while its bytes start like an image), or Discord's metadata calls it an image of a size."""
    return verdict.may_be_shown or (verdict.status is CheckStatus.UNREADABLE and image.declared_image)


def unchecked_case(
    pairs: Sequence[tuple[FetchedImage, Verdict]], refused: Sequence[RefusedDownload], policy: Policy
) -> tuple[FetchedImage | None, Verdict] | None:
    """The image a case about unchecked images is about (None: it was never downloaded), with the
    verdict carrying the guild's decision; None when there is no such image or the guild only logs it.

    Only images Discord may show count (``may_be_shown``, refused downloads): a file that neither
    starts like an image nor is one to Discord cannot be shown either, and stays "not checked", logged
    only. Several such images in one post give one case, about an image Lumi has the bytes of (for the
    preview and a held copy): the first too large to decode, else the first it could not read. Its
    reason names the others too.
    """
    unchecked = [(image, verdict) for image, verdict in pairs if may_be_shown(image, verdict)]
    if not unchecked and not refused:
        return None
    about = next(
        (pair for pair in unchecked if pair[1].too_large_to_check), unchecked[0] if unchecked else None
    )
    parts = [] if about is None else [_describe(*about)]
    if len(unchecked) > 1:
        others = len(unchecked) - 1
        parts.append(f"{others} other image{'' if others == 1 else 's'} Lumi could not check")
    parts += [download.describe() for download in refused]
    decision = unchecked_decision(policy, unchecked=" and ".join(parts), can_hold=not refused)
    if decision is None:
        return None
    if about is not None:
        return about[0], replace(about[1], decision=decision)
    return None, Verdict(
        status=CheckStatus.UNREADABLE,
        decision=decision,
        problem=refused[0].describe(),
        problem_code="too_many_images" if refused[0].past_image_limit is not None else "too_large",
    )


def _describe(image: FetchedImage, verdict: Verdict) -> str:
    if verdict.too_large_to_check:
        subject = "animation" if verdict.problem_code == "animation_too_large" else "image"
        return too_large_to_check(subject, (verdict.width, verdict.height))
    return could_not_read(verdict.image_format, verdict.problem_code, image.declared_dimensions)
