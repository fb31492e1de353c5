"""The prompt, guidance and size arguments of a pipeline call, per family.

SD's and SDXL's prompts are encoded here (A1111 weights, ``BREAK``, 75-token chunks: ``prompt_encoding`` and
``prompt_encoding_sdxl``); every other family's pipeline encodes its own prompt and gets the plain text with the
family's guidance convention. Batches group prompts that pad to the same length (:func:`padding_group`).
"""

from __future__ import annotations

from typing import Any

import torch

from app.adapters.diffusers.modes import parameters
from app.adapters.diffusers.prompt_encoding import chunk_count, encode_prompts
from app.adapters.diffusers.prompt_encoding_sdxl import encode_sdxl_prompts, sdxl_chunk_count
from app.domain.families import Family, GuidanceKind, profile
from app.domain.generation import GenerationParams
from app.domain.prompt_syntax import parse_prompt

Pipeline = Any  # diffusers is untyped for a strict mypy
# Families whose prompts Atelier encodes itself (A1111 weighting, 75-token chunks, BREAK): SD's one CLIP (or
# BERT), SDXL's two CLIPs; the others' pipelines encode their prompts (CLIPs and T5, an LLM), each to the length
# its text encoder reads.
OWN_ENCODING = (Family.SD, Family.INSTRUCT_PIX2PIX)
SDXL_ENCODING = (Family.SDXL, Family.SDXL_REFINER)


def text_arguments(
    pipe: Pipeline,
    family: Family,
    view: Pipeline | None,
    prompts: list[str],
    negatives: list[str],
    params: GenerationParams,
    device: torch.device | str,
) -> dict[str, Any]:
    """The prompt and guidance arguments of a call: embeddings Atelier encodes (SD, SDXL: A1111 syntax, long
    prompts), or the prompts for the pipeline ``view`` to encode with the family's guidance convention."""
    if family not in OWN_ENCODING + SDXL_ENCODING:
        return prompt_arguments(family, view, prompts, negatives, params.guidance_scale, params.clip_skip)
    scale = profile(family).guidance_scale if params.guidance_scale is None else params.guidance_scale
    if family in SDXL_ENCODING:
        return {
            **encode_sdxl_prompts(pipe, prompts, negatives, device, params.clip_skip),
            "guidance_scale": scale,
        }
    positive, negative = encode_prompts(pipe, prompts, negatives, device, params.clip_skip)
    return {"prompt_embeds": positive, "negative_prompt_embeds": negative, "guidance_scale": scale}


def padding_group(family: Family, base: Pipeline, params: GenerationParams) -> int:
    """Prompts that pad to the same length in a batch: what they get alone. SD's and SDXL's are cut into 75-token
    chunks; CogView4 pads a batch to its longest prompt, rounded up to 16 tokens; the others pad to a fixed length."""
    if family in OWN_ENCODING:
        return max(chunk_count(base, params.prompt), chunk_count(base, params.negative_prompt))
    if family in SDXL_ENCODING:
        return max(sdxl_chunk_count(base, params.prompt), sdxl_chunk_count(base, params.negative_prompt))
    if family is Family.COGVIEW4:
        texts = [parse_prompt(params.prompt).plain_text, parse_prompt(params.negative_prompt).plain_text]
        return max(-(-len(base.tokenizer(text).input_ids) // 16) for text in texts)
    return 0


def prompt_arguments(
    family: Family,
    view: Pipeline,
    prompts: list[str],
    negatives: list[str],
    guidance: float | None,
    clip_skip: int = 1,
) -> dict[str, Any]:
    """Prompt and guidance arguments for a family whose pipeline encodes its own prompts.

    The scale is A1111's convention everywhere (1 = no guidance): a distilled model takes it as its guidance
    input, a true-CFG model (Qwen-Image) as ``true_cfg_scale`` with a negative prompt (" " when empty, which
    turns CFG on), and Z-Image, whose pipeline computes ``pos + s * (pos - neg)``, gets ``s = scale - 1``."""
    fam = profile(family)
    scale = fam.guidance_scale if guidance is None else guidance
    accepted = parameters(type(view), "__call__")
    # Their prompts are read as plain text: LoRA tags out, escaped brackets as the brackets they stand for
    # (A1111 weights were refused at submission for these families).
    prompts = [parse_prompt(p).plain_text for p in prompts]
    negatives = [parse_prompt(n).plain_text for n in negatives]
    arguments: dict[str, Any] = {"prompt": prompts}
    if fam.guidance is GuidanceKind.TRUE_CFG:
        arguments["true_cfg_scale"] = scale
        if scale > 1:
            arguments["negative_prompt"] = [n or " " for n in negatives]
    elif family is Family.Z_IMAGE:
        arguments["guidance_scale"] = max(0.0, scale - 1.0)
        arguments["negative_prompt"] = negatives
    elif fam.guidance is GuidanceKind.DISTILLED:
        arguments["guidance_scale"] = scale
    else:
        arguments["guidance_scale"] = scale
        arguments["negative_prompt"] = negatives
    if clip_skip > 1 and "clip_skip" in accepted:
        arguments["clip_skip"] = clip_skip - 1  # diffusers counts the layers skipped before the penultimate
    if "use_resolution_binning" in accepted:
        arguments["use_resolution_binning"] = False  # the requested size, not the nearest trained aspect ratio
    return arguments


def size_arguments(view: Pipeline, width: int | None, height: int | None) -> dict[str, Any]:
    """Width and height for pipelines that take them (most image-to-image pipelines take the image's size)."""
    accepted = parameters(type(view), "__call__")
    return {name: value for name, value in (("width", width), ("height", height)) if name in accepted}
