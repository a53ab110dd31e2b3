"""The moderation half of the distributed bench: images posted across the guilds of both shards, and how
fast every post gets its verdict.

Each guild's moderation reviews from score 0, so every checked image becomes exactly one case (a row of
`moderation_case` with the post's message id): the case is the verdict. Posts go out at once, round robin
over the guilds, so each shard's gateway gets its share; images/s is the number of posts over the time
from the first post to the last case written (the database's own clock, on this machine). Every process
first checks one post per guild, which loads its models, outside the measured time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import sqlalchemy as sa
from distributed_cluster import START_S, Cluster

from tests.fakes import images as corpus

POLL_S = 0.2


@dataclass(frozen=True)
class ModerationFigures:
    posts: int
    cases: int
    missing: int
    duplicates: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.posts / self.seconds if self.seconds > 0 else 0.0


def photos() -> list[tuple[str, bytes]]:
    """The package photos that are installed here (at least one is needed)."""
    found = [(name, data) for name in corpus.PHOTO_NAMES if (data := corpus.photo_bytes(name)) is not None]
    if not found:
        raise RuntimeError("no package photo is installed (scikit-image, scikit-learn, matplotlib...)")
    return found


CASES_BY_MESSAGE = sa.text(
    "SELECT message_id, count(*), max(extract(epoch FROM created_at)) FROM moderation_case "
    "WHERE message_id IN :ids GROUP BY message_id"
).bindparams(sa.bindparam("ids", expanding=True))


async def cases_of(cluster: Cluster, message_ids: list[int]) -> dict[int, tuple[int, float]]:
    """Cases per posted message, and when the last of them was written (epoch seconds)."""
    async with cluster.engine.connect() as connection:
        rows = await connection.execute(CASES_BY_MESSAGE, {"ids": message_ids})
        return {int(message_id): (int(count), float(at)) for message_id, count, at in rows}


async def post_images(cluster: Cluster, count: int, offset: int = 0) -> list[int]:
    pictures = photos()
    posted = []
    for index in range(count):
        guild = cluster.guilds[index % len(cluster.guilds)]
        name, data = pictures[(index + offset) % len(pictures)]
        message = await cluster.discord.post_message(
            guild.channel_named("photos"), "alice", attachments=[(f"{name}-{index}.jpg", data)]
        )
        posted.append(int(message["id"]))
    return posted


async def wait_for_cases(
    cluster: Cluster,
    message_ids: list[int],
    timeout: float,  # noqa: ASYNC109
) -> dict[int, tuple[int, float]]:
    """Poll until every message has a case or `timeout` passes; the cases found either way."""
    deadline = time.monotonic() + timeout
    while True:
        found = await cases_of(cluster, message_ids)
        if len(found) == len(message_ids) or time.monotonic() > deadline:
            return found
        await asyncio.sleep(POLL_S)


async def warm_up(cluster: Cluster) -> None:
    """One post per guild, so every process has loaded its models before the measured posts."""
    posted = await post_images(cluster, len(cluster.guilds))
    found = await wait_for_cases(cluster, posted, START_S)
    if len(found) < len(posted):
        raise RuntimeError(f"only {len(found)} of {len(posted)} warm-up posts got a verdict in {START_S:g} s")


async def measure_moderation(cluster: Cluster, count: int, timeout: float) -> ModerationFigures:  # noqa: ASYNC109
    started = time.time()
    posted = await post_images(cluster, count, offset=1)
    found = await wait_for_cases(cluster, posted, timeout)
    last = max((at for _, at in found.values()), default=time.time())
    # Settle: a second case for a post (which the unique index should refuse) would come soon after.
    await asyncio.sleep(1.0)
    found = await cases_of(cluster, posted)
    return ModerationFigures(
        posts=len(posted),
        cases=sum(cases for cases, _ in found.values()),
        missing=len(posted) - len(found),
        duplicates=sum(cases - 1 for cases, _ in found.values()),
        seconds=max(0.0, last - started),
    )
