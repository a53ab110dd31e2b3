"""Moderation's process-wide settings (the Moderation block of `Settings`), as one immutable object.

`build.moderation_config` is the only reader of those settings; the service, the moderation cog and
photo comments (which decode the same images under the same caps) take what they need from this object.
Per-server settings are something else: `guild_config.GuildModeration`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Final

from bot.services.image_fetch import DEFAULT_FETCH_HOSTS
from inference.images import ImageLimits

__all__ = ["ModerationConfig"]

_MB: Final = 1024 * 1024


@dataclass(frozen=True)
class ModerationConfig:
    """How this Lumi moderates, the same for every server (defaults: those of `Settings`)."""

    fetch_hosts: tuple[str, ...] = DEFAULT_FETCH_HOSTS
    """Hosts images are downloaded from (``MODERATION_FETCH_HOSTS``); links elsewhere are not fetched,
    so a message cannot make Lumi request an internal address."""
    max_image_bytes: int = 25 * _MB
    """The largest file downloaded and decoded (``MODERATION_MAX_IMAGE_MB``); a bigger one is
    refused before its bytes are fetched and goes to the moderators as "too large to download"."""
    fetch_timeout_s: float = 15.0
    """How long one download may take (``MODERATION_FETCH_TIMEOUT_S``)."""
    max_images_per_post: int = 10
    """Images checked per post (``MODERATION_MAX_IMAGES_PER_MESSAGE``): attachments, then embeds and
    links; the rest are not downloaded and go to the moderators as "past the first N"."""
    evidence_retention: timedelta = timedelta(days=7)
    """How long the private copy of a removed post is kept (``MODERATION_EVIDENCE_RETENTION_DAYS``)."""
    cleanup_interval_s: float = 3600.0
    """How often expired evidence is deleted (``MODERATION_CLEANUP_INTERVAL_S``)."""
    openai_api_key: str | None = None
    """A key for OpenAI's moderation endpoint as a second opinion (``MODERATION_OPENAI_API_KEY``);
    None: the local models decide alone."""
    openai_base_url: str = ""
    """Any OpenAI-compatible moderation endpoint (``MODERATION_OPENAI_BASE_URL``; empty: OpenAI's)."""
    model_threads: int | None = None
    """CPU threads of each moderation model (``INFERENCE_THREADS``; None: half the cores)."""
    data_dir: Path | None = None
    """The data directory (``DATA_DIR``), whose ``classifiers/`` holds the custom classifiers that
    `lumi models add-classifier` registered; None: no custom classifiers."""

    @property
    def image_limits(self) -> ImageLimits:
        """The caps every posted image is decoded under. Photo comments decode under them at 640 px;
        moderation's models at their own, smaller scale (`at_moderation_scale`), so comments take the
        frames moderation decoded only for an image neither scale shrinks (`CheckedImage.frames_under`)."""
        return ImageLimits(max_bytes=self.max_image_bytes)
