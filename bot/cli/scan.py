"""`lumi scan PATH...`: check image files offline with the moderation models and a moderation policy.

The custom classifiers registered for all servers run beside the built-in models (``--guild``: those
that apply to that server; ``--no-custom``: none), through the same check moderation makes. A registered
classifier that cannot load is reported and left out; the others still run.

The policy is ``--policy`` when given, else with ``--guild`` that server's stored policy, else the
defaults; one line says which. Reading a server's policy opens the configured database read only; when
it cannot be read, or the server has no stored settings, the line says so and the defaults apply.

Exit status (`scan_report.EXIT_STATUS_HELP`): 0 every image checked and none flagged, 1 at least one
flagged, 2 bad usage or no image could be checked, 3 none flagged but some could not be checked. File
names are printed escaped (a name can hold newlines or terminal escape sequences). Nothing is stored
(the classifier registry is a file under DATA_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.cli.common import settings_and_logging
from bot.cli.input_files import UnreadableInput, read_input_file
from bot.cli.scan_report import (
    EXIT_STATUS_HELP,
    classifier_json,
    exit_status,
    json_text,
    print_table,
    print_unavailable_classifiers,
    was_checked,
)
from bot.config import Settings
from bot.errors import UserFacingError
from bot.services.moderation import (
    DEFAULT_POLICY,
    ClassifierCatalog,
    ClassifierDetector,
    ExtraDetector,
    ImageChecker,
    Policy,
    PolicyError,
    RegisteredClassifier,
    Verdict,
    classifier_catalog_for,
    parse_policy,
    stored_guild_config,
)
from inference.images import ImageLimits
from inference.registry import ModelRegistry
from inference.threads import apply_thread_policy
from storage.db import Database, DatabaseUnavailable

_IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)
_CONCURRENCY = 16


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="check image files with the moderation models (offline; nothing is stored)",
        description="Check image files with the moderation models and policy. Folders are searched "
        "for images. The custom classifiers registered for all servers (lumi models add-classifier) run "
        "too, and their categories score and flag as in moderation. A registered classifier that cannot "
        "load is reported and left out. The policy is --policy when given, else with --guild that "
        "server's stored policy (read from the database), else the defaults; a line says which.",
        epilog=EXIT_STATUS_HELP,
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout instead of a table")
    parser.add_argument(
        "--policy",
        metavar="JSON",
        help='policy overrides over the defaults, e.g. \'{"categories": {"suggestive": {"review": 0.5}}}\'; '
        "takes precedence over the stored policy of --guild",
    )
    custom = parser.add_mutually_exclusive_group()
    custom.add_argument(
        "--guild",
        type=_server_id,
        metavar="ID",
        help="check as moderation would for a post in this server: the custom classifiers that apply "
        "there (its own and those for all servers) and its stored moderation policy, read from the "
        "database (the defaults when it cannot be read or the server has none; --policy overrides it)",
    )
    custom.add_argument(
        "--no-custom", action="store_true", help="only the built-in models, no custom classifiers"
    )
    parser.set_defaults(func=_scan_command)


def _server_id(text: str) -> int:
    if not text.isdigit() or int(text) <= 0:
        raise argparse.ArgumentTypeError(f"a server id is a positive number (got {text!r})")
    return int(text)


@dataclass(frozen=True)
class ScanOutcome:
    results: list[dict[str, Any]]
    # Registered classifiers that could not load, by id, with the reason; the scan went on without them.
    unavailable_classifiers: dict[int, str]


def _scan_command(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    choice = _choose_policy(args.policy, args.guild, settings)
    policy = choice.policy
    files = list(_expand(args.paths))
    limits = ImageLimits(max_bytes=int(settings.moderation_max_image_mb * 1024 * 1024))
    catalog = None if args.no_custom else classifier_catalog_for(settings)
    try:
        classifiers = [] if catalog is None else _registered_for(catalog, args.guild)
        apply_thread_policy(settings.inference_threads)
        outcome = asyncio.run(
            scan_files(
                files,
                policy=policy,
                classifiers=catalog if classifiers else None,
                guild_id=args.guild,
                device=settings.inference_device,
                limits=limits,
                threads=settings.inference_threads,
            )
        )
    finally:
        if catalog is not None:
            catalog.close()
    unavailable = outcome.unavailable_classifiers
    print_unavailable_classifiers(classifiers, unavailable)
    results = outcome.results
    # On stderr with --json, so that stdout stays one JSON document.
    print(f"policy: {choice.description}", file=sys.stderr if args.json else sys.stdout)
    status = exit_status(results)
    if args.json:
        document = {
            "policy": "default" if policy == DEFAULT_POLICY else "custom",
            "policy_source": choice.source,
            "policy_description": choice.description,
            "guild_id": args.guild,
            "custom_classifiers": [classifier_json(c, unavailable.get(c.id)) for c in classifiers],
            "results": [{**result, "path": json_text(result["path"])} for result in results],
            "summary": {
                "images": len(results),
                "flagged": sum(1 for result in results if result["flagged"]),
                "not_checked": sum(1 for result in results if not was_checked(result)),
                "exit_status": status,
            },
        }
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        print_table(
            results,
            classifiers=None if catalog is None else classifiers,
            unchecked_action=policy.unchecked_action.value,
        )
    return status


def _registered_for(catalog: ClassifierCatalog, guild_id: int | None) -> list[RegisteredClassifier]:
    try:
        registered = catalog.load()
    except UserFacingError as error:
        raise UserFacingError(f"{error} (--no-custom scans without the custom classifiers)") from None
    return [classifier for classifier in registered if classifier.applies_to(guild_id)]


@dataclass(frozen=True)
class PolicyChoice:
    """The policy a scan judges by, where it came from, and the line that tells the user."""

    policy: Policy
    source: Literal["option", "guild", "default"]
    description: str


def _choose_policy(raw: str | None, guild_id: int | None, settings: Settings) -> PolicyChoice:
    """``--policy`` first, then the stored policy of ``--guild``, then the defaults."""
    if raw:
        ignored = f" (server {guild_id}'s stored policy not read)" if guild_id is not None else ""
        return PolicyChoice(_policy(raw), "option", f"from --policy{ignored}")
    if guild_id is None:
        return PolicyChoice(DEFAULT_POLICY, "default", "default")
    return asyncio.run(_stored_policy(settings.resolved_database_url, guild_id))


async def _stored_policy(database_url: str, guild_id: int) -> PolicyChoice:
    database = Database(database_url)
    try:
        config = await stored_guild_config(database, guild_id)
    except DatabaseUnavailable as error:
        return PolicyChoice(
            DEFAULT_POLICY, "default", f"default (cannot read server {guild_id}'s stored policy: {error})"
        )
    finally:
        await database.close()
    if config is None:
        return PolicyChoice(
            DEFAULT_POLICY,
            "default",
            f"default (server {guild_id} has no stored moderation settings in {database.url})",
        )
    if config.policy_problem is not None:
        return PolicyChoice(
            DEFAULT_POLICY,
            "default",
            f"default (server {guild_id}'s stored policy is invalid: {config.policy_problem})",
        )
    notes = []
    if config.policy == DEFAULT_POLICY:
        notes.append("the same as the default")
    if not config.enabled:
        notes.append("moderation is turned off in that server")
    suffix = f" ({'; '.join(notes)})" if notes else ""
    return PolicyChoice(config.policy, "guild", f"stored policy of server {guild_id}{suffix}")


def _policy(raw: str) -> Policy:
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
    classifiers: ClassifierCatalog | None = None,
    guild_id: int | None = None,
    device: str = "auto",
    limits: ImageLimits | None = None,
    threads: int | None = None,
) -> ScanOutcome:
    """``classifiers``: the registered ones that apply to ``guild_id`` (None: all servers) run too.

    ``threads``: CPU threads of each model (None: half the cores).
    """
    registry = ModelRegistry(device=device)
    detector = ClassifierDetector(classifiers, registry) if classifiers is not None else None
    extra: list[ExtraDetector] = [detector] if detector is not None else []
    checker = ImageChecker(
        registry, limits=limits, extra_detectors=extra, model_threads=threads, hash_every_image=True
    )
    gate = asyncio.Semaphore(_CONCURRENCY)

    async def one(path: Path) -> dict[str, Any]:
        async with gate:
            try:
                data = await asyncio.to_thread(read_input_file, path, max_bytes=checker.limits.max_bytes)
            except UnreadableInput as problem:
                return {"path": str(path), "flagged": False, "status": "unreadable", "reason": problem.reason}
            verdict = await checker.check_image(data, guild_policy=policy, guild_id=guild_id)
            return _row(path, verdict)

    try:
        results = list(await asyncio.gather(*(one(path) for path in files)))
        return ScanOutcome(results, detector.unavailable() if detector is not None else {})
    finally:
        await checker.close()
        await registry.close()


def _row(path: Path, verdict: Verdict) -> dict[str, Any]:
    return {"path": str(path), "flagged": verdict.flagged, **verdict.to_dict()}
