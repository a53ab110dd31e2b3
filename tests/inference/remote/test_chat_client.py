"""The real OpenAI-compatible chat and moderation clients against the local OpenAI double."""

from __future__ import annotations

import base64
import io
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from inference.remote.chat import ChatClient, ChatUnavailable
from inference.remote.moderation_api import ModerationUnavailable, OpenAIModerationClient
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(reply="A polished bronze dragon statue, 30k triangles.") as server:
        yield server


@pytest.fixture
async def chat(fake: FakeOpenAI) -> AsyncIterator[ChatClient]:
    async with ChatClient(fake.base_url, fake.api_key, fake.model, timeout=2.0, max_retries=0) as client:
        yield client


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_completion_sends_system_and_user(fake: FakeOpenAI, chat: ChatClient) -> None:
    answer = await chat.complete("You improve 3D prompts.", "a dragon", max_tokens=120, temperature=0.2)
    assert answer == "A polished bronze dragon statue, 30k triangles."
    (request,) = fake.chat_requests
    assert request.authorization == f"Bearer {fake.api_key}"
    assert request.json["model"] == fake.model
    assert request.json["messages"] == [
        {"role": "system", "content": "You improve 3D prompts."},
        {"role": "user", "content": "a dragon"},
    ]
    assert request.json["max_tokens"] == 120 and request.json["temperature"] == 0.2


async def test_reply_can_depend_on_the_messages(fake: FakeOpenAI, chat: ChatClient) -> None:
    def echo(messages: list[dict[str, Any]]) -> str:
        return f"  enhanced: {messages[-1]['content']}\n"

    fake.reply = echo
    assert await chat.complete("sys", "a teapot") == "enhanced: a teapot"


async def test_max_completion_tokens_field(fake: FakeOpenAI) -> None:
    async with ChatClient(
        fake.base_url, fake.api_key, fake.model, max_retries=0, token_limit_field="max_completion_tokens"
    ) as client:
        await client.complete("sys", "user", max_tokens=50)
    body = fake.chat_requests[-1].json
    assert body["max_completion_tokens"] == 50 and "max_tokens" not in body


async def test_timeout_becomes_chat_unavailable(fake: FakeOpenAI) -> None:
    fake.delay = 1.0
    async with ChatClient(fake.base_url, fake.api_key, fake.model, timeout=0.2, max_retries=0) as client:
        with pytest.raises(ChatUnavailable) as caught:
            await client.complete("sys", "slow")
    assert caught.value.kind == "timeout"
    assert "did not answer in time" in caught.value.reason


async def test_server_error_becomes_chat_unavailable(fake: FakeOpenAI, chat: ChatClient) -> None:
    fake.fail_next(500)
    with pytest.raises(ChatUnavailable) as caught:
        await chat.complete("sys", "boom")
    assert caught.value.kind == "server" and caught.value.status == 500
    assert "server error (500)" in caught.value.reason


async def test_server_error_is_retried_by_the_sdk(fake: FakeOpenAI) -> None:
    fake.fail_next(503, count=1)
    async with ChatClient(fake.base_url, fake.api_key, fake.model, max_retries=1) as client:
        assert await client.complete("sys", "retry me")
    assert len(fake.chat_requests) == 2


async def test_bad_key_is_auth(fake: FakeOpenAI) -> None:
    async with ChatClient(fake.base_url, "sk-wrong", fake.model, max_retries=0) as client:
        with pytest.raises(ChatUnavailable) as caught:
            await client.complete("sys", "who am i")
    assert caught.value.kind == "auth" and caught.value.status == 401
    assert "rejected the API key" in caught.value.reason


async def test_rate_limit_and_unknown_model(fake: FakeOpenAI, chat: ChatClient) -> None:
    fake.fail_next(429)
    with pytest.raises(ChatUnavailable) as caught:
        await chat.complete("sys", "too fast")
    assert caught.value.kind == "rate_limited"

    async with ChatClient(fake.base_url, fake.api_key, "no-such-model", max_retries=0) as client:
        with pytest.raises(ChatUnavailable) as caught:
            await client.complete("sys", "which model")
    assert caught.value.kind == "not_found"


async def test_empty_answer(fake: FakeOpenAI, chat: ChatClient) -> None:
    fake.empty_reply = True
    with pytest.raises(ChatUnavailable) as caught:
        await chat.complete("sys", "say nothing")
    assert caught.value.kind == "empty" and "empty answer" in caught.value.reason


async def test_connection_refused() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with ChatClient(f"http://127.0.0.1:{port}/v1", "k", "m", max_retries=0) as client:
        with pytest.raises(ChatUnavailable) as caught:
            await client.complete("sys", "anyone?")
    assert caught.value.kind == "connection"
    assert "could not connect" in caught.value.reason


async def test_image_moderation_scores(fake: FakeOpenAI) -> None:
    fake.moderation_scores = {"sexual": 0.91, "violence": 0.12, "violence/graphic": 0.03}
    image = _png()
    async with OpenAIModerationClient(fake.api_key, base_url=fake.base_url, max_retries=0) as client:
        result = await client.moderate_image(image)
        scores = await client.score_image(image)

    assert result.flagged and result.flagged_categories == {"sexual"}
    assert scores["sexual"] == pytest.approx(0.91)
    assert scores["violence"] == pytest.approx(0.12)
    assert scores["violence/graphic"] == pytest.approx(0.03)
    assert {"self-harm", "self-harm/intent", "sexual/minors"} <= scores.keys()

    body = fake.moderation_requests[0].json
    assert body["model"] == "omni-moderation-latest"
    (part,) = body["input"]
    assert part["type"] == "image_url"
    prefix = "data:image/png;base64,"
    assert part["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(part["image_url"]["url"][len(prefix) :]) == image


async def test_moderation_failure(fake: FakeOpenAI) -> None:
    fake.fail_next(500, path="/v1/moderations")
    async with OpenAIModerationClient(fake.api_key, base_url=fake.base_url, max_retries=0) as client:
        with pytest.raises(ModerationUnavailable) as caught:
            await client.score_image(_png())
    assert caught.value.kind == "server"
