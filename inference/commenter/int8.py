"""Int8 decoding on the CPU with calibrated, fixed activation ranges.

Decoding is dominated by the decoder's matrix products (feed-forward, attention projections and the
output layer, run once per generated token for every candidate). Here they run as int8 x int8 products
with float32 output (fbgemm/x86 kernels), weights quantised per output channel to 8 bits and inputs to
7 bits (see `Int8Linear`).

The activation ranges are *fixed*: measured once on training prompts (`calibration.py`) and saved
beside the weights in `int8_ranges.json`. Torch's dynamic quantisation would instead scale each call
by the batch's own maximum, so a comment would depend on which other photos shared its batch; with
fixed ranges each row is computed on its own and batched output stays identical to one-at-a-time output.
The encoder runs once per photo and stays in float32.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

RANGES_FILE = "int8_ranges.json"
_RANGES_FORMAT = 1
# Modules that run once per generated token; the encoder runs once per input and is left in float32.
_PER_TOKEN_PREFIXES = ("decoder.", "lm_head")
_INPUT_LEVELS = 127.0


def int8_unavailable_reason() -> str | None:
    """Why int8 decoding cannot run with this torch build, or None when it can."""
    engines = set(torch.backends.quantized.supported_engines)
    if not engines & {"x86", "fbgemm"}:
        return f"this torch build has no x86/fbgemm quantized engine (engines: {sorted(engines)})"
    if not hasattr(torch.ops.quantized, "linear_with_input_q_dq_qweight_dq_output_fp32"):
        return "this torch build lacks the int8 linear kernel with float32 output"
    return None


def per_token_linears(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Linear]]:
    """The linear layers that run once per generated token, by module name."""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and name.startswith(_PER_TOKEN_PREFIXES):
            yield name, module


class Int8Linear(torch.nn.Module):
    """A `torch.nn.Linear` replacement: per-channel int8 weights, input quantised with a fixed range."""

    def __init__(self, linear: torch.nn.Linear, low: float, high: float) -> None:
        super().__init__()
        weight = linear.weight.detach().to(torch.float32)
        scales = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.float32)
        with warnings.catch_warnings():
            # torch marks its quantised-tensor constructors as deprecated; the pinned release has them.
            warnings.simplefilter("ignore", UserWarning)
            quantized = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(quantized, bias)
        low, high = min(low, 0.0), max(high, 0.0)
        # Inputs use 7 of the 8 bits: x86 kernels without VNNI add pairs of uint8 x int8 products in
        # 16-bit registers, and two products of 255 x 127 overflow them (127 x 127 twice does not).
        # Inputs outside the calibrated range are clamped, so no quantised input passes 127.
        self.input_low, self.input_high = low, high
        self.input_scale = (high - low) / _INPUT_LEVELS or 1e-8
        self.input_zero_point = round(-low / self.input_scale)
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        # transformers' T5 feed-forward reads `wo.weight.dtype`; int8 tells it not to cast the input.
        self.register_buffer("weight", torch.empty(0, dtype=torch.int8), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        flat = hidden.reshape(-1, self.in_features).to(torch.float32).clamp(self.input_low, self.input_high)
        output: torch.Tensor = torch.ops.quantized.linear_with_input_q_dq_qweight_dq_output_fp32(
            flat, self.input_scale, self.input_zero_point, self._packed
        )
        return output.reshape(*hidden.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_per_token_layers(model: torch.nn.Module, ranges: Mapping[str, tuple[float, float]]) -> int:
    """Swap every per-token linear layer for an `Int8Linear`; returns how many were swapped. Raises
    `ValueError` when `ranges` misses a layer (ranges calibrated for another model)."""
    targets = list(per_token_linears(model))
    missing = [name for name, _ in targets if name not in ranges]
    if missing:
        raise ValueError(f"int8 ranges missing for {len(missing)} layers (first: {missing[0]})")
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, Int8Linear(linear, *ranges[name]))
    return len(targets)


def save_ranges(model_dir: str | Path, ranges: Mapping[str, tuple[float, float]], *, source: str) -> Path:
    path = Path(model_dir) / RANGES_FILE
    payload = {
        "format": _RANGES_FORMAT,
        "source": source,
        "ranges": {name: [round(low, 6), round(high, 6)] for name, (low, high) in sorted(ranges.items())},
    }
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def load_ranges(model_dir: str | Path) -> dict[str, tuple[float, float]] | None:
    """The calibrated ranges saved beside a model, or None when it has none."""
    path = Path(model_dir) / RANGES_FILE
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    if payload.get("format") != _RANGES_FORMAT:
        raise ValueError(f"{path}: unknown format {payload.get('format')!r}")
    return {name: (float(low), float(high)) for name, (low, high) in payload["ranges"].items()}
