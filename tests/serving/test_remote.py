"""Remote runners against the service half of Lumi's models on a light aiohttp server (no Ray)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from PIL import Image

from bot.services.comments.backends import BackendUnavailable, LocalModelBackend
from bot.services.moderation import ImageChecker
from bot.services.moderation.check_results import CheckStatus
from inference.commenter import register_commenter
from inference.images import decode_image
from inference.labels import label_from_text
from inference.moderation import NUDENET, register_moderation_models
from inference.perception import Perceiver, register_perception_models
from inference.registry import ModelRegistry
from inference.serving.client import InferenceClient, ServiceRefused, ServiceUnavailable
from inference.serving.models import ServedRunner, ServeOptions
from inference.serving.remote import RemoteModels
from tests.serving.light_service import LightService
from tests.serving.parts import assert_same_moderation, loaded_served_runners


def _remote_registry(url: str, **client: float) -> ModelRegistry:
    options = {"timeout_s": 5.0, "retry_deadline_s": 5.0, "breaker_failures": 3, "breaker_reset_s": 30.0}
    options.update(client)
    return ModelRegistry("cpu", remote=RemoteModels(InferenceClient(url, **options)))  # type: ignore[arg-type]


@pytest.fixture
async def local_registry() -> AsyncIterator[ModelRegistry]:
    registry = ModelRegistry("cpu")
    register_moderation_models(registry, intra_op_threads=1)
    yield registry
    await registry.close()


async def test_remote_moderation_gives_the_in_process_scores(
    light_service: LightService, local_registry: ModelRegistry, moderation_photos: dict[str, bytes]
) -> None:
    remote = _remote_registry(light_service.url)
    register_moderation_models(remote)
    try:
        await assert_same_moderation(local_registry, remote, moderation_photos)
        assert {status.name: status.device for status in remote.snapshot()} == {
            "nudenet": "remote",
            "open_nsfw": "remote",
        }
        assert light_service.requests >= 2 * len(moderation_photos)
    finally:
        await remote.close()


async def test_a_restarting_service_is_retried_until_it_answers(
    light_service: LightService, moderation_frames: dict[str, object]
) -> None:
    light_service.fault, light_service.fault_requests = "proxy_503", 2
    remote = _remote_registry(light_service.url)
    register_moderation_models(remote)
    try:
        handle = await remote.get(NUDENET)
        detections = await handle.predict(next(iter(moderation_frames.values())))  # type: ignore[arg-type]
        assert isinstance(detections, list)
        assert light_service.requests == 3  # two 503 pages, then the answer
    finally:
        await remote.close()


async def test_a_dead_service_gives_the_not_checked_outcome(
    light_service: LightService, moderation_photos: dict[str, bytes]
) -> None:
    light_service.fault = "drop"
    remote = _remote_registry(light_service.url, retry_deadline_s=0.2, breaker_failures=2)
    checker = ImageChecker(remote, model_threads=1)
    photo = next(iter(moderation_photos.values()))
    try:
        for _ in range(4):
            verdict = await checker.check_image(photo)
            assert verdict.status is CheckStatus.ERROR
            assert verdict.problem is not None and "inference service" in verdict.problem
            assert verdict.problem_code == "ServiceUnavailable"
            assert not verdict.flagged
    finally:
        await remote.close()


async def test_a_dead_service_opens_the_circuit_with_one_log_line(
    light_service: LightService, moderation_frames: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    light_service.fault = "drop"
    client = InferenceClient(
        light_service.url, retry_deadline_s=0.2, breaker_failures=2, breaker_reset_s=30.0
    )
    remote = ModelRegistry("cpu", remote=RemoteModels(client))
    register_moderation_models(remote)
    frame = next(iter(moderation_frames.values()))
    try:
        handle = await remote.get(NUDENET)
        for _ in range(2):
            with pytest.raises(ServiceUnavailable, match="unreachable"):
                await handle.predict(frame)  # type: ignore[arg-type]
        asked = light_service.requests
        assert asked >= 2 and await client.breaker_state("nudenet") == "opened"
        for _ in range(6):
            with pytest.raises(ServiceUnavailable, match="failed repeatedly"):
                await handle.predict(frame)  # type: ignore[arg-type]
        assert light_service.requests == asked  # an open circuit asks nobody
        said = [r for r in caplog.records if r.levelno >= logging.WARNING and "nudenet" in r.getMessage()]
        assert len(said) == 1 and said[0].levelno == logging.ERROR  # one line, not one per call
        assert "failed repeatedly" in said[0].getMessage()
        assert await client.breaker_state("open_nsfw") == "closed"  # circuits are per model
    finally:
        await remote.close()


async def test_the_services_own_refusal_is_not_retried_and_keeps_the_circuit_closed(
    light_service: LightService, moderation_frames: dict[str, object]
) -> None:
    light_service.fault = "lumi_503"
    client = InferenceClient(light_service.url, retry_deadline_s=5.0, breaker_failures=2)
    remote = ModelRegistry("cpu", remote=RemoteModels(client))
    register_moderation_models(remote)
    try:
        handle = await remote.get(NUDENET)
        for _ in range(4):
            with pytest.raises(ServiceRefused, match="no weights"):
                await handle.predict(next(iter(moderation_frames.values())))  # type: ignore[arg-type]
        assert light_service.requests == 4
        assert await client.breaker_state("nudenet") == "closed"
    finally:
        await remote.close()


async def test_a_slow_service_times_out_with_the_reason(
    light_service: LightService, moderation_frames: dict[str, object]
) -> None:
    light_service.fault, light_service.slow_s = "slow", 3.0
    remote = _remote_registry(light_service.url, timeout_s=0.3, retry_deadline_s=0.0)
    register_moderation_models(remote)
    try:
        handle = await remote.get(NUDENET)
        with pytest.raises(ServiceUnavailable, match=r"no answer within 0.3 s"):
            await handle.predict(next(iter(moderation_frames.values())))  # type: ignore[arg-type]
    finally:
        await remote.close()


async def test_comments_are_skipped_while_the_service_is_down(light_service: LightService) -> None:
    light_service.fault = "drop"
    remote = _remote_registry(light_service.url, retry_deadline_s=0.1)
    register_commenter(remote)
    try:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await LocalModelBackend(remote).write([label_from_text("기쁨")], "ko")
    finally:
        await remote.close()


@pytest.fixture(scope="module")
def served_perception() -> Iterator[dict[str, ServedRunner]]:
    """Faces and emotions as the service runs them; objects stay out (their weights are not shipped)."""
    yield from loaded_served_runners(("faces", "emotions"), ServeOptions(device="cpu"))


async def test_remote_perception_sees_the_same_faces_and_emotions(
    served_perception: dict[str, ServedRunner], moderation_photos: dict[str, bytes]
) -> None:
    people = [name for name in ("astronaut", "zidane", "grace_hopper") if name in moderation_photos]
    if not people:
        pytest.skip("no package photo with people is installed")
    service = await LightService(served_perception).start()
    local, remote = ModelRegistry("cpu"), _remote_registry(service.url)
    for registry in (local, remote):
        register_perception_models(registry, objects_weights="/nonexistent/objects.pt")
    try:
        for name in people:
            image = decode_image(moderation_photos[name]).frames[0]
            here = await Perceiver(local).perceive(image)
            there = await Perceiver(remote).perceive(image)
            assert here.faces, name
            assert [face.box for face in there.faces] == [face.box for face in here.faces], name
            for near, far in zip(here.faces, there.faces, strict=True):
                assert near.emotions is not None and far.emotions is not None
                for emotion, score in near.emotions.scores.items():
                    assert far.emotions.scores[emotion] == pytest.approx(score, abs=1e-4), (name, emotion)
            assert [label.ko for label in there.labels] == [label.ko for label in here.labels], name
            assert "objects" in there.missing  # the service does not serve it here: skipped, not fatal
    finally:
        await local.close()
        await remote.close()
        await service.close()


async def test_perception_goes_on_without_a_dead_service(light_service: LightService) -> None:
    light_service.fault = "drop"
    remote = _remote_registry(light_service.url, retry_deadline_s=0.1)
    register_perception_models(remote)
    try:
        seen = await Perceiver(remote).perceive(Image.new("RGB", (96, 96), (120, 80, 40)))
        assert seen.labels == [] and set(seen.missing) == {"faces", "objects"}
    finally:
        await remote.close()
