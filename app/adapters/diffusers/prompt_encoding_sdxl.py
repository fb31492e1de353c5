"""Prompt embeddings for Stable Diffusion XL (base and refiner) with A1111 syntax: weights, ``BREAK``, long prompts.

Each text encoder the pipeline has (``text_encoder``/``tokenizer`` and ``text_encoder_2``/``tokenizer_2``; the
refiner has only the second) gets the prompt cut into chunks of ``model_max_length - 2`` tokens, each framed with that
tokenizer's begin and end tokens and padded with its own pad token. A chunk's hidden state is the one diffusers reads
(the penultimate layer, no final LayerNorm), weighted per token with A1111's mean restore, separately for each
encoder; the encoders' states are concatenated along the feature axis and the chunks along the sequence axis. The
pooled embedding is ``text_encoder_2``'s projected output for the first chunk, as in A1111.

A plain prompt that fits one chunk gets exactly ``StableDiffusionXLPipeline.encode_prompt``'s result, with two
deliberate differences on the negative side:

- an empty negative prompt (no tokens: ``""``, whitespace, only ``<lora:...>`` tags) is diffusers' ``None``: with
  ``force_zeros_for_empty_prompt`` its embeddings and pooled embedding are zeros. The rule is per row, so an image
  gets the same negative conditioning in a batch as alone; diffusers zeroes only when the whole call has no negative;
- ``clip_skip`` applies to negative prompts too (A1111 does; diffusers reads a negative's penultimate layer whatever
  ``clip_skip`` is, so its positive and negative states then come from different layers).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from app.adapters.diffusers.prompt_encoding import _Chunk, _chunks, _context_length, apply_weights, framed_rows


def encode_sdxl_prompts(
    pipe: Any, prompts: list[str], negative_prompts: list[str], device: torch.device | str, clip_skip: int = 1
) -> dict[str, torch.Tensor]:
    """The four SDXL prompt tensors, as keyword arguments for the pipeline's call.

    ``prompt_embeds`` and ``negative_prompt_embeds`` are ``(batch, chunks * model_max_length, hidden)``, ``hidden``
    being the encoders' widths summed; every prompt and negative prompt is padded with empty chunks to the largest
    chunk count of the batch. ``clip_skip`` is A1111's: 1 reads the penultimate layer (diffusers' default), 2 the one
    before it (diffusers' ``clip_skip=1``), and so on. ``<lora:...>`` tags are dropped.
    """
    if not prompts or len(prompts) != len(negative_prompts):
        raise ValueError(f"Need one negative prompt per prompt, got {len(prompts)} and {len(negative_prompts)}.")
    towers = _towers(pipe)
    length = _shared_context_length(towers)
    positive = [[_chunks(tower, text, length - 2) for text in prompts] for tower in towers]
    negative = [[_chunks(tower, text, length - 2) for text in negative_prompts] for tower in towers]
    count = max(len(chunks) for per_tower in positive + negative for chunks in per_tower)
    dtype = pipe.text_encoder_2.dtype
    embeds, pooled = _encode(towers, positive, count, length, device, clip_skip)
    embeds, pooled = embeds.to(dtype=dtype, device=device), pooled.to(device=device)

    force_zeros = bool(getattr(pipe.config, "force_zeros_for_empty_prompt", False))
    zeroed = [
        force_zeros and all(not ids for per_tower in negative for ids, _ in per_tower[i]) for i in range(len(prompts))
    ]
    negative_embeds = torch.zeros_like(embeds)
    negative_pooled = torch.zeros_like(pooled)
    encoded = [i for i, zero in enumerate(zeroed) if not zero]
    if encoded:
        subset = [[per_tower[i] for i in encoded] for per_tower in negative]
        rows, rows_pooled = _encode(towers, subset, count, length, device, clip_skip)
        index = torch.tensor(encoded, device=device)
        negative_embeds = negative_embeds.index_copy(0, index, rows.to(dtype=dtype, device=device))
        negative_pooled = negative_pooled.index_copy(0, index, rows_pooled.to(dtype=pooled.dtype, device=device))
    return {
        "prompt_embeds": embeds,
        "negative_prompt_embeds": negative_embeds,
        "pooled_prompt_embeds": pooled,
        "negative_pooled_prompt_embeds": negative_pooled,
    }


def sdxl_chunk_count(pipe: Any, text: str) -> int:
    """How many text-encoder contexts ``text`` fills (at least one; the larger count of the two tokenizers)."""
    towers = _towers(pipe)
    length = _shared_context_length(towers)
    return max(1, *(len(_chunks(tower, text, length - 2)) for tower in towers))


def _towers(pipe: Any) -> list[SimpleNamespace]:
    """One ``tokenizer``/``text_encoder`` view per encoder, in diffusers' order, for the SD-1 chunking helpers."""
    if getattr(pipe, "text_encoder_2", None) is None or getattr(pipe, "tokenizer_2", None) is None:
        raise ValueError(f"{type(pipe).__name__} has no text_encoder_2/tokenizer_2 to encode an SDXL prompt with.")
    pairs = [(pipe.tokenizer_2, pipe.text_encoder_2)]
    if getattr(pipe, "tokenizer", None) is not None and getattr(pipe, "text_encoder", None) is not None:
        pairs.insert(0, (pipe.tokenizer, pipe.text_encoder))
    towers = []
    for tokenizer, encoder in pairs:
        tower = SimpleNamespace(tokenizer=tokenizer, text_encoder=encoder)
        if hasattr(pipe, "maybe_convert_prompt"):  # textual inversion, expanded per tokenizer as diffusers does
            tower.maybe_convert_prompt = pipe.maybe_convert_prompt
        towers.append(tower)
    return towers


def _shared_context_length(towers: list[SimpleNamespace]) -> int:
    lengths = {_context_length(tower) for tower in towers}
    if len(lengths) != 1:
        raise ValueError(f"The text encoders' contexts differ ({sorted(lengths)}); their chunks cannot be joined.")
    return lengths.pop()


def _encode(
    towers: list[SimpleNamespace],
    prompts: list[list[list[_Chunk]]],
    count: int,
    length: int,
    device: torch.device | str,
    clip_skip: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(batch, count * length, hidden)`` states and ``(batch, projection)`` pooled embeddings of the first chunks.

    ``prompts[t][i]`` is prompt ``i``'s chunks for tower ``t``. The pooled output is the first 2-D ``output[0]``
    among the towers (``CLIPTextModelWithProjection.text_embeds``), as diffusers picks it.
    """
    states: list[torch.Tensor] = []
    pooled: torch.Tensor | None = None
    for tower, chunked in zip(towers, prompts, strict=True):
        rows, _, weights = framed_rows(tower.tokenizer, chunked, count, length)
        input_ids = torch.tensor(rows, dtype=torch.long, device=device)
        with torch.no_grad():
            output = tower.text_encoder(input_ids, output_hidden_states=True)
        layers = output.hidden_states
        hidden = layers[-min(max(clip_skip, 1) + 1, len(layers) - 1)]  # never below the first layer
        if pooled is None and output[0].ndim == 2:
            pooled = output[0][::count]
        hidden = apply_weights(hidden, torch.tensor(weights, device=hidden.device))
        states.append(hidden.reshape(len(chunked), count * length, hidden.shape[-1]))
    if pooled is None:
        raise ValueError("No text encoder returned a pooled (projected) embedding; SDXL needs text_encoder_2's.")
    return torch.cat(states, dim=-1), pooled
