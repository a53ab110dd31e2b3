"""Importing Keras and TensorFlow safely, and the placement choices every Keras user here shares.

TensorFlow imported before torch can crash inside triton when both are installed, so torch goes first.
TensorFlow's C++ start-up chatter is hidden unless the user asked for it (TF_CPP_MIN_LOG_LEVEL is only
set when it is unset). On a GPU, TensorFlow by default reserves nearly all of its memory the first time
it runs anything, which would starve the torch and onnxruntime models sharing the card; memory growth
makes it take only what it uses.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

__all__ = ["gpu_visible", "hide_gpus", "import_keras"]


def import_keras() -> tuple[Any, Any]:
    """``(keras, tensorflow)``; raises ImportError with an install hint when TensorFlow is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if importlib.util.find_spec("torch") is not None:
        import torch  # noqa: F401
    try:
        import keras
        import tensorflow as tf
    except ImportError as error:
        raise ImportError(
            f"TensorFlow/Keras is not installed ({error}); install `tensorflow>=2.16`"
        ) from error
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            # TensorFlow already set up its GPUs in this process; that setting stays.
            break
    return keras, tf


def gpu_visible(tf: Any) -> bool:
    return bool(tf.config.list_physical_devices("GPU"))


def hide_gpus(tf: Any) -> bool:
    """Keep this process's TensorFlow on the CPU. False when TensorFlow already set up its devices."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:
        return False
    return True
