"""Measuring the activation ranges that int8 decoding needs (see `int8.py`).

Run as `python -m inference.commenter.calibration --model DIR --data PAIRS.jsonl`; training runs it at
the end. The model decodes training-split label lists with its default settings in float32 while hooks
record the smallest and largest input of every per-token linear layer.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch

from inference.commenter.data import load_pairs, split_pairs
from inference.commenter.generate import LocalCommenter
from inference.commenter.int8 import per_token_linears, save_ranges

DEFAULT_CALIBRATION_PAIRS = 512


def measure_ranges(
    commenter: LocalCommenter, label_lists: Sequence[Sequence[str]]
) -> dict[str, tuple[float, float]]:
    """Input range of each per-token linear layer while `commenter` (float32) decodes `label_lists`."""
    model = commenter.model  # loads it first: the precision in use is known only after loading
    if commenter.precision != "float32":
        raise ValueError("ranges must be measured on the float32 model")
    ranges: dict[str, tuple[float, float]] = {}

    def recorder(name: str):  # type: ignore[no-untyped-def]
        def record(_module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            values = inputs[0].detach()
            low, high = float(values.min()), float(values.max())
            seen = ranges.get(name)
            ranges[name] = (low, high) if seen is None else (min(seen[0], low), max(seen[1], high))

        return record

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in per_token_linears(model)]
    try:
        commenter.generate(label_lists)
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def calibrate(model_dir: Path, label_lists: Sequence[Sequence[str]], *, source: str) -> Path:
    """Measure the int8 ranges of the model in `model_dir` on `label_lists` and save them there."""
    if not label_lists:
        raise ValueError("no label lists to calibrate with")
    commenter = LocalCommenter(model_dir, device="cpu", precision="float32")
    commenter.load()
    return save_ranges(model_dir, measure_ranges(commenter, label_lists), source=source)


def calibrate_model_dir(model_dir: Path, data_path: Path, *, pairs: int = DEFAULT_CALIBRATION_PAIRS) -> Path:
    """Measure and save the int8 ranges of the model in `model_dir` on its training split."""
    train = split_pairs(load_pairs(data_path)).train[:pairs]
    return calibrate(
        model_dir,
        [pair.labels for pair in train],
        source=f"{len(train)} training-split label lists of {data_path.name}, default decoding",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Measure the int8 activation ranges of a comment model.")
    parser.add_argument(
        "--model", type=Path, required=True, help="model directory (ranges are written there)"
    )
    parser.add_argument(
        "--data", type=Path, required=True, help="the JSONL of pairs the model was trained on"
    )
    parser.add_argument("--pairs", type=int, default=DEFAULT_CALIBRATION_PAIRS)
    args = parser.parse_args(argv)
    path = calibrate_model_dir(args.model, args.data, pairs=args.pairs)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
