"""What the bot refuses in untrusted images: the size caps, and the rejection users are shown.

``ImageLimits`` holds the caps; ``ImageRejected`` carries the reason code and a message safe to show.
The constructors below build the rejections shared by format detection and decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["SIZE_REASON_CODES", "ImageLimits", "ImageRejected"]

# Rejections for size alone: the bytes are an image, only too big to decode here.
SIZE_REASON_CODES: Final = frozenset({"too_large", "too_many_pixels", "animation_too_large"})


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied to every untrusted image.

    ``max_frames`` is the total number of frames sampled from an animation (first, middle and last
    always, the rest evenly spaced). ``max_animation_pixels`` bounds the work of reaching those frames:
    GIF, WebP and APNG frames are deltas, so reaching the last frame means decoding every frame before
    it (Pillow does roughly 75 MP/s on one core, so the default bounds that to about 1.5 s).
    ``max_animation_frames`` bounds the per-frame overhead of very long animations of tiny frames.
    ``max_side_for_models`` downscales frames because the models look at 224-320 px inputs; ``None``
    keeps full resolution. ``least_sides_for_models`` (long side, short side), when set, decodes at the
    models' own scale instead: a JPEG at the smallest 1/2, 1/4 or 1/8 scale that keeps both sides, any
    frame then box-reduced by the largest whole factor that still keeps them, so that each model resizes
    once from a frame less than twice its input (moderation: ``inference.moderation.MODERATION_SIDES``).

    ``max_pixels`` caps the pixels actually decoded. A JPEG decodes at 1/2, 1/4 or 1/8 scale, so a larger
    one is checked at a reduced size; ``max_jpeg_declared_pixels`` still bounds what its header may
    claim. Even at 1/8 scale every coefficient is read, and a progressive JPEG buffers all of them
    (about 2 bytes a sample, 3 samples per 2 pixels with 4:2:0 chroma: ~360 MB at 120 MP, per decoding
    thread). 120 MP admits the 108 MP (12000x9000) photos of phone cameras; 200 MP sensors write files
    beyond the 25 MB byte cap anyway, and a header claiming 65535x65535 is refused before any decoding.
    """

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_jpeg_declared_pixels: int = 120_000_000
    max_frames: int = 7
    max_animation_frames: int = 2000
    max_animation_pixels: int = 120_000_000
    max_side_for_models: int | None = 640
    least_sides_for_models: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_pixels <= 0 or self.max_animation_pixels <= 0:
            raise ValueError("image limits must be positive")
        if self.max_jpeg_declared_pixels < self.max_pixels:
            raise ValueError("max_jpeg_declared_pixels must be at least max_pixels")
        if self.max_frames < 1 or self.max_animation_frames < 1:
            raise ValueError("max_frames must be at least 1")
        if self.max_side_for_models is not None and self.max_side_for_models < 16:
            raise ValueError("max_side_for_models must be at least 16 (or None)")
        least = self.least_sides_for_models
        if least is not None and not 16 <= least[1] <= least[0]:
            raise ValueError("least_sides_for_models must be (long, short) with 16 <= short <= long")


class ImageRejected(Exception):
    """The bytes are not an image this bot will look at. ``message`` is safe to show to users.

    ``size`` is the width and height the file declares, where the header was read before rejecting it.
    ``image_format`` is the format whose signature the bytes start with ("PNG", "JPEG", ...; None when
    they start like no image viewers show): a damaged file that starts like an image may still be
    shown, in part, by a browser or a Discord client.
    """

    def __init__(
        self,
        reason_code: str,
        message: str,
        *,
        size: tuple[int, int] | None = None,
        image_format: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason_code = reason_code
        self.message = message
        self.size = size
        self.image_format = image_format

    @property
    def too_large_to_check(self) -> bool:
        """A real image, refused only for its size: people may well see it."""
        return self.reason_code in SIZE_REASON_CODES

    @property
    def may_be_shown(self) -> bool:
        """People may see what Lumi could not check: an image too large to check, or a file that starts
        like an image (damaged, or in a format Lumi cannot decode) that a viewer may still show."""
        return self.too_large_to_check or self.image_format is not None

    def __repr__(self) -> str:
        return f"ImageRejected({self.reason_code!r}, {self.message!r})"


def too_many_pixels(size: tuple[int, int] | None = None) -> ImageRejected:
    return ImageRejected("too_many_pixels", "This image's dimensions are too large to check.", size=size)


def animation_too_large(size: tuple[int, int] | None = None) -> ImageRejected:
    return ImageRejected(
        "animation_too_large", "This animation is too long or too large to check.", size=size
    )


def corrupt() -> ImageRejected:
    return ImageRejected("corrupt", "This image is damaged or incomplete and can't be read.")


def check_size(size: tuple[int, int], limits: ImageLimits, *, max_pixels: int | None = None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise corrupt()
    if width * height > (max_pixels or limits.max_pixels):
        raise too_many_pixels(size)
