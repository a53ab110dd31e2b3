"""Prometheus metrics for in-process inference, labelled by model name.

They live in prometheus_client's default registry, which is what the web app's ``/metrics`` serves.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "FAILED_BATCHES",
    "MODEL_LOADED",
    "MODEL_LOAD_SECONDS",
    "QUEUE_DEPTH",
    "REQUEST_SECONDS",
]

_LATENCY_BUCKETS: Final = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

QUEUE_DEPTH: Final = Gauge(
    "lumi_inference_queue_depth", "Requests waiting for a batch slot, per model.", ["model"]
)
BATCH_SIZE: Final = Histogram(
    "lumi_inference_batch_size",
    "Items per model call.",
    ["model"],
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64),
)
BATCH_SECONDS: Final = Histogram(
    "lumi_inference_batch_seconds",
    "Wall time of one batched model call.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
REQUEST_SECONDS: Final = Histogram(
    "lumi_inference_request_seconds",
    "Time from submit to result for one item (queueing, wait window and model call).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
FAILED_BATCHES: Final = Counter(
    "lumi_inference_failed_batches", "Batches whose model call raised or returned a wrong length.", ["model"]
)
MODEL_LOADED: Final = Gauge(
    "lumi_model_loaded", "1 when the model is loaded and warmed up.", ["model", "device"]
)
MODEL_LOAD_SECONDS: Final = Gauge(
    "lumi_model_load_seconds", "Time the last load and warm-up took.", ["model", "device"]
)
