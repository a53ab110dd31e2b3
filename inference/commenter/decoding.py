"""Batched candidate decoding with reproducible sampling.

Each output row draws its random numbers from a hash of (label list, candidate number, seed, step)
rather than from a global generator, so an input gets the same candidates whether it is decoded alone
or inside any batch, and a service that retries a request gets the same comment back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import EncoderDecoderCache, T5ForConditionalGeneration

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class DecodeSettings:
    """How candidates are drawn; saved beside the weights so a model dir carries its own defaults."""

    num_candidates: int = 8
    temperature: float = 0.8
    top_k: int = 40
    # Added to the end-of-sequence logit: positive values shorten comments, negative ones lengthen them.
    eos_bias: float = 0.0
    min_new_tokens: int = 4
    max_new_tokens: int = 64
    max_prompt_tokens: int = 48
    # A row may not write the same run of this many tokens twice (0: no guard). Without it a few label
    # lists loop on a phrase ("차도 멋져요!") to the token cap and keep their whole batch decoding.
    no_repeat_ngram: int = 4
    # Selection weights (see `selection.select_candidate`), chosen on the dev split of the default model.
    coverage_weight: float = 1.0
    length_weight: float = 0.3


@dataclass
class DecodeStats:
    """What one `decode_candidates` call cost, for benches: decoder steps run, rows decoded in them
    (the forward passes' real work) and rows that reached `max_new_tokens` without ending."""

    steps: int = 0
    row_steps: int = 0
    rows: int = 0
    capped_rows: int = 0


def row_seed(labels: Sequence[str], candidate: int, seed: int) -> int:
    text = "\x1f".join([str(seed), str(candidate), *labels])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")


def _uniforms(seeds: np.ndarray, step: int) -> np.ndarray:
    """splitmix64 of (seed, step) mapped to [0, 1); wrap-around arithmetic is the point here."""
    with np.errstate(over="ignore"):
        z = seeds + np.uint64(step + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def padded_prompts(prompts: Sequence[Sequence[int]], *, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids padded on the right to the longest prompt, and the attention mask that hides the pad."""
    width = max(len(prompt) for prompt in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, : len(prompt)] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[row, : len(prompt)] = 1
    return input_ids, attention_mask


def decoder_step(
    model: T5ForConditionalGeneration,
    encoded: torch.Tensor,
    attention_mask: torch.Tensor,
    current: torch.Tensor,
    cache: EncoderDecoderCache | None,
) -> tuple[torch.Tensor, EncoderDecoderCache]:
    """One cached decoder pass over the last written tokens: float32 logits of the next token per row,
    and the cache grown by that token (``cache`` is the name transformers 5 takes and returns)."""
    result = model(
        encoder_outputs=(encoded,),
        attention_mask=attention_mask,
        decoder_input_ids=current,
        cache=cache,
        use_cache=True,
    )
    return result.logits[:, -1, :].float(), result.cache


@torch.inference_mode()
def decode_candidates(
    model: T5ForConditionalGeneration,
    prompts: Sequence[Sequence[int]],
    seeds: Sequence[Sequence[int]],
    settings: DecodeSettings,
    *,
    pad_id: int,
    eos_id: int,
    banned_ids: Sequence[int],
    row_banned_ids: Sequence[Sequence[int]] | None = None,
    stats: DecodeStats | None = None,
) -> list[list[list[int]]]:
    """Token ids of `len(seeds[i])` candidates for each prompt; candidate 0 of each is greedy, the rest
    are sampled with temperature and top-k. `banned_ids` are never written; `row_banned_ids[i]` are
    not written for prompt `i` (a slot model's slots beyond the prompt's objects)."""
    device = model.device
    per_prompt = len(seeds[0])
    if any(len(row) != per_prompt for row in seeds):
        raise ValueError("every prompt needs the same number of candidate seeds")
    input_ids, attention_mask = padded_prompts(prompts, pad_id=pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)

    encoded = model.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    encoded = encoded.repeat_interleave(per_prompt, dim=0)
    attention_mask = attention_mask.repeat_interleave(per_prompt, dim=0)
    rows = encoded.shape[0]
    row_seeds = np.array([seed for row in seeds for seed in row], dtype=np.uint64)
    greedy_rows = torch.tensor([index % per_prompt == 0 for index in range(rows)], device=device)
    top_k = max(1, min(settings.top_k, model.config.vocab_size))
    row_ban: torch.Tensor | None = None
    if row_banned_ids is not None and any(row_banned_ids):
        row_ban = torch.zeros((len(prompts), model.config.vocab_size), dtype=torch.bool)
        for row, ids in enumerate(row_banned_ids):
            row_ban[row, list(ids)] = True
        row_ban = row_ban.repeat_interleave(per_prompt, dim=0).to(device)

    # Rows that have ended are dropped from the batch (and from the cache) so late steps only pay
    # for the candidates still being written.
    active = torch.arange(rows, device=device)
    done = torch.zeros(rows, dtype=torch.bool, device=device)
    output = torch.full((rows, settings.max_new_tokens), pad_id, dtype=torch.long, device=device)
    current = torch.full((rows, 1), model.config.decoder_start_token_id, dtype=torch.long, device=device)
    cache: EncoderDecoderCache | None = None
    for step in range(settings.max_new_tokens):
        if stats is not None:
            stats.steps += 1
            stats.row_steps += len(active)
        logits, cache = decoder_step(model, encoded, attention_mask, current, cache)
        logits[:, list(banned_ids)] = -torch.inf
        if row_ban is not None:
            logits.masked_fill_(row_ban, -torch.inf)
        if step < settings.min_new_tokens:
            logits[:, eos_id] = -torch.inf
        else:
            logits[:, eos_id] += settings.eos_bias
        if settings.no_repeat_ngram > 1 and step >= settings.no_repeat_ngram:
            _ban_repeats(logits, output[active, :step], settings.no_repeat_ngram)
        greedy = logits.argmax(dim=-1)
        top_logits, top_ids = logits.topk(top_k, dim=-1)
        probabilities = torch.softmax(top_logits / max(settings.temperature, 1e-4), dim=-1).double()
        cumulative = probabilities.cumsum(dim=-1)
        draws = torch.from_numpy(_uniforms(row_seeds, step)).to(device).unsqueeze(1) * cumulative[:, -1:]
        picked = torch.searchsorted(cumulative, draws).clamp(max=top_k - 1)
        sampled = top_ids.gather(1, picked).squeeze(1)
        chosen = torch.where(greedy_rows, greedy, sampled)
        chosen = torch.where(done, torch.full_like(chosen, pad_id), chosen)
        output[active, step] = chosen
        done |= chosen == eos_id
        finished = int(done.sum())
        if finished == len(active):
            break
        # Copying the cache costs about as much as a step, so ended rows are only dropped in bulk.
        if finished * 8 >= len(active):
            keep = (~done).nonzero().squeeze(1)
            active, chosen, done = active[keep], chosen[keep], done[keep]
            encoded, attention_mask, greedy_rows = encoded[keep], attention_mask[keep], greedy_rows[keep]
            row_seeds = row_seeds[keep.cpu().numpy()]
            if row_ban is not None:
                row_ban = row_ban[keep]
            assert cache is not None
            cache.batch_select_indices(keep)
        current = chosen.unsqueeze(1)

    tokens = output.tolist()
    if stats is not None:
        stats.rows += rows
        stats.capped_rows += sum(1 for row in tokens if eos_id not in row and row[-1] != pad_id)
    candidates: list[list[list[int]]] = []
    for prompt_index in range(len(prompts)):
        group: list[list[int]] = []
        for row in tokens[prompt_index * per_prompt : (prompt_index + 1) * per_prompt]:
            end = row.index(eos_id) if eos_id in row else len(row)
            group.append([token for token in row[:end] if token != pad_id])
        candidates.append(group)
    return candidates


def _ban_repeats(logits: torch.Tensor, history: torch.Tensor, size: int) -> None:
    """Forbid, per row, every token that would complete a run of `size` tokens the row already wrote:
    the rows' own history decides, so a row's output stays the same in any batch."""
    windows = history.unfold(1, size, 1)  # rows x positions x size
    prefix = history[:, history.shape[1] - (size - 1) :]
    matches = (windows[:, :, : size - 1] == prefix[:, None, :]).all(dim=-1)
    rows, positions = matches.nonzero(as_tuple=True)
    if len(rows):
        logits[rows, windows[rows, positions, size - 1]] = -torch.inf
