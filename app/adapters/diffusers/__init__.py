"""Stable-Diffusion-family pipelines through diffusers (CLIP and Chinese BERT tokenizers)."""

import logging

# Importing diffusers makes transformers announce that CLIPImageProcessor falls back to its
# PIL version (torchvision is not installed, on purpose). Drop that one notice, keep the rest.
logging.getLogger("transformers.utils.import_utils").addFilter(
    lambda record: "requires torchvision" not in record.getMessage()
)
