"""`lumi enhance` and `lumi gen3d` against the local Meshy double."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.cli.gen3d import run_job
from bot.services.generate3d.service import GenerationOptions
from tests.conftest import make_settings
from tests.fakes.meshy_api.server import FakeMeshy


def test_enhance_prints_the_enhanced_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", "a wooden chair", "--backend", "keywords", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["backend"] == "keywords"
    assert payload["enhanced"].startswith("a wooden chair, ") and "carved wood" in payload["enhanced"]


def test_enhance_refuses_blocked_prompts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enhance", "a naked statue"]) == 2
    assert "does not generate" in capsys.readouterr().err


async def test_gen3d_runs_a_job_and_saves_its_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with FakeMeshy() as meshy:
        settings = make_settings(tmp_path, meshy_api_key=meshy.api_key, meshy_base_url=meshy.base_url)
        options = GenerationOptions(texture=False, formats=("glb", "obj"))
        code = await run_job(settings, "a brass lantern", options, tmp_path / "out")
        assert code == 0
        task_id = next(iter(meshy.tasks))
        expected = meshy.asset_bytes(task_id, "model.glb")
    captured = capsys.readouterr()
    saved = [Path(line) for line in captured.out.splitlines()]
    glb = next(path for path in saved if path.suffix == ".glb")
    assert glb.read_bytes() == expected and glb.parent == tmp_path / "out"
    assert {path.suffix for path in saved} == {".glb", ".obj", ".mtl", ".png", ".zip"}
    assert "Saving the files" in captured.err and "100%" in captured.err


async def test_gen3d_reports_a_failed_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async with FakeMeshy() as meshy:
        meshy.fail_next_tasks(1, message="Internal server error.")
        settings = make_settings(tmp_path, meshy_api_key=meshy.api_key, meshy_base_url=meshy.base_url)
        code = await run_job(settings, "a brass lantern", GenerationOptions(texture=False), tmp_path / "out")
    assert code == 1
    assert "Internal server error." in capsys.readouterr().err
