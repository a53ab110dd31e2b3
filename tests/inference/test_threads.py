"""The process-wide thread policy: frameworks already imported are set, later ones find it in their
environment variables, and a bad count is refused."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from inference.threads import apply_thread_policy, default_threads, usable_cores

torch = pytest.importorskip("torch")

VARIABLES = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@pytest.fixture
def restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment and torch's intra-op count come back after the test."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def test_default_is_half_the_usable_cores_and_at_least_one() -> None:
    assert default_threads() == max(1, usable_cores() // 2)


def test_an_imported_torch_is_set_and_later_frameworks_read_the_environment(restored: None) -> None:
    line = apply_thread_policy(1)
    assert torch.get_num_threads() == 1
    assert all(os.environ[name] == "1" for name in VARIABLES)
    assert "inference threads: 1 per pool" in line and "onnxruntime: intra-op 1" in line


@pytest.mark.parametrize("bad", [0, -2])
def test_fewer_than_one_thread_is_refused(bad: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        apply_thread_policy(bad)


def test_torch_imported_after_the_policy_starts_with_its_count() -> None:
    # A fresh interpreter: in this one torch is imported already.
    script = (
        "from inference.threads import apply_thread_policy\n"
        "print(apply_thread_policy(1))\n"
        "import torch\n"
        "print(torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    )
    policy, count = result.stdout.strip().splitlines()
    assert "torch: intra-op 1 once imported" in policy
    assert count == "1"
