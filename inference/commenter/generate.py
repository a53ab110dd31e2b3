"""`LocalCommenter`: Lumi's own comment model behind a small batched interface."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import T5ForConditionalGeneration

from inference.commenter.data import normalize_labels, object_labels, prompt_order
from inference.commenter.decoding import DecodeSettings, DecodeStats, decode_candidates, row_seed
from inference.commenter.guard import CommentGuard, GuardStats
from inference.commenter.int8 import (
    RANGES_FILE,
    int8_unavailable_reason,
    load_ranges,
    quantize_per_token_layers,
)
from inference.commenter.model import load_model
from inference.commenter.selection import select_candidate
from inference.commenter.slots import SLOT_TOKENS, fill, slot_prompt
from inference.commenter.tokenizer import CommentTokenizer

log = logging.getLogger(__name__)

METADATA_FILE = "commenter.json"
Precision = Literal["auto", "int8", "float32"]
# Resolved from this file so the committed model is found from a checkout and from an installed wheel.
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "weights" / "commenter"


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _read_metadata(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / METADATA_FILE
    if not path.is_file():
        return {}
    metadata: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return metadata


def uses_slots(model_dir: str | Path) -> bool:
    """Whether the model in `model_dir` was trained with object slots (`slots`)."""
    return bool(_read_metadata(model_dir).get("slots", False))


def read_decode_settings(model_dir: str | Path) -> DecodeSettings:
    metadata = _read_metadata(model_dir)
    known = {field.name for field in dataclasses.fields(DecodeSettings)}
    return DecodeSettings(**{key: value for key, value in metadata.get("decode", {}).items() if key in known})


class LocalCommenter:
    """Writes one SNS-style Korean comment per label list.

    `load()` and `generate()` are blocking; services call them from a worker thread. Output is
    deterministic for a given (labels, seed), whatever the batch it is decoded in.

    With `guarded=True` (the default) a comment is well-formed Korean, names no object from the table
    that is not among its labels and names every object label (`guard.CommentGuard`); a label list
    whose candidates all fail gets "" (callers fall back to a template). `guarded=False` is the plain
    consensus choice, kept for benches that measure what the guard changes.

    `precision="auto"` decodes in int8 on the CPU when the model dir has calibrated ranges
    (`int8_ranges.json`) and torch has the kernels, else in float32; "int8" insists (and raises when
    it cannot), "float32" never quantises. `precision` tells which one is in use after `load()`.
    """

    name = "commenter-local"

    def __init__(
        self,
        model_dir: str | Path = DEFAULT_MODEL_DIR,
        device: str = "auto",
        *,
        max_batch_size: int = 64,
        settings: DecodeSettings | None = None,
        precision: Precision = "auto",
        guarded: bool = True,
    ) -> None:
        if precision not in ("auto", "int8", "float32"):
            raise ValueError(f"precision must be auto, int8 or float32, not {precision!r}")
        self.model_dir = Path(model_dir)
        self.device = resolve_device(device)
        self.requested_precision: Precision = precision
        self.precision: Literal["int8", "float32"] = "float32"
        self.max_batch_size = max_batch_size
        self._settings_override = settings
        self.settings = settings or DecodeSettings()
        self._model: T5ForConditionalGeneration | None = None
        self._tokenizer: CommentTokenizer | None = None
        self.guarded = guarded
        # Set by `load()`: the model writes object slots that are filled in after decoding.
        self.slots = False
        self._guard: CommentGuard | None = None
        # Totals over every decoding since construction (benches read them).
        self.stats = DecodeStats()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is not None:
            return
        if not (self.model_dir / "model.safetensors").is_file():
            raise FileNotFoundError(f"no comment model in {self.model_dir} (model.safetensors missing)")
        self._tokenizer = CommentTokenizer.load(self.model_dir)
        self.slots = uses_slots(self.model_dir)
        self.settings = self._settings_override or read_decode_settings(self.model_dir)
        model = load_model(self.model_dir, self.device)
        self.precision = self._apply_precision(model)
        if self.guarded:
            from inference.commenter.analysis import shared_analyser
            from inference.commenter.fidelity import object_names

            self._guard = CommentGuard(shared_analyser(), object_names())
        self._model = model

    def _apply_precision(self, model: T5ForConditionalGeneration) -> Literal["int8", "float32"]:
        if self.requested_precision == "float32":
            return "float32"
        reason = self._int8_unavailable_reason()
        if reason is None:
            ranges = load_ranges(self.model_dir)
            assert ranges is not None
            swapped = quantize_per_token_layers(model, ranges)
            log.info("comment model in %s decodes in int8 (%d layers)", self.model_dir, swapped)
            return "int8"
        if self.requested_precision == "int8":
            raise RuntimeError(f"int8 decoding was requested but {reason}")
        log.info("comment model in %s decodes in float32: %s", self.model_dir, reason)
        return "float32"

    def _int8_unavailable_reason(self) -> str | None:
        if self.device.type != "cpu":
            return f"int8 decoding is for the CPU and the model is on {self.device.type}"
        if not (self.model_dir / RANGES_FILE).is_file():
            return (
                f"{RANGES_FILE} is missing (measure it with "
                f"`python -m inference.commenter.calibration --model {self.model_dir} --data PAIRS.jsonl`)"
            )
        return int8_unavailable_reason()

    @property
    def guard_stats(self) -> GuardStats | None:
        """Totals of the comment guard since load (None when unguarded or not loaded)."""
        return self._guard.stats if self._guard is not None else None

    @property
    def model(self) -> T5ForConditionalGeneration:
        """The loaded model (loads it first if needed)."""
        self.load()
        assert self._model is not None
        return self._model

    def close(self) -> None:
        self._model = None
        self._guard = None
        self._tokenizer = None

    def generate(
        self,
        label_lists: Sequence[Sequence[str]],
        *,
        num_candidates: int | None = None,
        seed: int = 0,
    ) -> list[str]:
        """One comment per label list. `num_candidates=1` is plain greedy decoding; more candidates
        are sampled and the consensus that names the most objects wins. Raises
        `CommenterInputError` (a `ValueError`) for a list without any usable label."""
        cleaned = [normalize_labels(labels) for labels in label_lists]
        groups = self.generate_candidates(cleaned, num_candidates=num_candidates, seed=seed)
        settings = self.settings
        if self._guard is not None:
            return [
                self._guard.choose(
                    group,
                    object_labels(labels),
                    coverage_weight=settings.coverage_weight,
                    length_weight=settings.length_weight,
                    seed="\x1f".join([str(seed), *labels]),
                )
                for labels, group in zip(cleaned, groups, strict=True)
            ]
        chosen = [
            select_candidate(
                group,
                object_labels(labels),
                coverage_weight=settings.coverage_weight,
                length_weight=settings.length_weight,
            )
            for labels, group in zip(cleaned, groups, strict=True)
        ]
        return [group[index] for group, index in zip(groups, chosen, strict=True)]

    def predict_batch(self, label_lists: Sequence[Sequence[str]]) -> list[str]:
        return self.generate(label_lists)

    def generate_candidates(
        self,
        label_lists: Sequence[Sequence[str]],
        *,
        num_candidates: int | None = None,
        seed: int = 0,
    ) -> list[list[str]]:
        """All decoded candidates per label list (candidate 0 is the greedy one)."""
        self.load()
        model, tokenizer = self._model, self._tokenizer
        assert model is not None and tokenizer is not None
        count = num_candidates or self.settings.num_candidates
        if count < 1:
            raise ValueError("num_candidates must be at least 1")
        ordered = [prompt_order(normalize_labels(labels)) for labels in label_lists]
        found = [tokenizer.token_id(token) for token in SLOT_TOKENS] if self.slots else []
        slot_ids = [token_id for token_id in found if token_id is not None]
        if len(slot_ids) != len(found):
            raise ValueError(f"the slot model in {self.model_dir} has a tokenizer without slot tokens")
        results: list[list[str]] = []
        for start in range(0, len(ordered), self.max_batch_size):
            chunk = ordered[start : start + self.max_batch_size]
            prompts = [
                tokenizer.encode_labels(
                    slot_prompt(labels) if self.slots else labels, max_length=self.settings.max_prompt_tokens
                )
                for labels in chunk
            ]
            seeds = [[row_seed(labels, candidate, seed) for candidate in range(count)] for labels in chunk]
            # A slot model may only write the slots of the prompt's own objects.
            row_banned = [slot_ids[len(object_labels(labels)) :] for labels in chunk] if self.slots else None
            decoded = decode_candidates(
                model,
                prompts,
                seeds,
                self.settings,
                pad_id=tokenizer.pad_id,
                eos_id=tokenizer.eos_id,
                banned_ids=[tokenizer.pad_id, tokenizer.sep_id, tokenizer.unk_id],
                row_banned_ids=row_banned,
                stats=self.stats,
            )
            for labels, group in zip(chunk, decoded, strict=True):
                texts = [tokenizer.decode(ids) for ids in group]
                if self.slots:
                    # A candidate naming a slot without an object is dropped ("").
                    objects = object_labels(labels)
                    texts = [fill(text, objects) or "" for text in texts]
                results.append(texts)
        return results
