"""`lumi serve-models` refuses what it cannot deploy before it starts Ray."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))


def test_unknown_families_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve-models", "--families", "moderation,vision"]) == 2
    assert (
        "--families takes some of moderation, perception, commenter, classifiers" in capsys.readouterr().err
    )


def test_resources_for_unknown_deployments_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SERVE_REPLICAS", '{"moderaton": 2}')
    assert main(["serve-models"]) == 2
    assert "unknown deployments ['moderaton']" in capsys.readouterr().err


def test_resources_must_be_json_objects(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SERVE_NUM_CPUS", "two")
    assert main(["serve-models"]) == 2
    assert "SERVE_NUM_CPUS: Value error, must be a JSON object by deployment" in capsys.readouterr().err


def test_cpu_shares_not_set_fit_the_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray Serve is not installed (the serve extra)")
    from bot.cli.serve_models import family_resources
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, serve_num_cpus={"commenter": 0.25})
    families = ["moderation", "perception", "commenter"]
    small = family_resources(settings, families, cluster_cpus=2.0)
    assert [small[family].num_cpus for family in families] == [0.66, 0.66, 0.25]
    assert sum(share.num_cpus for share in small.values()) <= 2.0
    large = family_resources(settings, families, cluster_cpus=16.0)
    assert [large[family].num_cpus for family in families] == [1.0, 1.0, 0.25]
