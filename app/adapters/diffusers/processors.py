"""Processors the served pipelines need that transformers cannot build here."""

from __future__ import annotations

from typing import Any

from transformers import Qwen2VLProcessor


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without its video processor, which cannot be built without torchvision.

    transformers 5 builds and loads every sub-processor named in ``__init__``; Qwen2-VL's video
    processor needs torchvision even when only images are processed. This subclass names only the
    image processor and the tokenizer, so it saves, loads and processes images and text without
    torchvision; it also loads a real checkpoint's ``processor`` folder (``image_processor_type``
    ``Qwen2VLImageProcessor`` then resolves to the PIL image processor). The generator passes it
    to ``from_pretrained`` explicitly; a tiny folder's ``model_index.json`` records the transformers class."""

    def __init__(self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None, **kwargs: Any):
        # The parent passes a third (video) argument on; the mixin only takes the attributes named here.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)  # type: ignore[no-untyped-call]
