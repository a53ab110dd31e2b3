"""Turn a short request ("a fox") into a prompt a text-to-3D service does well with.

Backends share one small interface (``EnhancerBackend``) and are tried in order by ``PromptEnhancer``:
- ``ChatEnhancer``: an OpenAI-compatible chat model (OpenAI, vLLM, Ollama) with ``SYSTEM_PROMPT``;
- ``LocalModelEnhancer``: a transformers model from a local folder, in this process (GPU when present);
- ``KeywordEnhancer``: deterministic keyword expansion in English and Korean; it never fails, so it is
  always last.
Whatever a model writes goes through ``clean_output``: one paragraph, no preamble or quotes, within
Meshy's limit, and still containing the user's own words (a model that drifted gets them put back).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Protocol

from inference.remote.chat import ChatClient, ChatUnavailable
from inference.remote.meshy import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)

Language = Literal["auto", "en"]
STYLES = ("realistic", "cartoon", "low-poly", "sculpture")

SYSTEM_PROMPT = """\
You write prompts for a text-to-3D model generator. The user gives a short request; you answer with \
the prompt only.

Keep everything the user asked for: the subject, how many, pose, colours, materials, style and any \
names. Change none of it. Then add what a 3D modeller needs and the request leaves open:
- the overall shape, proportions and main parts of the subject;
- materials and surface finish (wood grain, brushed metal, glazed ceramic, fur, cloth...);
- a colour palette;
- an art style (realistic, stylised cartoon, low-poly, sculpted...) matching the request;
- mesh hints: one standalone object or character, centred, full body for characters in a neutral \
pose, clean topology, game-ready, a sensible polygon budget.
Do not add a background scene, camera angles, lighting setups, text or logos unless asked.

Write one paragraph of comma-separated descriptive phrases: no line breaks, no lists, no quotation \
marks, no preamble such as "Prompt:". At most {max_chars} characters. Write it in {language}."""

_LANGUAGE_NAMES = {"en": "English", "auto": "the same language as the user's request"}
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[a-zA-Z]{3,}")
_PREAMBLE = re.compile(
    r"^\s*(?:here(?: is|'s)[^:]{0,60}:|(?:enhanced |improved |final |3d )?prompt\s*:|프롬프트\s*:)\s*",
    re.IGNORECASE,
)
_BULLET = re.compile(r"(?:^|\s)(?:[-*•]|\d+[.)])\s+")
_QUOTES = "\"'`“”‘’「」『』"
_STOP_WORDS = frozenset(
    "the and with for from into onto that this its his her their some very of in on at to by a an".split()  # noqa: SIM905
)


class EnhancerUnavailable(Exception):
    """A backend could not produce a prompt; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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


def system_prompt(language: Language, max_chars: int = MAX_PROMPT_CHARS) -> str:
    return SYSTEM_PROMPT.format(max_chars=max_chars, language=_LANGUAGE_NAMES[language])


def user_message(prompt: str, style: str | None) -> str:
    return prompt if not style else f"{prompt}\n(Art style: {style})"


# ------------------------------------------------------------------------------------------- cleaning


def _content_words(text: str) -> set[str]:
    return {word.lower() for word in _LATIN_WORD.findall(text)} - _STOP_WORDS


