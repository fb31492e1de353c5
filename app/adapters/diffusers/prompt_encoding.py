"""Prompt embeddings with A1111 syntax: weighted tokens, ``BREAK``, and prompts longer than the text encoder's context.

A prompt's tokens are cut into chunks of ``model_max_length - 2``; each chunk is framed with the tokenizer's begin and
end tokens (CLIP ``<|startoftext|>``/``<|endoftext|>``, BERT ``[CLS]``/``[SEP]``), padded with its pad token, encoded on
its own, and the chunks' hidden states are concatenated along the sequence axis (as A1111 and the Diffusers-API
long-prompt pipeline do). A plain prompt that fits one chunk gets exactly the pipeline's own ``encode_prompt`` result.
"""

from __future__ import annotations

from typing import Any

import torch

from app.domain.prompt_syntax import parse_prompt

# (token ids, weights) of one chunk, without its begin/end/pad tokens.
_Chunk = tuple[list[int], list[float]]
# The rescale is skipped when either mean is this small against the mean magnitude (or the signs differ): a
# random-init CLIP tower (final LayerNorm bias 0) has a mean of ~1e-9, and the ratio would be noise or ~0.
_MIN_RELATIVE_MEAN = 1e-3


def encode_prompts(
    pipe: Any, prompts: list[str], negative_prompts: list[str], device: torch.device | str, clip_skip: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``prompt_embeds`` and ``negative_prompt_embeds``, both ``(batch, chunks * model_max_length, hidden)``.

    Every prompt and negative prompt is padded with empty chunks to the largest chunk count of the batch, as
    ``StableDiffusionPipeline`` needs equal shapes. ``<lora:...>`` tags are dropped here: callers that apply LoRAs
    read them with :func:`app.domain.prompt_syntax.parse_prompt`. ``clip_skip`` is A1111's: 1 reads the text
    encoder's last layer, 2 the one before it (then its final LayerNorm, as A1111 does), and so on.
    """
    if not prompts or len(prompts) != len(negative_prompts):
        raise ValueError(f"Need one negative prompt per prompt, got {len(prompts)} and {len(negative_prompts)}.")
    length = _context_length(pipe)
    positive = [_chunks(pipe, text, length - 2) for text in prompts]
    negative = [_chunks(pipe, text, length - 2) for text in negative_prompts]
    count = max(len(chunks) for chunks in positive + negative)
    encoded = [_encode(pipe, texts, count, length, device, clip_skip) for texts in (positive, negative)]
    return encoded[0], encoded[1]


def frame_tokens(tokenizer: Any) -> tuple[int, int, int]:
    """The begin, end and pad token ids: ``[CLS]``/``[SEP]`` when the tokenizer has both, else BOS/EOS.

    A tokenizer without a pad token pads with its end token (the SD-1 CLIP convention).
    """
    for begin, end in (
        (tokenizer.cls_token_id, tokenizer.sep_token_id),
        (tokenizer.bos_token_id, tokenizer.eos_token_id),
    ):
        if begin is not None and end is not None:
            pad = tokenizer.pad_token_id
            return int(begin), int(end), int(end if pad is None else pad)
    raise ValueError(f"{type(tokenizer).__name__} has neither [CLS]/[SEP] nor BOS/EOS tokens to frame a chunk.")


def chunk_count(pipe: Any, text: str) -> int:
    """How many text-encoder contexts ``text`` fills (at least one)."""
    return max(1, len(_chunks(pipe, text, _context_length(pipe) - 2)))


def _context_length(pipe: Any) -> int:
    # A BERT tokenizer saved without model_max_length reports ~1e30; the position table is the real limit.
    positions = getattr(pipe.text_encoder.config, "max_position_embeddings", None)
    limit = int(min(pipe.tokenizer.model_max_length, positions or pipe.tokenizer.model_max_length))
    if limit < 3:
        raise ValueError(f"A text context of {limit} tokens leaves no room for a prompt.")
    return limit


def _chunks(pipe: Any, text: str, size: int) -> list[_Chunk]:
    """The prompt's weighted tokens cut into chunks of at most ``size``; ``BREAK`` closes a non-empty chunk."""
    fragments = parse_prompt(text).fragments
    words = [f.text for f in fragments if not f.is_break]
    if hasattr(pipe, "maybe_convert_prompt"):  # textual-inversion tokens, as the pipeline expands them
        words = pipe.maybe_convert_prompt(words, pipe.tokenizer)
    encoded = iter(pipe.tokenizer(words, add_special_tokens=False, verbose=False).input_ids if words else [])
    chunks: list[_Chunk] = []
    ids: list[int] = []
    weights: list[float] = []
    for fragment in fragments:
        if fragment.is_break:
            if ids:
                chunks.append((ids, weights))
                ids, weights = [], []
            continue
        for token in next(encoded):
            if len(ids) == size:
                chunks.append((ids, weights))
                ids, weights = [], []
            ids.append(int(token))
            weights.append(fragment.weight)
    if ids or not chunks:
        chunks.append((ids, weights))
    return chunks


def framed_rows(
    tokenizer: Any, prompts: list[list[_Chunk]], count: int, length: int
) -> tuple[list[list[int]], list[list[int]], list[list[float]]]:
    """Token ids, attention masks and weights of every chunk, each framed with the tokenizer's begin and end tokens
    and padded to ``length``; every prompt is padded with empty chunks to ``count``. One row per chunk."""
    begin, end, pad = frame_tokens(tokenizer)
    rows: list[list[int]] = []
    masks: list[list[int]] = []
    weights: list[list[float]] = []
    for chunks in prompts:
        for ids, ws in chunks + [([], [])] * (count - len(chunks)):
            padding = length - 2 - len(ids)
            rows.append([begin, *ids, end] + [pad] * padding)
            masks.append([1] * (len(ids) + 2) + [0] * padding)
            weights.append([1.0, *ws, 1.0] + [1.0] * padding)
    return rows, masks, weights


def _encode(
    pipe: Any, prompts: list[list[_Chunk]], count: int, length: int, device: torch.device | str, clip_skip: int = 1
) -> torch.Tensor:
    rows, masks, weights = framed_rows(pipe.tokenizer, prompts, count, length)
    encoder = pipe.text_encoder
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    mask = torch.tensor(masks, device=device) if getattr(encoder.config, "use_attention_mask", False) else None
    with torch.no_grad():
        if clip_skip > 1:
            states = encoder(input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
            hidden = states[-min(clip_skip, len(states) - 1)]  # never below the first layer
            norm = getattr(getattr(encoder, "text_model", None), "final_layer_norm", None)
            hidden = norm(hidden) if norm is not None else hidden
        else:
            hidden = encoder(input_ids, attention_mask=mask)[0]
        hidden = hidden.to(dtype=encoder.dtype, device=device)
    hidden = apply_weights(hidden, torch.tensor(weights, device=device))
    return hidden.reshape(len(prompts), count * length, hidden.shape[-1])


def apply_weights(hidden: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A1111's emphasis: ``z * w`` per token, then ``z *= old_mean / new_mean`` per chunk (row).

    Rows whose weights are all 1 are returned bit for bit; the rescale is skipped where a mean is ~0 (see above).
    """
    weighted_rows = (weights != 1.0).any(dim=1)
    if not bool(weighted_rows.any()):
        return hidden
    z = hidden.float()
    scaled = z * weights.float().unsqueeze(-1)
    old_mean, new_mean = z.mean(dim=(1, 2), keepdim=True), scaled.mean(dim=(1, 2), keepdim=True)
    tolerance = _MIN_RELATIVE_MEAN * z.abs().mean(dim=(1, 2), keepdim=True)
    usable = (old_mean.abs() > tolerance) & (new_mean.abs() > tolerance) & (old_mean * new_mean > 0)
    scaled = scaled * torch.where(usable, old_mean / new_mean, torch.ones_like(new_mean))
    return torch.where(weighted_rows[:, None, None], scaled.to(hidden.dtype), hidden)
