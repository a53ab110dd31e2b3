"""Deterministic keyword expansion of a text-to-3D request, in English and Korean.

``KeywordEnhancer`` appends subject, material, style and mesh hints from ``keywords.json``. It never
fails, so it is the last backend a ``PromptEnhancer`` tries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bot.services.generate3d.prompts.instructions import Language
from bot.services.generate3d.prompts.output import HANGUL
from inference.remote.meshy import MAX_PROMPT_CHARS

__all__ = ["KeywordEnhancer"]


@dataclass(frozen=True)
class _KeywordGroup:
    english: tuple[str, ...]
    korean: tuple[str, ...]
    hint_en: str
    hint_ko: str


def _load_keywords() -> tuple[
    list[_KeywordGroup], list[_KeywordGroup], dict[str, _KeywordGroup], tuple[str, str], tuple[str, str]
]:
    """The expansion tables (``keywords.json`` beside this file): data, not code, so that people who
    write prompts, not only programmers, can extend them."""
    raw = json.loads(
        resources.files("bot.services.generate3d.prompts").joinpath("keywords.json").read_text("utf-8")
    )

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
        korean_request = bool(HANGUL.search(request))
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
