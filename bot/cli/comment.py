"""`lumi comment`: labels and a comment for image files, or comments for given label lists.

    lumi comment photo.jpg other.png          labels and comment per image
    lumi comment --labels "기쁨, 재킷"          a comment for one label list
    lumi comment --labels-file in.jsonl --out out.jsonl
                                              one comment per {"labels": [...]} line, in batch

Nothing is stored and no database is opened. Exit status: 0 when every input got a comment, 1 when
some did not (unreadable image, nothing recognised, a bad input line), 2 for bad usage.

Each mode imports what it uses when it runs: label lists need the comment backends only, not the
perception models, image decoding or the database, and `lumi comment --labels` is a command people
wait for (bench/cold_start.py measures it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.cli.common import settings_and_logging
from bot.cli.input_files import UnreadableInput, read_input_file
from bot.errors import UserFacingError
from bot.services.comments import BACKEND_NAMES
from inference.labels import Label, Language, label_from_text, labels_from_text

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.services.comments import BackendName, CommentService, CommentWriter, WrittenComment
    from inference.registry import ModelRegistry

# Concurrent requests let the model's batcher fill its batches; more only queue up.
_CONCURRENCY = 64


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "comment",
        help="write SNS-style comments for images or label lists (offline; nothing is stored)",
        description="Print the labels Lumi sees in each image and the comment it writes, or write "
        "comments for label lists you give.",
    )
    parser.add_argument("paths", nargs="*", metavar="PATH", help="image files")
    parser.add_argument("--labels", metavar="TEXT", help='comma-separated labels, e.g. "기쁨, 재킷"')
    parser.add_argument(
        "--labels-file", type=Path, metavar="IN.jsonl", help='JSONL with one {"labels": [...]} per line'
    )
    parser.add_argument(
        "--out", type=Path, metavar="OUT.jsonl", help="where --labels-file writes (default: stdout)"
    )
    parser.add_argument("--language", choices=("ko", "en"), default="ko")
    parser.add_argument("--backend", choices=BACKEND_NAMES, default="local", help="first backend to try")
    parser.add_argument("--json", action="store_true", help="one JSON object per input on stdout")
    # Every mode closes its models and files before returning (see `bot.cli.entry`).
    parser.set_defaults(func=_comment_command, skip_teardown=True)


def _comment_command(args: argparse.Namespace) -> int:
    modes = sum(bool(mode) for mode in (args.paths, args.labels, args.labels_file))
    if modes != 1:
        raise UserFacingError("give image PATHs, or --labels, or --labels-file (exactly one of them)")
    if args.out and not args.labels_file:
        raise UserFacingError("--out goes with --labels-file")
    settings = settings_and_logging()
    language: Language = args.language
    backend: BackendName = args.backend
    if args.labels:
        return asyncio.run(_labels(settings, args.labels, language, backend, as_json=args.json))
    if args.labels_file:
        return _labels_file(settings, args.labels_file, args.out, language, backend)
    return asyncio.run(_images(settings, [Path(p) for p in args.paths], language, backend, as_json=args.json))


def _registry(settings: Settings) -> ModelRegistry:
    from inference.registry import ModelRegistry
    from inference.threads import apply_thread_policy

    apply_thread_policy(settings.inference_threads)
    return ModelRegistry(device=settings.inference_device)


def _label_writer(settings: Settings) -> tuple[ModelRegistry, CommentWriter]:
    """What label lists need: the comment backends, without the service's photos, database and gate."""
    from bot.services.comments import build_writer, comment_options

    registry = _registry(settings)
    return registry, build_writer(registry, comment_options(settings))


def _with_service(settings: Settings) -> tuple[ModelRegistry, CommentService]:
    from bot.services.comments import build_comment_service

    registry = _registry(settings)
    return registry, build_comment_service(settings, registry)


async def _close(registry: ModelRegistry, service: CommentService | CommentWriter) -> None:
    try:
        await service.close()
    finally:
        await registry.close()


