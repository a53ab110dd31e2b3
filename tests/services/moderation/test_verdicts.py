"""Moderation's per-post verdicts: readers before or after publication, withdrawal, time limits, bounds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from bot.services.image_fetch import FetchedImage
from bot.services.moderation.check_results import CheckedImage, CheckStatus, Verdict
from bot.services.moderation.decisions import Decision, Level
from bot.services.moderation.policy import Action
from bot.services.moderation.verdicts import HeldImage, PostVerdict, VerdictFeed
from inference.images import ImageLimits

PASSED = PostVerdict(
    flagged=False,
    images={"digest": Verdict(status=CheckStatus.CHECKED, decision=Decision(Level.SAFE, Action.NONE))},
)
FLAGGED = PostVerdict(flagged=True, images={})
URL = "https://cdn.discordapp.com/attachments/1/2/cat.png"
DOWNLOADS = {
    URL: HeldImage(
        FetchedImage(URL, "cat.png", b"bytes"), CheckedImage(PASSED.images["digest"], None, ImageLimits())
    )
}
LONG_S = 60.0  # a wait that must end early for another reason than its time limit
T = TypeVar("T")


async def at_once(reader: Awaitable[T]) -> T:
    """The reader's result, which must come well before its own time limit."""
    return await asyncio.wait_for(reader, 1.0)


async def test_a_reader_gets_the_verdict_whether_it_comes_before_or_after_publication() -> None:
    verdicts = VerdictFeed()
    verdicts.start_publishing()
    early = asyncio.create_task(verdicts.wait(1, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    assert not early.done()  # the moderation listener has not even taken the post yet
    verdicts.expect(1)
    verdicts.publish(1, PASSED)
    assert await at_once(early) is PASSED
    assert await verdicts.wait(1, timeout_s=LONG_S, new_post=False) is PASSED


async def test_posts_without_a_verdict_read_as_none_without_waiting() -> None:
    verdicts = VerdictFeed()
    # No moderation listener: nothing will be published, so nobody waits.
    assert await at_once(verdicts.wait(1, timeout_s=LONG_S, new_post=True)) is None
    verdicts.start_publishing()
    # An older post that moderation never announced.
    assert await at_once(verdicts.wait(2, timeout_s=LONG_S, new_post=False)) is None
    # A post moderation took and then did not check (an exempt channel, or its check failed).
    verdicts.expect(3)
    reader = asyncio.create_task(verdicts.wait(3, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    verdicts.withdraw(3)
    assert await at_once(reader) is None
    # Withdrawing after publication keeps the verdict.
    verdicts.publish(4, PASSED)
    verdicts.withdraw(4)
    assert await verdicts.wait(4, timeout_s=LONG_S, new_post=False) is PASSED


async def test_a_late_verdict_times_the_reader_out_and_still_serves_later_readers() -> None:
    verdicts = VerdictFeed()
    verdicts.start_publishing()
    verdicts.expect(1)
    assert await verdicts.wait(1, timeout_s=0.05, new_post=True) is None
    # A reader that gives up (cancelled) does not cancel the verdict for the others.
    impatient = asyncio.create_task(verdicts.wait(1, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    impatient.cancel()
    verdicts.publish(1, PASSED)
    assert await verdicts.wait(1, timeout_s=LONG_S, new_post=False) is PASSED


async def test_posts_are_capped_and_expire_and_their_readers_are_released() -> None:
    now = [0.0]
    verdicts = VerdictFeed(max_posts=2, ttl_s=10.0, clock=lambda: now[0])
    verdicts.start_publishing()
    verdicts.expect(1)
    reader = asyncio.create_task(verdicts.wait(1, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    verdicts.publish(2, PASSED)
    verdicts.expect(3)  # the oldest post goes
    assert await at_once(reader) is None
    assert len(verdicts) == 2
    assert await verdicts.wait(2, timeout_s=LONG_S, new_post=False) is PASSED
    now[0] = 10.0
    assert await verdicts.wait(2, timeout_s=LONG_S, new_post=False) is None
    assert len(verdicts) == 0


async def test_stopping_releases_every_reader() -> None:
    verdicts = VerdictFeed()
    verdicts.start_publishing()
    readers = [asyncio.create_task(verdicts.wait(n, timeout_s=LONG_S, new_post=True)) for n in (1, 2)]
    await asyncio.sleep(0.01)
    verdicts.stop_publishing()
    assert await at_once(asyncio.gather(*readers)) == [None, None]
    assert not verdicts.publishing


def held_anywhere(verdicts: VerdictFeed) -> bool:
    """Whether the feed still holds downloaded images for any post (it must not, once readers resume)."""
    return any(post.held for post in verdicts._posts.values())


async def test_downloads_go_only_to_a_reader_waiting_as_the_verdict_comes() -> None:
    verdicts = VerdictFeed()
    verdicts.start_publishing()
    taker = asyncio.create_task(verdicts.wait_and_take(1, timeout_s=LONG_S, new_post=True))
    second = asyncio.create_task(verdicts.wait_and_take(1, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    verdicts.publish(1, PASSED, downloads=DOWNLOADS)
    # The first reader to resume takes them; the other fetches for itself.
    assert await at_once(taker) == (PASSED, DOWNLOADS)
    assert await at_once(second) == (PASSED, {})
    assert not held_anywhere(verdicts)
    # Nobody waiting when the verdict comes: the images are dropped at once, the verdict stays.
    verdicts.publish(2, PASSED, downloads=DOWNLOADS)
    assert not held_anywhere(verdicts)
    assert await verdicts.wait_and_take(2, timeout_s=LONG_S, new_post=False) == (PASSED, {})


async def test_a_reader_that_gives_up_leaves_nothing_held_and_flagged_posts_hand_nothing_over() -> None:
    verdicts = VerdictFeed()
    verdicts.start_publishing()
    verdicts.expect(1)
    assert await verdicts.wait_and_take(1, timeout_s=0.05, new_post=True) == (None, {})
    verdicts.publish(1, PASSED, downloads=DOWNLOADS)
    assert not held_anywhere(verdicts)
    cancelled = asyncio.create_task(verdicts.wait_and_take(2, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    cancelled.cancel()
    verdicts.publish(2, PASSED, downloads=DOWNLOADS)  # before the cancelled reader has wound up
    with contextlib.suppress(asyncio.CancelledError):
        await cancelled
    assert not held_anywhere(verdicts)
    # A flagged post gets no comment: its images stay with moderation.
    reader = asyncio.create_task(verdicts.wait_and_take(3, timeout_s=LONG_S, new_post=True))
    await asyncio.sleep(0.01)
    verdicts.publish(3, FLAGGED, downloads=DOWNLOADS)
    assert await at_once(reader) == (FLAGGED, {})
