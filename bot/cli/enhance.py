"""`lumi enhance "prompt"`: print the prompt the 3D generator would get (nothing is stored)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from bot.cli.common import settings_and_logging
from bot.config import Settings
from bot.services.generate3d import STYLES, Enhancement, prompt_checker, prompt_enhancer


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "enhance",
        help="print the enhanced 3D prompt for a short request",
        description="Enhance a text-to-3D prompt with the configured backends (ENHANCER_* settings): an "
        "OpenAI-compatible chat model, a local model, or keyword expansion as the fallback.",
    )
    parser.add_argument("prompt", help="what to make, e.g. 'a small wooden treasure chest'")
    parser.add_argument("--style", choices=STYLES, help="art style hint")
    parser.add_argument(
        "--backend", choices=("auto", "openai", "local", "keywords"), help="override ENHANCER_BACKEND"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON object with backend and timings")
    parser.set_defaults(func=_enhance_command)


def _enhance_command(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.backend:
        overrides["enhancer_backend"] = args.backend
    settings = settings_and_logging(**overrides)
    verdict = prompt_checker(settings).check_words(args.prompt)
    if not verdict.allowed:
        print(f"lumi: {verdict.user_message}", file=sys.stderr)
        return 2
    result = asyncio.run(_enhance(settings, args.prompt, style=args.style))
    if args.json:
        payload = {
            "prompt": args.prompt,
            "enhanced": result.text,
            "backend": result.backend,
            "fallbacks": list(result.fallbacks),
            "elapsed_s": round(result.elapsed_s, 3),
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2))
    else:
        print(result.text)
        note = f"({result.backend}, {result.elapsed_s:.2f} s"
        note += f"; fell back: {'; '.join(result.fallbacks)})" if result.fallbacks else ")"
        print(note, file=sys.stderr)
    return 0


async def _enhance(settings: Settings, prompt: str, *, style: str | None) -> Enhancement:
    enhancer = prompt_enhancer(settings)
    try:
        return await enhancer.enhance(prompt, style=style)
    finally:
        await enhancer.close()
