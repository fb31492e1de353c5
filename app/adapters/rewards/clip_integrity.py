"""Content integrity by CLIP similarity, for image models outside the demo world (setting
``integrity_clip``: a CLIP or Chinese-CLIP folder, or a hub id where a network exists).

DiffChat does not publish its integrity model; the closest published choice is CLIPScore (Hessel et al.,
2021), the relevance term Promptist's reward also uses: the image against the text it should show.
The text is the candidate's own prompt (documented choice): the rewriter is trained to carry the
instruction into the prompt, and this reward checks that the image shows what the prompt says.
Score = min(1, w·max(cos, 0)) with CLIPScore's w = 2.5, so it lies in [0, 1] like the other rewards
(a cosine of 0.4, already high for CLIP, scores 1).

Chinese prompts need a Chinese text tower: a ``ChineseCLIPModel`` folder (BERT tokenizer, as the PAI
models' text encoders) works as well as an OpenAI ``CLIPModel``; both load through ``AutoModel``.
"""

from __future__ import annotations

import os
from typing import Any

from app.domain.errors import ModelUnavailable
from app.ports.prompt_sessions import RewardInput, RewardModel

CLIPSCORE_W = 2.5


class ClipIntegrityReward(RewardModel):
    name = "integrity"

    def __init__(self, path: str, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModel, AutoProcessor

        processors: Any = AutoProcessor  # untyped in transformers
        self._torch = torch
        self.device = torch.device(device)
        local = os.path.isdir(path)  # else a hub id, for machines that may download
        try:
            self.processor: Any = processors.from_pretrained(path, local_files_only=local)
            model: Any = AutoModel.from_pretrained(path, local_files_only=local)
        except (OSError, ValueError) as e:
            raise ModelUnavailable(f"No CLIP model at {path}: {e}") from e
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise ModelUnavailable(f"{path} is not a CLIP-style model (image and text towers).")
        self.model: Any = model.to(self.device).eval().requires_grad_(False)
        self.max_length = int(getattr(self.model.config.text_config, "max_position_embeddings", 77))

    def similarity(self, inputs: list[RewardInput]) -> list[float]:
        """The cosine of each image with its prompt in CLIP's joint space."""
        from PIL import Image

        if not inputs:
            return []
        torch = self._torch
        pictures = [Image.frombytes("RGB", (i.image.width, i.image.height), i.image.rgb) for i in inputs]
        batch = self.processor(
            text=[i.prompt for i in inputs],
            images=pictures,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=self.max_length,
        )
        with torch.inference_mode():
            out = self.model(**{k: v.to(self.device) for k, v in batch.items()})
            image, text = out.image_embeds, out.text_embeds  # both L2-normalised by the model
            return [float(v) for v in (image * text).sum(-1)]

    def score(self, inputs: list[RewardInput]) -> list[float]:
        return [min(1.0, CLIPSCORE_W * max(c, 0.0)) for c in self.similarity(inputs)]
