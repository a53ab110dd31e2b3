"""The three ways Lumi writes a comment, behind one interface, and the fallback order between them.

- ``local``: Lumi's own model (Korean only; an English request goes to the next backend).
- ``llm``: any OpenAI-compatible chat model (OpenAI, vLLM, Ollama) with Lumi's prompt.
- ``template``: sentences written by the team; never fails, so it always ends the chain.

A guild picks its backend; when it fails the comment comes from the next one: ``llm`` → ``local`` →
``template``, ``local`` → ``template``. Which backend finally wrote the comment is reported (and
stored), so a silent fallback shows up in the comment records.

The chat client (and the OpenAI SDK under it, half a second to import) loads only when an ``llm``
backend is built.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, Literal, Protocol

from bot.services.comments.templates import display_name, template_comment
from inference.commenter import COMMENTER, CommenterInputError, normalize_labels
from inference.labels import Label, Language
from inference.registry import ModelRegistry, ModelUnavailable

if TYPE_CHECKING:
    from inference.remote.chat import ChatClient

__all__ = [
    "BACKEND_NAMES",
    "BackendName",
    "BackendUnavailable",
    "CommentBackend",
    "CommentWriter",
    "LlmBackend",
    "LocalModelBackend",
    "TemplateBackend",
    "WrittenComment",
    "llm_backend",
    "llm_prompt",
]

log = logging.getLogger(__name__)

BackendName = Literal["local", "llm", "template"]
BACKEND_NAMES: Final[tuple[BackendName, ...]] = ("local", "llm", "template")
_FALLBACKS: Final[dict[BackendName, tuple[BackendName, ...]]] = {
    "llm": ("llm", "local", "template"),
    "local": ("local", "template"),
    "template": ("template",),
}
MAX_COMMENT_CHARS: Final = 400


class BackendUnavailable(Exception):
    """This backend cannot write this comment now; ``reason`` says why (for logs and records)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommentBackend(Protocol):
    @property
    def name(self) -> BackendName: ...

    async def write(self, labels: Sequence[Label], language: Language) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class WrittenComment:
    text: str
    backend: BackendName
    # (backend, reason) of every backend tried before the one that wrote the comment.
    skipped: list[tuple[str, str]] = field(default_factory=list)


class LocalModelBackend:
    """Lumi's own model through the registry's batcher: concurrent comments decode as one batch."""

    name: Final = "local"

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    async def write(self, labels: Sequence[Label], language: Language) -> str:
        if language != "ko":
            raise BackendUnavailable("Lumi's own model writes Korean only")
        try:
            # Checked here, not in the batch: one bad item would otherwise fail everyone's batch.
            cleaned = normalize_labels([label.ko for label in labels])
        except CommenterInputError as exc:
            raise BackendUnavailable(str(exc)) from exc
        try:
            handle = await self.registry.get(COMMENTER)
            # A remote model loads at once and may still fail here, when the inference service is down.
            text = (await handle.predict(cleaned)).strip()
        except ModelUnavailable as exc:
            raise BackendUnavailable(exc.reason) from exc
        if not text:
            # The model's own checks drop every candidate that is malformed or names an object that
            # is not in the photo; for an emotion alone nothing may be left.
            raise BackendUnavailable("no comment from the model passed its checks")
        return text

    async def close(self) -> None:
        """The registry owns the model and unloads it."""


_SYSTEM_PROMPT: Final[dict[Language, str]] = {
    "ko": (
        "당신은 친구의 SNS 사진에 댓글을 다는 다정한 사람입니다. 사진에서 감지된 라벨(얼굴 표정의 감정과 "
        "사물 이름)을 받으면, 그 사진에 어울리는 짧은 한국어 댓글 하나만 씁니다.\n"
        "- 한두 문장, 100자 이내, 자연스러운 존댓말\n"
        "- 이모지 1~3개\n"
        "- 감정 라벨은 표정으로 묘사하고(예: 기쁨 → 환한 미소), 사물은 최소 하나 이상 이름을 넣어 언급\n"
        "- 라벨에 없는 사람, 장소, 사건을 지어내지 않기\n"
        "- 따옴표, 해시태그, 설명 없이 댓글 문장만 출력"
    ),
    "en": (
        "You write warm comments on friends' social media photos. Given the labels detected in a photo "
        "(emotions on faces and names of objects), write exactly one short comment in English.\n"
        "- one or two sentences, under 150 characters, casual and kind\n"
        "- one to three emojis\n"
        "- describe emotions through the look on the face (joy -> a bright smile) and mention at least "
        "one object by name\n"
        "- do not invent people, places or events that the labels do not show\n"
        "- output only the comment: no quotes, no hashtags, no explanations"
    ),
}


