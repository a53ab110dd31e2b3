"""Comments from templates, in Korean and English: the last fallback, which never fails.

A comment is an opener that fits the strongest emotion (or the photo's mood when no face shows one),
a line that names every object given (the caller caps the list at ``COMMENT_MAX_LABELS``), and a
closer. The fixed sentences name no object of the table, so a template comment never mentions a thing
that is not in the photo, in either language: English comments get this guarantee from here (the local
model writes Korean only). The choice among variants is a hash of the labels, so a
photo always gets the same comment and different photos get different ones.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Final

from inference.labels import Label, Language

__all__ = ["display_name", "template_comment", "with_particle"]

_NONE: Final = ""

_OPENERS: Final[dict[Language, dict[str, tuple[str, ...]]]] = {
    "ko": {
        "기쁨": (
            "환하게 웃는 모습에 보는 사람까지 기분이 좋아져요! 😊",
            "행복한 기운이 사진 밖까지 전해지네요! 😄",
            "밝은 표정이 정말 보기 좋아요! 🌞",
        ),
        "슬픔": (
            "오늘은 조금 울적해 보이네요. 🥺",
            "살짝 쓸쓸한 분위기가 느껴져요. 😢",
            "마음이 조금 무거워 보여요. 💧",
        ),
        "분노": (
            "뭔가 단단히 화가 난 표정이네요! 😤",
            "강렬한 눈빛에서 에너지가 느껴져요! 🔥",
            "오늘 뭔가 속상한 일이 있었나 봐요! 😠",
        ),
        "공포": (
            "깜짝 놀란 듯한 표정이네요! 😱",
            "긴장감이 사진 너머로 전해져요! 😨",
            "뭔가 무서운 걸 보신 건가요? 😳",
        ),
        _NONE: (
            "분위기 있는 사진이네요! 📸",
            "감성 가득한 한 장이에요! ✨",
            "멋진 순간을 담으셨네요! 👏",
        ),
    },
    "en": {
        "기쁨": (
            "That smile is contagious! 😊",
            "Pure happiness in one shot! 😄",
            "Such a bright, joyful look! 🌞",
        ),
        "슬픔": (
            "Looks like a bit of a gloomy day. 🥺",
            "There's a quiet, wistful mood here. 😢",
            "Feels like a heavy-hearted moment. 💧",
        ),
        "분노": (
            "Someone looks seriously fired up! 😤",
            "That fierce look says it all! 🔥",
            "Looks like something really got on your nerves! 😠",
        ),
        "공포": (
            "Whoa, that looks like a real shock! 😱",
            "You can feel the tension in this one! 😨",
            "Did you just see something scary? 😳",
        ),
        _NONE: (
            "What a moody shot! 📸",
            "This one has such a great vibe! ✨",
            "What a moment to capture! 👏",
        ),
    },
}

_ONE_OBJECT: Final[dict[Language, tuple[str, ...]]] = {
    "ko": (
        "{a_subject} 정말 멋져요! ✨",
        "{a_subject} 사진에 포인트가 되네요! 👍",
        "{a_with} 함께라 더 특별해 보여요! 💫",
    ),
    "en": (
        "Love the {a}! ✨",
        "The {a} really makes this photo! 👍",
        "The {a} adds such a nice touch! 💫",
    ),
}

_TWO_OBJECTS: Final[dict[Language, tuple[str, ...]]] = {
    "ko": (
        "{a_with} {b_subject} 잘 어울려요! 👍",
        "{a}에 {b}까지, 구성이 완벽해요! ✨",
        "{a_with} {b}의 조합이 인상적이에요! 💫",
    ),
    "en": (
        "The {a} and the {b} go so well together! 👍",
        "A {a} and a {b}, what a combination! ✨",
        "Love how the {a} and the {b} fit the scene! 💫",
    ),
}

_MANY_OBJECTS: Final[dict[Language, tuple[str, ...]]] = {
    "ko": (
        "{all_subject} 한 장에 다 담겼네요! 👍",
        "{all_with} 함께라 구성이 완벽해요! ✨",
        "{all_subject} 사진을 가득 채우네요! 💫",
    ),
    "en": (
        "Love the {all}! ✨",
        "The {all} all fit in one shot! 👍",
        "The {all} make this photo! 💫",
    ),
}

_CLOSERS: Final[dict[Language, dict[str, tuple[str, ...]]]] = {
    "ko": {
        "기쁨": ("오늘도 좋은 하루 보내세요! 🌷", "이 행복이 오래오래 이어지길 바라요! 💛"),
        "슬픔": ("힘내세요, 곧 좋은 일이 찾아올 거예요! 🍀", "따뜻한 응원을 보내요! 🤗"),
        "분노": ("심호흡 한 번 하고 힘내세요! 💪", "맛있는 거 드시고 기분 푸세요! 🍰"),
        "공포": ("괜찮아요, 다 잘될 거예요! 🙌", "조심하세요, 늘 응원할게요! 💪"),
        _NONE: ("다음 사진도 기대할게요! 😊", "좋은 하루 보내세요! 🌿"),
    },
    "en": {
        "기쁨": ("Have a wonderful day! 🌷", "Hope this happiness lasts! 💛"),
        "슬픔": ("Hang in there, better days are coming! 🍀", "Sending you a warm hug! 🤗"),
        "분노": ("Deep breath, you've got this! 💪", "Treat yourself to something sweet! 🍰"),
        "공포": ("It's okay, everything will be fine! 🙌", "Stay safe, we're cheering for you! 💪"),
        _NONE: ("Can't wait to see the next one! 😊", "Have a lovely day! 🌿"),
    },
}

_PARENTHETICAL: Final = re.compile(r"\s*\([^)]*\)")


def display_name(label: Label, language: Language) -> str:
    """The label as a word in a sentence: "Bat (Animal)" reads "bat", "박쥐 (동물)" reads "박쥐"."""
    name = _PARENTHETICAL.sub("", label.name(language)).strip() or label.name(language)
    if language == "en" and not name.isupper():
        # Class names are capitalised like titles; in a sentence they are common nouns.
        name = name[0].lower() + name[1:]
    return name


def with_particle(word: str, after_consonant: str, after_vowel: str) -> str:
    """Attach a Korean particle that depends on whether the word ends in a final consonant (batchim):
    이/가, 은/는, 을/를, 과/와. A word that does not end in Hangul gets both, as Korean writers do."""
    last = word[-1:] if word else ""
    if "가" <= last <= "힣":
        has_final = (ord(last) - ord("가")) % 28 != 0
        return word + (after_consonant if has_final else after_vowel)
    return f"{word}{after_consonant}({after_vowel})"


def template_comment(labels: Sequence[Label], language: Language) -> str:
    """A comment for any label list (even an empty one), in ``language``."""
    emotions = [label for label in labels if label.kind == "emotion"]
    objects = [display_name(label, language) for label in labels if label.kind == "object"]
    mood = emotions[0].ko if emotions else _NONE
    seed = _seed(labels, language)
    parts = [_pick(_OPENERS[language][mood], seed, 0)]
    if len(objects) == 1:
        parts.append(_pick(_ONE_OBJECT[language], seed, 1).format(**_slots(objects, language)))
    elif len(objects) == 2:
        parts.append(_pick(_TWO_OBJECTS[language], seed, 1).format(**_slots(objects, language)))
    elif objects:
        parts.append(_pick(_MANY_OBJECTS[language], seed, 1).format(**_list_slots(objects, language)))
    parts.append(_pick(_CLOSERS[language][mood], seed, 2))
    return " ".join(parts)


def _slots(objects: Sequence[str], language: Language) -> dict[str, str]:
    slots: dict[str, str] = {}
    for key, word in zip(("a", "b"), objects, strict=False):
        slots[key] = word
        if language == "ko":
            slots[f"{key}_subject"] = with_particle(word, "이", "가")
            slots[f"{key}_with"] = with_particle(word, "과", "와")
    return slots


def _list_slots(objects: Sequence[str], language: Language) -> dict[str, str]:
    """Objects listed as "A, B와 C" or "A, the B and the C", the last particle agreeing."""
    if language == "en":
        return {"all": ", the ".join(objects[:-1]) + " and the " + objects[-1]}
    head = ", ".join([*objects[:-2], with_particle(objects[-2], "과", "와")])
    return {
        "all_subject": f"{head} {with_particle(objects[-1], '이', '가')}",
        "all_with": f"{head} {with_particle(objects[-1], '과', '와')}",
    }


def _seed(labels: Sequence[Label], language: Language) -> int:
    text = "\x1f".join([language, *(label.ko for label in labels)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _pick(options: Sequence[str], seed: int, slot: int) -> str:
    # Each slot reads different bits of the seed so the three choices vary independently.
    return options[(seed >> (slot * 16)) % len(options)]
