"""Is a text-to-3D prompt acceptable? Length, blocked words (English, Korean) and an English profanity model.

Three layers, cheapest first:
1. length: Meshy refuses prompts over ``MAX_PROMPT_CHARS``;
2. word lists: the built-in English and Korean lists plus the operator's extra words. Text is normalised
   first (NFKC, lower case, zero-width characters dropped, common digit/symbol look-alikes folded), and
   Korean entries are matched inside words because Korean attaches particles to them, after removing
   digits and symbols a writer might wedge between syllables (``시1발``);
3. ``alt-profanity-check``'s English model (a linear SVM over character n-grams) scores text that has
   Latin letters. It takes several seconds to import, so it loads in a worker thread (``warm_up``) and
   every prediction runs off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from inference.remote.meshy import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)

DEFAULT_PROFANITY_THRESHOLD = 0.97
"""The model scores mild insults ("a stupid robot") near 0.99 and words like "kill" near 0.95, so the
default blocks only text it is nearly sure about; operators can lower it."""

# Explicit sexual content, sexualised minors and slurs. Words that are ordinary in 3D prompts
# (weapons, blood, skulls, monsters) are deliberately absent: games and sculpture need them.
ENGLISH_BLOCKED_WORDS: tuple[str, ...] = (
    "porn",
    "porno",
    "pornographic",
    "hentai",
    "nsfw",
    "xxx",
    "sex toy",
    "dildo",
    "vibrator",
    "genitals",
    "genitalia",
    "penis",
    "vagina",
    "vulva",
    "clitoris",
    "testicles",
    "erection",
    "nipples",
    "topless",
    "bottomless",
    "nude",
    "naked",
    "fully naked",
    "cumshot",
    "orgasm",
    "masturbating",
    "masturbation",
    "blowjob",
    "handjob",
    "gangbang",
    "bdsm",
    "fetish",
    "rape",
    "raping",
    "rapist",
    "loli",
    "lolicon",
    "shota",
    "shotacon",
    "child porn",
    "underage sex",
    "fuck",
    "fucking",
    "motherfucker",
    "cunt",
    "nigger",
    "nigga",
    "faggot",
    "retard",
    "kike",
    "tranny",
    "swastika",
    "heil hitler",
)

# Korean: profanity, sexual content and slurs. Each entry is matched inside words, so entries are
# chosen to be unambiguous in that position; ambiguous stems (보지 "to see", 자지 "to sleep", 미친
# "like crazy", 새끼 "young animal") are left out and left to moderators.
KOREAN_BLOCKED_WORDS: tuple[str, ...] = (
    "씨발",
    "시발",
    "씨빨",
    "씨바",
    "씨팔",
    "시팔",
    "ㅅㅂ",
    "ㅆㅂ",
    "병신",
    "븅신",
    "ㅂㅅ",
    "ㅄ",
    "좆",
    "존나",
    "졸라",
    "ㅈㄴ",
    "개새끼",
    "개새기",
    "개색기",
    "개색히",
    "씹새",
    "씹년",
    "씹창",
    "지랄",
    "ㅈㄹ",
    "엠창",
    "니애미",
    "느금마",
    "애미뒤진",
    "창녀",
    "걸레년",
    "미친년",
    "미친놈",
    "섹스",
    "알몸",
    "나체",
    "누드",
    "야동",
    "포르노",
    "음경",
    "음부",
    "자위",
    "딸딸이",
    "강간",
    "성폭행",
    "아동포르노",
    "로리콘",
    "쇼타콘",
    "한남충",
    "김치녀",
    "틀딱",
    "짱깨",
    "쪽바리",
    "흑형",
)

# Ordinary words that contain a Korean entry: they are removed before matching.
KOREAN_ALLOWED_WORDS: tuple[str, ...] = (
    "시발점",
    "시발역",
    "시발택시",
    "시발자동차",
    "졸라매",
    "자위대",
    "자위권",
    "자위적",
    "자위함",
    "정당자위",
)

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_LOOKALIKES = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_LATIN = re.compile(r"[a-z]", re.IGNORECASE)
_NON_HANGUL = re.compile(r"[^\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]+")
_NON_WORD = re.compile(r"[^a-z]+")
_SPLIT_LETTERS = re.compile(r"(?<=\b[a-z])[.\-_*](?=[a-z]\b)")


class PromptProblem(StrEnum):
    EMPTY = "empty"
    TOO_LONG = "too_long"
    BLOCKED_WORD = "blocked_word"
    PROFANITY = "profanity"


@dataclass(frozen=True)
class PromptVerdict:
    """``allowed`` or not, why, and a sentence safe to show the person who wrote the prompt."""

    allowed: bool
    problem: PromptProblem | None = None
    user_message: str = ""
    matched: str | None = None
    profanity_score: float | None = None

    @property
    def is_abuse(self) -> bool:
        """Blocked for its content (worth a moderator alert), not for its length."""
        return self.problem in (PromptProblem.BLOCKED_WORD, PromptProblem.PROFANITY)


ALLOWED = PromptVerdict(allowed=True)

ProfanityScorer = Callable[[Sequence[str]], Sequence[float]]


def normalise(text: str) -> str:
    """Lower-cased NFKC text without zero-width characters (full-width letters become ASCII)."""
    return unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).lower()


def _english_phrases(words: Iterable[str]) -> re.Pattern[str] | None:
    """One regex over space-separated word sequences; ``\\b`` keeps "cp" from matching "cpu"."""
    cleaned = sorted({" ".join(_NON_WORD.sub(" ", w.lower()).split()) for w in words} - {""}, key=len)
    if not cleaned:
        return None
    alternatives = "|".join(re.escape(word).replace(r"\ ", " ") for word in reversed(cleaned))
    return re.compile(rf"\b(?:{alternatives})\b")


def _latin_forms(text: str) -> list[str]:
    """Space-separated words, once as written and once with look-alikes folded ("pr0n" -> "pron")."""
    plain = " ".join(_NON_WORD.sub(" ", text).split())
    folded = " ".join(_NON_WORD.sub(" ", text.translate(_LOOKALIKES)).split())
    # Single letters split by dots or dashes ("f.u.c.k") collapse into one word.
    joined = _SPLIT_LETTERS.sub("", text.translate(_LOOKALIKES))
    joined = " ".join(_NON_WORD.sub(" ", joined).split())
    return list(dict.fromkeys(form for form in (plain, folded, joined) if form))


class PromptChecker:
    """Checks prompts; safe to share between tasks. ``scorer`` replaces the profanity model (tests, CLI)."""

    def __init__(
        self,
        *,
        extra_blocked_words: Iterable[str] = (),
        profanity_threshold: float = DEFAULT_PROFANITY_THRESHOLD,
        use_profanity_model: bool = True,
        scorer: ProfanityScorer | None = None,
        max_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        extra = [normalise(word).strip() for word in extra_blocked_words if word.strip()]
        self._english = _english_phrases([*ENGLISH_BLOCKED_WORDS, *(w for w in extra if _LATIN.search(w))])
        self._korean = tuple(
            sorted(
                {*KOREAN_BLOCKED_WORDS, *(_NON_HANGUL.sub("", w) for w in extra if _HANGUL.search(w))} - {""},
                key=len,
                reverse=True,
            )
        )
        self._threshold = profanity_threshold
        self._use_model = use_profanity_model
        self._scorer = scorer
        self._load_lock = asyncio.Lock()
        self.max_chars = max_chars

    @property
    def model_ready(self) -> bool:
        return self._scorer is not None or not self._use_model

    async def warm_up(self) -> None:
        """Import the profanity model (seconds of CPU) in a worker thread; later calls return at once."""
        if self.model_ready:
            return
        async with self._load_lock:
            if self._scorer is None:
                self._scorer = await asyncio.to_thread(_load_profanity_model)

    def check_words(self, prompt: str) -> PromptVerdict:
        """Length and word lists only: instant, no model."""
        stripped = prompt.strip()
        if not stripped:
            return PromptVerdict(False, PromptProblem.EMPTY, "The prompt is empty: describe the 3D model.")
        if len(stripped) > self.max_chars:
            return PromptVerdict(
                False,
                PromptProblem.TOO_LONG,
                f"The prompt has {len(stripped)} characters; the 3D service takes at most {self.max_chars}. "
                "Shorten it and try again.",
            )
        text = normalise(stripped)
        if self._english is not None:
            for form in _latin_forms(text):
                match = self._english.search(form)
                if match is not None:
                    return self._blocked(match.group(0))
        for token in text.split():
            # Digits or symbols wedged between syllables ("시1발") are dropped within a word; words are
            # not glued together, which would invent matches across word boundaries.
            hangul = _NON_HANGUL.sub("", token)
            if not hangul:
                continue
            for allowed in KOREAN_ALLOWED_WORDS:
                hangul = hangul.replace(allowed, "")
            for word in self._korean:
                if word in hangul:
                    return self._blocked(word)
        return ALLOWED

    async def check(self, prompt: str) -> PromptVerdict:
        """The full check: ``check_words``, then the English profanity model on text with Latin letters."""
        verdict = self.check_words(prompt)
        if not verdict.allowed or not self._use_model or not _LATIN.search(prompt):
            return verdict
        await self.warm_up()
        scorer = self._scorer
        assert scorer is not None
        text = normalise(prompt.strip())
        scores = await asyncio.to_thread(scorer, [text])
        score = float(scores[0])
        if score >= self._threshold:
            return PromptVerdict(
                False,
                PromptProblem.PROFANITY,
                "This prompt reads as offensive, so Lumi will not generate it. Rephrase it and try again.",
                profanity_score=score,
            )
        return PromptVerdict(True, profanity_score=score)

    @staticmethod
    def _blocked(word: str) -> PromptVerdict:
        return PromptVerdict(
            False,
            PromptProblem.BLOCKED_WORD,
            "This prompt contains words Lumi does not generate 3D models for. Rephrase it and try again.",
            matched=word,
        )


def _load_profanity_model() -> ProfanityScorer:
    from profanity_check import predict_prob

    def score(texts: Sequence[str]) -> Sequence[float]:
        return [float(value) for value in predict_prob(list(texts))]

    log.info("English profanity model loaded")
    return score
