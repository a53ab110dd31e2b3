"""What the moderation benches share: the photo corpus, the models' ready tensors, ONNX sessions set up
as Lumi sets up its own, and the arithmetic of rounds (median and spread of a ratio).

Not a test: figures depend on the machine.
"""

from __future__ import annotations

import importlib.util
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from inference.images import ImageLimits, decode_image
from inference.moderation import at_moderation_scale
from inference.runners.nudenet import NudeNetRunner
from inference.runners.onnx_base import onnx_session, run_chunked
from inference.runners.open_nsfw import OpenNsfwRunner

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

# (package, file inside it): real photographs that ship with the dev dependencies.
PACKAGE_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/rocket.jpg"),
    ("ultralytics", "assets/bus.jpg"),
    ("ultralytics", "assets/zidane.jpg"),
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
)
LONG_SIDES = (256, 480, 720, 1024, 1600)
MODELS = ("nudenet", "open_nsfw")


def package_photos() -> Iterator[tuple[str, Image.Image]]:
    for package, relative in PACKAGE_PHOTOS:
        spec = importlib.util.find_spec(package)
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = Path(location) / relative
            if path.is_file():
                with Image.open(path) as image:
                    yield path.stem, image.convert("RGB")
                break


def corpus(count: int) -> list[tuple[str, bytes]]:
    """``count`` JPEGs: every photo at every size (upscaled where the original is smaller), round-robin."""
    variants: list[tuple[str, bytes]] = []
    for name, image in package_photos():
        for side in LONG_SIDES:
            scale = side / max(image.size)
            resized = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=90)
            variants.append((f"{name}@{side}", buffer.getvalue()))
    if not variants:
        sys.exit("no package photos found: install the dev extras (scikit-image, scikit-learn, matplotlib)")
    return [variants[i % len(variants)] for i in range(count)]


def model_tensors(images: Sequence[tuple[str, bytes]]) -> dict[str, NDArray[np.float32]]:
    """Each model's input batch for ``images``, made as Lumi makes it: decoded at the models' scale,
    then the runners' own preprocessing (letterbox for NudeNet; resize, crop and JPEG round trip for
    open_nsfw)."""
    limits = at_moderation_scale(ImageLimits())
    frames = [decode_image(data, limits=limits).frames[0] for _, data in images]
    nudenet, open_nsfw = NudeNetRunner(), OpenNsfwRunner()
    return {
        "nudenet": nudenet.input_tensor(np.stack([nudenet.letterbox(frame)[0] for frame in frames])),
        "open_nsfw": open_nsfw.input_tensor(np.stack([open_nsfw.crop(frame) for frame in frames])),
    }


@dataclass
class BareModel:
    """One model's ONNX file in a session made by Lumi's ``onnx_session`` (same options as the bot's)."""

    name: str
    session: InferenceSession
    input_name: str

    @classmethod
    def load(cls, name: str, threads: int | None) -> BareModel:
        runner = NudeNetRunner() if name == "nudenet" else OpenNsfwRunner()
        session = onnx_session(
            runner.default_model_path(), model=name, device="cpu", intra_op_threads=threads
        )
        return cls(name, session, session.get_inputs()[0].name)

    def run(self, batch: NDArray[np.float32], chunk: int) -> float:
        """Seconds to run ``batch`` through the model, ``chunk`` items per ONNX call."""
        started = time.perf_counter()
        run_chunked(self.session, self.input_name, batch, step=chunk)
        return time.perf_counter() - started


def run_together(
    models: Sequence[BareModel], tensors: dict[str, NDArray[np.float32]], chunk: int | dict[str, int]
) -> tuple[float, dict[str, float]]:
    """Both models at once, each on a thread of its own as in Lumi: the wall time, and each model's
    busy time (the critical path is the model whose busy time is the wall time). ``chunk``: items per
    ONNX call, for both models or per model name."""
    chunks = chunk if isinstance(chunk, dict) else {model.name: chunk for model in models}
    with ThreadPoolExecutor(max_workers=len(models)) as pool:
        started = time.perf_counter()
        futures = {
            model.name: pool.submit(model.run, tensors[model.name], chunks[model.name]) for model in models
        }
        busy = {name: future.result() for name, future in futures.items()}
        wall = time.perf_counter() - started
    return wall, busy


def spread(values: Sequence[float], digits: int = 2) -> str:
    """Median and range over rounds, as ``1.23 (1.10–1.40)``."""
    if not values:
        return "—"
    median = statistics.median(values)
    return f"{median:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def rotated(items: Sequence[str], round_index: int) -> list[str]:
    """``items`` starting at a different one each round, so that no mode always runs first or last."""
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
