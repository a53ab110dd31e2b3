"""What a language model is told when it writes a prompt for a text-to-3D service.

``SYSTEM_PROMPT`` sets the task (keep the request, add what a 3D modeller needs, one paragraph within
Meshy's limit); ``user_message`` carries the request and the chosen art style.
"""

from __future__ import annotations

from typing import Literal

from inference.remote.meshy import MAX_PROMPT_CHARS

__all__ = ["SYSTEM_PROMPT", "Language", "system_prompt", "user_message"]

Language = Literal["auto", "en"]

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


def system_prompt(language: Language, max_chars: int = MAX_PROMPT_CHARS) -> str:
    return SYSTEM_PROMPT.format(max_chars=max_chars, language=_LANGUAGE_NAMES[language])


def user_message(prompt: str, style: str | None) -> str:
    return prompt if not style else f"{prompt}\n(Art style: {style})"
