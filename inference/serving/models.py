"""The service's half of each model: Lumi's own runners, fed the tensors a gateway prepared.

A ``ServedRunner`` wraps a runner so that its items are the codec's prepared items (a letterbox, a
crop, an unpadded image) rather than whole images; it keeps the ``Runner`` contract, so the service
loads its models through the same ``ModelRegistry`` as a gateway (lazily, under a lock, with a warm-up
and a remembered failure) and may batch them with the same ``DynamicBatcher``. Each runner records the
size of every batch it runs, which the service reports at ``/v2/debug/batches``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from inference.device import Device
from inference.runners.base import Runner, SupportsWarmup
from inference.runners.emotions import EmotionRunner
from inference.runners.faces import FaceDetector, FaceRunner
from inference.runners.nudenet import NudeNetRunner
from inference.runners.objects import DEFAULT_OBJECT_WEIGHTS, YoloObjectRunner
from inference.runners.open_nsfw import OpenNsfwRunner
from inference.serving.codecs import CODECS, Codec
from inference.threads import default_threads

__all__ = ["FAMILIES", "FAMILY_OF", "ServeOptions", "ServedRunner", "served_factory"]

# One deployment per family: the models a post needs together share a replica (and its batches).
FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "moderation": ("nudenet", "open_nsfw"),
    "perception": ("faces", "emotions", "objects"),
    "commenter": ("commenter",),
}
FAMILY_OF: Final = {model: family for family, models in FAMILIES.items() for model in models}
_RECENT_BATCHES: Final = 512


@dataclass(frozen=True)
class ServeOptions:
    """How the service builds and batches its models (from Lumi's settings, see ``lumi serve-models``)."""

    device: str = "auto"
    intra_op_threads: int | None = None
    face_detector: FaceDetector = "auto"
    objects_weights: str = DEFAULT_OBJECT_WEIGHTS
    objects_weights_dir: Path | None = None
    objects_download: bool = True
    comment_model_dir: Path | None = None
    # Items per model call, and how long the first request of a batch waits for others.
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    # "serve": Ray Serve's @serve.batch groups requests; "lumi": Lumi's DynamicBatcher in the replica.
    batching: Literal["serve", "lumi"] = "serve"

    def threads(self) -> int:
        """Threads per model pool: ``intra_op_threads``, else a gateway's default (half the cores)."""
        return self.intra_op_threads or default_threads()


class ServedRunner:
    """``inner`` fed prepared items through ``codec``; ``batch_sizes`` holds its recent batch sizes."""

    def __init__(self, codec: Codec[Any, Any, Any], inner: Runner[Any, Any]) -> None:
        self.codec = codec
        self.inner = inner
        self.batch_sizes: deque[int] = deque(maxlen=_RECENT_BATCHES)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def device(self) -> str:
        return self.inner.device

    def load(self) -> None:
        self.inner.load()

    def warmup_inputs(self) -> list[object]:
        if not isinstance(self.inner, SupportsWarmup):
            return []
        items = self.inner.warmup_inputs()
        return list(self.codec.split_items(self.codec.encode_items(items)))

    def predict_batch(self, items: Sequence[Any]) -> list[Any]:
        if not items:
            return []
        self.batch_sizes.append(len(items))
        return self.codec.run(self.inner, items)

    def close(self) -> None:
        self.inner.close()


def served_factory(name: str, options: ServeOptions) -> Callable[[Device], ServedRunner]:
    """The registry factory of the served model ``name``."""
    build = _RUNNERS[name]
    codec = CODECS[name]

    def factory(device: Device) -> ServedRunner:
        return ServedRunner(codec, build(device, options))

    return factory


def _commenter(device: Device, options: ServeOptions) -> Runner[Any, Any]:
    from inference.commenter import CommenterRunner

    return CommenterRunner(device, model_dir=options.comment_model_dir)


_RUNNERS: Final[dict[str, Callable[[Device, ServeOptions], Runner[Any, Any]]]] = {
    "nudenet": lambda device, options: NudeNetRunner(device, intra_op_threads=options.threads()),
    "open_nsfw": lambda device, options: OpenNsfwRunner(device, intra_op_threads=options.threads()),
    "faces": lambda device, options: FaceRunner(device, detector=options.face_detector),
    "emotions": lambda device, options: EmotionRunner(device),
    "objects": lambda device, options: YoloObjectRunner(
        device,
        weights=options.objects_weights,
        weights_dir=options.objects_weights_dir,
        download=options.objects_download,
    ),
    "commenter": _commenter,
}
