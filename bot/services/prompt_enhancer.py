"""Turn a short request ("a fox") into a prompt a text-to-3D service does well with.

Backends share one small interface (``EnhancerBackend``) and are tried in order by ``PromptEnhancer``:
- ``ChatEnhancer``: an OpenAI-compatible chat model (OpenAI, vLLM, Ollama) with ``SYSTEM_PROMPT``;
- ``LocalModelEnhancer``: a transformers model from a local folder, in this process (GPU when present);
- ``KeywordEnhancer``: deterministic keyword expansion in English and Korean; it never fails, so it is
  always last.
Whatever a model writes goes through ``clean_output``: one paragraph, no preamble or quotes, within
Meshy's limit, and still containing the user's own words (a model that drifted gets them put back).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from inference.remote.chat import ChatClient, ChatUnavailable
from inference.remote.meshy import MAX_PROMPT_CHARS

log = logging.getLogger(__name__)

Language = Literal["auto", "en"]
STYLES = ("realistic", "cartoon", "low-poly", "sculpture")

SYSTEM_PROMPT = """\
You write prompts for a text-to-3D model generator. The user gives a short request; you answer with \
the prompt only.

Keep everything the user asked for: the subject, how many, pose, colours, materials, style and any \
names. Change none of it. Then add what a 3D modeller needs and the request leaves open:
- the overall shape, proportions and main parts of the subject;
- materials and surface finish (wood grain, brushed metal, glazed ceramic, fur, cloth...);
- a colour palette;
- an art style (realistic, stylised cartoon, low-poly, sculpted...) matching the request;
- mesh hints: one standalone object or character, centred, full body for characters in a neutral \
pose, clean topology, game-ready, a sensible polygon budget.
Do not add a background scene, camera angles, lighting setups, text or logos unless asked.

Write one paragraph of comma-separated descriptive phrases: no line breaks, no lists, no quotation \
marks, no preamble such as "Prompt:". At most {max_chars} characters. Write it in {language}."""

_LANGUAGE_NAMES = {"en": "English", "auto": "the same language as the user's request"}
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[a-zA-Z]{3,}")
_PREAMBLE = re.compile(
    r"^\s*(?:here(?: is|'s)[^:]{0,60}:|(?:enhanced |improved |final |3d )?prompt\s*:|프롬프트\s*:)\s*",
    re.IGNORECASE,
)
_BULLET = re.compile(r"(?:^|\s)(?:[-*•]|\d+[.)])\s+")
_QUOTES = "\"'`“”‘’「」『』"
_STOP_WORDS = frozenset(
    "the and with for from into onto that this its his her their some very of in on at to by a an".split()
)


class EnhancerUnavailable(Exception):
    """A backend could not produce a prompt; ``reason`` is safe to log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EnhancerBackend(Protocol):
    name: str

    async def enhance(self, prompt: str, *, style: str | None) -> str: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class Enhancement:
    text: str
    backend: str
    # "backend: reason" for every backend tried before the one that answered.
    fallbacks: tuple[str, ...] = ()
    elapsed_s: float = 0.0


def system_prompt(language: Language, max_chars: int = MAX_PROMPT_CHARS) -> str:
    return SYSTEM_PROMPT.format(max_chars=max_chars, language=_LANGUAGE_NAMES[language])


def user_message(prompt: str, style: str | None) -> str:
    return prompt if not style else f"{prompt}\n(Art style: {style})"


# ------------------------------------------------------------------------------------------- cleaning


def _content_words(text: str) -> set[str]:
    return {word.lower() for word in _LATIN_WORD.findall(text)} - _STOP_WORDS


