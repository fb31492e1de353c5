"""Reproducible measurements: ``python -m benchmarks.NAME`` prints JSON, headline figures last."""
