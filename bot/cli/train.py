"""`lumi train commenter`: train Lumi's comment model from scratch on label→comment pairs (CPU is enough).

    lumi train commenter --data ../shared/data/sns_comments_ko.jsonl --out models/commenter

The output directory is a complete model (weights, tokenizer, decoding defaults, the dev split it held
out and a model card); point COMMENT_MODEL_DIR at it to use it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from bot.cli import train_classifier
from bot.cli.common import settings_and_logging
from bot.errors import UserFacingError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("train", help="train Lumi's own models")
    models = parser.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    commenter = models.add_parser(
        "commenter",
        help="train the comment model from {labels, comment} pairs",
        description="Train the comment model (a small T5, tokenizer included) from scratch on a JSONL of "
        '{"labels": [...], "comment": "..."} lines, such as `lumi data generate` writes.',
    )
    commenter.add_argument("--data", type=Path, required=True, metavar="PAIRS.jsonl")
    commenter.add_argument("--out", type=Path, required=True, metavar="DIR", help="model directory to write")
    commenter.add_argument("--epochs", type=int, help="passes over the training pairs")
    commenter.add_argument("--batch-size", type=int)
    commenter.add_argument("--lr", type=float, help="peak learning rate")
    commenter.add_argument("--vocab-size", type=int)
    commenter.add_argument("--d-model", type=int, help="model width (default 256)")
    commenter.add_argument("--d-ff", type=int, help="feed-forward width (default 1024)")
    commenter.add_argument("--layers", type=int, help="encoder and decoder layers each (default 3)")
    commenter.add_argument("--heads", type=int, help="attention heads (default 4)")
    commenter.add_argument("--dropout", type=float, help="dropout rate (default 0.1)")
    commenter.add_argument("--label-smoothing", type=float, help="label smoothing of the loss (default 0)")
    commenter.add_argument("--warmup-steps", type=int, help="learning-rate warm-up steps (default 300)")
    commenter.add_argument(
        "--average-last", type=int, help="epoch ends whose weights are averaged into the model (default 5)"
    )
    commenter.add_argument(
        "--eval-every", type=int, help="score 200 dev pairs every this many epochs, 0 = never (default 10)"
    )
    commenter.add_argument("--max-steps", type=int, help="stop after this many steps (quick runs)")
    commenter.add_argument("--time-budget-min", type=float, help="stop training after this many minutes")
    commenter.add_argument(
        "--threads", type=int, help="CPU threads for torch (default 1; see docs/comments.md)"
    )
    commenter.add_argument("--seed", type=int)
    commenter.add_argument(
        "--no-slots",
        action="store_true",
        help="train on the comments as written instead of with object slots (see docs/comments.md)",
    )
    commenter.add_argument(
        "--no-final-eval", action="store_true", help="skip scoring the dev split at the end"
    )
    commenter.set_defaults(func=_train_commenter)
    # `lumi train classifier` and `lumi train evaluate` (moderation image classifiers) live in their module.
    train_classifier.register(models)


def _train_commenter(args: argparse.Namespace) -> int:
    settings_and_logging()
    if not args.data.is_file():
        raise UserFacingError(f"--data {args.data}: no such file")
    try:
        from inference.commenter import ModelShape, TrainConfig, train_commenter
    except ImportError as error:
        raise UserFacingError(f"training needs torch and transformers (Lumi's `ml` extra): {error}") from None
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.lr,
        "vocab_size": args.vocab_size,
        "label_smoothing": args.label_smoothing,
        "warmup_steps": args.warmup_steps,
        "average_last": args.average_last,
        "eval_every_epochs": args.eval_every,
        "max_steps": args.max_steps,
        "time_budget_s": args.time_budget_min * 60.0 if args.time_budget_min is not None else None,
        "threads": args.threads,
        "seed": args.seed,
    }
    shape_overrides = {
        "d_model": args.d_model,
        "d_ff": args.d_ff,
        "num_layers": args.layers,
        "num_decoder_layers": args.layers,
        "num_heads": args.heads,
        "dropout": args.dropout,
    }
    shape = dataclasses.replace(
        ModelShape(), **{name: value for name, value in shape_overrides.items() if value is not None}
    )
    if args.d_model is not None or args.heads is not None:
        # Attention width (heads x d_kv) follows the model width, as in the default shape.
        shape = dataclasses.replace(shape, d_kv=max(1, shape.d_model // shape.num_heads))
    config = dataclasses.replace(
        TrainConfig(data_path=args.data, out_dir=args.out),
        shape=shape,
        final_eval=not args.no_final_eval,
        slots=not args.no_slots,
        **{name: value for name, value in overrides.items() if value is not None},
    )
    try:
        report = train_commenter(config, progress=lambda message: print(message, flush=True))
    except ValueError as error:
        # Bad data files are reported by the loader with the file name and line number.
        raise UserFacingError(str(error)) from None
    print(
        f"wrote {report.out_dir}: {report.parameters / 1e6:.1f}M parameters, "
        f"{report.weights_bytes / 1e6:.1f} MB, {report.steps} steps ({report.epochs:.1f} epochs) "
        f"in {report.seconds / 60:.1f} min"
    )
    if report.dev_default is not None:
        bleu = report.dev_default.bleu
        print(
            f"dev split ({report.dev_pairs} pairs): BLEU-1 {bleu.get('bleu1', 0.0):.4f}, "
            f"BLEU-4 {bleu.get('bleu4', 0.0):.4f}, comments naming an object "
            f"{report.dev_default.any_object_rate:.0%}"
        )
    print(f"use it with COMMENT_MODEL_DIR={report.out_dir}")
    return 0