def _cut(text: str, max_chars: int) -> str:
    """Shorten to ``max_chars`` at the last phrase or word boundary, never mid-word."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    for separator in (". ", ", ", "; ", " "):
        at = head.rfind(separator)
        if at >= max_chars // 2:
            return head[:at].rstrip(" ,;.")
    return head.rstrip()


def clean_output(original: str, generated: str, *, max_chars: int = MAX_PROMPT_CHARS) -> str:
    """One tidy paragraph within ``max_chars`` that keeps the user's request.

    When the model's text lost most of the request's content words (an English request answered in
    English), the request is put in front of it, so the 3D model is still of what was asked.
    """
    text = _PREAMBLE.sub("", generated.strip())
    text = _BULLET.sub(" ", text)
    text = " ".join(text.split()).strip(_QUOTES + " ")
    text = _PREAMBLE.sub("", text).strip(_QUOTES + " ")
    if not text:
        raise EnhancerUnavailable("the model answered with no usable text")
    wanted = _content_words(original)
    if wanted and not _HANGUL.search(original):
        kept = wanted & _content_words(text)
        if len(kept) * 2 < len(wanted):
            text = f"{original.strip().rstrip('.,')}, {text}"
    return _cut(text, max_chars)


# ------------------------------------------------------------------------------------------- backends


class ChatEnhancer:
    """An OpenAI-compatible chat model with ``SYSTEM_PROMPT``."""

    name = "openai"

    def __init__(
        self, client: ChatClient, *, language: Language = "auto", max_chars: int = MAX_PROMPT_CHARS
    ) -> None:
        self.client = client
        self.language = language
        self.max_chars = max_chars

    async def enhance(self, prompt: str, *, style: str | None) -> str:
        try:
            answer = await self.client.complete(
                system_prompt(self.language, self.max_chars),
                user_message(prompt, style),
                max_tokens=300,
                temperature=0.6,
            )
        except ChatUnavailable as error:
            raise EnhancerUnavailable(error.reason) from error
        return clean_output(prompt, answer, max_chars=self.max_chars)

    async def close(self) -> None:
        await self.client.close()


class LocalModelEnhancer:
    """A transformers model loaded from ``model_path`` (a folder made by ``save_pretrained``).

    Loading and generation run on one dedicated thread, so the event loop never waits on the model and
    calls never race inside it. Models with a chat template get ``SYSTEM_PROMPT`` as a system message;
    others get a plain instruction. Decoding is greedy, so the same request gives the same prompt.
    """

    name = "local"

    def __init__(
        self,
        model_path: Path,
        *,
        device: str = "auto",
        language: Language = "auto",
        max_new_tokens: int = 160,
        max_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        self.model_path = model_path
        self.device_preference = device
        self.language = language
        self.max_new_tokens = max_new_tokens
        self.max_chars = max_chars
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lumi-enhancer")
        self._model: Any = None
        self._tokenizer: Any = None
        self._encoder_decoder = False
        self.device = "cpu"
        self._load_error: str | None = None
        self._lock = asyncio.Lock()

    async def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        if self._load_error is not None:
            raise EnhancerUnavailable(self._load_error)
        async with self._lock:
            if self._model is None and self._load_error is None:
                loop = asyncio.get_running_loop()
                try:
                    await loop.run_in_executor(self._executor, self._load)
                except Exception as error:
                    # Remembered: a missing or broken model folder will not fix itself between calls.
                    self._load_error = f"cannot load the local model at {self.model_path}: {error}"
                    log.warning("%s", self._load_error)
            if self._load_error is not None:
                raise EnhancerUnavailable(self._load_error)

    def _load(self) -> None:
        if not self.model_path.is_dir():
            raise FileNotFoundError("no such folder")
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        use_cuda = self.device_preference in ("auto", "cuda") and torch.cuda.is_available()
        self.device = "cuda" if use_cuda else "cpu"
        config = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
        self._encoder_decoder = bool(getattr(config, "is_encoder_decoder", False))
        model_class = AutoModelForSeq2SeqLM if self._encoder_decoder else AutoModelForCausalLM
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
        model = model_class.from_pretrained(self.model_path, local_files_only=True)
        self._model = model.to(self.device).eval()
        log.info("local prompt enhancer loaded from %s on %s", self.model_path, self.device)

    def _generate(self, request: str) -> str:
        import torch

        tokenizer, model = self._tokenizer, self._model
        system = system_prompt(self.language, self.max_chars)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": "system", "content": system}, {"role": "user", "content": request}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            text = f"Rewrite as a detailed prompt for a 3D model generator: {request}\nDetailed prompt:"
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=1024).to(self.device)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                repetition_penalty=1.2,
                pad_token_id=pad_id,
            )
        tokens = output[0] if self._encoder_decoder else output[0][inputs["input_ids"].shape[1] :]
        return str(tokenizer.decode(tokens, skip_special_tokens=True))

    async def enhance(self, prompt: str, *, style: str | None) -> str:
        await self._ensure_loaded()
        loop = asyncio.get_running_loop()
        try:
            answer = await loop.run_in_executor(self._executor, self._generate, user_message(prompt, style))
        except Exception as error:
            raise EnhancerUnavailable(f"the local model failed: {type(error).__name__}: {error}") from error
        return clean_output(prompt, answer, max_chars=self.max_chars)

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._model = None


# Keyword expansion: (English keywords, Korean keywords, English hint, Korean hint). The first subject
# group that matches adds its hint; a request that matches none gets the generic object hint.
_SUBJECTS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, str], ...] = (
    (
        ("robot", "mech", "android", "cyborg", "droid"),
        ("로봇", "메카", "안드로이드", "사이보그"),
        "hard-surface mechanical design with visible joints, panel lines and bolts",
        "관절과 패널 라인이 보이는 하드서피스 기계 디자인",
    ),
    (
        ("man", "woman", "girl", "boy", "person", "knight", "warrior", "wizard", "witch", "soldier", "king",
         "queen", "princess", "prince", "character", "hero", "ninja", "samurai", "pirate", "astronaut",
         "elf", "dwarf", "zombie", "skeleton"),
        ("사람", "남자", "여자", "소녀", "소년", "기사", "전사", "마법사", "마녀", "병사", "왕", "여왕",
         "공주", "왕자", "캐릭터", "영웅", "닌자", "사무라이", "해적", "우주비행사", "엘프", "좀비", "해골"),
        "full-body character standing in a neutral A-pose, balanced proportions, clear readable silhouette",
        "중립적인 A자 자세로 선 전신 캐릭터, 균형 잡힌 비율, 또렷한 실루엣",
    ),
    (
        ("dog", "cat", "fox", "wolf", "bear", "rabbit", "bunny", "horse", "bird", "owl", "dragon", "dinosaur",
         "monster", "creature", "fish", "shark", "frog", "turtle", "lion", "tiger", "unicorn", "puppy",
         "kitten", "animal", "beast"),
        ("강아지", "고양이", "여우", "늑대", "곰", "토끼", "말", "새", "부엉이", "용", "드래곤",
         "공룡", "괴물", "몬스터", "물고기", "상어", "개구리", "거북", "사자", "호랑이", "유니콘", "동물"),
        "full-body creature with believable anatomy, expressive head and a natural standing pose",
        "자연스럽게 선 자세의 전신 생물, 설득력 있는 해부 구조와 표정이 살아 있는 머리",
    ),
    (
        ("car", "truck", "bus", "ship", "boat", "spaceship", "spacecraft", "plane", "airplane", "jet",
         "helicopter", "tank", "bike", "bicycle", "motorcycle", "train", "submarine", "rocket", "vehicle"),
        ("자동차", "차", "트럭", "버스", "배", "보트", "우주선", "비행기", "전투기", "헬리콥터", "탱크",
         "자전거", "오토바이", "기차", "잠수함", "로켓"),
        "vehicle with accurate proportions, separate wheels or engines, clean panel seams",
        "정확한 비율의 탈것, 분리된 바퀴나 엔진, 깔끔한 패널 이음새",
    ),
    (
        ("house", "castle", "tower", "temple", "building", "hut", "cabin", "shrine", "lighthouse", "church",
         "windmill", "bridge", "gate"),
        ("집", "성", "탑", "사원", "건물", "오두막", "신사", "등대", "교회", "풍차", "다리", "문"),
        "architectural model with readable walls, roof and doorways, sitting on a small base",
        "벽과 지붕, 출입구가 잘 보이는 건축 모형, 작은 받침 위에 놓임",
    ),
    (
        ("sword", "axe", "shield", "gun", "rifle", "pistol", "bow", "staff", "wand", "hammer", "spear",
         "dagger", "blade", "weapon", "helmet", "armor", "armour"),
        ("검", "칼", "도끼", "방패", "총", "소총", "권총", "활", "지팡이", "망치", "창", "단검", "무기",
         "투구", "갑옷"),
        "game-ready prop with a distinct silhouette, crisp bevelled edges and a sturdy grip",
        "뚜렷한 실루엣과 또렷한 모서리, 튼튼한 손잡이를 가진 게임용 소품",
    ),
    (
        ("chair", "table", "desk", "lamp", "sofa", "couch", "bed", "shelf", "chest", "barrel", "crate",
         "vase", "cup", "mug", "teapot", "bottle", "clock", "book", "box", "bench", "stool"),
        ("의자", "탁자", "책상", "램프", "소파", "침대", "선반", "상자", "궤짝", "나무통", "꽃병", "컵",
         "머그", "찻주전자", "병", "시계", "책", "벤치"),
        "everyday prop at real-world scale with clean proportions and subtle wear",
        "실제 크기의 생활 소품, 깔끔한 비율과 은은한 사용감",
    ),
    (
        ("cake", "pizza", "burger", "hamburger", "fruit", "apple", "banana", "bread", "sushi", "donut",
         "icecream", "cookie", "food"),
        ("케이크", "피자", "햄버거", "과일", "사과", "바나나", "빵", "초밥", "도넛", "아이스크림", "쿠키",
         "음식"),
        "appetising food item with soft shapes and rich, saturated colours",
        "부드러운 형태와 진하고 선명한 색의 먹음직스러운 음식",
    ),
    (
        ("tree", "flower", "plant", "cactus", "mushroom", "bush", "rock", "crystal", "bonsai"),
        ("나무", "꽃", "식물", "선인장", "버섯", "덤불", "바위", "수정", "분재"),
        "natural organic forms with layered detail and a flat base so it stands on its own",
        "겹겹의 디테일을 가진 자연스러운 유기적 형태, 혼자 설 수 있는 평평한 바닥",
    ),
)
_GENERIC_SUBJECT = (
    "single standalone object with clear proportions and well-defined parts",
    "비율이 분명하고 부분이 잘 구분된 하나의 독립된 오브젝트",
)

_MATERIALS: tuple[tuple[tuple[str, ...], tuple[str, ...], str, str], ...] = (
    (("wood", "wooden", "oak"), ("나무로", "목재", "원목"), "carved wood with visible grain",
     "결이 보이는 조각된 나무"),
    (("metal", "steel", "iron", "bronze", "copper", "chrome", "metallic"),
     ("금속", "강철", "철", "청동", "구리", "크롬"), "brushed metal with slightly worn edges",
     "모서리가 살짝 닳은 브러시드 메탈"),
    (("stone", "marble", "granite", "rock"), ("돌", "대리석", "화강암"), "chiselled stone surface",
     "정으로 다듬은 돌 표면"),
    (("glass", "crystal", "transparent"), ("유리", "크리스털", "투명"), "clear glass with soft reflections",
     "부드러운 반사가 있는 투명한 유리"),
    (("gold", "golden", "silver"), ("금", "황금", "은"), "polished precious metal with ornate trim",
     "화려한 장식이 있는 광택 나는 귀금속"),
    (("leather",), ("가죽",), "stitched leather", "바느질된 가죽"),
    (("plastic", "toy", "vinyl"), ("플라스틱", "장난감"), "smooth glossy plastic", "매끈하고 광택 있는 플라스틱"),
    (("fabric", "cloth", "knitted", "plush", "wool"), ("천", "니트", "봉제", "털실"),
     "soft fabric with fine weave", "결이 고운 부드러운 천"),
    (("ceramic", "porcelain", "clay"), ("도자기", "자기", "점토", "찰흙"), "glazed ceramic",
     "유약을 바른 도자기"),
    (("fur", "furry", "fluffy"), ("털", "복슬복슬"), "soft layered fur", "부드럽게 겹친 털"),
)

_STYLE_HINTS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "realistic": (("realistic", "photorealistic", "사실적"), "realistic style with true-to-life detail",
                  "실물 같은 디테일의 사실적인 스타일"),
    "cartoon": (("cartoon", "cute", "chibi", "stylized", "stylised", "만화", "귀여운"),
                "stylised cartoon look with chunky shapes and bold colours",
                "두툼한 형태와 선명한 색의 만화풍 스타일"),
    "low-poly": (("low poly", "low-poly", "lowpoly", "로우폴리"),
                 "low-poly style with flat-shaded facets", "면이 드러나는 로우폴리 스타일"),
    "sculpture": (("sculpture", "statue", "figurine", "조각", "동상", "피규어"),
                  "sculpted figurine look with fine surface detail", "섬세한 표면의 조각상 스타일"),
}
_MESH_HINTS = (
    "centred single mesh, clean quad-friendly topology, game-ready with PBR materials",
    "가운데 놓인 단일 메시, 깔끔한 토폴로지, PBR 재질의 게임용 모델",
)


_KOREAN_PARTICLES = frozenset(
    "은 는 이 가 을 를 의 와 과 로 으로 도 에 에서 만 처럼 같은 모양 인형 피규어".split()
)


def _has_any(text: str, words: Sequence[str], *, korean: bool) -> bool:
    if not korean:
        return any(re.search(rf"\b{re.escape(word)}s?\b", text) for word in words)
    tokens = text.split()
    for word in words:
        if len(word) >= 2:
            if any(word in token for token in tokens):
                return True
        # One syllable hides inside countless words (차 in 차가운 "cold"), so it must stand alone or
        # carry a particle.
        elif any(token.startswith(word) and token[1:] in {"", *_KOREAN_PARTICLES} for token in tokens):
            return True
    return False


class KeywordEnhancer:
    """Deterministic keyword expansion: subject, material, style and mesh hints appended to the request.

    Hints are written in the request's language (Korean or English), or in English when ``language`` is
    ``"en"``; hints the request already covers are not repeated.
    """

    name = "keywords"

    def __init__(self, *, language: Language = "auto", max_chars: int = MAX_PROMPT_CHARS) -> None:
        self.language = language
        self.max_chars = max_chars

    def expand(self, prompt: str, *, style: str | None = None) -> str:
        request = " ".join(prompt.split()).rstrip(" .,")
        lowered = request.lower()
        korean_request = bool(_HANGUL.search(request))
        korean_out = korean_request and self.language == "auto"
        pick = 3 if korean_out else 2

        def matches(english: Sequence[str], korean: Sequence[str]) -> bool:
            return _has_any(lowered, english, korean=False) or (
                korean_request and _has_any(request, korean, korean=True)
            )

        hints: list[str] = []
        subject = next(
            (group for group in _SUBJECTS if matches(group[0], group[1])),
            ((), (), *_GENERIC_SUBJECT),
        )
        hints.append(subject[pick])
        for english, korean, hint_en, hint_ko in _MATERIALS:
            if matches(english, korean):
                hints.append(hint_ko if korean_out else hint_en)
                break
        chosen = style if style in _STYLE_HINTS else None
        if chosen is None:
            chosen = next((name for name, spec in _STYLE_HINTS.items() if matches(spec[0], spec[0])), None)
        if chosen is not None:
            _words, hint_en, hint_ko = _STYLE_HINTS[chosen]
            hints.append(hint_ko if korean_out else hint_en)
        hints.append(_MESH_HINTS[1] if korean_out else _MESH_HINTS[0])
        text = request
        for hint in hints:
            candidate = f"{text}, {hint}"
            if len(candidate) > self.max_chars:
                break
            text = candidate
        return text

    async def enhance(self, prompt: str, *, style: str | None) -> str:
        return self.expand(prompt, style=style)

    async def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------- facade


class PromptEnhancer:
    """Tries each backend in order; the last one should never fail (``KeywordEnhancer``).

    ``timeout_s`` bounds one backend's whole attempt, SDK retries included, so a hung chat server
    delays a job by at most that long before the next backend answers.
    """

    def __init__(
        self,
        backends: Sequence[EnhancerBackend],
        *,
        timeout_s: float = 30.0,
        max_chars: int = MAX_PROMPT_CHARS,
    ) -> None:
        if not backends:
            raise ValueError("at least one enhancer backend is needed")
        self.backends = list(backends)
        self.timeout_s = timeout_s
        self.max_chars = max_chars

    @property
    def names(self) -> list[str]:
        return [backend.name for backend in self.backends]

    async def enhance(self, prompt: str, *, style: str | None = None) -> Enhancement:
        started = time.monotonic()
        failures: list[str] = []
        for backend in self.backends:
            try:
                async with asyncio.timeout(self.timeout_s):
                    text = await backend.enhance(prompt, style=style)
            except EnhancerUnavailable as error:
                failures.append(f"{backend.name}: {error.reason}")
            except TimeoutError:
                failures.append(f"{backend.name}: no answer within {self.timeout_s:g} s")
            else:
                text = _cut(" ".join(text.split()), self.max_chars)
                if text:
                    if failures:
                        log.warning("prompt enhancer fell back to %s (%s)", backend.name, "; ".join(failures))
                    return Enhancement(text, backend.name, tuple(failures), time.monotonic() - started)
                failures.append(f"{backend.name}: empty answer")
        # Reached only without a keyword backend: the request itself is still a valid prompt.
        log.warning("every prompt enhancer failed (%s); using the request as written", "; ".join(failures))
        return Enhancement(_cut(prompt.strip(), self.max_chars), "none", tuple(failures))

    async def close(self) -> None:
        for backend in self.backends:
            try:
                await backend.close()
            except Exception:
                log.exception("closing the %s prompt enhancer failed", backend.name)


EnhancerChoice = Literal["auto", "openai", "local", "keywords"]


def build_prompt_enhancer(
    *,
    choice: EnhancerChoice = "auto",
    chat_base_url: str = "",
    chat_api_key: str | None = None,
    chat_model: str = "",
    local_model_path: Path | None = None,
    device: str = "auto",
    language: Language = "auto",
    timeout_s: float = 30.0,
) -> PromptEnhancer:
    """The backends the configuration asks for, keyword expansion always last.

    ``auto`` uses the chat model when a base URL and model are set, then the local model when a path is
    set; naming one backend uses only it (and the keyword fallback).
    """
    backends: list[EnhancerBackend] = []
    chat_ready = bool(chat_base_url and chat_model)
    if choice in ("auto", "openai") and chat_ready:
        client = ChatClient(chat_base_url, chat_api_key, chat_model, timeout=timeout_s, max_retries=1)
        backends.append(ChatEnhancer(client, language=language))
    elif choice == "openai":
        log.warning("ENHANCER_BACKEND=openai but ENHANCER_BASE_URL/ENHANCER_MODEL are unset; using keywords")
    if choice in ("auto", "local") and local_model_path is not None:
        backends.append(LocalModelEnhancer(local_model_path, device=device, language=language))
    elif choice == "local":
        log.warning("ENHANCER_BACKEND=local but ENHANCER_LOCAL_MODEL is unset; using keywords")
    backends.append(KeywordEnhancer(language=language))
    # The chat and local attempts each get the timeout; 2.5x leaves room for the SDK's one retry.
    return PromptEnhancer(backends, timeout_s=timeout_s * 2.5)
