"""Template comments, the path that gives English comments (and every fallback) their guarantees:
every object given is named, no other object of the table is, and the Korean is well-formed."""

from __future__ import annotations

import random

from bot.services.comments.templates import display_name, template_comment
from inference.commenter.analysis import shared_analyser
from inference.commenter.fidelity import object_names
from inference.commenter.wellformed import malformed_reasons
from inference.labels import EMOTION_LABELS, Label, oiv7_vocabulary


def _label_sets(count: int) -> list[list[Label]]:
    """Fixed random label sets from the table: an emotion or none, then 1-7 objects (more than the
    default COMMENT_MAX_LABELS of 5; the setting allows 8 labels)."""
    classes = [item for item in oiv7_vocabulary().classes if not item.generic]
    emotions = list(EMOTION_LABELS.values())
    rng = random.Random(5)
    sets = []
    for _ in range(count):
        mood = rng.choice([*emotions, None])
        chosen = [item.label() for item in rng.sample(classes, rng.randint(1, 7))]
        sets.append(([mood] if mood else []) + chosen)
    return sets


def test_templates_name_every_object_and_no_other_in_both_languages() -> None:
    names, analyser = object_names(), shared_analyser()
    for labels in _label_sets(120):
        objects = [label for label in labels if label.kind == "object"]
        english = template_comment(labels, "en")
        assert all(display_name(label, "en") in english for label in objects), english
        assert names.foreign_english(english, [label.en for label in objects]) == [], english
        korean = template_comment(labels, "ko")
        morphemes = analyser.analyse(korean)
        assert all(display_name(label, "ko") in korean for label in objects), korean
        assert names.foreign_korean(korean, morphemes, [label.ko for label in objects]) == [], korean
        assert malformed_reasons(korean, morphemes) == [], korean


def test_the_fixed_sentences_name_no_object() -> None:
    names, analyser = object_names(), shared_analyser()
    for labels in ([], *([emotion] for emotion in EMOTION_LABELS.values())):
        for language in ("ko", "en"):
            text = template_comment(labels, language)
            if language == "en":
                assert names.foreign_english(text, []) == [], text
            else:
                assert names.foreign_korean(text, analyser.analyse(text), []) == [], text
