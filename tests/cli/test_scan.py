"""`lumi scan`: what a newcomer runs offline on a fresh machine, with the real models.

Custom classifiers are the pattern classifier (stripes flagged, dots harmless), trained once per session.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main, scan
from bot.cli.common import settings_and_logging
from bot.services.moderation.classifiers.detector import REGISTRY_FILE, ClassifierCatalog, classifier_catalog
from bot.services.moderation.policy import DEFAULT_POLICY
from storage.db import Database, default_sqlite_url
from storage.repo import guilds as repo_guilds
from tests.fakes import hostile_images as hostile
from tests.fakes import images as corpus
from tests.fakes.patterns import png_bytes


@pytest.fixture
def photos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("INFERENCE_DEVICE", "cpu")
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    for name, target in (("chelsea", "cat.png"), ("rocket", "nested/rocket.jpg")):
        data = corpus.photo_bytes(name)
        if data is None:
            pytest.skip(f"the package that ships the {name} photo is not installed")
        (folder / target).write_bytes(data)
    (folder / "notes.txt").write_text("not an image, and not named like one")
    (tmp_path / "renamed.jpg").write_bytes(corpus.PLAIN_TEXT)
    return folder


def test_table_for_folders_and_files(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scan", str(photos), str(photos.parent / "renamed.jpg"), str(photos / "missing.png")])
    out = capsys.readouterr().out
    assert code == 3  # nothing flagged, but two files could not be checked
    lines = {line.split()[0].rsplit("/", 1)[-1]: line for line in out.splitlines() if "/" in line}
    assert set(lines) == {"cat.png", "rocket.jpg", "renamed.jpg", "missing.png"}
    assert " safe " in lines["cat.png"] and " safe " in lines["rocket.jpg"]
    assert "This file is text, not an image." in lines["renamed.jpg"]
    assert "file not found" in lines["missing.png"]
    assert "4 image(s), 0 flagged, 2 not checked" in out


def test_json_with_a_policy_that_flags_everything(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = json.dumps({"categories": {"sexual_explicit": {"review": 0}}, "review_action": "alert"})
    code = main(["scan", "--json", "--policy", policy, str(photos / "cat.png")])
    assert code == 1
    document = json.loads(capsys.readouterr().out)
    assert document["policy"] == "custom"
    (result,) = document["results"]
    assert result["flagged"] is True
    assert (result["status"], result["level"], result["action"]) == ("checked", "review", "alert")
    assert result["category"] == "sexual_explicit"
    assert set(result["scores"]) >= {"sexual_explicit", "suggestive"}
    assert len(result["phash"]) == 16 and result["width"] == 451


def test_edited_photos_are_flagged_like_the_originals_and_damaged_ones_not_passed(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The bypass: a JPEG without its end marker and a PNG with a 1 KB zTXt inflating past 1 MB were
    "unreadable"; a PNG cut short, which browsers still show in part, is reported as not checked."""
    rocket, cat = (photos / "nested/rocket.jpg").read_bytes(), (photos / "cat.png").read_bytes()
    edited = photos / "edited"
    edited.mkdir()
    files = {
        "no_end.jpg": hostile.jpeg_without_eoi(rocket),
        "text_bomb.png": hostile.png_ztxt_bomb(cat),
        "cut.png": hostile.png_cut_in_image_data(cat),
    }
    for name, data in files.items():
        (edited / name).write_bytes(data)
    policy = json.dumps(_FLAG_EVERYTHING)
    code = main(["scan", "--policy", policy, str(edited)])
    out = capsys.readouterr().out
    assert code == 1
    lines = {line.split()[0].rsplit("/", 1)[-1]: line for line in out.splitlines() if "/" in line}
    assert " review:alert " in lines["no_end.jpg"] and " review:alert " in lines["text_bomb.png"]
    assert " unreadable " in lines["cut.png"] and " safe " not in lines["cut.png"]
    assert "People may still see it: moderation alerts the moderators." in lines["cut.png"]
    assert "3 image(s), 2 flagged, 1 not checked" in out

    code, document, _ = _scan_json(capsys, "--policy", policy, str(edited / "cut.png"))
    (result,) = document["results"]
    assert (result["status"], result["problem_code"], result["format"]) == ("unreadable", "corrupt", "PNG")
    assert result["may_be_shown"] is True and result["flagged"] is False


def test_bad_policy_is_refused_before_loading_anything(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "--policy", '{"auto_action": "ban"}', str(photos)])
    assert code == 2
    assert "auto_action must be one of delete, hold, alert (got 'ban')" in capsys.readouterr().err


@pytest.fixture
def catalog(photos: Path, monkeypatch: pytest.MonkeyPatch) -> ClassifierCatalog:
    data_dir = photos.parent / "data"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    return classifier_catalog(data_dir)


