"""Classifier networks: a small CNN trained from scratch, and ImageNet backbones for transfer learning.

Every model takes float32 RGB pixels in [0, 255] and does its own normalisation, so the runner and the
data pipeline never need to know which backbone they feed. The outputs are softmax probabilities over
the classes, computed in float32 even under mixed precision.

Transfer learning runs in two phases: first only the new head trains on top of a frozen backbone, then the
top layers of the backbone are unfrozen and trained with a much smaller learning rate. Batch
normalisation layers stay frozen and in inference mode throughout, as their ImageNet statistics are
better than what a few small batches of guild images would give.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "BuiltClassifier",
    "WeightsUnavailable",
    "build_classifier",
    "compile_classifier",
    "dtype_policy",
    "float32_copy",
    "freeze_backbone",
    "unfreeze_top",
]

Weights = Literal["imagenet", "none"]

# VGG16's ImageNet weights expect BGR pixels with these per-channel means subtracted (Caffe style).
_VGG_MEAN_BGR: Final = np.array([103.939, 116.779, 123.68], dtype=np.float32)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    default_size: int
    learning_rate: float
    fine_tune_learning_rate: float
    preprocessing: str


BACKBONES: Final[dict[str, BackboneSpec]] = {
    "small": BackboneSpec(
        "small", 128, 1e-3, 1e-3, "Rescaling(1/255) inside the model; a Sequential CNN trained from scratch"
    ),
    "mobilenetv3": BackboneSpec(
        "mobilenetv3", 224, 1e-3, 1e-5, "MobileNetV3Small's own Rescaling to [-1, 1] inside the model"
    ),
    "efficientnet": BackboneSpec(
        "efficientnet", 224, 1e-3, 1e-5, "EfficientNetB0's own Rescaling and Normalization inside the model"
    ),
    "vgg16": BackboneSpec(
        "vgg16", 224, 1e-3, 1e-5, "RGB to BGR and ImageNet mean subtraction (a fixed 1x1 convolution)"
    ),
}
# Deep backbones trained from random weights diverge at the head's learning rate.
_SCRATCH_LEARNING_RATE: Final = 1e-4


class WeightsUnavailable(RuntimeError):
    """ImageNet weights could not be obtained; the message says how to train without them."""


@dataclass
class BuiltClassifier:
    model: Any
    spec: BackboneSpec
    weights: Weights
    n_classes: int
    input_size: tuple[int, int]
    dropout: float
    # The ImageNet part of a transfer model (None for the small CNN).
    backbone: Any = None

    @property
    def pretrained(self) -> bool:
        return self.weights == "imagenet" and self.backbone is not None

    @property
    def first_learning_rate(self) -> float:
        if self.backbone is not None and not self.pretrained:
            return _SCRATCH_LEARNING_RATE
        return self.spec.learning_rate


@contextlib.contextmanager
def dtype_policy(keras: Any, *, mixed: bool) -> Iterator[None]:
    """Build layers under ``mixed_float16`` (GPU) or ``float32``; the global policy is restored after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_classifier(
    keras: Any,
    backbone: str,
    *,
    n_classes: int,
    input_size: tuple[int, int],
    weights: Weights = "none",
    dropout: float = 0.2,
) -> BuiltClassifier:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    if n_classes < 2:
        raise ValueError("a classifier needs at least two classes")
    spec = BACKBONES[backbone]
    if backbone == "small":
        if weights != "none":
            raise ValueError("the small CNN has no pretrained weights; use --weights none")
        model = _small_cnn(keras, n_classes=n_classes, input_size=input_size, dropout=dropout)
        return BuiltClassifier(model, spec, weights, n_classes, input_size, dropout)
    shape = (*input_size, 3)
    inputs = keras.Input(shape=shape, name="pixels")
    base = _backbone(keras, backbone, shape=shape, weights=weights)
    features = inputs
    if backbone == "vgg16":
        preprocess = keras.layers.Conv2D(3, 1, trainable=False, dtype="float32", name="vgg16_preprocess")
        features = preprocess(features)
        # Output channel c is input channel 2 - c (RGB -> BGR), minus that channel's ImageNet mean.
        kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
        for channel in range(3):
            kernel[0, 0, 2 - channel, channel] = 1.0
        preprocess.set_weights([kernel, -_VGG_MEAN_BGR])
    # With ImageNet weights the backbone always runs in inference mode, so its batch normalisation keeps
    # the ImageNet statistics even once its top layers are fine-tuned. From scratch it must learn them.
    features = base(features, training=False) if weights == "imagenet" else base(features)
    features = keras.layers.Dropout(dropout, name="dropout")(features)
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32", name="classes")(features)
    model = keras.Model(inputs, outputs, name=f"{backbone}_classifier")
    return BuiltClassifier(model, spec, weights, n_classes, input_size, dropout, backbone=base)