async def _labels(
    settings: Settings, text: str, language: Language, backend: BackendName, *, as_json: bool
) -> int:
    labels = labels_from_text(text)
    if not labels:
        raise UserFacingError('--labels needs at least one label, e.g. --labels "기쁨, 재킷"')
    registry, writer = _label_writer(settings)
    started = time.perf_counter()
    try:
        written = await writer.write(labels, language, backend=backend)
    finally:
        await _close(registry, writer)
    latency_ms = (time.perf_counter() - started) * 1000.0
    if as_json:
        _print_json({"labels": _label_names(labels, language), **_written(written, latency_ms)})
    else:
        print(written.text)
        _note_fallback(written)
    return 0


async def _images(
    settings: Settings, paths: Sequence[Path], language: Language, backend: BackendName, *, as_json: bool
) -> int:
    from inference.images import ImageRejected

    registry, service = _with_service(settings)
    gate = asyncio.Semaphore(4)

    async def one(path: Path) -> dict[str, Any]:
        async with gate:
            try:
                data = await asyncio.to_thread(
                    read_input_file, path, max_bytes=service.image_limits.max_bytes
                )
            except UnreadableInput as problem:
                return {"path": str(path), "error": problem.reason}
            try:
                result = await service.comment_on_images([data], language=language, backend=backend)
            except ImageRejected as error:
                return {"path": str(path), "error": error.message}
            if result is None:
                return {"path": str(path), "labels": [], "error": "no face or known object found"}
            row = {
                "path": str(path),
                "labels": result.label_names(),
                "comment": result.comment,
                "backend": result.backend,
                "latency_ms": round(result.latency_ms, 1),
            }
            perception = result.perceptions[0] if result.perceptions else None
            if perception is not None:
                row["faces"] = len(perception.faces)
                row["models_missing"] = perception.missing
            return row

    try:
        rows = list(await asyncio.gather(*(one(path) for path in paths)))
    finally:
        await _close(registry, service)
    for row in rows:
        if as_json:
            _print_json(row)
            continue
        print(row["path"])
        if "error" in row:
            print(f"  {row['error']}")
            continue
        print(f"  labels:  {', '.join(row['labels'])}")
        print(f"  comment: {row['comment']}  [{row['backend']}, {row['latency_ms']:.0f} ms]")
    return 1 if any("error" in row for row in rows) else 0


def _labels_file(
    settings: Settings, source: Path, out: Path | None, language: Language, backend: BackendName
) -> int:
    rows = asyncio.run(_comment_label_lines(settings, _read_label_lines(source), language, backend))
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    if out is None:
        for line in lines:
            print(line)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        done = sum(1 for row in rows if "comment" in row)
        print(f"wrote {done} comment(s) to {out}", file=sys.stderr)
    return 1 if any("error" in row for row in rows) else 0


async def _comment_label_lines(
    settings: Settings, inputs: Sequence[dict[str, Any] | str], language: Language, backend: BackendName
) -> list[dict[str, Any]]:
    registry, writer = _label_writer(settings)
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(record: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(record, str):
            return {"error": record}
        async with gate:
            labels = [label_from_text(str(text)) for text in record["labels"] if str(text).strip()]
            if not labels:
                return {**record, "error": "no labels"}
            written = await writer.write(labels, language, backend=backend)
            return {**record, "comment": written.text, "backend": written.backend}

    try:
        return list(await asyncio.gather(*(one(record) for record in inputs)))
    finally:
        await _close(registry, writer)


def _read_label_lines(path: Path) -> list[dict[str, Any] | str]:
    """Each line's object, or a string saying what is wrong with the line (kept in order in the output)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserFacingError(f"cannot read {path}: {error.strerror or error}") from None
    records: list[dict[str, Any] | str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            records.append(f"line {number}: not valid JSON ({error.msg})")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("labels"), list):
            records.append(f'line {number}: expected {{"labels": [...]}}')
            continue
        records.append(record)
    if not records:
        raise UserFacingError(f"{path} has no label lines")
    return records


def _label_names(labels: Sequence[Label], language: Language) -> list[str]:
    return [label.name(language) for label in labels]


def _written(written: WrittenComment, latency_ms: float) -> dict[str, Any]:
    return {"comment": written.text, "backend": written.backend, "latency_ms": round(latency_ms, 1)}


def _note_fallback(written: WrittenComment) -> None:
    for name, reason in written.skipped:
        print(f"(backend {name} skipped: {reason})", file=sys.stderr)


def _print_json(row: dict[str, Any]) -> None:
    print(json.dumps(row, ensure_ascii=False))