@pytest.fixture
def patterns(photos: Path) -> Path:
    for kind, seed in (("stripes", 31), ("dots", 32)):
        (photos / f"{kind}.png").write_bytes(png_bytes(kind, seed=seed))
    return photos


def _scan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    code = main(["scan", "--json", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def _by_file(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {Path(result["path"]).name: result for result in document["results"]}


def test_registered_classifier_scores_and_flags_its_category(
    catalog: ClassifierCatalog,
    patterns: Path,
    pattern_classifier: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    entry = catalog.add(pattern_classifier, category="pattern", review=0.5, verify=None)
    files = [str(patterns / name) for name in ("stripes.png", "dots.png", "cat.png")]

    code, document, _ = _scan_json(capsys, *files)
    assert code == 1
    assert document["custom_classifiers"] == [
        {"id": entry.id, "category": "pattern", "guild_id": None, "name": entry.name, "problem": None}
    ]
    results = _by_file(document)
    stripes, dots, cat = results["stripes.png"], results["dots.png"], results["cat.png"]
    assert stripes["scores"]["pattern"] > 0.9
    assert (stripes["flagged"], stripes["category"], stripes["action"]) == (True, "pattern", "alert")
    assert dots["scores"]["pattern"] < 0.5 and dots["flagged"] is False
    assert "pattern" in cat["scores"]

    code, document, _ = _scan_json(capsys, "--no-custom", *files)
    assert code == 0
    assert document["custom_classifiers"] == []
    assert not any("pattern" in result["scores"] for result in document["results"])

    code = main(["scan", *files])
    out = capsys.readouterr().out
    assert code == 1
    assert "review:alert" in out and "pattern " in out
    assert "custom classifiers: #1 pattern (global)" in out


def test_guild_selects_the_classifiers_that_apply_to_that_server(
    catalog: ClassifierCatalog,
    patterns: Path,
    pattern_classifier: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog.add(pattern_classifier, category="pattern", guild_id=42, review=0.5, verify=None)
    stripes = str(patterns / "stripes.png")

    code, document, _ = _scan_json(capsys, "--guild", "42", stripes)
    assert code == 1 and document["guild_id"] == 42
    assert [c["guild_id"] for c in document["custom_classifiers"]] == [42]
    assert _by_file(document)["stripes.png"]["category"] == "pattern"

    for other in (["--guild", "7"], []):
        code, document, _ = _scan_json(capsys, *other, stripes)
        assert code == 0 and document["custom_classifiers"] == []
        assert "pattern" not in _by_file(document)["stripes.png"]["scores"]


def test_a_classifier_that_cannot_load_is_reported_and_the_others_run(
    catalog: ClassifierCatalog,
    patterns: Path,
    pattern_classifier: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    catalog.add(pattern_classifier, category="pattern", review=0.5, verify=None)
    broken = catalog.add(pattern_classifier, category="weapons", review=0.5, verify=None)
    (catalog.folder_of(broken) / "model.keras").write_bytes(b"not a keras model")
    files = [str(patterns / "stripes.png"), str(patterns / "dots.png")]

    code, document, err = _scan_json(capsys, *files)
    assert code == 1  # the working classifier flags the stripes
    problems = [line for line in err.splitlines() if line.startswith("lumi: custom classifier")]
    assert len(problems) == 1
    assert err.count("custom classifier #2 (weapons) left out") == 1  # the log warns once, not per image
    assert problems[0].startswith(
        "lumi: custom classifier #2 weapons (global) could not be loaded and was left out: "
    )
    weapons = next(c for c in document["custom_classifiers"] if c["category"] == "weapons")
    assert "Keras could not load" in weapons["problem"]
    results = _by_file(document)
    assert not any("weapons" in result["scores"] for result in results.values())
    assert results["stripes.png"]["category"] == "pattern"

    code, _, err = _scan_json(capsys, files[1])
    assert code == 0 and "#2 weapons (global) could not be loaded" in err


def test_a_damaged_classifier_registry_is_refused_before_loading_anything(
    catalog: ClassifierCatalog, photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    catalog.root.mkdir(parents=True)
    (catalog.root / REGISTRY_FILE).write_text("{not json")
    code = main(["scan", str(photos)])
    assert code == 2
    assert "(--no-custom scans without the custom classifiers)" in capsys.readouterr().err


_FLAG_EVERYTHING = {"categories": {"sexual_explicit": {"review": 0}}, "review_action": "alert"}


async def _in_database(data_dir: Path, guild_id: int, **changes: Any) -> bool:
    """Store ``changes`` in the guild's settings (none: only look); whether the guild has a settings row."""
    database = Database(default_sqlite_url(data_dir))
    try:
        await database.upgrade()
        async with database.session() as session:
            if changes:
                await repo_guilds.update_guild_settings(session=session, guild_id=guild_id, **changes)
                await session.commit()
            return await repo_guilds.find_guild_settings(session=session, guild_id=guild_id) is not None
    finally:
        await database.close()


def test_guild_judges_by_the_servers_stored_policy_unless_policy_is_given(
    photos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = photos.parent / "data"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    cat = str(photos / "cat.png")

    # No database yet: the scan says so and uses the defaults, and creates no database.
    code = main(["scan", "--guild", "42", cat])
    out = capsys.readouterr().out
    assert code == 0
    (line,) = [line for line in out.splitlines() if line.startswith("policy: ")]
    assert line.startswith("policy: default (cannot read server 42's stored policy: there is no SQLite")
    assert not (data_dir / "lumi.db").exists()

    assert asyncio.run(_in_database(data_dir, 42, moderation_policy=_FLAG_EVERYTHING))
    code, document, err = _scan_json(capsys, "--guild", "42", cat)
    assert code == 1
    assert (document["policy"], document["policy_source"]) == ("custom", "guild")
    assert "policy: stored policy of server 42" in err.splitlines()
    (result,) = document["results"]
    assert (result["flagged"], result["category"], result["action"]) == (True, "sexual_explicit", "alert")

    # --policy takes precedence over the stored policy.
    code, document, err = _scan_json(capsys, "--guild", "42", "--policy", "{}", cat)
    assert code == 0 and document["policy_source"] == "option"
    assert "policy: from --policy (server 42's stored policy not read)" in err.splitlines()


def test_a_server_without_usable_stored_settings_is_scanned_with_the_defaults(
    photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = photos.parent / "data"
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    settings = settings_and_logging()
    assert asyncio.run(_in_database(data_dir, 9, moderation_policy={"future": 1}))

    choice = scan._choose_policy(None, 7, settings)
    assert (choice.policy, choice.source) == (DEFAULT_POLICY, "default")
    assert choice.description.startswith("default (server 7 has no stored moderation settings in sqlite")
    assert not asyncio.run(_in_database(data_dir, 7))  # read only: no settings row was created

    choice = scan._choose_policy(None, 9, settings)
    assert (choice.policy, choice.source) == (DEFAULT_POLICY, "default")
    assert choice.description.startswith("default (server 9's stored policy is invalid: ")
    assert "unknown setting(s) future" in choice.description

    assert asyncio.run(_in_database(data_dir, 5, moderation_enabled=False))
    choice = scan._choose_policy(None, 5, settings)
    assert (choice.policy, choice.source) == (DEFAULT_POLICY, "guild")
    assert choice.description == (
        "stored policy of server 5 (the same as the default; moderation is turned off in that server)"
    )


def test_exit_status_tells_scripts_what_could_not_be_checked(
    photos: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(photos / "missing.png")
    renamed = str(photos.parent / "renamed.jpg")
    (photos.parent / "empty").mkdir()
    # Nothing could be checked at all: 2, as for bad usage.
    assert main(["scan", missing]) == 2
    assert main(["scan", missing, renamed]) == 2
    assert main(["scan", str(photos.parent / "empty")]) == 2
    capsys.readouterr()
    # Too large to check is not clean either.
    monkeypatch.setenv("MODERATION_MAX_IMAGE_MB", "0.001")
    code, document, _ = _scan_json(capsys, str(photos / "cat.png"))
    assert code == 2
    (result,) = document["results"]
    assert result["status"] == "unreadable" and "limit" in result["reason"]
    assert document["summary"] == {"images": 1, "flagged": 0, "not_checked": 1, "exit_status": 2}
    capsys.readouterr()
    assert "3 none is flagged but some images could not be checked" in _help(capsys)


def _help(capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main(["scan", "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_hostile_file_names_are_printed_escaped(photos: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cat = (photos / "cat.png").read_bytes()
    hostile = photos.parent / "hostile"
    hostile.mkdir()
    names = ["two\nlines.png", "\x1b[2J\x1b[31mred.png", "bell\x07.png"]
    for name in names:
        (hostile / name).write_bytes(cat)
    # Bytes that are not UTF-8 in a name: Python keeps them as lone surrogates, which cannot be printed raw.
    undecodable = os.fsencode(str(hostile)) + b"/caf\xe9.png"
    with open(undecodable, "wb") as handle:
        handle.write(cat)

    assert main(["scan", str(hostile)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    rows = [line for line in out.splitlines() if str(hostile) in line or "…" in line]
    assert len(rows) == 4, out  # one line each: no name broke a row in two
    for shown in ("two\\nlines.png", "\\x1b[2J\\x1b[31mred.png", "bell\\x07.png", "caf\\xe9.png"):
        assert any(shown in row for row in rows), (shown, out)

    code, document, _ = _scan_json(capsys, str(hostile))
    assert code == 0
    paths = sorted(Path(result["path"]).name for result in document["results"])
    assert paths == sorted(["two\nlines.png", "\x1b[2J\x1b[31mred.png", "bell\x07.png", "caf\\xe9.png"])
