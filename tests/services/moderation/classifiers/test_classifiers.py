"""Custom classifiers in moderation: registering them, and their scores deciding like the built-in ones.

Real models throughout: the pattern classifier (stripes flagged, dots harmless) plus NudeNet and
open_nsfw in the image checker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from bot.errors import UserFacingError
from bot.services.moderation.checker import ImageChecker
from bot.services.moderation.classifiers.detector import (
    REGISTRY_FILE,
    ClassifierCatalog,
    ClassifierDetector,
    verify_classifier,
)
from bot.services.moderation.decisions import Level
from bot.services.moderation.policy import DEFAULT_POLICY, Action
from inference.registry import ModelRegistry
from tests.fakes.patterns import png_bytes

GUILD = 111
OTHER_GUILD = 222


@pytest.fixture
def catalog(tmp_path: Path) -> ClassifierCatalog:
    # refresh_s=0: every check looks at the file, as a running bot would within seconds.
    return ClassifierCatalog(tmp_path / "classifiers", refresh_s=0.0)


@pytest.fixture
async def checker(catalog: ClassifierCatalog) -> AsyncIterator[ImageChecker]:
    registry = ModelRegistry(device="cpu")
    checker = ImageChecker(registry, extra_detectors=[ClassifierDetector(catalog, registry)])
    try:
        yield checker
    finally:
        await checker.close()
        await registry.close()


def test_registration_copies_the_model_and_records_it(pattern_classifier: Path, tmp_path: Path) -> None:
    catalog = ClassifierCatalog(tmp_path / "classifiers")
    entry = catalog.add(pattern_classifier, category="Violence", guild_id=GUILD, verify=verify_classifier)
    assert (entry.id, entry.category, entry.guild_id, entry.positive_class) == (
        1,
        "violence",
        GUILD,
        "stripes",
    )
    assert entry.builtin_category and entry.rule() is None
    copied = catalog.folder_of(entry)
    assert sorted(p.name for p in copied.iterdir()) == ["metadata.json", "model.keras"]
    document = json.loads((catalog.root / REGISTRY_FILE).read_text())
    assert document["next_id"] == 2 and document["classifiers"][0]["folder"] == "1-violence"
    assert "validation accuracy" in entry.summary() and "server's policy" in entry.summary()

    with pytest.raises(UserFacingError, match="already registered as #1"):
        catalog.add(pattern_classifier, category="violence", guild_id=GUILD, verify=None)
    weapons = catalog.add(pattern_classifier, category="weapons", review=0.6, act=0.9, verify=None)
    assert weapons.id == 2 and weapons.scope == "global" and not weapons.builtin_category
    assert "review ≥ 0.60 (alert), auto-action ≥ 0.90" in weapons.summary()

    removed = catalog.remove(1)
    assert removed.id == 1 and not copied.exists()
    assert [e.id for e in catalog.load()] == [2]
    # Numbers are never reused, so a new classifier never inherits a removed one's loaded model.
    assert catalog.add(pattern_classifier, category="violence", verify=None).id == 3
    with pytest.raises(UserFacingError, match=r"no classifier #1 is registered \(registered: #2, #3\)"):
        catalog.remove(1)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"category": "Weapons!"}, "lowercase letters"),
        ({"category": "sexual"}, "another name for a built-in category"),
        ({"category": "violence", "review": 0.5}, "built-in category"),
        ({"category": "weapons", "review": 0.7, "act": 0.5}, "must not be below the review threshold"),
        ({"category": "weapons", "act": 1.5}, "between 0 and 1"),
        ({"category": "weapons", "review_action": "delete"}, "alert or hold"),
        ({"category": "weapons", "guild_id": -4}, "server id"),
    ],
)
def test_bad_registrations_are_refused(
    pattern_classifier: Path, catalog: ClassifierCatalog, options: dict[str, object], message: str
) -> None:
    with pytest.raises(UserFacingError, match=message):
        catalog.add(pattern_classifier, verify=None, **options)  # type: ignore[arg-type]
    assert catalog.load() == []


def test_a_folder_that_is_not_a_classifier_is_refused(catalog: ClassifierCatalog, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserFacingError, match=r"no metadata\.json"):
        catalog.add(tmp_path / "empty", category="violence")


async def test_guild_classifier_scores_its_category_with_the_guild_thresholds(
    pattern_classifier: Path, catalog: ClassifierCatalog, checker: ImageChecker
) -> None:
    catalog.add(pattern_classifier, category="violence", guild_id=GUILD, verify=None)
    policy = DEFAULT_POLICY.with_thresholds("violence", review=0.5, act=None)
    striped, dotted = png_bytes("stripes", seed=1), png_bytes("dots", seed=2)

    flagged = await checker.check_image(striped, guild_policy=policy, guild_id=GUILD)
    assert flagged.flagged and flagged.decision.category == "violence"
    assert flagged.scores["violence"] > 0.5
    assert (flagged.decision.level, flagged.decision.action) == (Level.REVIEW, Action.ALERT)
    assert "violence" in flagged.decision.reason and "review threshold 0.50" in flagged.decision.reason

    harmless = await checker.check_image(dotted, guild_policy=policy, guild_id=GUILD)
    assert harmless.scores["violence"] < 0.5 and not harmless.flagged
    elsewhere = await checker.check_image(striped, guild_policy=policy, guild_id=OTHER_GUILD)
    assert "violence" not in elsewhere.scores and not elsewhere.flagged
    assert checker.registry.is_registered("classifier-1")


async def test_custom_category_brings_its_own_thresholds(
    pattern_classifier: Path, catalog: ClassifierCatalog, checker: ImageChecker
) -> None:
    catalog.add(pattern_classifier, category="weapons", review=0.3, act=0.5, verify=None)
    verdict = await checker.check_image(png_bytes("stripes", seed=3), guild_id=GUILD)
    assert verdict.decision.category == "weapons" and verdict.decision.level is Level.ACT
    assert verdict.decision.action is DEFAULT_POLICY.auto_action
    assert "weapons" not in DEFAULT_POLICY.rules  # the guild's stored policy is untouched
    harmless = await checker.check_image(png_bytes("dots", seed=4), guild_id=GUILD)
    assert "weapons" in harmless.scores and not harmless.flagged


async def test_registrations_from_another_process_apply_and_removal_unloads(
    pattern_classifier: Path, catalog: ClassifierCatalog, checker: ImageChecker
) -> None:
    striped = png_bytes("stripes", seed=5)
    policy = DEFAULT_POLICY.with_thresholds("violence_graphic", review=0.5, act=None)
    before = await checker.check_image(striped, guild_policy=policy, guild_id=GUILD)
    assert "violence_graphic" not in before.scores

    command_line = ClassifierCatalog(catalog.root)  # what `lumi models add-classifier` opens
    entry = command_line.add(pattern_classifier, category="violence_graphic", verify=None)
    after = await checker.check_image(striped, guild_policy=policy, guild_id=GUILD)
    assert after.decision.category == "violence_graphic"
    assert checker.registry.is_registered(entry.model_key)

    command_line.remove(entry.id)
    gone = await checker.check_image(striped, guild_policy=policy, guild_id=GUILD)
    assert "violence_graphic" not in gone.scores and not gone.flagged
    assert not checker.registry.is_registered(entry.model_key)


class _BrokenModel:
    """A classifier model that loads and then fails on every batch, as a model with a bug would."""

    name = "classifier-2"
    device = "cpu"

    def load(self) -> None:
        pass

    def predict_batch(self, items: Sequence[object]) -> list[object]:
        raise RuntimeError("the network's output has the wrong shape")

    def close(self) -> None:
        pass


async def test_a_classifier_that_fails_on_an_image_leaves_the_others_scoring_it(
    pattern_classifier: Path,
    catalog: ClassifierCatalog,
    checker: ImageChecker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    catalog.add(pattern_classifier, category="violence", verify=None)
    broken = catalog.add(pattern_classifier, category="weapons", verify=None)
    checker.registry.register(broken.model_key, lambda _device: _BrokenModel())
    policy = DEFAULT_POLICY.with_thresholds("violence", review=0.5, act=None)

    with caplog.at_level(logging.WARNING):
        verdict = await checker.check_image(png_bytes("stripes", seed=6), guild_policy=policy, guild_id=GUILD)
    assert verdict.decision.category == "violence" and verdict.scores["violence"] > 0.5
    assert "weapons" not in verdict.scores
    warnings = [
        r.getMessage() for r in caplog.records if "custom classifier #2 (weapons) left out" in r.getMessage()
    ]
    assert len(warnings) == 1 and "wrong shape" in warnings[0], warnings
