"""Every step of a photo comment laid open, for the playground: perception, then each backend in turn.

The bot writes one comment with the guild's backend and falls back quietly. Someone deciding whether
to run Lumi wants to compare: ``showcase_photo`` runs the same perception and writes with each backend
(``local``, ``llm`` when configured, ``template``), timing each; ``showcase_labels`` does the same for
labels typed by hand. As in a server, a photo moderation would flag gets no comment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image

from bot.errors import UserFacingError
from bot.services.comments.backends import BACKEND_NAMES, BackendName, BackendUnavailable
from bot.services.comments.service import CommentService
from inference.images import decode_image_async
from inference.labels import Label, Language, label_from_text
from inference.perception import Perception

__all__ = ["BackendTry", "CommentShowcase", "showcase_labels", "showcase_photo"]

_MAX_LABEL_CHARS = 40
_NOT_CONFIGURED: dict[BackendName, str] = {
    "llm": "not configured (set COMMENT_LLM_BASE_URL, and COMMENT_LLM_API_KEY when the server needs one)",
}


@dataclass(frozen=True)
class BackendTry:
    """One backend's attempt: its comment, or why it wrote none, and how long it took."""

    backend: BackendName
    comment: str | None
    elapsed_ms: float
    problem: str | None = None


@dataclass(frozen=True)
class CommentShowcase:
    labels: list[Label]
    language: Language
    tries: list[BackendTry] = field(default_factory=list)
    perception: Perception | None = None
    perceive_ms: float = 0.0
    # The photo as the models saw it (oriented, downscaled): face and object boxes are in its pixels.
    frame: Image.Image | None = None
    # Why the bot would not comment on this photo (moderation flagged it, or nothing was recognised).
    withheld: str | None = None


async def showcase_photo(service: CommentService, data: bytes, *, language: Language) -> CommentShowcase:
    """Perception of one photo (decoded and perceived as `CommentService.perceive` does, the frame
    kept) and the comment of every backend. Raises ``ImageRejected`` (a safe message) for a file that
    is not a readable image."""
    if service.moderation is not None:
        verdict = await service.moderation.check_image(data)
        if verdict.flagged:
            return CommentShowcase(
                [], language, withheld=f"moderation flagged this photo ({verdict.summary})"
            )
    started = time.perf_counter()
    decoded = await decode_image_async(data, limits=service.image_limits)
    frame = decoded.frames[0]
    perception = await service.perceiver.perceive(frame)
    perceive_ms = _ms_since(started)
    labels = perception.labels
    if not labels:
        missing = (
            f" (models that could not run: {', '.join(perception.missing)})" if perception.missing else ""
        )
        return CommentShowcase(
            [],
            language,
            perception=perception,
            perceive_ms=perceive_ms,
            frame=frame,
            withheld=f"nothing Lumi can name was recognised, so the bot would not comment{missing}",
        )
    tries = await each_backend(service, labels, language)
    return CommentShowcase(labels, language, tries, perception, perceive_ms, frame)


async def showcase_labels(
    service: CommentService, labels: Sequence[str], *, language: Language
) -> CommentShowcase:
    """The comment of every backend for labels typed by hand (Korean or English names, emotions)."""
    words = [text for text in labels if text.strip()]
    if not words:
        raise UserFacingError("Give at least one label, e.g. 기쁨, 재킷 (or joy, jacket).")
    if len(words) > service.perceiver.config.max_labels * 2:
        raise UserFacingError(f"At most {service.perceiver.config.max_labels * 2} labels, please.")
    too_long = [text for text in words if len(text.strip()) > _MAX_LABEL_CHARS]
    if too_long:
        raise UserFacingError(f"A label is a word or two (at most {_MAX_LABEL_CHARS} characters).")
    parsed = [label_from_text(text) for text in words]
    return CommentShowcase(parsed, language, await each_backend(service, parsed, language))


async def each_backend(
    service: CommentService, labels: Sequence[Label], language: Language
) -> list[BackendTry]:
    """Each backend writes on its own, without the fallbacks, so that every one shows its own answer."""
    tries: list[BackendTry] = []
    for name in BACKEND_NAMES:
        backend = service.writer.backends.get(name)
        if backend is None:
            tries.append(BackendTry(name, None, 0.0, _NOT_CONFIGURED.get(name, "not configured")))
            continue
        started = time.perf_counter()
        try:
            text = await backend.write(labels, language)
        except BackendUnavailable as unavailable:
            tries.append(BackendTry(name, None, _ms_since(started), unavailable.reason))
            continue
        tries.append(BackendTry(name, text, _ms_since(started)))
    return tries


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 1)