def _small_cnn(keras: Any, *, n_classes: int, input_size: tuple[int, int], dropout: float) -> Any:
    layers = keras.layers
    # No batch normalisation: with the few small batches of a guild's data set its moving statistics
    # lag far behind the weights, and validation accuracy collapses while training accuracy looks fine.
    # Global max pooling asks "is the pattern anywhere in the picture", which is the moderation question
    # (a weapon in a corner counts), and it learns from few images much faster than averaging.
    return keras.Sequential(
        [
            keras.Input(shape=(*input_size, 3), name="pixels"),
            layers.Rescaling(1.0 / 255.0, name="rescale"),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(128, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.GlobalMaxPooling2D(),
            layers.Dropout(dropout),
            layers.Dense(64, activation="relu"),
            layers.Dense(n_classes, activation="softmax", dtype="float32", name="classes"),
        ],
        name="small_cnn",
    )


def _backbone(keras: Any, backbone: str, *, shape: tuple[int, int, int], weights: Weights) -> Any:
    applications = keras.applications
    keras_weights = "imagenet" if weights == "imagenet" else None
    try:
        if backbone == "mobilenetv3":
            return applications.MobileNetV3Small(
                input_shape=shape,
                include_top=False,
                weights=keras_weights,
                pooling="avg",
                include_preprocessing=True,
            )
        if backbone == "efficientnet":
            return applications.EfficientNetB0(
                input_shape=shape, include_top=False, weights=keras_weights, pooling="avg"
            )
        return applications.VGG16(input_shape=shape, include_top=False, weights=keras_weights, pooling="avg")
    except Exception as error:
        if weights != "imagenet":
            raise
        raise WeightsUnavailable(
            f"could not get the ImageNet weights for {backbone} ({error}). Keras downloads them on first "
            "use and keeps them in ~/.keras/models; on a machine without internet access, train with "
            "--weights none, or copy that file there from a machine that has it."
        ) from error


def compile_classifier(keras: Any, model: Any, *, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


def freeze_backbone(built: BuiltClassifier) -> None:
    if built.backbone is not None:
        built.backbone.trainable = False


def unfreeze_top(keras: Any, built: BuiltClassifier, *, layers: int) -> int:
    """Make the top ``layers`` weighted layers of the backbone trainable; returns how many now are."""
    if built.backbone is None:
        return 0
    base = built.backbone
    base.trainable = True
    weighted = [layer for layer in base.layers if layer.weights]
    cutoff = max(0, len(weighted) - layers)
    unfrozen = 0
    for position, layer in enumerate(weighted):
        trainable = position >= cutoff and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        unfrozen += int(trainable)
    return unfrozen


def float32_copy(keras: Any, model: Any) -> Any:
    """The same network with float32 layers and the trained weights, for saving.

    A model trained under mixed precision keeps float16 layers; served on a CPU they would be slow and
    less precise. Its variables are float32 already, so they copy over one to one. The copy is rebuilt
    from the model's own configuration, so nothing (ImageNet weights included) is fetched again.
    """
    config = _with_float32_layers(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def _with_float32_layers(config: Any) -> Any:
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and isinstance(config.get("config"), dict):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _with_float32_layers(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_with_float32_layers(value) for value in config]
    if config == "mixed_float16":
        return "float32"
    return config
