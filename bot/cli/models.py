"""`lumi models`: the models Lumi knows, where they run and whether they can load here."""

from __future__ import annotations

import argparse

from bot.cli.common import settings_and_logging
from inference.registry import ModelRegistry


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("models", help="list the models Lumi uses and their state")
    parser.set_defaults(func=_list)


def _list(args: argparse.Namespace) -> int:
    settings = settings_and_logging()
    registry = ModelRegistry(device=settings.inference_device)
    rows = registry.snapshot()
    if not rows:
        print("no models registered")
        return 0
    print(f"{'model':<24} {'device':<8} {'loaded':<7} queue")
    for row in rows:
        print(f"{row.name:<24} {row.device:<8} {'yes' if row.loaded else 'no':<7} {row.queue_depth}")
    return 0
