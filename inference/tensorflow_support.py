"""Importing Keras and TensorFlow safely, and the placement choices every Keras user here shares.

TensorFlow loaded before torch's triton crashes the process (a segmentation fault) the first time
something imports triton afterwards: torch's compiler does, and transformers imports it, so a comment
model loaded after an emotion model would take the bot down. `import_torch_side` loads torch and triton
first: every TensorFlow import goes through it, and the bot runs it at start-up, before model threads
exist, so no thread ever loads triton for the first time beside one that loads TensorFlow.
TensorFlow's C++ start-up chatter is hidden unless the user asked for it (TF_CPP_MIN_LOG_LEVEL is only
set when it is unset). On a GPU, TensorFlow by default reserves nearly all of its memory the first time
it runs anything, which would starve the torch and onnxruntime models sharing the card; memory growth
makes it take only what it uses.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

__all__ = ["gpu_visible", "hide_gpus", "import_keras", "import_torch_side"]


def import_torch_side() -> None:
    """Import torch and triton, where installed, so that TensorFlow can safely be imported next."""
    for name in ("torch", "triton"):
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


def import_keras() -> tuple[Any, Any]:
    """``(keras, tensorflow)``; raises ImportError with an install hint when TensorFlow is missing."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import_torch_side()
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
