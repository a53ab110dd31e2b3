"""In-process model inference: safe image decoding, dynamic batching, model registry, runners."""
