"""Lumi's own comment model: labels (emotions and object names) in, a short Korean SNS comment out.

Public API: `LocalCommenter`, `DEFAULT_MODEL_DIR`, `train_commenter`, `TrainConfig`, `TrainReport`,
`ModelShape`, `DecodeSettings`, `CommenterInputError`, `normalize_labels`, and the model's runner for
the registry (`COMMENTER`, `CommenterRunner`, `register_commenter`). The names are resolved on first use
so that light modules (`data`, `bleu`, `selection`) can be imported without loading torch and
transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inference.commenter.data import CommenterInputError, normalize_labels
    from inference.commenter.decoding import DecodeSettings
    from inference.commenter.generate import DEFAULT_MODEL_DIR, LocalCommenter
    from inference.commenter.model import ModelShape
    from inference.commenter.runner import COMMENTER, CommenterRunner, register_commenter
    from inference.commenter.train import TrainConfig, TrainReport, train_commenter

_EXPORTS = {
    "COMMENTER": "inference.commenter.runner",
    "CommenterRunner": "inference.commenter.runner",
    "register_commenter": "inference.commenter.runner",
    "normalize_labels": "inference.commenter.data",
    "ModelShape": "inference.commenter.model",
    "CommenterInputError": "inference.commenter.data",
    "DecodeSettings": "inference.commenter.decoding",
    "DEFAULT_MODEL_DIR": "inference.commenter.generate",
    "LocalCommenter": "inference.commenter.generate",
    "TrainConfig": "inference.commenter.train",
    "TrainReport": "inference.commenter.train",
    "train_commenter": "inference.commenter.train",
}

__all__ = [
    "COMMENTER",
    "DEFAULT_MODEL_DIR",
    "CommenterInputError",
    "CommenterRunner",
    "DecodeSettings",
    "LocalCommenter",
    "ModelShape",
    "TrainConfig",
    "TrainReport",
    "normalize_labels",
    "register_commenter",
    "train_commenter",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inference.commenter' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
