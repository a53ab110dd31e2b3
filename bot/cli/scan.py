"""`lumi scan PATH...`: check image files offline with the moderation models and policy defaults.

Exit status: 0 when nothing is flagged, 1 when at least one image is flagged, 2 for bad usage.
Nothing is stored and no database is opened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bot.cli.common import settings_and_logging
from bot.errors import UserFacingError
from bot.services.moderation_checker import CheckStatus, ImageChecker, Verdict
from bot.services.moderation_policy import DEFAULT_POLICY, Policy, PolicyError, parse_policy
from inference.images import ImageLimits
from inference.registry import ModelRegistry
from inference.threads import apply_thread_policy

_IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
_CONCURRENCY = 16


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="check image files with the moderation models (offline; nothing is stored)",
        description="Check image files with the moderation models and policy. Folders are searched "
        "for images. Exit status 1 when an image is flagged.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of a table")
    parser.add_argument(
        "--policy",
        metavar="JSON",
        help='policy overrides, e.g. \'{"categories": {"suggestive": {"review": 0.5}}}\'',
    )
    parser.set_defaults(func=_scan_command)


def _scan_command(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    policy = _policy(args.policy)
    files = list(_expand(args.paths))
    limits = ImageLimits(max_bytes=int(settings.moderation_max_image_mb * 1024 * 1024))
    apply_thread_policy(settings.inference_threads)
    results = asyncio.run(
        scan_files(
            files,
            policy=policy,
            device=settings.inference_device,
            limits=limits,
            threads=settings.inference_threads,
        )
    )
    if args.json:
        json.dump(
            {"policy": "default" if policy == DEFAULT_POLICY else "custom", "results": results},
            sys.stdout,
            indent=2,
            ensure_ascii=False,
        )
        print()
    else:
        _print_table(results)
    return 1 if any(result["flagged"] for result in results) else 0


def _policy(raw: str | None) -> Policy:
    if not raw:
        return DEFAULT_POLICY
    try:
        return parse_policy(json.loads(raw))
    except json.JSONDecodeError as error:
        raise UserFacingError(f"--policy is not valid JSON: {error.msg} at position {error.pos}") from None
    except PolicyError as error:
        raise UserFacingError(str(error)) from None


def _expand(paths: Sequence[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)
            yield from found
        else:
            # Files are scanned whatever their name: a renamed file is exactly what should be caught.
            yield path


async def scan_files(
    files: Sequence[Path],
    *,
    policy: Policy,
    device: str = "auto",
    limits: ImageLimits | None = None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """``threads``: CPU threads of each model (None: half the cores)."""
    registry = ModelRegistry(device=device)
    checker = ImageChecker(registry, limits=limits, model_threads=threads)
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(path: Path) -> dict[str, Any]:
        async with gate:
            problem = _unreadable_file(path, checker.limits.max_bytes)
            if problem is not None:
                return {"path": str(path), "flagged": False, "status": "unreadable", "reason": problem}
            data = await asyncio.to_thread(path.read_bytes)
            verdict = await checker.check_image(data, guild_policy=policy)
            return _row(path, verdict)

    try:
        return list(await asyncio.gather(*(one(path) for path in files)))
    finally:
        await checker.close()
        await registry.close()


def _unreadable_file(path: Path, max_bytes: int) -> str | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "file not found"
    except OSError as error:
        return f"cannot read: {error.strerror}"
    if not path.is_file():
        return "not a file"
    if size > max_bytes:
        return f"larger than the {max_bytes // (1024 * 1024)} MB limit"
    return None


def _row(path: Path, verdict: Verdict) -> dict[str, Any]:
    return {"path": str(path), "flagged": verdict.flagged, **verdict.to_dict()}


def _print_table(results: Sequence[dict[str, Any]]) -> None:
    if not results:
        print("no image files found")
        return
    width = min(48, max(len("file"), *(len(r["path"]) for r in results)))
    print(f"{'file':<{width}}  {'verdict':<14} {'top score':<24} {'ms':>7}  details")
    for result in results:
        path = result["path"] if len(result["path"]) <= width else "…" + result["path"][-(width - 1) :]
        status = result["status"]
        if status in (CheckStatus.UNREADABLE.value, CheckStatus.ERROR.value):
            print(f"{path:<{width}}  {status:<14} {'':<24} {'':>7}  {result['reason']}")
            continue
        verdict = "safe" if not result["flagged"] else f"{result['level']}:{result['action']}"
        scores = result["scores"]
        top = max(scores.items(), key=lambda item: item[1]) if scores else None
        top_text = f"{top[0]} {top[1]:.2f}" if top else "repeat match"
        labels = ", ".join(f"{label['label']} {label['score']:.2f}" for label in result["labels"][:3])
        details = result["reason"] if result["flagged"] else labels
        print(f"{path:<{width}}  {verdict:<14} {top_text:<24} {result['elapsed_ms']:>7.0f}  {details}")
    flagged = sum(1 for r in results if r["flagged"])
    print(f"\n{len(results)} image(s), {flagged} flagged")
