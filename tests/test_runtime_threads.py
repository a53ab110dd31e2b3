"""Opening a Runtime applies INFERENCE_THREADS to torch and to the moderation models' ONNX sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.runtime import Runtime
from inference.moderation import NUDENET
from inference.runners.nudenet import NudeNetRunner
from inference.threads import default_threads
from tests.conftest import make_settings


@pytest.fixture
def restored_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The thread variables and torch's intra-op count come back after the test."""
    torch = pytest.importorskip("torch")
    for name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


# 1, and a count that differs from the default on any machine (so the setting, not the default, shows).
@pytest.mark.parametrize("threads", [1, default_threads() + 1])
async def test_inference_threads_reach_torch_and_onnxruntime(
    tmp_path: Path, restored_threads: None, threads: int
) -> None:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(threads + 1)
    settings = make_settings(tmp_path, inference_threads=threads, inference_device="cpu")
    runtime = await Runtime.open(settings)
    try:
        assert torch.get_num_threads() == threads
        handle = await runtime.registry.get(NUDENET)
        runner = handle.runner
        assert isinstance(runner, NudeNetRunner)
        session = runner._session
        assert session is not None
        assert session.get_session_options().intra_op_num_threads == threads
    finally:
        await runtime.close()
