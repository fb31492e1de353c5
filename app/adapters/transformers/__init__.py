"""Causal language models through transformers: answers, token probabilities and gradient sketches."""
