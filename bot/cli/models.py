"""`lumi models`: the models Lumi knows, where they run and whether they can load here.

Also the custom moderation classifiers: `lumi models add-classifier`, `remove-classifier` and
`classifiers`, in the registry every process reads (DATA_DIR, or the blob store in distributed mode). A
running Lumi picks registrations up within seconds; no restart is needed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.cli.common import settings_and_logging
from bot.config import Settings
from bot.runtime import Runtime
from bot.services.moderation import CATEGORIES, ClassifierCatalog, classifier_catalog_for
from inference.runners.base import ModelUnavailable


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list the models Lumi uses and their state")
    parser.add_argument(
        "--load", action="store_true", help="load every model now and say which cannot load here, and why"
    )
    parser.set_defaults(func=_list)
    actions = parser.add_subparsers(dest="models_command", metavar="ACTION")

    add = actions.add_parser(
        "add-classifier",
        help="use a trained image classifier in moderation",
        description="Register a classifier trained with `lumi train classifier` for a moderation category, "
        f"globally or for one server. Built-in categories ({', '.join(CATEGORIES)}) use the server's "
        "thresholds; any other name is a category of its own, with the thresholds given here.",
    )
    add.add_argument("path", type=Path, metavar="PATH", help="the classifier folder or its model.keras")
    add.add_argument("--category", required=True, help="e.g. violence, violence_graphic, weapons")
    add.add_argument("--guild", type=int, metavar="ID", help="only for this server (default: every server)")
    add.add_argument("--name", help="a label for listings (default: the folder name)")
    add.add_argument(
        "--review", type=float, help="custom categories: review threshold (default: the recommended one)"
    )
    add.add_argument("--act", type=float, help="custom categories: auto-action threshold (default: off)")
    add.add_argument(
        "--review-action", choices=("alert", "hold"), help="custom categories: at review (default alert)"
    )
    add.add_argument("--no-verify", action="store_true", help="do not load the model to check it first")
    add.set_defaults(func=_add_classifier)

    remove = actions.add_parser(
        "remove-classifier", help="stop using a custom classifier and delete its copy"
    )
    remove.add_argument("id", type=int, metavar="ID", help="the number `lumi models classifiers` shows")
    remove.set_defaults(func=_remove_classifier)

    listing = actions.add_parser("classifiers", help="list the registered custom classifiers")
    listing.add_argument("--guild", type=int, metavar="ID", help="only those that apply to this server")
    listing.add_argument("--json", action="store_true", help="the registrations as JSON")
    listing.set_defaults(func=_list_classifiers)


def _list(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    unavailable = asyncio.run(_show_models(settings, load=args.load))
    with _catalog(settings) as catalog:
        classifiers = catalog.load()
    if classifiers:
        print(f"custom classifiers: {len(classifiers)} registered (see `lumi models classifiers`)")
    return 1 if unavailable else 0


async def _show_models(settings: Settings, *, load: bool) -> int:
    """Print every model the services register; with ``load``, load each one. Returns how many failed."""
    runtime = await Runtime.open(settings)
    problems: dict[str, str] = {}
    try:
        if load:
            for name in runtime.registry.registered():
                try:
                    await runtime.registry.get(name)
                except ModelUnavailable as error:
                    problems[name] = str(error)
        rows = runtime.registry.snapshot()
        if not rows:
            print("no models registered")
        else:
            print(f"{'model':<24} {'device':<8} {'loaded':<7} queue")
            for row in rows:
                loaded = "yes" if row.loaded else "no"
                print(f"{row.name:<24} {row.device:<8} {loaded:<7} {row.queue_depth}")
        for name, reason in problems.items():
            print(f"  {name}: {reason}")
        if not load:
            print("models load on first use; `lumi models --load` loads them all now")
    finally:
        await runtime.close()
    return len(problems)


def _add_classifier(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    from bot.services.moderation import verify_classifier

    with _catalog(settings) as catalog:
        entry = catalog.add(
            args.path,
            category=args.category,
            guild_id=args.guild,
            review=args.review,
            act=args.act,
            review_action=args.review_action,
            name=args.name,
            verify=None if args.no_verify else verify_classifier,
        )
    print(f"registered {entry.summary()}")
    if entry.builtin_category:
        print(f"set its thresholds with /moderation setup category:{entry.category}")
    return 0


def _remove_classifier(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    with _catalog(settings) as catalog:
        entry = catalog.remove(args.id)
    print(f"removed #{entry.id} ({entry.category}, {entry.scope}, {entry.name})")
    return 0


def _list_classifiers(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    with _catalog(settings) as catalog:
        entries = catalog.load()
    if args.guild is not None:
        entries = [entry for entry in entries if entry.applies_to(args.guild)]
    if args.json:
        print(json.dumps([entry.to_json() for entry in entries], indent=2, ensure_ascii=False))
        return 0
    if not entries:
        print("no custom classifiers registered")
        return 0
    for entry in entries:
        print(entry.summary())
    return 0


@contextmanager
def _catalog(settings: Settings) -> Iterator[ClassifierCatalog]:
    catalog = classifier_catalog_for(settings)
    try:
        yield catalog
    finally:
        catalog.close()
