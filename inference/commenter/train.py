"""Training Lumi's comment model from scratch on label→comment pairs (CPU is enough).

The command line for it is `lumi train commenter --data PAIRS.jsonl --out DIR`, which builds a
`TrainConfig` from its options and calls `train_commenter`; this module has no entry point of its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import T5ForConditionalGeneration

from inference.commenter.batching import TokenizedPair, encode_pairs
from inference.commenter.calibration import DEFAULT_CALIBRATION_PAIRS, calibrate
from inference.commenter.data import CommentPair, file_sha256, load_pairs, split_pairs
from inference.commenter.decoding import DecodeSettings
from inference.commenter.evaluation import CommentScores
from inference.commenter.generate import METADATA_FILE
from inference.commenter.model import (
    WEIGHTS_FILE,
    ModelShape,
    build_config,
    build_model,
    parameter_count,
    save_model,
)
from inference.commenter.model_card import SPLIT_FILE, write_card
from inference.commenter.slots import SLOT_TOKENS, delexicalise, english_names
from inference.commenter.tokenizer import CommentTokenizer
from inference.commenter.train_loop import bf16_is_faster, evaluate_dir, run_epochs


@dataclass(frozen=True)
class TrainConfig:
    data_path: Path
    out_dir: Path
    vocab_size: int = 2000
    shape: ModelShape = field(default_factory=ModelShape)
    epochs: int = 30
    batch_size: int = 32
    # Measured over 3-epoch probes: 1e-3 beat 5e-4, 2e-3 and 5e-3 on dev loss.
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 300
    # Fraction of the peak learning rate left at the end of the cosine decay.
    final_lr_fraction: float = 0.05
    # Smoothing slowed learning and made sampled comments shorter; dropout alone regularises enough.
    label_smoothing: float = 0.0
    dev_fraction: float = 0.1
    seed: int = 13
    # Limits for quick runs (tests, smoke checks); None means no limit.
    max_steps: int | None = None
    max_train_pairs: int | None = None
    time_budget_s: float | None = None
    eval_every_epochs: int = 10
    eval_pairs: int = 200
    # End-of-epoch weights of this many final epochs are averaged into the saved model.
    average_last: int = 5
    # One thread: on a 2-core machine shared with other work, two threads measured 7x slower per step
    # (every small op ends in a barrier that waits for a descheduled thread).
    threads: int | None = 1
    # "auto" uses bfloat16 autocast only where the CPU runs it faster than float32 (many CPUs emulate it).
    autocast: str = "auto"
    # Delexicalised training: the given objects' names in comments become slots (`slots`), filled in
    # after decoding; False trains on the comments as written.
    slots: bool = True
    max_source_tokens: int = 48
    max_target_tokens: int = 64
    final_eval: bool = True
    decode: DecodeSettings = field(default_factory=DecodeSettings)


@dataclass
class TrainReport:
    out_dir: Path
    parameters: int
    train_pairs: int
    dev_pairs: int
    epochs: float
    steps: int
    seconds: float
    autocast: str
    final_loss: float
    weights_bytes: int
    dev_greedy: CommentScores | None = None
    dev_default: CommentScores | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def _write_metadata(out_dir: Path, config: TrainConfig, tokenizer: CommentTokenizer) -> None:
    metadata: dict[str, Any] = {
        "format": 1,
        "decode": dataclasses.asdict(config.decode),
        "vocab_size": tokenizer.vocab_size,
        "max_source_tokens": config.max_source_tokens,
        "max_target_tokens": config.max_target_tokens,
        "slots": config.slots,
    }
    (out_dir / METADATA_FILE).write_text(
        json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def train_commenter(config: TrainConfig, progress: Callable[[str], None] | None = None) -> TrainReport:
    """Train tokenizer and model on `config.data_path`, write a complete model dir to `config.out_dir`.

    `config.threads` caps torch's CPU threads for the duration of the call (the previous setting is
    restored afterwards, so a long-lived process keeps its own choice)."""
    previous_threads = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, progress or (lambda message: None))
    finally:
        torch.set_num_threads(previous_threads)


def _train(config: TrainConfig, say: Callable[[str], None]) -> TrainReport:
    started = time.perf_counter()
    random.seed(config.seed)
    rng = random.Random(config.seed)

    split = split_pairs(load_pairs(config.data_path), dev_fraction=config.dev_fraction)
    train_pairs = split.train[: config.max_train_pairs] if config.max_train_pairs else split.train
    say(f"{len(train_pairs)} train pairs, {len(split.dev)} dev pairs")
    if not train_pairs:
        raise ValueError("no training pairs left after the split")

    # What the model learns from: with slots, the delexicalised pairs; scoring uses the pairs as written.
    learnt_train, learnt_dev = train_pairs, split.dev
    if config.slots:
        english = english_names()
        learnt_train = [delexicalise(pair, english) for pair in train_pairs]
        learnt_dev = [delexicalise(pair, english) for pair in split.dev]
    tokenizer = CommentTokenizer.train(
        [pair.comment for pair in learnt_train] + [label for pair in learnt_train for label in pair.labels],
        vocab_size=config.vocab_size,
        slot_tokens=SLOT_TOKENS if config.slots else (),
    )

    def encode(pairs: Sequence[CommentPair]) -> list[TokenizedPair]:
        return encode_pairs(
            tokenizer,
            pairs,
            max_source_tokens=config.max_source_tokens,
            max_target_tokens=config.max_target_tokens,
        )

    examples = encode(learnt_train)
    model_config = build_config(
        config.shape, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id, eos_id=tokenizer.eos_id
    )
    model: T5ForConditionalGeneration = build_model(model_config, seed=config.seed)
    parameters = parameter_count(model)
    use_bf16 = config.autocast == "bf16" or (config.autocast == "auto" and bf16_is_faster())
    say(f"model: {parameters:,} parameters, vocabulary {tokenizer.vocab_size}, bf16 autocast {use_bf16}")

    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    # The fused kernel updates all tensors in one pass; per-tensor Adam was an eighth of a step's time.
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, fused=True
    )

    out_dir = config.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save(out_dir)
    _write_metadata(out_dir, config, tokenizer)
    eval_pairs = split.dev[: config.eval_pairs]
    dev_examples = encode(learnt_dev)
    loop = run_epochs(
        model,
        optimizer,
        config,
        examples,
        dev_examples=dev_examples,
        eval_pairs=eval_pairs,
        pad_id=tokenizer.pad_id,
        total_steps=total_steps,
        use_bf16=use_bf16,
        rng=rng,
        started=started,
        say=say,
    )
    torch.nn.Module.train(model, False)
    save_model(model, out_dir)
    train_seconds = time.perf_counter() - started
    (out_dir / SPLIT_FILE).write_text(
        json.dumps(
            {
                "data_sha256": file_sha256(config.data_path),
                "dev_fraction": config.dev_fraction,
                "dev_ids": sorted(pair.pair_id for pair in split.dev),
            },
            indent=0,
        )
        + "\n",
        encoding="utf-8",
    )
    calibration_pairs = train_pairs[:DEFAULT_CALIBRATION_PAIRS]
    say(f"measuring int8 activation ranges on {len(calibration_pairs)} training label lists")
    source = f"{len(calibration_pairs)} training-split label lists of {config.data_path.name}"
    calibrate(out_dir, [pair.labels for pair in calibration_pairs], source=source)
    report = TrainReport(
        out_dir=out_dir,
        parameters=parameters,
        train_pairs=len(train_pairs),
        dev_pairs=len(split.dev),
        epochs=loop.steps / steps_per_epoch,
        steps=loop.steps,
        seconds=train_seconds,
        autocast="bf16" if use_bf16 else "off (float32)",
        final_loss=loop.final_loss,
        weights_bytes=(out_dir / WEIGHTS_FILE).stat().st_size,
        history=loop.history,
    )
    if config.final_eval and split.dev:
        say(f"scoring {len(split.dev)} dev pairs")
        report.dev_greedy = evaluate_dir(out_dir, split.dev, num_candidates=1)
        report.dev_default = evaluate_dir(out_dir, split.dev, num_candidates=None)
        greedy_bleu4, default_bleu4 = report.dev_greedy.bleu["bleu4"], report.dev_default.bleu["bleu4"]
        say(f"dev BLEU-4 greedy {greedy_bleu4:.4f}, default {default_bleu4:.4f}")
    write_card(out_dir, config, report, file_sha256(config.data_path))
    return report
