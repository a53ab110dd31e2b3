"""Helpers of the end-to-end tests that watch a real Lumi process comment on its first photo."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.lumi_process import START_S, LumiProcess, base_env
from tests.fakes import images as corpus
from tests.fakes.discord_api.protocol import JsonDict
from tests.fakes.discord_api.recording import RecordedRequest
from tests.fakes.discord_api.server import FakeDiscord, message_text


def astronaut_photo() -> bytes:
    photo = corpus.photo_bytes("astronaut")
    if photo is None:
        pytest.skip("the package that ships the astronaut photo is not installed")
    return photo


def photo_comment_env(data_dir: Path, server: FakeDiscord, **settings: str) -> dict[str, str]:
    """A Lumi for the local server that fetches photos from it and downloads no object names."""
    env = base_env(data_dir, server.base_url, server.token or "", server.guild.id)
    env.update(
        {
            "COMMENT_OBJECTS_DOWNLOAD": "false",
            "MODERATION_FETCH_HOSTS": f"127.0.0.1:{server.port}",
            **settings,
        }
    )
    return env


def replies_to(post: JsonDict) -> Callable[[JsonDict], bool]:
    return lambda message: (message.get("message_reference") or {}).get("message_id") == post["id"]


async def post_photo_once_connected(lumi: LumiProcess, server: FakeDiscord, photo: bytes) -> JsonDict:
    """Waits for Lumi to connect, turns comments on in #photos, posts `photo` there as alice and returns
    the post once Lumi has downloaded the photo: its models start loading from then on."""
    await lumi.wait_for_log("connected as")
    enable = await server.slash_command("comments", subcommand="enable", user="owner", channel="photos")
    assert "now comments on photos" in message_text(await server.wait_for_reply(enable, timeout=30))
    since = len(server.rest.cdn_requests)
    post = await server.post_message("photos", "alice", attachments=[("me.png", photo)])

    def fetched(request: RecordedRequest) -> bool:
        return request.path.endswith("/me.png") and request.status == 200

    await server.rest.cdn_requests.wait_for(
        fetched, since=since, timeout=START_S, describe="Lumi downloading the photo"
    )
    return post
