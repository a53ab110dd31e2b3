"""Parts the moderation service tests on package photos share: the ids of the guild, channel, author and
moderator, the photos themselves, post contexts, and a case a moderator confirmed."""

from __future__ import annotations

import pytest

from bot.services.moderation.cases import CaseChoice
from bot.services.moderation.recording import PostContext
from bot.services.moderation.service import ModerationService
from inference.images.decode import decode_image
from inference.images.perceptual_hash import phash
from storage.db import Database
from storage.repo import cases as repo_cases
from tests.fakes import images as corpus

GUILD = 111_111_111_111_111_111
CHANNEL = 222_222_222_222_222_222
AUTHOR = 333_333_333_333_333_333
MODERATOR = 444_444_444_444_444_444


def photo(name: str) -> bytes:
    data = corpus.photo_bytes(name)
    if data is None:
        pytest.skip(f"the package that ships the {name} photo is not installed")
    return data


def post(message_id: int = 1, author_id: int = AUTHOR) -> PostContext:
    return PostContext(guild_id=GUILD, channel_id=CHANNEL, message_id=message_id, author_id=author_id)


async def _seed_confirmed_hash(service: ModerationService, db: Database, data: bytes) -> None:
    """Confirm ``data`` once (case #1), the way a moderator's Confirm click does; no model runs."""
    image_hash = phash(decode_image(data).frames[0])
    async with db.session() as session:
        case = await repo_cases.create_case(
            session=session, guild_id=GUILD, channel_id=CHANNEL, author_id=AUTHOR, image_phash=image_hash
        )
        await session.commit()
    async with service.decide(
        guild_id=GUILD, case_id=_id(case), choice=CaseChoice.CONFIRM, moderator_id=MODERATOR
    ):
        pass


def _id(case: object) -> int:
    value = getattr(case, "id", None)
    assert isinstance(value, int)
    return value
