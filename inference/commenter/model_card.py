"""The model card that training writes beside a comment model (`MODEL_CARD.md`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from inference.commenter.evaluation import CommentScores
from inference.commenter.int8 import RANGES_FILE
from inference.commenter.model import WEIGHTS_FILE

if TYPE_CHECKING:
    from inference.commenter.train import TrainConfig, TrainReport

CARD_FILE = "MODEL_CARD.md"
SPLIT_FILE = "split.json"


def invocation() -> str:
    """How this process was started, as a user would type it."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    arguments = " ".join(sys.argv[1:])
    return f"{program} {arguments}".strip() or "train_commenter(config)"


def write_card(out_dir: Path, config: TrainConfig, report: TrainReport, data_sha: str) -> None:
    def scores(label: str, value: CommentScores | None) -> str:
        if value is None:
            return f"- {label}: not measured\n"
        bleu = " / ".join(f"{value.bleu[name]:.4f}" for name in ("bleu1", "bleu2", "bleu3", "bleu4"))
        return (
            f"- {label}: char BLEU-1/2/3/4 {bleu}; "
            f"names ≥1 object in {value.any_object_rate:.1%} of comments; "
            f"object recall {value.object_recall:.1%}; length ratio {value.length_ratio:.3f} "
            f"({value.count} dev pairs)\n"
        )

    card = (
        "# Lumi commenter model card\n\n"
        "A T5-architecture encoder-decoder trained from scratch (no pretrained weights) to turn a list of "
        "Korean labels (emotions and object names) into a short SNS-style comment with emojis.\n\n"
        "## How it was produced\n"
        f"- Command: `{invocation()}`\n"
        f"- Data: `{config.data_path.name}` (sha256 `{data_sha[:16]}…`), {report.train_pairs} train pairs, "
        f"{report.dev_pairs} dev pairs; the dev split is by a hash of each pair's content "
        f"(fraction {config.dev_fraction}); the dev pair ids are in `{SPLIT_FILE}`.\n"
        f"- Tokenizer: BPE ({config.vocab_size} tokens) trained by `tokenizers` on the train split only.\n"
        f"- Model: {report.parameters:,} parameters; weights stored as float16 in `{WEIGHTS_FILE}` "
        f"({report.weights_bytes / 1e6:.1f} MB).\n"
        f"- Training: {report.epochs:.1f} epochs, {report.steps} steps of {config.batch_size} pairs, "
        f"AdamW lr {config.learning_rate} with {config.warmup_steps} warm-up steps and cosine decay, "
        f"label smoothing {config.label_smoothing}; saved weights average the last {config.average_last} "
        f"epoch ends; autocast: {report.autocast}; {report.seconds / 60:.1f} minutes on "
        f"{config.threads or 'all'} CPU thread(s).\n"
        f"- Int8 decoding: activation ranges measured on training label lists in `{RANGES_FILE}`.\n\n"
        "## Dev scores (CPU decoding in int8, the default)\n"
        + scores("greedy decoding", report.dev_greedy)
        + scores(
            f"default decoding ({config.decode.num_candidates} candidates, MBR + object bonus)",
            report.dev_default,
        )
        + "\n## Full configuration\n```json\n"
        + json.dumps(dataclasses.asdict(config), indent=2, ensure_ascii=False, default=str)
        + "\n```\n"
    )
    (out_dir / CARD_FILE).write_text(card, encoding="utf-8")
