"""OpenAI's moderation endpoint (``omni-moderation-latest``) for images, as a second opinion.

The image travels inline as a data URL, so Lumi never hands out links to user uploads. Scores come
back keyed by OpenAI's category names (``sexual``, ``violence/graphic``, ``self-harm/intent``, ...).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import openai
from openai.types import ModerationImageURLInputParam

from inference.remote.chat import OpenAIUnavailable, describe_openai_error

log = logging.getLogger(__name__)

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"


class ModerationUnavailable(OpenAIUnavailable):
    pass


@dataclass(frozen=True)
class ModerationResult:
    flagged: bool
    scores: dict[str, float]
    flagged_categories: frozenset[str]


def _to_data_url(image: bytes, mime_type: str) -> str:
    return f"data:{mime_type};base64,{base64.b64encode(image).decode('ascii')}"


def _float_map(value: object) -> dict[str, float]:
    if not isinstance(value, Mapping):
        return {}
    return {
        str(key): float(score)
        for key, score in value.items()
        if isinstance(score, int | float) and not isinstance(score, bool)
    }


class OpenAIModerationClient:
    def __init__(
        self,
        api_key: str | None,
        *,
        base_url: str | None = None,
        model: str = DEFAULT_MODERATION_MODEL,
        timeout: float = 30.0,
        max_retries: int = 2,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "not-needed", base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    async def moderate_image(self, image: bytes, *, mime_type: str = "image/png") -> ModerationResult:
        """Score one encoded image; raises ``ModerationUnavailable`` on any service failure."""
        # Base64 of a multi-megabyte upload is CPU work; keep it off the event loop.
        data_url = await asyncio.to_thread(_to_data_url, image, mime_type)
        service = f"moderation model {self.model!r}"
        try:
            image_part: ModerationImageURLInputParam = {"type": "image_url", "image_url": {"url": data_url}}
            response = await self._client.moderations.create(model=self.model, input=[image_part])
        except openai.OpenAIError as exc:
            kind, reason, status = describe_openai_error(exc, service)
            log.warning("image moderation failed: %s", reason)
            raise ModerationUnavailable(reason, kind=kind, status=status) from exc
        if not response.results:
            raise ModerationUnavailable(f"{service} returned no result", kind="empty")
        result = response.results[0]
        scores = _float_map(result.category_scores.model_dump(by_alias=True))
        categories = result.categories.model_dump(by_alias=True)
        flagged = frozenset(name for name, hit in categories.items() if hit is True)
        return ModerationResult(flagged=bool(result.flagged), scores=scores, flagged_categories=flagged)

    async def score_image(self, image: bytes, *, mime_type: str = "image/png") -> dict[str, float]:
        """Category scores in [0, 1] keyed by OpenAI's names (``sexual``, ``violence/graphic``, ...)."""
        return (await self.moderate_image(image, mime_type=mime_type)).scores

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> OpenAIModerationClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
