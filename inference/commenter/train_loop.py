"""The comment model's training epochs: learning-rate schedule, optional bfloat16 autocast, dev scoring
every few epochs and the averaging of the last epochs' weights into the model that is saved."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.nn.functional import cross_entropy
from transformers import T5ForConditionalGeneration

from inference.commenter.batching import IGNORE_INDEX, TokenizedPair, collate, mean_loss, shuffled_batches
from inference.commenter.data import CommentPair
from inference.commenter.evaluation import CommentScores, score_comments
from inference.commenter.generate import LocalCommenter
from inference.commenter.model import save_model

if TYPE_CHECKING:
    from inference.commenter.train import TrainConfig


@dataclass(frozen=True)
class LoopResult:
    steps: int
    # Mean training loss of the last epoch run.
    final_loss: float
    history: list[dict[str, float]]


def bf16_is_faster() -> bool:
    """Time a matrix product in both precisions; bfloat16 without hardware support is far slower."""
    timings: dict[torch.dtype, float] = {}
    for dtype in (torch.float32, torch.bfloat16):
        left = torch.randn(256, 256).to(dtype)
        right = torch.randn(256, 256).to(dtype)
        left @ right
        start = time.perf_counter()
        for _ in range(5):
            left @ right
        timings[dtype] = time.perf_counter() - start
    return timings[torch.bfloat16] < 0.8 * timings[torch.float32]


def learning_rate(step: int, total: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay down to `config.final_lr_fraction` of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total - config.warmup_steps))
    floor = config.final_lr_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def _average(snapshots: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.stack([snap[name] for snap in snapshots]).mean(dim=0) for name in snapshots[0]}


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def evaluate_dir(
    model_dir: Path, pairs: Sequence[CommentPair], *, num_candidates: int | None, threads_device: str = "cpu"
) -> CommentScores:
    commenter = LocalCommenter(model_dir, device=threads_device)
    commenter.load()
    hypotheses = commenter.generate([pair.labels for pair in pairs], num_candidates=num_candidates)
    return score_comments([pair.labels for pair in pairs], hypotheses, [pair.comment for pair in pairs])


def run_epochs(
    model: T5ForConditionalGeneration,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    examples: Sequence[TokenizedPair],
    *,
    dev_examples: Sequence[TokenizedPair],
    eval_pairs: Sequence[CommentPair],
    pad_id: int,
    total_steps: int,
    use_bf16: bool,
    rng: random.Random,
    started: float,
    say: Callable[[str], None],
) -> LoopResult:
    """Train until `total_steps` (or the time budget) is spent; the model ends with averaged weights.

    Every `config.eval_every_epochs` epochs the current weights are saved to `config.out_dir` and
    scored there on `eval_pairs`; `started` is the `time.perf_counter()` the time budget counts from."""
    out_dir = config.out_dir
    history: list[dict[str, float]] = []
    snapshots: list[dict[str, torch.Tensor]] = []
    average_from_epoch = config.epochs - config.average_last
    step = 0
    epoch = 0
    loss_sum, loss_count, last_loss = 0.0, 0, math.nan
    out_of_time = False
    while step < total_steps and not out_of_time:
        torch.nn.Module.train(model, True)
        for batch in shuffled_batches(examples, config.batch_size, rng):
            tensors = collate(batch, pad_id)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, config)
            autocast = torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
            with autocast:
                logits = model(
                    input_ids=tensors["input_ids"],
                    attention_mask=tensors["attention_mask"],
                    labels=tensors["labels"],
                ).logits
            loss = cross_entropy(
                logits.float().view(-1, logits.size(-1)),
                tensors["labels"].view(-1),
                ignore_index=IGNORE_INDEX,
                label_smoothing=config.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            loss_sum += loss.item()
            loss_count += 1
            if config.time_budget_s is not None and time.perf_counter() - started > config.time_budget_s:
                out_of_time = True
            if step >= total_steps or out_of_time:
                break
        epoch += 1
        last_loss = loss_sum / max(1, loss_count)
        loss_sum, loss_count = 0.0, 0
        elapsed = time.perf_counter() - started
        entry: dict[str, float] = {"epoch": epoch, "step": step, "loss": last_loss, "seconds": elapsed}
        if epoch > average_from_epoch:
            snapshots.append(_snapshot(model))
        if eval_pairs and config.eval_every_epochs and epoch % config.eval_every_epochs == 0:
            torch.nn.Module.train(model, False)
            save_model(model, out_dir)
            scores = evaluate_dir(out_dir, eval_pairs, num_candidates=1)
            entry["dev_bleu4_greedy"] = scores.bleu["bleu4"]
            entry["dev_loss"] = mean_loss(model, dev_examples, pad_id)
        history.append(entry)
        say(
            f"epoch {epoch} step {step}/{total_steps} loss {last_loss:.3f} "
            + (
                f"dev loss {entry['dev_loss']:.3f}, BLEU-4 (greedy, {len(eval_pairs)}) "
                f"{entry['dev_bleu4_greedy']:.4f} "
                if "dev_bleu4_greedy" in entry
                else ""
            )
            + f"{elapsed / 60:.1f} min"
        )

    if len(snapshots) > 1:
        model.load_state_dict(_average(snapshots))
        say(f"averaged the weights of the last {len(snapshots)} epochs")
    return LoopResult(steps=step, final_loss=last_loss, history=history)