def _cut(text: str, max_chars: int) -> str:
    """Shorten to ``max_chars`` at the last phrase or word boundary, never mid-word."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    for separator in (". ", ", ", "; ", " "):
        at = head.rfind(separator)
        if at >= max_chars // 2:
            return head[:at].rstrip(" ,;.")
    return head.rstrip()


def clean_output(original: str, generated: str, *, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """One tidy paragraph within ``max_chars`` that keeps the user's request.

    When the model's text lost most of the request's content words (an English request answered in
    English), the request is put in front of it, so the 3D model is still of what was asked.
    """
    text = _PREAMBLE.sub("", generated.strip())
    text = _BULLET.sub(" ", text)
    text = " ".join(text.split()).strip(_QUOTES + " ")
    text = _PREAMBLE.sub("", text).strip(_QUOTES + " ")
    if not text:
        raise EnhancerUnavailable("the model answered with no usable text")
    wanted = _content_words(original)
    if wanted and not _HANGUL.search(original):
        kept = wanted & _content_words(text)
        if len(kept) * 2 < len(wanted):
            text = f"{original.strip().rstrip('.,')}, {text}"
    return _cut(text, max_chars)


# ------------------------------------------------------------------------------------------- backends


class ChatEnhancer:
    """An OpenAI-compatible chat model with ``SYSTEM_PROMPT``."""

    name = "openai"

    def __init__(
        self, client: ChatClient, *, language: Language = "auto", max_chars: int = MAX_PROMPT_CHARS
    ) -> None:
        self.client = client
        self.language = language
        self.max_chars = max_chars

    async def enhance(self, prompt: str, *, style: str | None) -> str:
        try:
            answer = await self.client.complete(
                system_prompt(self.language, self.max_chars),
                user_message(prompt, style),
                max_tokens=300,
                temperature=0.6,
            )
        except ChatUnavailable as error:
            raise EnhancerUnavailable(error.reason) from error
        return clean_output(prompt, answer, max_chars=self.max_chars)

    async def close(self) -> None:
        await self.client.close()


class LocalModelEnhancer:
    """A transformers model loaded from ``model_path`` (a folder made by ``save_pretrained``).

    Loading and generation run on one dedicated thread, so the event loop never waits on the model and
    calls never race inside it. Models with a chat template get ``SYSTEM_PROMPT`` as a system message;
    others get a plain instruction. Decoding is greedy, so the same request gives the same prompt.
    """

    name = "local"

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        language: Language = "auto",
        max_new_tokens: int = 160,
        max_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        self.model_path = model_path
        self.device_preference = device
        self.language = language
        self.max_new_tokens = max_new_tokens
        self.max_chars = max_chars
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lumi-enhancer")
        self._model: Any = None
        self._tokenizer: Any = None
        self._encoder_decoder = False
        self.device = "cpu"
        self._load_error: str | None = None
        self._lock = asyncio.Lock()

    async def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        if self._load_error is not None:
            raise EnhancerUnavailable(self._load_error)
        async with self._lock:
            if self._model is None and self._load_error is None:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(self._executor, self._load)
                except Exception as error:
                    # Remembered: a missing or broken model folder will not fix itself between calls.
                    self._load_error = f"cannot load the local model at {self.model_path}: {error}"
                    log.warning("%s", self._load_error)
            if self._load_error is not None:
                raise EnhancerUnavailable(self._load_error)

    def _load(self) -> None:
        if not self.model_path.is_dir():
            raise FileNotFoundError("no such folder")
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        use_cuda = self.device_preference in ("auto", "cuda") and torch.cuda.is_available()
        self.device = "cuda" if use_cuda else "cpu"
        config = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
        self._encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        model_class = AutoModelForSeq2SeqLM if self._encoder_decoder else AutoModelForCausalLM
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        model = model_class.from_pretrained(self.model_path, local_files_only=True)
        self._model = model.to(self.device).eval()  # type: ignore[arg-type]
        log.info("local prompt enhancer loaded from %s on %s", self.model_path, self.device)

    def _generate(self, request: str) -> str:
        import torch

        tokenizer, model = self._tokenizer, self._model
        system = system_prompt(self.language, self.max_chars)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": request}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"Rewrite as a detailed prompt for a 3D model generator: {request}\nDetailed prompt:"
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=1024).to(self.device)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                repetition_penalty=1.2,
                pad_token_id=pad_id,
            )
        tokens = output[0] if self._encoder_decoder else output[0][inputs["input_ids"].shape[1] :]
        return str(tokenizer.decode(tokens, skip_special_tokens=True))

    async def enhance(self, prompt: str, *, style: str | None) -> str:
        await self._ensure_loaded()
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._generate, user_message(prompt, style))
        except Exception as error:
            raise EnhancerUnavailable(f"the local model failed: {type(error).__name__}: {error}") from error
        return clean_output(prompt, answer, max_chars=self.max_chars)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._model = None


@dataclass(frozen=True)
class _KeywordGroup:
    english: tuple[str, ...]
    korean: tuple[str, ...]
    hint_en: str
    hint_ko: str


def _load_keywords() -> tuple[
    list[_KeywordGroup], list[_KeywordGroup], dict[str, _KeywordGroup], tuple[str, str], tuple[str, str]
]:
    """The expansion tables (``prompt_keywords.json`` beside this file): data, not code, so that people who
    write prompts, not only programmers, can extend them."""
    raw = json.loads(resources.files("bot.services").joinpath("prompt_keywords.json").read_text("utf-8"))

    def group(item: dict[str, Any]) -> _KeywordGroup:
        return _KeywordGroup(tuple(item["en"]), tuple(item["ko"]), item["hint_en"], item["hint_ko"])

    styles = {
        name: _KeywordGroup(
            tuple(item["keywords"]), tuple(item["keywords"]), item["hint_en"], item["hint_ko"]
        )
        for name, item in raw["styles"].items()
    }
    return (
        [group(item) for item in raw["subjects"]],
        [group(item) for item in raw["materials"]],
        styles,
        (raw["generic"]["hint_en"], raw["generic"]["hint_ko"]),
        (raw["mesh"]["hint_en"], raw["mesh"]["hint_ko"]),
    )


_SUBJECTS, _MATERIALS, _STYLE_HINTS, _GENERIC_SUBJECT, _MESH_HINTS = _load_keywords()

_KOREAN_PARTICLES = frozenset(
    "은 는 이 가 을 를 의 와 과 로 으로 도 에 에서 만 처럼 같은 모양 인형 피규어".split()  # noqa: SIM905
)


def _has_any(text: str, words: Sequence[str], *, korean: bool) -> bool:
    if not korean:
        return any(re.search(rf"\b{re.escape(word)}s?\b", text) for word in words)
    tokens = text.split()
    for word in words:
        if len(word) >= 2:
            if any(word in token for token in tokens):
                return True
        # One syllable hides inside countless words (차 in 차가운 "cold"), so it must stand alone or
        # carry a particle.
        elif any(token.startswith(word) and token[1:] in {"", *_KOREAN_PARTICLES} for token in tokens):
            return True
    return False


class KeywordEnhancer:
    """Deterministic keyword expansion: subject, material, style and mesh hints appended to the request.

    Hints are written in the request's language (Korean or English), or in English when ``language`` is
    ``"en"``; hints the request already covers are not repeated.
    """

    name = "keywords"

    def __init__(self, *, language: Language = "auto", max_chars: int = MAX_PROMPT_CHARS) -> None:
        self.language = language
        self.max_chars = max_chars

    def expand(self, prompt: str, *, style: str | None = None) -> str:
        request = " ".join(prompt.split()).rstrip(" .,")
        lowered = request.lower()
        korean_request = bool(_HANGUL.search(request))
        korean_out = korean_request and self.language == "auto"

        def matches(english: Sequence[str], korean: Sequence[str]) -> bool:
            return _has_any(lowered, english, korean=False) or (
                korean_request and _has_any(request, korean, korean=True)
            )

        hints: list[str] = []
        subject = next((group for group in _SUBJECTS if matches(group.english, group.korean)), None)
        generic_en, generic_ko = _GENERIC_SUBJECT
        if subject is None:
            hints.append(generic_ko if korean_out else generic_en)
        else:
            hints.append(subject.hint_ko if korean_out else subject.hint_en)
        material = next((group for group in _MATERIALS if matches(group.english, group.korean)), None)
        if material is not None:
            hints.append(material.hint_ko if korean_out else material.hint_en)
        chosen = style if style in _STYLE_HINTS else None
        if chosen is None:
            chosen = next(
                (name for name, spec in _STYLE_HINTS.items() if matches(spec.english, spec.korean)), None
            )
        if chosen is not None:
            spec = _STYLE_HINTS[chosen]
            hints.append(spec.hint_ko if korean_out else spec.hint_en)
        hints.append(_MESH_HINTS[1] if korean_out else _MESH_HINTS[0])
        text = request
        for hint in hints:
            candidate = f"{text}, {hint}"
            if len(candidate) > self.max_chars:
                break
            text = candidate
        return text

    async def enhance(self, prompt: str, *, style: str | None) -> str:
        return self.expand(prompt, style=style)

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------- facade


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
                text = _cut(" ".join(text.split()), self.max_chars)
                if text:
                    if failures:
                        log.warning("prompt enhancer fell back to %s (%s)", backend.name, "; ".join(failures))
                    return Enhancement(text, backend.name, tuple(failures), time.monotonic() - started)
                failures.append(f"{backend.name}: empty answer")
        # Reached only without a keyword backend: the request itself is still a valid prompt.
        log.warning("every prompt enhancer failed (%s); using the request as written", "; ".join(failures))
        return Enhancement(_cut(prompt.strip(), self.max_chars), "none", tuple(failures))

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
