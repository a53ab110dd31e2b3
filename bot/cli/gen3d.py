"""`lumi gen3d "prompt" --out DIR`: run one whole 3D job from the terminal and save its files.

The job goes through the same service as `/3d` (prompt check, enhancement, Meshy, blob store) and is
recorded in the database like any other, without quotas. Ctrl+C cancels it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TextIO

from bot.cli.common import settings_and_logging
from bot.config import Settings
from bot.errors import UserFacingError
from bot.runtime import Runtime
from bot.services.generate3d import (
    STYLES,
    GenerationOptions,
    GenerationRequest,
    JobResult,
    JobSnapshot,
    progress_bar,
    stage_line,
)
from storage.models import JobState

CLI_USER_ID = 0  # jobs from the terminal belong to no Discord user


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "gen3d",
        help="generate a 3D model from a prompt and save its files (needs MESHY_API_KEY)",
        description="Run a whole text-to-3D job (check, enhance, Meshy preview and refine, download) and "
        "save the files into --out. MESHY_API_KEY=msy_dummy_api_key_for_test_mode_12345678 (Meshy's "
        "test mode) costs nothing and always returns the same sample model.",
    )
    parser.add_argument("prompt", help="what to make")
    parser.add_argument("--out", type=Path, required=True, help="folder for the files (created if needed)")
    parser.add_argument("--style", choices=STYLES)
    parser.add_argument("--no-texture", action="store_true", help="stop after the untextured shape")
    parser.add_argument("--no-enhance", action="store_true", help="send the prompt as written")
    parser.add_argument("--polycount", type=int, help="target polygon count (100-300000)")
    parser.add_argument(
        "--formats", default="glb,fbx,obj,usdz", help="comma-separated (default: %(default)s)"
    )
    parser.set_defaults(func=_gen3d_command)


def _gen3d_command(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    if settings.meshy_api_key is None:
        raise UserFacingError(
            "MESHY_API_KEY is not set. For a free first try use Meshy's test-mode key "
            "msy_dummy_api_key_for_test_mode_12345678"
        )
    formats = tuple(
        dict.fromkeys(["glb", *(f.strip().lower() for f in args.formats.split(",") if f.strip())])
    )
    options = GenerationOptions(
        texture=not args.no_texture,
        enhance=not args.no_enhance,
        style=args.style,
        polycount=args.polycount,
        formats=formats,
    )
    return asyncio.run(run_job(settings, args.prompt, options, args.out))


async def run_job(settings: Settings, prompt: str, options: GenerationOptions, out: Path) -> int:
    runtime = await Runtime.open(settings)
    service = runtime.generation
    try:
        request = GenerationRequest(user_id=CLI_USER_ID, prompt=prompt, options=options, enforce_quotas=False)
        job = await service.submit(request)
        printer = _ProgressPrinter(sys.stderr)
        async with service.subscribe(job.id) as queue:
            snapshot = await service.snapshot(job.id)
            try:
                while snapshot is None or not snapshot.is_terminal:
                    if snapshot is not None:
                        printer.show(snapshot)
                    snapshot = await queue.get()
            except (KeyboardInterrupt, asyncio.CancelledError):
                with contextlib.suppress(UserFacingError):
                    await service.cancel(job.id, user_id=CLI_USER_ID)
                printer.finish("canceled")
                return 130
            printer.show(snapshot)
        printer.finish()
        final = await service.wait(job.id)
        if final.state is not JobState.DONE:
            print(f"lumi: {final.error or final.state.value}", file=sys.stderr)
            return 1
        if final.enhanced_prompt and final.enhanced_prompt != final.prompt:
            print(f"enhanced prompt: {final.enhanced_prompt}", file=sys.stderr)
        for path in await save_files(await service.result(job.id), runtime, out):
            print(path)
        return 0
    finally:
        await runtime.close()


async def save_files(result: JobResult, runtime: Runtime, out: Path) -> list[Path]:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    saved = []
    for asset in result.assets:
        target = out / asset.filename
        data = await runtime.blobs.read(asset.key)
        await asyncio.to_thread(target.write_bytes, data)
        saved.append(target)
    return saved


class _ProgressPrinter:
    """One redrawn line on a terminal; one line per stage change otherwise (logs, pipes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last_stage: JobState | None = None

    def show(self, snapshot: JobSnapshot) -> None:
        line = f"{progress_bar(snapshot.progress, 30)} {snapshot.progress:3d}%  {stage_line(snapshot)}"
        if self.tty:
            self.stream.write("\r\033[K" + line)
            self.stream.flush()
        elif snapshot.state is not self._last_stage:
            self.stream.write(line + "\n")
        self._last_stage = snapshot.state

    def finish(self, note: str = "") -> None:
        if self.tty:
            self.stream.write("\n")
        if note:
            self.stream.write(note + "\n")
        self.stream.flush()
