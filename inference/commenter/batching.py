"""Label→comment pairs as token ids, padded batches and the teacher-forced loss of the comment model."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn.functional import cross_entropy
from transformers import T5ForConditionalGeneration

from inference.commenter.data import CommentPair, prompt_order
from inference.commenter.tokenizer import CommentTokenizer

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedPair:
    source: list[int]
    target: list[int]


def encode_pairs(
    tokenizer: CommentTokenizer,
    pairs: Sequence[CommentPair],
    *,
    max_source_tokens: int,
    max_target_tokens: int,
) -> list[TokenizedPair]:
    return [
        TokenizedPair(
            source=tokenizer.encode_labels(prompt_order(pair.labels), max_length=max_source_tokens),
            target=tokenizer.encode_comment(pair.comment, max_length=max_target_tokens),
        )
        for pair in pairs
    ]


def shuffled_batches(
    examples: Sequence[TokenizedPair], batch_size: int, rng: random.Random
) -> Iterator[list[TokenizedPair]]:
    """Shuffled batches of similar target length: less padding, still a new order every epoch."""
    order = list(examples)
    rng.shuffle(order)
    pool = batch_size * 50
    batches: list[list[TokenizedPair]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda example: len(example.target))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    yield from batches


def collate(batch: Sequence[TokenizedPair], pad_id: int) -> dict[str, torch.Tensor]:
    source_width = max(len(example.source) for example in batch)
    target_width = max(len(example.target) for example in batch)
    input_ids = torch.full((len(batch), source_width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), source_width), dtype=torch.long)
    labels = torch.full((len(batch), target_width), IGNORE_INDEX, dtype=torch.long)
    for row, example in enumerate(batch):
        input_ids[row, : len(example.source)] = torch.tensor(example.source)
        attention_mask[row, : len(example.source)] = 1
        labels[row, : len(example.target)] = torch.tensor(example.target)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@torch.inference_mode()
def mean_loss(model: T5ForConditionalGeneration, examples: Sequence[TokenizedPair], pad_id: int) -> float:
    """Token-level cross-entropy of `examples` under teacher forcing (no smoothing, no dropout)."""
    total, tokens = 0.0, 0
    for start in range(0, len(examples), 64):
        tensors = collate(examples[start : start + 64], pad_id)
        logits = model(**tensors).logits
        labels = tensors["labels"].view(-1)
        total += float(cross_entropy(logits.float().view(-1, logits.size(-1)), labels, reduction="sum"))
        tokens += int((labels != IGNORE_INDEX).sum())
    return total / max(1, tokens)
