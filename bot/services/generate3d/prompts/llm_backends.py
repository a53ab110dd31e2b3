"""Prompt enhancer backends that ask a language model: a chat service or a local transformers model.

- ``ChatEnhancer``: an OpenAI-compatible chat model (OpenAI, vLLM, Ollama) with ``SYSTEM_PROMPT``;
- ``LocalModelEnhancer``: a transformers model from a local folder, in this process (GPU when present).
Both pass what the model wrote through ``clean_output`` and report failures as ``EnhancerUnavailable``.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bot.services.generate3d.prompts.instructions import Language, system_prompt, user_message
from bot.services.generate3d.prompts.output import EnhancerUnavailable, clean_output
from inference.remote.chat import ChatClient, ChatUnavailable
from inference.remote.meshy import MAX_PROMPT_CHARS

__all__ = ["ChatEnhancer", "LocalModelEnhancer"]

log = logging.getLogger(__name__)


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
        self._model = model.to(self.device).eval()  # type: ignore[arg-type]
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
