"""Lumi's own comment model (``inference.commenter.LocalCommenter``) as a registry runner.

Items are label tuples in Korean (the model's vocabulary), results one comment each; a batch is decoded
together. torch and transformers are imported in ``load`` (on the model's thread), not at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from inference.registry import BatchConfig, ModelKey, ModelRegistry
from inference.runners.base import ModelUnavailable

if TYPE_CHECKING:
    from inference.commenter import LocalCommenter

__all__ = ["COMMENTER", "CommenterRunner", "register_commenter"]

COMMENTER: Final = ModelKey[tuple[str, ...], str]("commenter")
_WEIGHTS_FILE: Final = "model.safetensors"


class CommenterRunner:
    name = COMMENTER.name

    def __init__(self, device: str = "cpu", *, model_dir: str | Path | None = None) -> None:
        self._requested_device = device
        self._model_dir = Path(model_dir) if model_dir is not None else None
        self._commenter: LocalCommenter | None = None

    @property
    def device(self) -> str:
        return self._commenter.device.type if self._commenter is not None else self._requested_device

    def load(self) -> None:
        try:
            from inference.commenter import DEFAULT_MODEL_DIR, LocalCommenter
        except ImportError as exc:
            raise ModelUnavailable(
                self.name, f"torch/transformers are not installed ({exc}); install Lumi's `ml` extra"
            ) from exc
        model_dir = self._model_dir or DEFAULT_MODEL_DIR
        if not (model_dir / _WEIGHTS_FILE).is_file():
            which = "the committed default model" if self._model_dir is None else "COMMENT_MODEL_DIR"
            raise ModelUnavailable(
                self.name,
                f"no trained comment model in {str(model_dir)!r} ({which}: {_WEIGHTS_FILE} missing); "
                "train one with `lumi train commenter --data PAIRS.jsonl --out DIR` "
                "and set COMMENT_MODEL_DIR=DIR",
            )
        commenter = LocalCommenter(model_dir, device=self._requested_device)
        try:
            commenter.load()
        except Exception as exc:
            raise ModelUnavailable(
                self.name, f"the comment model in {str(model_dir)!r} did not load: {exc}"
            ) from exc
        self._commenter = commenter

    def warmup_inputs(self) -> list[object]:
        return [("기쁨",)]

    def predict_batch(self, items: Sequence[tuple[str, ...]]) -> list[str]:
        if self._commenter is None:
            raise RuntimeError("CommenterRunner.load() must run before predict_batch()")
        return self._commenter.generate([list(labels) for labels in items])

    def close(self) -> None:
        if self._commenter is not None:
            self._commenter.close()
        self._commenter = None


def register_commenter(
    registry: ModelRegistry, *, model_dir: str | Path | None = None, batch: BatchConfig | None = None
) -> None:
    """Register the comment model under ``COMMENTER`` (loaded on first use), once per registry."""
    if registry.is_registered(COMMENTER):
        return

    def factory(device: str) -> CommenterRunner:
        return CommenterRunner(device, model_dir=model_dir)

    registry.register(COMMENTER, factory, batch=batch or BatchConfig(max_batch_size=32, max_wait_ms=10.0))
