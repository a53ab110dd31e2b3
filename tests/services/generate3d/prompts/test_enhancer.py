"""Prompt enhancer backends: the OpenAI-compatible double (answers, failures, timeouts), a real local
transformers model built in the test, and the keyword fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.generate3d.prompts.enhancer import PromptEnhancer, build_prompt_enhancer
from bot.services.generate3d.prompts.keywords import KeywordEnhancer
from bot.services.generate3d.prompts.llm_backends import ChatEnhancer, LocalModelEnhancer
from bot.services.generate3d.prompts.output import clean_output
from inference.remote.chat import ChatClient
from inference.remote.meshy import MAX_PROMPT_CHARS
from tests.fakes.openai_server import FakeOpenAI

ANSWER = (
    "Prompt: a small wooden treasure chest with iron bands,\nweathered oak planks, riveted iron corners, "
    "hand-painted stylised look, single centred object, clean quad topology, game-ready"
)


@pytest.fixture
async def chat() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(reply=ANSWER) as server:
        yield server


def chat_enhancer(server: FakeOpenAI, *, timeout: float = 5.0, language: str = "auto") -> PromptEnhancer:
    client = ChatClient(server.base_url, server.api_key, server.model, timeout=timeout, max_retries=0)
    return PromptEnhancer([ChatEnhancer(client, language=language), KeywordEnhancer()], timeout_s=timeout)  # type: ignore[arg-type]


async def test_chat_answer_is_cleaned_into_one_paragraph(chat: FakeOpenAI) -> None:
    enhancer = chat_enhancer(chat)
    result = await enhancer.enhance("a small wooden treasure chest", style="cartoon")
    await enhancer.close()
    assert result.backend == "openai" and result.fallbacks == ()
    assert result.text.startswith("a small wooden treasure chest with iron bands, weathered oak")
    assert "\n" not in result.text and "Prompt:" not in result.text
    request = chat.chat_requests[0].json
    system = request["messages"][0]["content"]
    assert "3D" in system and f"{MAX_PROMPT_CHARS} characters" in system and "same language" in system
    assert request["messages"][1]["content"] == "a small wooden treasure chest\n(Art style: cartoon)"


async def test_english_only_setting_reaches_the_system_prompt(chat: FakeOpenAI) -> None:
    enhancer = chat_enhancer(chat, language="en")
    await enhancer.enhance("귀여운 여우")
    await enhancer.close()
    assert "Write it in English." in chat.chat_requests[0].json["messages"][0]["content"]


@pytest.mark.parametrize("status", [401, 429, 500, 503])
async def test_chat_failures_fall_back_to_keywords(chat: FakeOpenAI, status: int) -> None:
    chat.fail_next(status, count=3)
    enhancer = chat_enhancer(chat)
    result = await enhancer.enhance("a wooden chair")
    await enhancer.close()
    assert result.backend == "keywords"
    assert result.fallbacks and result.fallbacks[0].startswith("openai:")
    assert result.text.startswith("a wooden chair, ")


async def test_a_slow_chat_server_times_out_into_the_fallback(chat: FakeOpenAI) -> None:
    chat.delay = 3.0
    enhancer = chat_enhancer(chat, timeout=0.5)
    result = await enhancer.enhance("a brass lantern")
    await enhancer.close()
    assert result.backend == "keywords"
    assert result.elapsed_s < 2.5


async def test_an_empty_chat_answer_falls_back(chat: FakeOpenAI) -> None:
    chat.empty_reply = True
    enhancer = chat_enhancer(chat)
    assert (await enhancer.enhance("a lamp")).backend == "keywords"
    await enhancer.close()


def test_clean_output_keeps_the_request_and_the_limit() -> None:
    drifted = clean_output("a red fox", "A majestic mountain landscape at dawn with pine trees")
    assert drifted.startswith("a red fox, A majestic")
    long = clean_output("a chair", "a chair, " + "very ornate carved detail, " * 60)
    assert len(long) <= MAX_PROMPT_CHARS and not long.endswith(",")
    assert clean_output("a cup", '"Here is your prompt: a blue ceramic cup"') == "a blue ceramic cup"


def test_keyword_expansion_is_deterministic_and_bilingual() -> None:
    keywords = KeywordEnhancer()
    english = keywords.expand("a wooden chair", style="low-poly")
    assert english == keywords.expand("a wooden chair", style="low-poly")
    assert "carved wood" in english and "low-poly style" in english and "topology" in english
    korean = keywords.expand("귀여운 여우 인형")
    assert korean.startswith("귀여운 여우 인형, ") and "전신 생물" in korean and "만화풍" in korean
    # 차 ("car") hides in 차가운 ("cold"): single syllables must stand alone.
    assert "탈것" not in keywords.expand("차가운 금속 검")
    assert "full-body creature" in KeywordEnhancer(language="en").expand("귀여운 여우")
    assert len(keywords.expand("a " + "very " * 115 + "big fox")) <= MAX_PROMPT_CHARS


def _tiny_local_model(folder: Path) -> None:
    """A real (untrained) GPT-2 with a byte-level tokenizer that needs no vocabulary download."""
    import torch
    from transformers import ByT5Tokenizer, GPT2Config, GPT2LMHeadModel

    tokenizer = ByT5Tokenizer()
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=1024,
        n_embd=32,
        n_layer=1,
        n_head=2,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # Fixed weights: what an untrained model writes depends on them, and the test must not depend on
    # which tests drew from torch's global random state before it.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    # Untrained weights may pick a special token first and end with nothing, or write bytes that are
    # no text; the model's own generation config (read by transformers, not by Lumi) lets it write
    # only lowercase letters and spaces (ByT5 ids are byte values + 3).
    writable = {byte + 3 for byte in b" abcdefghijklmnopqrstuvwxyz"}
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i not in writable]
    model.generation_config.bos_token_id = None
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


async def test_local_model_backend_generates_in_process(tmp_path: Path) -> None:
    _tiny_local_model(tmp_path / "model")
    local = LocalModelEnhancer(tmp_path / "model", device="cpu", max_new_tokens=24)
    enhancer = PromptEnhancer([local, KeywordEnhancer()], timeout_s=60)
    first = await enhancer.enhance("a red fox")
    second = await enhancer.enhance("a red fox")
    await enhancer.close()
    assert first.backend == "local", first.fallbacks
    assert first.text == second.text  # greedy decoding
    # An untrained model writes noise; the request is kept in front of it.
    assert first.text.startswith("a red fox") and len(first.text) <= MAX_PROMPT_CHARS


async def test_missing_local_model_falls_back(tmp_path: Path) -> None:
    enhancer = build_prompt_enhancer(choice="local", local_model_path=tmp_path / "nothing-here")
    result = await enhancer.enhance("a stone bench")
    await enhancer.close()
    assert enhancer.names == ["local", "keywords"]
    assert result.backend == "keywords" and "cannot load the local model" in result.fallbacks[0]


def test_auto_choice_uses_what_is_configured(tmp_path: Path) -> None:
    assert build_prompt_enhancer().names == ["keywords"]
    both = build_prompt_enhancer(
        chat_base_url="http://127.0.0.1:9/v1", chat_model="m", local_model_path=tmp_path
    )
    assert both.names == ["openai", "local", "keywords"]
