"""TensorFlow shares the process with torch, triton and transformers without crashing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("tensorflow")
pytest.importorskip("transformers")


def test_transformers_loads_after_keras_in_the_same_process() -> None:
    # The order of a bot whose first photo loads the emotion model (Keras) and then the comment model
    # (transformers, which imports torch's compiler and so triton). A fresh process, because import
    # order is what matters; a crash shows as a negative return code (the signal).
    script = (
        "from inference.tensorflow_support import import_keras\n"
        "import_keras()\n"
        "from transformers import T5ForConditionalGeneration\n"
        "import torch._dynamo\n"
        "print('loaded', T5ForConditionalGeneration.__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded T5ForConditionalGeneration" in result.stdout
