"""The Keras side of a training run: phases sharing one history and one best checkpoint, and progress.

Early stopping and checkpointing both watch the validation loss. The checkpoint of a later phase only
replaces the earlier one when it beats it, so the file always holds the best model of the whole run.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, TextIO

from inference.classifier.networks import BuiltClassifier, compile_classifier

__all__ = ["PhasedFit", "progress_callback"]


class PhasedFit:
    """Runs the training phases, keeping one history, one best checkpoint and the best epoch across them."""

    def __init__(
        self,
        keras: Any,
        built: BuiltClassifier,
        train_data: Any,
        validation_data: Any,
        class_weight: dict[int, float],
        checkpoint: Path,
        steps: int,
        patience: int,
        stream: TextIO,
    ) -> None:
        self.keras = keras
        self.built = built
        self.train_data = train_data
        self.validation_data = validation_data
        self.class_weight = class_weight
        self.checkpoint = checkpoint
        self.steps = steps
        self.patience = patience
        self.stream = stream
        self.history: dict[str, list[float]] = {}
        self.best_loss = math.inf
        self.best_epoch = 0

    def phase(self, title: str, *, epochs: int, learning_rate: float) -> None:
        keras = self.keras
        done = len(self.history.get("loss", []))
        compile_classifier(keras, self.built.model, learning_rate=learning_rate)
        _say(self.stream, f"training: {title}, up to {epochs} epoch(s), learning rate {learning_rate:g}")
        callbacks = [
            keras.callbacks.ModelCheckpoint(
                str(self.checkpoint),
                monitor="val_loss",
                save_best_only=True,
                initial_value_threshold=self.best_loss if math.isfinite(self.best_loss) else None,
            ),
            # Restoring the best weights at the end makes fine-tuning start from the best head, not the last.
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=self.patience, restore_best_weights=True
            ),
            progress_callback(keras, self.stream, steps=self.steps, last_epoch=done + epochs, fit=self),
        ]
        self.built.model.fit(
            self.train_data,
            validation_data=self.validation_data,
            shuffle=False,
            initial_epoch=done,
            epochs=done + epochs,
            class_weight=self.class_weight,
            callbacks=callbacks,
            verbose=0,
        )

    def record(self, epoch: int, logs: dict[str, Any]) -> bool:
        """Add one epoch's numbers; True when it is the best so far."""
        for key, value in logs.items():
            try:
                self.history.setdefault(key, []).append(float(value))
            except (TypeError, ValueError):
                continue
        loss = float(logs.get("val_loss", math.inf))
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, epoch
            return True
        return False


def progress_callback(keras: Any, stream: TextIO, *, steps: int, last_epoch: int, fit: PhasedFit) -> Any:
    """A Keras callback printing a line per epoch, and the step count as it goes.

    On a terminal the step line is redrawn in place; in a log file only a few step lines per epoch are
    written, so that long runs stay readable.
    """
    live = stream.isatty()
    every = max(1, steps // 4)

    class Progress(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()
            self.epoch = epoch + 1

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            step = batch + 1
            if not live and step % every and step != steps:
                return
            values = logs or {}
            line = (
                f"epoch {self.epoch}/{last_epoch}  step {step}/{steps}  "
                f"loss {float(values.get('loss', math.nan)):.4f}  "
                f"accuracy {float(values.get('accuracy', math.nan)):.3f}"
            )
            stream.write(f"\r{line}" if live else f"{line}\n")
            stream.flush()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            values = dict(logs or {})
            best = fit.record(epoch + 1, values)
            if live:
                stream.write("\r\033[K")
            stream.write(
                f"epoch {epoch + 1}/{last_epoch}  {time.perf_counter() - self.started:.1f} s  "
                + "  ".join(
                    f"{key} {float(values[key]):.4f}"
                    for key in ("loss", "accuracy", "val_loss", "val_accuracy")
                    if key in values
                )
                + ("  (best so far, saved)" if best else "")
                + "\n"
            )
            stream.flush()

    return Progress()


def _say(stream: TextIO, line: str) -> None:
    stream.write(line + "\n")
    stream.flush()
