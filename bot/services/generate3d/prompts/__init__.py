"""The 3D prompt's two steps before Meshy: the prompt check (keywords, then an optional LLM judge) and the
prompt enhancer (an LLM, or keywords, rewriting a short idea into a Meshy prompt, with its output
checked).
"""

from __future__ import annotations

from bot.services.generate3d.prompts.check import PromptChecker, PromptVerdict
from bot.services.generate3d.prompts.enhancer import (
    STYLES,
    Enhancement,
    PromptEnhancer,
    build_prompt_enhancer,
)
from bot.services.generate3d.prompts.keywords import KeywordEnhancer

__all__ = [
    "STYLES",
    "Enhancement",
    "KeywordEnhancer",
    "PromptChecker",
    "PromptEnhancer",
    "PromptVerdict",
    "build_prompt_enhancer",
]
