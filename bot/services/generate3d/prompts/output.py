"""What a model wrote, made into a prompt Meshy accepts, and the failure every enhancer backend reports.

``clean_output`` leaves one paragraph, no preamble or quotes, within Meshy's limit, and still containing the
user's own words (a model that drifted gets them put back).
"""

from __future__ import annotations

import re

from inference.remote.meshy import MAX_PROMPT_CHARS

__all__ = ["HANGUL", "EnhancerUnavailable", "clean_output", "cut_prompt"]

HANGUL = re.compile(r"[\uac00-\ud7a3]")
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


def _content_words(text: str) -> set[str]:
    return {word.lower() for word in _LATIN_WORD.findall(text)} - _STOP_WORDS


def cut_prompt(text: str, max_chars: int) -> str:
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
    if wanted and not HANGUL.search(original):
        kept = wanted & _content_words(text)
        if len(kept) * 2 < len(wanted):
            text = f"{original.strip().rstrip('.,')}, {text}"
    return cut_prompt(text, max_chars)
