"""SIGTERM while a photo comment is in flight: Lumi posts the comment, then stops cleanly.

A real Lumi process (real discord.py, real models) talks to the local Discord server. The first photo
makes it load the moderation, face, emotion and comment models, which takes many seconds here; the
signal comes about a second after the photo was downloaded, while they are still loading. Lumi used to
close the model registry and the Discord session under the comment (`the model registry is shut down`,
then `RuntimeError: Session is closed`) and exit 0 without it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.lumi_process import LumiProcess
from tests.e2e.photo_comment_parts import (
    astronaut_photo,
    photo_comment_env,
    post_photo_once_connected,
    replies_to,
)
from tests.fakes.discord_api.server import FakeDiscord, message_text

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(360)]

# Long enough for the first photo's models to load on a busy 2-core machine; Lumi exits as soon as the
# comment is posted, so a generous bound costs nothing when all goes well.
DRAIN_S = 180.0


async def test_sigterm_during_a_photo_comment_posts_it_before_stopping(tmp_path: Path) -> None:
    photo = astronaut_photo()
    async with FakeDiscord(interaction_deadline_s=15.0) as server:
        env = photo_comment_env(tmp_path / "data", server, SHUTDOWN_DRAIN_S=str(DRAIN_S))
        lumi = LumiProcess(env, tmp_path / "lumi.log")
        try:
            await lumi.start()
            post = await post_photo_once_connected(lumi, server, photo)
            await asyncio.sleep(1.0)
            assert "model 'commenter' loaded" not in lumi.log()  # still loading: the case to test
            exit_code = await lumi.terminate(timeout=DRAIN_S + 60)
        finally:
            await lumi.stop()

        log = lumi.log()
        comments = [message for message in server.created_messages if replies_to(post)(message)]
        assert exit_code == 0, log[-3000:]
        assert len(comments) == 1, log[-3000:]
        assert message_text(comments[0]).strip()
        for sign in ("Traceback", "registry is shut down", "Session is closed"):
            assert sign not in log, log[-3000:]
        assert log.index("shutdown requested") < log.index("Lumi stopped")
