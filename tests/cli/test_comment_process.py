"""`lumi comment` as its own process: the comment it writes, its exit status, and what it imports.

The command imports only what its mode needs and ends with `os._exit` once its output is flushed
(`bot.cli.entry`); these tests hold it to writing exactly what the in-process service writes, to
flushing every line before it ends, and to an import budget that keeps it quick to start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import COMMANDS
from tests.conftest import make_settings

# Each test starts Lumi processes that load the comment model: slow on a busy machine.
pytestmark = pytest.mark.timeout(300)

LABELS = "기쁨, 재킷"
TIMEOUT_S = 180


def process_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """This environment without comment settings: the committed model, no LLM, nothing downloaded."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("COMMENT_", "DISCORD_"))}
    env.update(
        {
            "INFERENCE_DEVICE": "cpu",
            "DATA_DIR": str(tmp_path / "data"),
            "COMMENT_OBJECTS_DOWNLOAD": "false",
            "PYTHONPATH": os.pathsep.join(
                [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
            ),
            **extra,
        }
    )
    return env


def lumi(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`lumi ARGS` the way the console script runs it (`bot.__main__.main`), in its own process."""
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=tmp_path,  # no developer .env
        env=process_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


async def test_labels_write_the_comment_the_service_writes(tmp_path: Path) -> None:
    from bot.services.comments import build_comment_service
    from inference.labels import labels_from_text
    from inference.registry import ModelRegistry

    done = lumi(tmp_path, "comment", "--labels", LABELS, "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)

    settings = make_settings(tmp_path, inference_device="cpu", comment_objects_download=False)
    registry = ModelRegistry(device="cpu")
    service = build_comment_service(settings, registry)
    try:
        expected = await service.comment_on_labels(labels_from_text(LABELS), language="ko", backend="local")
    finally:
        await service.close()
        await registry.close()
    assert expected.backend == "local"  # the committed model wrote it, not a fallback
    assert (row["labels"], row["comment"], row["backend"]) == (
        expected.label_names(),
        expected.comment,
        expected.backend,
    )
    plain = lumi(tmp_path, "comment", "--labels", LABELS)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == f"{expected.comment}\n"


def test_bad_input_exits_with_its_status_and_says_why(tmp_path: Path) -> None:
    no_labels = lumi(tmp_path, "comment", "--labels", " , ")
    assert no_labels.returncode == 2
    assert "lumi: --labels needs at least one label" in no_labels.stderr
    assert "Traceback" not in no_labels.stderr
    two_modes = lumi(tmp_path, "comment", "a.jpg", "--labels", "기쁨")
    assert two_modes.returncode == 2 and "exactly one of them" in two_modes.stderr
    unknown_language = lumi(tmp_path, "comment", "--labels", "기쁨", "--language", "fr")
    assert unknown_language.returncode == 2 and "invalid choice: 'fr'" in unknown_language.stderr
    missing = lumi(tmp_path, "comment", "--labels-file", str(tmp_path / "none.jsonl"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_every_line_is_flushed_before_the_process_ends(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"labels": ["기쁨", name], "n": n}, ensure_ascii=False) for n, name in enumerate(NAMES)
    ]
    source.write_text("\n".join([*lines, "not json"]) + "\n", encoding="utf-8")
    done = lumi(tmp_path, "comment", "--labels-file", str(source), "--backend", "template")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 1  # the last line is not JSON, and says so in its output line
    assert [row.get("n") for row in rows] == [*range(len(NAMES)), None]
    assert all(name in row["comment"] for name, row in zip(NAMES, rows, strict=False))
    assert "not valid JSON" in rows[-1]["error"]


NAMES = ["재킷", "나무", "자전거", "고양이", "케이크", "꽃"] * 50


# Loaded by `lumi comment --labels` only if something pulled in a module it does not need.
NOT_FOR_LABELS = (
    "cv2",
    "tensorflow",
    "ultralytics",
    "onnxruntime",
    "discord",
    "openai",
    "redis",
    "alembic",
    "sqlmodel",
    "sqlalchemy.ext.asyncio",
    "storage.db",
    "bot.services.moderation",
    "bot.services.comments.service",
    "inference.images",
)

IMPORTED = """
import json, sys
from bot.cli import main
status = main(sys.argv[1:])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED, *args],
        cwd=tmp_path,
        env=process_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["status"] == 0, done.stderr
    return set(report["modules"])


def test_labels_import_only_what_they_need(tmp_path: Path) -> None:
    with_template = imported_by(tmp_path, "comment", "--labels", LABELS, "--backend", "template")
    assert with_template.isdisjoint(NOT_FOR_LABELS), sorted(with_template & set(NOT_FOR_LABELS))
    # No model ran: the template backend does not load torch either.
    assert "torch" not in with_template
    with_model = imported_by(tmp_path, "comment", "--labels", LABELS)
    assert with_model.isdisjoint(NOT_FOR_LABELS), sorted(with_model & set(NOT_FOR_LABELS))
    assert {"torch", "transformers", "kiwipiepy"} <= with_model  # the model and its guard did run


RUN_NEEDS = ("bot.client", "bot.runtime", "bot.web.app", "discord")


def test_lumi_run_and_the_full_parser_still_load_their_commands(tmp_path: Path) -> None:
    help_text = lumi(tmp_path, "--help")
    assert help_text.returncode == 0
    for name in COMMANDS:
        assert name in help_text.stdout, name
    # `lumi run` parses on its own module, which brings the bot, the runtime and the web server.
    probe = (
        "import sys\n"
        "from bot.cli import parse\n"
        "args = parse(['run', '--port', '0'])\n"
        f"print(args.func.__module__, *sorted(m for m in {RUN_NEEDS!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=process_env(tmp_path), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["bot.cli.run", *sorted(RUN_NEEDS)]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_registers_under_its_own_name(name: str) -> None:
    from bot.cli import build_parser

    parser = build_parser([name])
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert list(choices) == [name]