def llm_prompt(labels: Sequence[Label], language: Language) -> tuple[str, str]:
    """(system, user) messages for one comment."""
    emotions = [display_name(label, language) for label in labels if label.kind == "emotion"]
    objects = [display_name(label, language) for label in labels if label.kind == "object"]
    if language == "ko":
        user = (
            f"감정: {', '.join(emotions) or '없음 (표정이 보이지 않음)'}\n"
            f"사물: {', '.join(objects) or '없음'}\n"
            "댓글:"
        )
    else:
        user = (
            f"Emotions: {', '.join(emotions) or 'none (no face shows one)'}\n"
            f"Objects: {', '.join(objects) or 'none'}\n"
            "Comment:"
        )
    return _SYSTEM_PROMPT[language], user


_QUOTES: Final = "\"'“”‘’「」"
_LEAD_IN: Final = re.compile(r"^(댓글|comment)\s*[:：]\s*", re.IGNORECASE)


def clean_llm_comment(text: str) -> str:
    """The comment from a chat answer: first non-empty line, without a "Comment:" lead-in or quotes."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    comment = _LEAD_IN.sub("", lines[0]).strip().strip(_QUOTES).strip()
    return comment[:MAX_COMMENT_CHARS].rstrip()


class LlmBackend:
    """An OpenAI-compatible chat model. ``deadline_s`` bounds the whole call, the SDK's retries included,
    so a slow provider delays a comment by that much at most before the next backend takes over."""

    name: Final = "llm"

    def __init__(self, client: ChatClient, *, deadline_s: float = 30.0, temperature: float = 0.9) -> None:
        self.client = client
        self.deadline_s = deadline_s
        self.temperature = temperature

    async def write(self, labels: Sequence[Label], language: Language) -> str:
        from inference.remote.chat import ChatUnavailable

        system, user = llm_prompt(labels, language)
        try:
            async with asyncio.timeout(self.deadline_s):
                answer = await self.client.complete(
                    system, user, max_tokens=200, temperature=self.temperature
                )
        except ChatUnavailable as exc:
            raise BackendUnavailable(exc.reason) from exc
        except TimeoutError as exc:
            raise BackendUnavailable(f"the chat model took longer than {self.deadline_s:g} s") from exc
        comment = clean_llm_comment(answer)
        if not comment:
            raise BackendUnavailable("the chat model's answer held no comment")
        return comment

    async def close(self) -> None:
        await self.client.close()


def llm_backend(
    base_url: str, api_key: str | None, model: str, *, timeout_s: float, max_retries: int
) -> LlmBackend:
    """The ``llm`` backend for an OpenAI-compatible endpoint, as the bot and `lumi data generate` use it.

    ``timeout_s`` bounds one request and ``max_retries`` how often the SDK retries it with backoff;
    the backend's deadline caps all of them together: every attempt's timeout plus 2 s of slack.
    """
    from inference.remote.chat import ChatClient

    client = ChatClient(base_url, api_key, model, timeout=timeout_s, max_retries=max_retries)
    return LlmBackend(client, deadline_s=timeout_s * (max_retries + 1) + 2.0)


class TemplateBackend:
    name: Final = "template"

    async def write(self, labels: Sequence[Label], language: Language) -> str:
        return template_comment(labels, language)

    async def close(self) -> None:
        """Nothing to release."""


class CommentWriter:
    """Writes with the preferred backend, falling back in ``_FALLBACKS`` order. Backends that are not
    configured (no LLM endpoint) are simply absent and skipped."""

    def __init__(self, backends: Mapping[BackendName, CommentBackend]) -> None:
        self.backends: dict[BackendName, CommentBackend] = dict(backends)
        self.backends.setdefault("template", TemplateBackend())

    def available(self) -> list[BackendName]:
        return [name for name in BACKEND_NAMES if name in self.backends]

    async def write(
        self, labels: Sequence[Label], language: Language, *, backend: BackendName = "local"
    ) -> WrittenComment:
        skipped: list[tuple[str, str]] = []
        for name in _FALLBACKS[backend]:
            chosen = self.backends.get(name)
            if chosen is None:
                skipped.append((name, "not configured"))
                continue
            try:
                text = await chosen.write(labels, language)
            except BackendUnavailable as exc:
                log.info("comment backend %s skipped: %s", name, exc.reason)
                skipped.append((name, exc.reason))
                continue
            return WrittenComment(text=text, backend=name, skipped=skipped)
        # Unreachable while the template backend is present; kept for a writer built without it.
        raise BackendUnavailable("; ".join(f"{name}: {reason}" for name, reason in skipped))

    async def close(self) -> None:
        for backend in self.backends.values():
            try:
                await backend.close()
            except Exception:
                log.exception("closing comment backend %s failed", backend.name)
