"""Turn a short request ("a fox") into a prompt a text-to-3D service does well with.

Backends share one small interface (``EnhancerBackend``) and are tried in order by ``PromptEnhancer``:
- ``ChatEnhancer`` and ``LocalModelEnhancer`` (``llm_backends``): a chat service or a local model;
- ``KeywordEnhancer`` (``keywords``): deterministic keyword expansion in English and Korean; it
  never fails, so it is always last.
``build_prompt_enhancer`` assembles them from the configuration.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from bot.services.generate3d.prompts.instructions import Language
from bot.services.generate3d.prompts.keywords import KeywordEnhancer
from bot.services.generate3d.prompts.llm_backends import ChatEnhancer, LocalModelEnhancer
from bot.services.generate3d.prompts.output import EnhancerUnavailable, cut_prompt
from inference.remote.chat import ChatClient
from inference.remote.meshy import MAX_PROMPT_CHARS

__all__ = [
    "STYLES",
    "Enhancement",
    "EnhancerBackend",
    "EnhancerChoice",
    "PromptEnhancer",
    "build_prompt_enhancer",
]

log = logging.getLogger(__name__)

STYLES = ("realistic", "cartoon", "low-poly", "sculpture")


class EnhancerBackend(Protocol):
    name: str

    async def enhance(self, prompt: str, *, style: str | None) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Enhancement:
    text: str
    backend: str
    # "backend: reason" for every backend tried before the one that answered.
    fallbacks: tuple[str, ...] = ()
    elapsed_s: float = 0.0


class PromptEnhancer:
    """Tries each backend in order; the last one should never fail (``KeywordEnhancer``).

    ``timeout_s`` bounds one backend's whole attempt, SDK retries included, so a hung chat server
    delays a job by at most that long before the next backend answers.
    """

    def __init__(
        self,
        backends: Sequence[EnhancerBackend],
        *,
        timeout_s: float = 30.0,
        max_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        if not backends:
            raise ValueError("at least one enhancer backend is needed")
        self.backends = list(backends)
        self.timeout_s = timeout_s
        self.max_chars = max_chars

    @property
    def names(self) -> list[str]:
        return [backend.name for backend in self.backends]

    async def enhance(self, prompt: str, *, style: str | None = None) -> Enhancement:
        started = time.monotonic()
        failures: list[str] = []
        for backend in self.backends:
            try:
                async with asyncio.timeout(self.timeout_s):
                    text = await backend.enhance(prompt, style=style)
            except EnhancerUnavailable as error:
                failures.append(f"{backend.name}: {error.reason}")
            except TimeoutError:
                failures.append(f"{backend.name}: no answer within {self.timeout_s:g} s")
            else:
                text = cut_prompt(" ".join(text.split()), self.max_chars)
                if text:
                    if failures:
                        log.warning("prompt enhancer fell back to %s (%s)", backend.name, "; ".join(failures))
                    return Enhancement(text, backend.name, tuple(failures), time.monotonic() - started)
                failures.append(f"{backend.name}: empty answer")
        # Reached only without a keyword backend: the request itself is still a valid prompt.
        log.warning("every prompt enhancer failed (%s); using the request as written", "; ".join(failures))
        return Enhancement(cut_prompt(prompt.strip(), self.max_chars), "none", tuple(failures))

    async def close(self) -> None:
        for backend in self.backends:
            try:
                await backend.close()
            except Exception:
                log.exception("closing the %s prompt enhancer failed", backend.name)


EnhancerChoice = Literal["auto", "openai", "local", "keywords"]


def build_prompt_enhancer(
    *,
    choice: EnhancerChoice = "auto",
    chat_base_url: str = "",
    chat_api_key: str | None = None,
    chat_model: str = "",
    local_model_path: Path | None = None,
    device: str = "auto",
    language: Language = "auto",
    timeout_s: float = 30.0,
) -> PromptEnhancer:
    """The backends the configuration asks for, keyword expansion always last.

    ``auto`` uses the chat model when a base URL and model are set, then the local model when a path is
    set; naming one backend uses only it (and the keyword fallback).
    """
    backends: list[EnhancerBackend] = []
    chat_ready = bool(chat_base_url and chat_model)
    if choice in ("auto", "openai") and chat_ready:
        client = ChatClient(chat_base_url, chat_api_key, chat_model, timeout=timeout_s, max_retries=1)
        backends.append(ChatEnhancer(client, language=language))
    elif choice == "openai":
        log.warning("ENHANCER_BACKEND=openai but ENHANCER_BASE_URL/ENHANCER_MODEL are unset; using keywords")
    if choice in ("auto", "local") and local_model_path is not None:
        backends.append(LocalModelEnhancer(local_model_path, device=device, language=language))
    elif choice == "local":
        log.warning("ENHANCER_BACKEND=local but ENHANCER_LOCAL_MODEL is unset; using keywords")
    backends.append(KeywordEnhancer(language=language))
    # The chat and local attempts each get the timeout; 2.5x leaves room for the SDK's one retry.
    return PromptEnhancer(backends, timeout_s=timeout_s * 2.5)
