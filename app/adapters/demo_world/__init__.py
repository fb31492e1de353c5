"""The demo world's technology: an OpenCV renderer, an OpenCV checker, and the trainer of the
project's own Chinese text-to-image model (torch, diffusers, transformers)."""
