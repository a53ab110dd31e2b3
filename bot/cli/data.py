"""`lumi data generate`: new label→comment pairs written by the LLM backend, for `lumi train commenter`.

This is how the seed project built its training set: label lists shaped like what the detectors
produce (one or two face emotions, up to three objects), each sent to a chat model with the comment
prompt. Label lists come from ``--labels-file`` or are sampled; objects are drawn from the label table
(people and body parts left out), or with the frequencies of an existing pairs file
(``--objects-from``). Pairs are appended to ``--out`` as they arrive, so an interrupted run keeps its
work; the file is the JSONL that `lumi train commenter --data` reads.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from bot.cli.common import settings_and_logging
from bot.errors import UserFacingError
from bot.services.comments import BackendUnavailable, LlmBackend, comment_options, llm_backend
from inference.labels import EMOTION_LABELS, Label, Language, label_from_text, oiv7_vocabulary

# Share of label lists with 0, 1, 2 and 3 objects, and with two emotions instead of one: close to the
# seed data (a third emotion-only, most with one or two objects, a tenth with two faces' emotions).
_OBJECT_COUNTS = (0, 1, 2, 3)
_OBJECT_COUNT_WEIGHTS = (0.3, 0.4, 0.2, 0.1)
_TWO_EMOTIONS = 0.1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("data", help="make training data for Lumi's comment model")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    generate = commands.add_parser(
        "generate",
        help="write label→comment pairs with the LLM backend (COMMENT_LLM_BASE_URL)",
        description="Ask the configured OpenAI-compatible chat model for one comment per label list and "
        "append {labels, comment} lines to OUT (the format `lumi train commenter` reads).",
    )
    generate.add_argument("--out", type=Path, required=True, metavar="OUT.jsonl")
    generate.add_argument("--count", type=int, default=100, help="label lists to sample (default 100)")
    generate.add_argument(
        "--labels-file", type=Path, metavar="IN.jsonl", help='use these {"labels": [...]} lines instead'
    )
    generate.add_argument(
        "--objects-from", type=Path, metavar="PAIRS.jsonl", help="sample objects with this file's frequencies"
    )
    generate.add_argument("--language", choices=("ko", "en"), default="ko")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    generate.set_defaults(func=_generate_command)


def _generate_command(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    options = comment_options(settings)
    if not options.llm_base_url:
        raise UserFacingError("set COMMENT_LLM_BASE_URL (and COMMENT_LLM_API_KEY, COMMENT_LLM_MODEL) first")
    if args.count < 1 or args.concurrency < 1:
        raise UserFacingError("--count and --concurrency must be at least 1")
    if args.labels_file:
        label_lists = read_label_lists(args.labels_file)
    else:
        objects = object_pool(args.objects_from)
        label_lists = sample_label_lists(args.count, objects, random.Random(args.seed))
    backend = llm_backend(
        options.llm_base_url,
        options.llm_api_key,
        options.llm_model,
        timeout_s=options.llm_timeout_s,
        max_retries=options.llm_max_retries,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as handle:
        written, failed = asyncio.run(
            _generate(backend, label_lists, args.language, handle, args.concurrency)
        )
    summary = f"wrote {written} pair(s) to {args.out}"
    print(f"{summary}; {failed} label list(s) failed" if failed else summary)
    return 1 if failed and not written else 0


async def _generate(
    backend: LlmBackend,
    label_lists: Sequence[list[Label]],
    language: Language,
    handle: IO[str],
    concurrency: int,
) -> tuple[int, int]:
    gate = asyncio.Semaphore(concurrency)
    counts = Counter[str]()

    async def one(labels: list[Label]) -> None:
        async with gate:
            try:
                comment = await backend.write(labels, language)
            except BackendUnavailable as exc:
                counts["failed"] += 1
                print(f"skipped {[label.name(language) for label in labels]}: {exc.reason}", file=sys.stderr)
                return
        line = json.dumps(
            {"labels": [label.name(language) for label in labels], "comment": comment}, ensure_ascii=False
        )
        await asyncio.to_thread(_append, handle, line)
        counts["written"] += 1

    try:
        await asyncio.gather(*(one(labels) for labels in label_lists))
    finally:
        await backend.close()
    return counts["written"], counts["failed"]


def _append(handle: IO[str], line: str) -> None:
    handle.write(line + "\n")
    handle.flush()


def object_pool(pairs_file: Path | None) -> Counter[str]:
    """Korean object names with sampling weights: uniform over the table, or as often as in a file."""
    vocabulary = oiv7_vocabulary()
    if pairs_file is None:
        return Counter({item.ko: 1 for item in vocabulary.classes if not item.generic})
    pool: Counter[str] = Counter()
    for labels in read_label_lists(pairs_file):
        pool.update(label.ko for label in labels if label.kind == "object")
    if not pool:
        raise UserFacingError(f"{pairs_file} names no objects to sample from")
    return pool


def sample_label_lists(count: int, objects: Counter[str], rng: random.Random) -> list[list[Label]]:
    names = sorted(objects)
    weights = [objects[name] for name in names]
    emotions = list(EMOTION_LABELS.values())
    lists: list[list[Label]] = []
    for _ in range(count):
        faces = rng.sample(emotions, 2 if rng.random() < _TWO_EMOTIONS else 1)
        wanted = rng.choices(_OBJECT_COUNTS, weights=_OBJECT_COUNT_WEIGHTS)[0]
        chosen: list[str] = []
        while len(chosen) < min(wanted, len(names)):
            name = rng.choices(names, weights=weights)[0]
            if name not in chosen:
                chosen.append(name)
        lists.append([*faces, *(label_from_text(name) for name in chosen)])
    return lists


def read_label_lists(path: Path) -> list[list[Label]]:
    """Label lists from JSONL lines with a "labels" list (other keys, such as "comment", are ignored)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise UserFacingError(f"cannot read {path}: {error.strerror or error}") from None
    lists: list[list[Label]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record: Any = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserFacingError(f"{path}:{number}: not valid JSON ({error.msg})") from None
        labels = record.get("labels") if isinstance(record, dict) else None
        if not isinstance(labels, list):
            raise UserFacingError(f'{path}:{number}: expected {{"labels": [...]}}')
        parsed = [label_from_text(str(label)) for label in labels if str(label).strip()]
        if parsed:
            lists.append(parsed)
    if not lists:
        raise UserFacingError(f"{path} has no label lists")
    return lists
