"""The settings of the inference service: where a gateway finds it, and how `lumi serve-models` runs it.

A part of `bot.config.Settings` (which inherits it), like `bot.config.deployment`; the names,
environment variables and defaults are `Settings`' own (docs/serving.md).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

if TYPE_CHECKING:
    from inference.serving.remote import RemoteModels

__all__ = ["ServingSettings"]


class ServingSettings(BaseSettings):
    # The inference service (`lumi serve-models`) at this base URL runs the models; empty: this process
    # runs them. Timeout per call, retries until the deadline, then the circuit opens (docs/serving.md).
    inference_url: str = ""
    inference_timeout_s: float = Field(default=10.0, gt=0, le=600)
    inference_retry_deadline_s: float = Field(default=20.0, ge=0, le=600)
    inference_breaker_failures: int = Field(default=5, ge=1, le=10_000)
    inference_breaker_reset_s: float = Field(default=30.0, gt=0, le=3600)
    # `lumi serve-models`: its address, and replicas, CPUs and GPUs per deployment as JSON objects
    # (`{"moderation": 2}`; deployments: moderation, perception, commenter, classifiers).
    serve_host: str = "127.0.0.1"
    serve_port: int = Field(default=8000, ge=1, le=65535)
    serve_replicas: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    serve_num_cpus: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    serve_num_gpus: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)

    @field_validator("inference_url")
    @classmethod
    def _check_inference_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must be the inference service's http:// or https:// base URL")
        return value

    @field_validator("serve_replicas", "serve_num_cpus", "serve_num_gpus", mode="before")
    @classmethod
    def _parse_serve_shares(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError:
            raise ValueError('must be a JSON object by deployment, such as {"moderation": 2}') from None

    def remote_models(self) -> RemoteModels | None:
        """The models the inference service runs for this process (INFERENCE_URL), or None."""
        if not self.inference_url:
            return None
        from inference.serving.client import InferenceClient
        from inference.serving.remote import RemoteModels

        client = InferenceClient(
            self.inference_url,
            timeout_s=self.inference_timeout_s,
            retry_deadline_s=self.inference_retry_deadline_s,
            breaker_failures=self.inference_breaker_failures,
            breaker_reset_s=self.inference_breaker_reset_s,
        )
        return RemoteModels(client)
