"""`lumi train classifier` and `lumi train evaluate`: image classifiers for moderation (Keras on TensorFlow).

    lumi train classifier data/violence --out models/violence --backbone mobilenetv3 --epochs 10
    lumi train evaluate models/violence --data data/violence-test
    lumi models add-classifier models/violence --category violence

TensorFlow is imported only when one of these commands runs, never when the parser is built.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

from bot.cli.common import settings_and_logging
from bot.errors import UserFacingError

_BACKBONES = ("small", "mobilenetv3", "efficientnet", "vgg16")


def register(models: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``classifier`` and ``evaluate`` to the ``lumi train`` sub-commands."""
    classifier = models.add_parser(
        "classifier",
        help="train an image classifier for a moderation category (Keras)",
        description="Train an image classifier from a folder with one sub-folder per class, or a CSV of "
        "path,label rows. Writes model.keras, metadata.json (classes, positive class, recommended "
        "threshold, metrics) and PNG plots to --out.",
    )
    classifier.add_argument("data", type=Path, metavar="DATA", help="class folders, or a path,label CSV")
    classifier.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    classifier.add_argument("--backbone", choices=_BACKBONES, default="small", help="network (default small)")
    classifier.add_argument(
        "--weights",
        choices=("imagenet", "none"),
        help="start from ImageNet weights (downloaded by Keras; needs internet the first time) or from "
        "scratch; default imagenet for the pretrained backbones, none for small",
    )
    classifier.add_argument("--epochs", type=int, default=10, help="epochs of the first phase (default 10)")
    classifier.add_argument(
        "--fine-tune-epochs", type=int, help="epochs fine-tuning the backbone's top (default: as --epochs)"
    )
    classifier.add_argument(
        "--fine-tune-layers", type=int, default=20, help="backbone layers unfrozen for fine-tuning"
    )
    classifier.add_argument("--image-size", type=int, help="square input side (default 224, small 128)")
    classifier.add_argument("--batch-size", type=int, default=32)
    classifier.add_argument("--learning-rate", type=float, help="first-phase learning rate")
    classifier.add_argument("--validation-split", type=float, default=0.2, help="share held out (0.2)")
    classifier.add_argument("--min-per-class", type=int, default=10, help="refuse classes with fewer images")
    classifier.add_argument("--positive", metavar="CLASS", help="the class moderation flags")
    classifier.add_argument("--patience", type=int, default=4, help="early-stopping patience in epochs")
    classifier.add_argument("--no-augment", action="store_true", help="no random flips, turns, zoom...")
    classifier.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: INFERENCE_DEVICE")
    classifier.add_argument(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="float16 compute (default: on when training on a GPU)",
    )
    classifier.add_argument("--seed", type=int, default=1337)
    classifier.add_argument("--workers", type=int, default=4, help="threads checking the images")
    classifier.set_defaults(func=_train)

    evaluate = models.add_parser(
        "evaluate",
        help="precision, recall and F1 of a trained classifier on labelled images",
        description="Score a classifier (its folder or model.keras) on a folder of class folders or a "
        "path,label CSV, per class and for the positive class at the threshold.",
    )
    evaluate.add_argument("model", type=Path, metavar="MODEL", help="classifier folder or model.keras")
    evaluate.add_argument("--data", type=Path, required=True, metavar="DIR", help="labelled images")
    evaluate.add_argument("--threshold", type=float, help="default: the one recommended at training")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: INFERENCE_DEVICE")
    evaluate.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    evaluate.set_defaults(func=_evaluate)


def _train(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    from inference.classifier import DataError, TrainConfig, TrainingError, train_classifier

    weights: Literal["imagenet", "none"] = args.weights or (
        "none" if args.backbone == "small" else "imagenet"
    )
    try:
        config = TrainConfig(
            data=args.data,
            out_dir=args.out,
            backbone=args.backbone,
            weights=weights,
            image_size=args.image_size,
            epochs=args.epochs,
            fine_tune_epochs=args.fine_tune_epochs,
            fine_tune_layers=args.fine_tune_layers,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            validation_fraction=args.validation_split,
            min_per_class=args.min_per_class,
            positive_class=args.positive,
            patience=args.patience,
            augment=not args.no_augment,
            device=args.device or settings.inference_device,
            mixed_precision=args.mixed_precision,
            seed=args.seed,
            workers=args.workers,
        )
        result = train_classifier(config)
    except (DataError, TrainingError) as error:
        raise UserFacingError(str(error)) from None
    category = result.metadata["positive_class"]
    print(
        f"\nregister it for moderation with: lumi models add-classifier {result.out_dir} "
        f"--category {category if category.isidentifier() else 'CATEGORY'} [--guild SERVER_ID]"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    from inference.classifier import DataError, TrainingError, evaluate_classifier

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise UserFacingError("--threshold must be between 0 and 1")
    try:
        run = evaluate_classifier(
            args.model, args.data, threshold=args.threshold, device=args.device or settings.inference_device
        )
    except (DataError, TrainingError) as error:
        raise UserFacingError(str(error)) from None
    if args.json:
        document: dict[str, Any] = {
            "model": str(args.model),
            "data": run.report.to_dict(),
            "threshold": run.threshold,
            **run.evaluation.to_dict(),
        }
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    print("\n".join(run.report.lines()))
    print()
    print("\n".join(run.evaluation.lines()))
    return 0
