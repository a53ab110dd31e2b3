from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from PIL import Image

from inference.images.decode import decode_image
from inference.images.limits import ImageLimits
from inference.moderation import NUDENET, OPEN_NSFW, ImageModerator, register_moderation_models
from inference.registry import BatchConfig, ModelRegistry, ModelUnavailable
from inference.runners.nudenet import NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from tests.fakes import images as fake
from tests.fakes.images import photo_bytes


@pytest.fixture
async def registry() -> AsyncIterator[ModelRegistry]:
    models = ModelRegistry("cpu")
    register_moderation_models(models, batch=BatchConfig(max_batch_size=8, max_wait_ms=5))
    yield models
    await models.close()


async def test_analyse_runs_every_sampled_frame_through_both_models(registry: ModelRegistry) -> None:
    data = photo_bytes("astronaut")
    if data is None:
        pytest.skip("scikit-image is not installed")
    astronaut = decode_image(data).frames[0]
    # An animation whose middle frame is a real photo, the rest plain colour.
    frames = [Image.new("RGB", astronaut.size, (40 + 10 * i, 90, 160)) for i in range(9)]
    frames[4] = astronaut
    gif = fake.encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    decoded = decode_image(gif, limits=ImageLimits(max_frames=9))
    assert decoded.frame_indices == list(range(9))

    analysis = await ImageModerator(registry).analyse(decoded)
    assert [frame.frame_index for frame in analysis.frames] == list(range(9))
    face_frames = [frame.frame_index for frame in analysis.frames if "FACE_FEMALE" in frame.label_scores()]
    assert face_frames == [4]
    assert analysis.label_scores["FACE_FEMALE"] == analysis.frames[4].label_scores()["FACE_FEMALE"]
    assert analysis.nsfw_score == max(frame.nsfw_score for frame in analysis.frames)
    assert analysis.nsfw_score < 0.5
    assert analysis.elapsed_s > 0 and set(analysis.model_seconds) == {"nudenet", "open_nsfw"}
    assert {status.name: status.loaded for status in registry.snapshot()} == {
        "nudenet": True,
        "open_nsfw": True,
    }


async def test_concurrent_posts_share_batches(registry: ModelRegistry) -> None:
    from prometheus_client import REGISTRY

    moderator = ImageModerator(registry)
    posts = [decode_image(fake.encode(fake.gradient(120 + i, 90), "PNG")) for i in range(6)]
    await moderator.analyse(posts[0])  # load and warm up first
    before = REGISTRY.get_sample_value("lumi_inference_batch_size_count", {"model": "nudenet"}) or 0.0
    results = await asyncio.gather(*(moderator.analyse(post) for post in posts))
    after = REGISTRY.get_sample_value("lumi_inference_batch_size_count", {"model": "nudenet"}) or 0.0
    assert len(results) == 6 and all(len(result.frames) == 1 for result in results)
    assert after - before < 6  # six posts, fewer model calls


async def test_a_missing_model_surfaces_as_model_unavailable() -> None:
    registry = ModelRegistry("cpu")
    registry.register(NUDENET, lambda device: NudeNetRunner(device, model_path="/nonexistent/320n.onnx"))
    registry.register(OPEN_NSFW, lambda device: OpenNsfwRunner(device, model_path="/nonexistent/x.onnx"))
    with pytest.raises(ModelUnavailable, match="not found"):
        await ImageModerator(registry).analyse(decode_image(fake.encode(fake.gradient(), "PNG")))
    await registry.close()
