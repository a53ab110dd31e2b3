"""A new post as the services see it: where it is, who wrote it, and the images it carries. No Discord here.

The Discord layer reads each message once (`cogs/shared/posts.py: read_post`) into an `IncomingPost`, and
both listeners hand that same shape to their service: moderation screens it, photo comments answer it.
One reading means one list of image sources and one answer to "which channel, which roles, is it
age-restricted" for both features, so they cannot disagree about what a post contains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ImageSource", "IncomingPost", "PostPlace"]


@dataclass(frozen=True)
class ImageSource:
    """One image a post shows: an attachment, or an image link or embed."""

    url: str
    filename: str
    declared_size: int | None = None
    """The size Discord declares for an attachment (None for links and embeds), so a file over the
    download limit is refused before any byte is fetched."""
    attached: bool = False
    """Uploaded with the message (an attachment), as opposed to a link or an embed."""
    declared_type: str | None = None
    """The content type Discord declares for an attachment (None for links and embeds)."""
    declared_dimensions: tuple[int, int] | None = None
    """The width and height Discord gives an attachment it could read as an image: Discord shows it, so
    an image among these that Lumi cannot decode still goes to the moderators."""

    @property
    def file_key(self) -> str:
        """The same CDN file appears with different signature queries and on two hosts: its path names it."""
        return urlsplit(self.url).path


@dataclass(frozen=True)
class PostPlace:
    """Where a post is and who wrote it, as the exemptions of moderation see it."""

    channel_ids: tuple[int, ...]
    """The channel and, for a thread, its parent: settings made on a channel cover its threads."""
    channel_nsfw: bool = False
    """Whether the channel is age-restricted."""
    role_ids: tuple[int, ...] = ()
    """The author's roles (none outside a server)."""


@dataclass(frozen=True)
class IncomingPost:
    """A message with its images, read once from Discord and shared by every feature that answers it."""

    guild_id: int | None
    """None for a direct message."""
    channel_id: int
    message_id: int
    author_id: int
    place: PostPlace
    sources: tuple[ImageSource, ...] = ()
    """Attachments first, then embeds, then links, in the order the message has them."""
    channel_name: str = ""
    """How moderators know the channel (``#photos``), for the problems Lumi reports."""

    @property
    def attachments(self) -> list[ImageSource]:
        """The images uploaded with the message (photo comments answer these, not links)."""
        return [source for source in self.sources if source.attached]

    def fetchable(self, is_allowed: Callable[[str], bool]) -> list[ImageSource]:
        """The sources on hosts Lumi downloads from (``is_allowed``), each file once."""
        found: dict[str, ImageSource] = {}
        for source in self.sources:
            if is_allowed(source.url):
                found.setdefault(source.file_key, source)
        return list(found.values())
