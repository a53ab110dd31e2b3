"""One CPU thread policy for the model frameworks of the process: torch, TensorFlow and onnxruntime.

Each framework sizes its thread pools from the core count on its own, and Lumi runs several models at
the same time (NudeNet beside open_nsfw, faces, emotions and objects for comments), each on its own
worker thread. Left alone they ask for several times the cores there are, and on a small machine that
is much slower than fewer threads: on 2 cores with the other one busy, torch with its default 2
intra-op threads took 7-10x longer per small op than with 1, its workers waiting at barriers for a core.

`apply_thread_policy` runs once at start, before any model loads (a torch worker thread keeps the
thread count it had when it first ran an op). torch and TensorFlow are not imported for it: they cost
seconds and hundreds of MB each, and a process may never need them. A framework already imported is
set through its API; one imported later reads the same numbers from the environment variables it
honours when it starts (OMP_NUM_THREADS for torch's intra-op pool; TF_NUM_INTRAOP_THREADS and
TF_NUM_INTEROP_THREADS). torch has no such variable for its inter-op pool, which only TorchScript's
`fork` uses. onnxruntime sessions take the number as their intra-op thread count, passed to
`runners.onnx_base.OnnxRunner` by whoever registers the models.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Final

__all__ = ["apply_thread_policy", "default_threads", "usable_cores"]

log = logging.getLogger(__name__)

_TORCH_VARIABLES: Final = ("OMP_NUM_THREADS",)
_TENSORFLOW_VARIABLES: Final = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def usable_cores() -> int:
    # A container may see more cores than its CPU affinity lets it use.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 2


def default_threads() -> int:
    """Half the usable cores, at least one.

    Two models usually run at once (the moderation pair, or faces beside emotions), and the event loop,
    image decoding and the database need a core too: half each keeps the busy moments at about the
    core count instead of several times it.
    """
    return max(1, usable_cores() // 2)


def apply_thread_policy(threads: int) -> str:
    """Give every framework's CPU pools ``threads`` threads; returns the line it logs."""
    if threads < 1:
        raise ValueError(f"inference threads must be at least 1, not {threads}")
    for name in (*_TORCH_VARIABLES, *_TENSORFLOW_VARIABLES):
        os.environ[name] = str(threads)
    summary = (
        f"inference threads: {threads} per pool (torch: {_set_torch(threads)}; "
        f"TensorFlow: {_set_tensorflow(threads)}; onnxruntime: intra-op {threads})"
    )
    log.info("%s", summary)
    return summary


def _set_torch(threads: int) -> str:
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return f"intra-op {threads} once imported"
    torch.set_num_threads(threads)
    interop = torch.get_num_interop_threads()
    if interop != threads:
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            # Its pool started already (or was sized once before): torch allows no second setting.
            return f"intra-op {threads}, inter-op stays {interop} (already started)"
    return f"intra-op {threads}, inter-op {threads}"


def _set_tensorflow(threads: int) -> str:
    tf: Any = sys.modules.get("tensorflow")
    if tf is None:
        return f"intra-op and inter-op {threads} once imported"
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        # TensorFlow fixes its pools when it first runs something.
        return "pools kept (already started)"
    return f"intra-op {threads}, inter-op {threads}"
