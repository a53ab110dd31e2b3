"""Raw image-moderation model outputs for the moderation service: no thresholds, no policy.

Every sampled frame goes through NudeNet and open_nsfw at the same time, each via its model's batcher,
so frames of one post and posts from many users share batches. ``at_moderation_scale`` gives the caps
under which to decode for them: at the models' own scale, so that each model resizes once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, TypeVar

from inference.device import Device
from inference.images import DecodedImage, ImageLimits
from inference.registry import BatchConfig, ModelKey, ModelRegistry
from inference.runners.nudenet import Detection, ImageInput, NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from inference.threads import default_threads

__all__ = [
    "MODERATION_SIDES",
    "NUDENET",
    "OPEN_NSFW",
    "FrameAnalysis",
    "ImageAnalysis",
    "ImageModerator",
    "at_moderation_scale",
    "register_moderation_models",
]

NUDENET: Final = ModelKey[ImageInput, list[Detection]]("nudenet")
OPEN_NSFW: Final = ModelKey[ImageInput, float]("open_nsfw")
# The least (long, short) sides both models need: NudeNet's letterbox brings the long side to 320 px,
# open_nsfw stretches both sides to 256 px before its 224 px crop.
MODERATION_SIDES: Final = (320, 256)

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")


def register_moderation_models(
    registry: ModelRegistry,
    *,
    batch: BatchConfig | None = None,
    intra_op_threads: int | None = None,
) -> None:
    """Register NudeNet and open_nsfw (loaded on first use) under ``NUDENET`` and ``OPEN_NSFW``.

    The two models run at the same time on their own threads, so by default each gets half the CPU
    cores for its intra-op pool (``threads.default_threads``): more threads than cores makes
    onnxruntime's workers fight each other. Lumi passes its ``INFERENCE_THREADS`` setting.
    """
    if intra_op_threads is None:
        intra_op_threads = default_threads()

    def nudenet(device: Device) -> NudeNetRunner:
        return NudeNetRunner(device, intra_op_threads=intra_op_threads)

    def open_nsfw(device: Device) -> OpenNsfwRunner:
        return OpenNsfwRunner(device, intra_op_threads=intra_op_threads)

    registry.register(NUDENET, nudenet, batch=batch)
    registry.register(OPEN_NSFW, open_nsfw, batch=batch)


def at_moderation_scale(limits: ImageLimits) -> ImageLimits:
    """``limits``' caps, decoding at the scale NudeNet and open_nsfw need rather than at a fixed side."""
    return replace(limits, max_side_for_models=None, least_sides_for_models=MODERATION_SIDES)


@dataclass(frozen=True)
class FrameAnalysis:
    frame_index: int
    detections: list[Detection]
    nsfw_score: float

    def label_scores(self) -> dict[str, float]:
        """Best score per NudeNet label in this frame."""
        scores: dict[str, float] = {}
        for detection in self.detections:
            scores[detection.label] = max(detection.score, scores.get(detection.label, 0.0))
        return scores


@dataclass(frozen=True)
class ImageAnalysis:
    """Per-frame outputs and their maxima over frames (a flagged frame flags the whole post)."""

    frames: list[FrameAnalysis]
    nsfw_score: float
    label_scores: dict[str, float]
    elapsed_s: float
    model_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def detections(self) -> list[Detection]:
        return [detection for frame in self.frames for detection in frame.detections]


class ImageModerator:
    def __init__(
        self,
        registry: ModelRegistry,
        *,
        nudenet: ModelKey[ImageInput, list[Detection]] = NUDENET,
        open_nsfw: ModelKey[ImageInput, float] = OPEN_NSFW,
    ) -> None:
        self._registry = registry
        self._nudenet_key = nudenet
        self._open_nsfw_key = open_nsfw

    async def analyse(self, decoded: DecodedImage) -> ImageAnalysis:
        """Run every frame through both models. Raises ``ModelUnavailable`` if either cannot load."""
        started = time.perf_counter()
        nudenet, open_nsfw = await _both(
            self._registry.get(self._nudenet_key), self._registry.get(self._open_nsfw_key)
        )
        detections, nsfw_scores = await _both(
            _timed(_all([nudenet.predict(frame) for frame in decoded.frames])),
            _timed(_all([open_nsfw.predict(frame) for frame in decoded.frames])),
        )
        frames = [
            FrameAnalysis(frame_index=index, detections=frame_detections, nsfw_score=score)
            for index, frame_detections, score in zip(
                decoded.frame_indices, detections[0], nsfw_scores[0], strict=True
            )
        ]
        label_scores: dict[str, float] = {}
        for frame in frames:
            for label, score in frame.label_scores().items():
                label_scores[label] = max(score, label_scores.get(label, 0.0))
        return ImageAnalysis(
            frames=frames,
            nsfw_score=max((frame.nsfw_score for frame in frames), default=0.0),
            label_scores=label_scores,
            elapsed_s=time.perf_counter() - started,
            model_seconds={self._nudenet_key.name: detections[1], self._open_nsfw_key.name: nsfw_scores[1]},
        )


async def _timed(awaitable: Awaitable[T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = await awaitable
    return result, time.perf_counter() - started


async def _all(awaitables: Sequence[Awaitable[T]]) -> list[T]:
    """Like ``gather``, but the first failure cancels the rest instead of leaving them running."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    first_task, second_task = asyncio.ensure_future(first), asyncio.ensure_future(second)
    await _all([first_task, second_task])
    return first_task.result(), second_task.result()
