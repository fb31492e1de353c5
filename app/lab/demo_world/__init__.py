"""Training and evaluation of the demo world's text-to-image model."""
