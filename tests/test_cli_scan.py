"""`lumi scan`: what a newcomer runs offline on a fresh machine, with the real models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from tests.fakes import images as corpus


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
    assert code == 0
    lines = {line.split()[0].rsplit("/", 1)[-1]: line for line in out.splitlines() if "/" in line}
    assert set(lines) == {"cat.png", "rocket.jpg", "renamed.jpg", "missing.png"}
    assert " safe " in lines["cat.png"] and " safe " in lines["rocket.jpg"]
    assert "This file is text, not an image." in lines["renamed.jpg"]
    assert "file not found" in lines["missing.png"]
    assert "4 image(s), 0 flagged" in out


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


def test_bad_policy_is_refused_before_loading_anything(
    photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["scan", "--policy", '{"auto_action": "ban"}', str(photos)])
    assert code == 2
    assert "auto_action must be one of delete, hold, alert (got 'ban')" in capsys.readouterr().err
